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
#include "backbones/sync_batch_norm.h"

namespace tb {
namespace {

using Triple = torch::ExpandingArray<3>;

torch::nn::Conv3d Conv(int64_t in, int64_t out, Triple kernel, Triple stride, Triple padding) {
  return torch::nn::Conv3d(
      torch::nn::Conv3dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// eps and momentum are spelled out because they are part of the parity
// contract with torchvision, not because they differ from the defaults.
SyncBatchNorm Bn(int64_t channels) {
  return SyncBatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
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
// midplanes of (in, out), as in torchvision; built in torchvision's order
// (conv1, conv2, downsample).
BasicBlock BasicBlock2Plus1d(int64_t in, int64_t out, int64_t stride) {
  const int64_t mid = R2plus1dMidplanes(in, out);
  torch::nn::Sequential conv1(Conv2Plus1d(in, out, mid, stride), Bn(out), Relu());
  torch::nn::Sequential conv2(Conv2Plus1d(out, out, mid, 1), Bn(out));
  torch::nn::Sequential downsample{nullptr};
  if (stride != 1 || in != out) {
    downsample = torch::nn::Sequential(
        Conv(in, out, {1, 1, 1}, {stride, stride, stride}, {0, 0, 0}), Bn(out));
  }
  return BasicBlock(conv1, conv2, downsample);
}

class R2plus1d : public ResNetBackbone {
 public:
  R2plus1d(const R2plus1dWidths& widths, const std::array<int, 4>& blocks, int64_t in_channels,
           int64_t num_classes, double dropout)
      : ResNetBackbone(num_classes, widths.stages[3]) {
    // torchvision's R2Plus1dStem: 1x7x7 spatial (stride 1x2x2) to 45 channels,
    // then 3x1x1 temporal to 64; every frame is kept, H and W are halved.
    const int64_t w0 = widths.stages[0];
    torch::nn::Sequential stem(Conv(in_channels, widths.stem_mid, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}),
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

}  // namespace

R2plus1dWidths R2plus1dChannelWidths(float width_multiplier) {
  R2plus1dWidths widths;
  widths.stem_mid = ScaledWidth(45, width_multiplier);
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) widths.stages[s] = ScaledWidth(base[s], width_multiplier);
  return widths;
}

int64_t R2plus1dMidplanes(int64_t in, int64_t out) {
  return std::max<int64_t>(1, (in * out * 3 * 3 * 3) / (in * 3 * 3 + 3 * out));
}

std::array<int, 4> R2plus1dBlocksPerStage(int depth) {
  if (depth == 34) return {3, 4, 6, 3};
  return {2, 2, 2, 2};
}

absl::Status ValidateR2plus1d(const R2plus1dOptions& options, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(options.depth() == 18 || options.depth() == 34, "depth", options.depth(),
            "must be 18 or 34");
  CheckWidthMultiplier(options.width_multiplier(), &c);
  return c.status();
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> CreateR2plus1d(const R2plus1dOptions& options,
                                                              const BackboneConfig& config) {
  const int depth = options.depth();
  return CallTorch(absl::StrCat("building backbone r2plus1d (depth ", depth, ")"),
                   [&]() -> std::unique_ptr<VideoBackbone> {
                     return std::make_unique<R2plus1d>(
                         R2plus1dChannelWidths(options.width_multiplier()),
                         R2plus1dBlocksPerStage(depth), config.input_channels(),
                         config.num_classes(), config.dropout());
                   });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), r2plus1d, ValidateR2plus1d, CreateR2plus1d,
                      "width_multiplier: 0.125", "width_multiplier: 0.125 depth: 34");

}  // namespace tb
