#include "backbones/slow_r50.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "backbones/bottleneck3d.h"
#include "core/torch_status.h"

namespace tb {
namespace {

constexpr float kMaxWidthMultiplier = 8.0f;
using resnet3d::Bottleneck;
using resnet3d::kExpansion;
using resnet3d::Stem;
constexpr std::array<int, 4> kBlocksPerStage = {3, 4, 6, 3};
// Temporal kernel of conv1 per stage (pytorchvideo stage_conv_a_kernel_size
// (1,1,1), (1,1,1), (3,1,1), (3,1,1); mmaction2 inflate (0, 0, 1, 1)).
constexpr std::array<int64_t, 4> kConv1TemporalKernel = {1, 1, 3, 3};


class SlowR50 : public ResNetBackbone {
 public:
  SlowR50(const std::array<int64_t, 4>& inner, int64_t in_channels, int64_t num_classes,
          double dropout)
      : ResNetBackbone(num_classes, inner[3] * kExpansion) {
    std::array<torch::nn::Sequential, 4> stages;
    int64_t in = inner[0];
    for (int s = 0; s < 4; ++s) {
      torch::nn::Sequential stage;
      for (int b = 0; b < kBlocksPerStage[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(Bottleneck(in, inner[s], kConv1TemporalKernel[s], stride));
        in = inner[s] * kExpansion;
      }
      stages[s] = stage;
    }
    Assemble(Stem(inner[0], /*temporal_kernel=*/1, in_channels), stages, dropout);
    // pytorchvideo's init_net_weights(style="resnet"): convs c2_msra_fill
    // (kaiming_normal_, fan_out, relu), BN gamma 1 and beta 0 except the last
    // BN of every residual branch (bn3, pytorchvideo's block_final_bn), whose
    // gamma is 0 so each block starts as the identity; fc normal(0, 0.01).
    resnet3d::InitBottleneckResNetWeights(*this);
  }
};

}  // namespace

std::array<int64_t, 4> SlowR50InnerWidths(float width_multiplier) {
  std::array<int64_t, 4> widths{};
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) widths[s] = ScaledWidth(base[s], width_multiplier);
  return widths;
}

absl::Status ValidateSlowR50(const SlowR50Options& options, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckWidthMultiplier(options.width_multiplier(), &c);
  return c.status();
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> CreateSlowR50(const SlowR50Options& options,
                                                             const BackboneConfig& config) {
  return CallTorch("building backbone slow_r50", [&]() -> std::unique_ptr<VideoBackbone> {
    return std::make_unique<SlowR50>(SlowR50InnerWidths(options.width_multiplier()),
                                     config.input_channels(), config.num_classes(),
                                     config.dropout());
  });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), slow_r50, ValidateSlowR50, CreateSlowR50,
                      "width_multiplier: 0.125");

}  // namespace tb
