#include "backbones/r2plus1d.h"

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

torch::nn::Conv3d Conv(int64_t in, int64_t out, Triple kernel, Triple stride, Triple padding) {
  return torch::nn::Conv3d(
      torch::nn::Conv3dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// eps and momentum are spelled out because they are part of the parity
// contract with torchvision, not because they differ from the defaults.
torch::nn::BatchNorm3d Bn(int64_t channels) {
  return torch::nn::BatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
}

torch::nn::ReLU Relu() { return torch::nn::ReLU(torch::nn::ReLUOptions(true)); }

// torchvision's Conv2Plus1D: a Sequential, so its children are named 0..3
// (spatial conv, BatchNorm, ReLU, temporal conv). The spatial convolution
// strides in H and W, the temporal one in T. A subclass with a concrete
// forward() because LibTorch cannot nest a plain Sequential in a Sequential.
struct Conv2Plus1dImpl : torch::nn::SequentialImpl {
  Conv2Plus1dImpl(int64_t in, int64_t out, int64_t mid, int64_t stride) {
    push_back(Conv(in, mid, {1, 3, 3}, {1, stride, stride}, {0, 1, 1}));
    push_back(Bn(mid));
    push_back(Relu());
    push_back(Conv(mid, out, {3, 1, 1}, {stride, 1, 1}, {1, 0, 0}));
  }
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(Conv2Plus1d);

// torchvision's BasicBlock with Conv2Plus1D. Both Conv2Plus1D use the
// midplanes of (in, out), as in torchvision. conv1/conv2/downsample are
// Sequentials because torchvision's are: child indices are part of the names
// ("conv1.0.3.weight", "conv1.1.running_mean").
struct BasicBlock2Plus1dImpl : torch::nn::Module {
  BasicBlock2Plus1dImpl(int64_t in, int64_t out, int64_t stride) {
    const int64_t mid = R2plus1dMidplanes(in, out);
    conv1 = register_module(
        "conv1", torch::nn::Sequential(Conv2Plus1d(in, out, mid, stride), Bn(out), Relu()));
    conv2 = register_module("conv2", torch::nn::Sequential(Conv2Plus1d(out, out, mid, 1), Bn(out)));
    if (stride != 1 || in != out) {
      downsample = register_module(
          "downsample",
          torch::nn::Sequential(Conv(in, out, {1, 1, 1}, {stride, stride, stride}, {0, 0, 0}),
                                Bn(out)));
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
TORCH_MODULE(BasicBlock2Plus1d);

class R2plus1d : public ResNetBackbone {
 public:
  R2plus1d(const R2plus1dWidths& widths, const std::array<int, 4>& blocks, int64_t num_classes,
           double dropout)
      : ResNetBackbone(num_classes, widths.stages[3]) {
    // torchvision's R2Plus1dStem: 1x7x7 spatial (stride 1x2x2) to 45 channels,
    // then 3x1x1 temporal to 64; every frame is kept, H and W are halved.
    const int64_t w0 = widths.stages[0];
    torch::nn::Sequential stem(Conv(3, widths.stem_mid, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}),
                               Bn(widths.stem_mid), Relu(),
                               Conv(widths.stem_mid, w0, {3, 1, 1}, {1, 1, 1}, {1, 0, 0}), Bn(w0),
                               Relu());
    std::array<torch::nn::Sequential, 4> stages;
    int64_t in = w0;
    for (int s = 0; s < 4; ++s) {
      torch::nn::Sequential stage;
      for (int b = 0; b < blocks[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(BasicBlock2Plus1d(in, widths.stages[s], stride));
        in = widths.stages[s];
      }
      stages[s] = stage;
    }
    Assemble(stem, stages, dropout);
    InitVideoResNetWeights(*this);  // torchvision's VideoResNet initialisation
  }
};

int64_t Scaled(int64_t base, float width_multiplier) {
  return std::max<int64_t>(1, std::llround(base * static_cast<double>(width_multiplier)));
}

}  // namespace

R2plus1dWidths R2plus1dChannelWidths(float width_multiplier) {
  R2plus1dWidths widths;
  widths.stem_mid = Scaled(45, width_multiplier);
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) widths.stages[s] = Scaled(base[s], width_multiplier);
  return widths;
}

int64_t R2plus1dMidplanes(int64_t in, int64_t out) {
  return std::max<int64_t>(1, (in * out * 3 * 3 * 3) / (in * 3 * 3 + 3 * out));
}

std::array<int, 4> R2plus1dBlocksPerStage(int depth) {
  if (depth == 34) return {3, 4, 6, 3};
  return {2, 2, 2, 2};
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> MakeR2plus1d(const BackboneConfig& config) {
  const R2plus1dOptions& options = config.r2plus1d();
  const int depth = options.depth();
  if (depth != 18 && depth != 34) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.r2plus1d.depth must be 18 or 34, got ", depth));
  }
  const float w = options.width_multiplier();
  // The negated comparison also rejects NaN.
  if (!(w > 0.0f && w <= kMaxWidthMultiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone.r2plus1d.width_multiplier must be in (0, ", kMaxWidthMultiplier, "], got ", w));
  }
  if (!(config.dropout() >= 0.0f && config.dropout() < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.dropout must be in [0, 1), got ", config.dropout()));
  }
  if (config.num_classes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.num_classes must be > 0, got ", config.num_classes()));
  }
  return CallTorch(absl::StrCat("building backbone r2plus1d (depth ", depth, ")"),
                   [&]() -> std::unique_ptr<VideoBackbone> {
                     return std::make_unique<R2plus1d>(R2plus1dChannelWidths(w),
                                                       R2plus1dBlocksPerStage(depth),
                                                       config.num_classes(), config.dropout());
                   });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), r2plus1d, MakeR2plus1d);

}  // namespace tb
