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
#include "backbones/sync_batch_norm.h"

namespace tb {
namespace {

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
SyncBatchNorm Bn(int64_t channels) {
  return SyncBatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
}

// torchvision's BasicBlock with Conv3DSimple. `conv1_temporal_dilation` > 1
// is TCLR's layer4[0].conv1 (dilation (2, 1, 1), padding (2, 1, 1)); it adds
// no parameters. The convolutions are built in torchvision's order (conv1,
// conv2, downsample), which is also the order their default initialisation
// draws random numbers in.
BasicBlock BasicBlock3d(int64_t in, int64_t out, Triple stride,
                        int64_t conv1_temporal_dilation = 1) {
  torch::nn::Sequential conv1(Conv(in, out, 3, stride, conv1_temporal_dilation), Bn(out),
                              torch::nn::ReLU(torch::nn::ReLUOptions(true)));
  torch::nn::Sequential conv2(Conv(out, out, 3, 1), Bn(out));
  torch::nn::Sequential downsample{nullptr};
  const bool strided = (*stride)[0] != 1 || (*stride)[1] != 1 || (*stride)[2] != 1;
  if (strided || in != out) downsample = torch::nn::Sequential(Conv(in, out, 1, stride), Bn(out));
  return BasicBlock(conv1, conv2, downsample);
}

// torchvision's VideoResNet with BasicBlock and Conv3DSimple: r3d_18 at
// blocks {2, 2, 2, 2}, the 34-layer variant at {3, 4, 6, 3}.
class R3d : public ResNetBackbone {
 public:
  R3d(const std::array<int64_t, 4>& widths, const std::array<int, 4>& blocks, bool tclr_layer4,
      int64_t in_channels, int64_t num_classes, double dropout)
      : ResNetBackbone(num_classes, widths[3]) {
    // Stem: 3x7x7 with stride 1x2x2 keeps every frame and halves H and W.
    torch::nn::Sequential stem(torch::nn::Conv3d(torch::nn::Conv3dOptions(in_channels, widths[0], {3, 7, 7})
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
  for (int s = 0; s < 4; ++s) widths[s] = ScaledWidth(base[s], width_multiplier);
  return widths;
}

std::array<int, 4> R3dBlocksPerStage(int depth) {
  if (depth == 34) return {3, 4, 6, 3};
  return {2, 2, 2, 2};
}

absl::Status ValidateR3d(const R3dOptions& options, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckWidthMultiplier(options.width_multiplier(), &c);
  c.Require(options.depth() == 18 || options.depth() == 34, "depth", options.depth(),
            "must be 18 (R3D-18) or 34 (R3D-34)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> CreateR3d(const R3dOptions& options,
                                                         const BackboneConfig& config) {
  return CallTorch(absl::StrCat("building backbone r3d18 (depth ", options.depth(), ")"),
                   [&]() -> std::unique_ptr<VideoBackbone> {
                     return std::make_unique<R3d>(
                         R3dStageWidths(options.width_multiplier()),
                         R3dBlocksPerStage(options.depth()), options.tclr_temporal_layer4(),
                         config.input_channels(), config.num_classes(), config.dropout());
                   });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), r3d18, ValidateR3d, CreateR3d,
                      "width_multiplier: 0.125", "width_multiplier: 0.125 depth: 34",
                      "width_multiplier: 0.125 tclr_temporal_layer4: true");

}  // namespace tb
