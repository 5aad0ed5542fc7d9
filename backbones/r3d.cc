#include "backbones/r3d.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "core/torch_status.h"

namespace tb {
namespace {

constexpr float kMaxWidthMultiplier = 8.0f;

using Triple = torch::ExpandingArray<3>;

// A bias-free 3D convolution with a cubic kernel; the temporal dilation is
// matched by the temporal padding so that, at stride 1, sizes are kept.
torch::nn::Conv3d Conv(int64_t in, int64_t out, int64_t kernel, Triple stride,
                       int64_t temporal_dilation = 1) {
  const int64_t pad = kernel / 2;
  return torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, kernel)
                               .stride(stride)
                               .padding(Triple({pad * temporal_dilation, pad, pad}))
                               .dilation(Triple({temporal_dilation, 1, 1}))
                               .bias(false));
}

// eps and momentum are spelled out because they are part of the parity
// contract with torchvision, not because they differ from the defaults.
torch::nn::BatchNorm3d Bn(int64_t channels) {
  return torch::nn::BatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
}

// torchvision's BasicBlock with Conv3DSimple. conv1/conv2/downsample are
// Sequentials only because torchvision's are: their child indices are part of
// the parameter names ("conv1.0.weight", "conv1.1.running_mean").
// `conv1_temporal_dilation` > 1 is TCLR's layer4[0].conv1 (dilation (2, 1, 1),
// padding (2, 1, 1)); it adds no parameters.
struct BasicBlock3dImpl : torch::nn::Module {
  BasicBlock3dImpl(int64_t in, int64_t out, Triple stride, int64_t conv1_temporal_dilation = 1) {
    conv1 = register_module(
        "conv1", torch::nn::Sequential(Conv(in, out, 3, stride, conv1_temporal_dilation), Bn(out),
                                       torch::nn::ReLU(torch::nn::ReLUOptions(true))));
    conv2 = register_module("conv2", torch::nn::Sequential(Conv(out, out, 3, 1), Bn(out)));
    const bool strided = (*stride)[0] != 1 || (*stride)[1] != 1 || (*stride)[2] != 1;
    if (strided || in != out) {
      downsample =
          register_module("downsample", torch::nn::Sequential(Conv(in, out, 1, stride), Bn(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = conv2->forward(conv1->forward(x));
    out += downsample ? downsample->forward(x) : x;
    return torch::relu_(out);
  }

  torch::nn::Sequential conv1{nullptr};
  torch::nn::Sequential conv2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock3d);

// torchvision's VideoResNet with BasicBlock and Conv3DSimple: r3d_18 at
// blocks {2, 2, 2, 2}, the 34-layer variant at {3, 4, 6, 3}.
class R3d : public ResNetBackbone {
 public:
  R3d(const std::array<int64_t, 4>& widths, const std::array<int, 4>& blocks, bool tclr_layer4,
      int64_t num_classes, double dropout)
      : ResNetBackbone(num_classes, widths[3]) {
    // Stem: 3x7x7 with stride 1x2x2 keeps every frame and halves H and W.
    torch::nn::Sequential stem(torch::nn::Conv3d(torch::nn::Conv3dOptions(3, widths[0], {3, 7, 7})
                                                    .stride({1, 2, 2})
                                                    .padding({1, 3, 3})
                                                    .bias(false)),
                               Bn(widths[0]), torch::nn::ReLU(torch::nn::ReLUOptions(true)));
    std::array<torch::nn::Sequential, 4> stages;
    int64_t in = widths[0];
    for (int s = 0; s < 4; ++s) {
      torch::nn::Sequential stage;
      for (int b = 0; b < blocks[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        if (tclr_layer4 && s == 3 && b == 0) {
          // TCLR: no temporal stride in layer4; the dilated conv1 keeps the
          // receptive field growing instead.
          stage->push_back(BasicBlock3d(in, widths[s], Triple({1, 2, 2}),
                                        /*conv1_temporal_dilation=*/2));
        } else {
          stage->push_back(BasicBlock3d(in, widths[s], Triple(stride)));
        }
        in = widths[s];
      }
      stages[s] = stage;
    }
    Assemble(stem, stages, dropout);
    // torchvision's VideoResNet initialisation, so that training from scratch
    // starts from the same distribution as the reference.
    InitVideoResNetWeights(*this);
  }
};

}  // namespace

std::array<int64_t, 4> R3dStageWidths(float width_multiplier) {
  std::array<int64_t, 4> widths{};
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    widths[s] = std::max<int64_t>(1, std::llround(base[s] * static_cast<double>(width_multiplier)));
  }
  return widths;
}

absl::StatusOr<std::array<int, 4>> R3dBlocksPerStage(int depth) {
  switch (depth) {
    case 18:
      return std::array<int, 4>{2, 2, 2, 2};
    case 34:
      return std::array<int, 4>{3, 4, 6, 3};
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("backbone.r3d18.depth must be 18 or 34, got ", depth));
  }
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> MakeR3d18(const BackboneConfig& config) {
  const R3dOptions& options = config.r3d18();
  const float w = options.width_multiplier();
  // The negated comparison also rejects NaN.
  if (!(w > 0.0f && w <= kMaxWidthMultiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone.r3d18.width_multiplier must be in (0, ", kMaxWidthMultiplier, "], got ", w));
  }
  if (!(config.dropout() >= 0.0f && config.dropout() < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.dropout must be in [0, 1), got ", config.dropout()));
  }
  if (config.num_classes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.num_classes must be > 0, got ", config.num_classes()));
  }
  const absl::StatusOr<std::array<int, 4>> blocks = R3dBlocksPerStage(options.depth());
  if (!blocks.ok()) return blocks.status();
  return CallTorch("building backbone r3d18", [&]() -> std::unique_ptr<VideoBackbone> {
    return std::make_unique<R3d>(R3dStageWidths(w), *blocks, options.tclr_temporal_layer4(),
                                 config.num_classes(), config.dropout());
  });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), r3d18, MakeR3d18);

}  // namespace tb
