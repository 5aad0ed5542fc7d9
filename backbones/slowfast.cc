#include "backbones/slowfast.h"

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

constexpr int kMaxAlpha = 64;
constexpr int kMaxBetaInv = 64;
constexpr int kMaxFusionRatio = 16;
constexpr int kMaxFusionKernel = 15;
using resnet3d::Bn;
using resnet3d::Bottleneck;
using resnet3d::Conv;
using resnet3d::kExpansion;
using resnet3d::Stem;
constexpr std::array<int, 4> kBlocksPerStage = {3, 4, 6, 3};
// conv1 temporal kernel per stage (pytorchvideo create_slowfast
// stage_conv_a_kernel_sizes; PySlowFast _TEMPORAL_KERNEL_BASIS["slowfast"]).
constexpr std::array<int64_t, 4> kSlowConv1TemporalKernel = {1, 1, 3, 3};
constexpr std::array<int64_t, 4> kFastConv1TemporalKernel = {3, 3, 3, 3};
constexpr int64_t kSlowStemTemporalKernel = 1;
constexpr int64_t kFastStemTemporalKernel = 5;


// Lateral connection: Conv3d(c, ratio * c, k x 1 x 1, stride alpha x 1 x 1,
// padding k/2 x 0 x 0, no bias) + BN + ReLU on the Fast features (T frames ->
// T / alpha for odd k and T divisible by alpha).
struct FuseImpl : torch::nn::Module {
  FuseImpl(int64_t fast_channels, int64_t ratio, int64_t kernel, int64_t alpha) {
    conv = register_module("conv", Conv(fast_channels, ratio * fast_channels, {kernel, 1, 1},
                                        {alpha, 1, 1}, {kernel / 2, 0, 0}));
    bn = register_module("bn", Bn(ratio * fast_channels));
  }

  // Returns cat([slow, ReLU(BN(conv(fast)))], channels).
  torch::Tensor forward(const torch::Tensor& slow, const torch::Tensor& fast) {
    torch::Tensor lateral = bn->forward(conv->forward(fast));
    lateral.relu_();
    return torch::cat({slow, lateral}, 1);
  }

  torch::nn::Conv3d conv{nullptr};
  SyncBatchNorm bn{nullptr};
};
TORCH_MODULE(Fuse);

torch::nn::Sequential MakeStage(int64_t in, int64_t inner, int blocks, int64_t temporal_kernel,
                                int64_t first_spatial_stride) {
  torch::nn::Sequential stage;
  for (int b = 0; b < blocks; ++b) {
    stage->push_back(Bottleneck(in, inner, temporal_kernel, b == 0 ? first_spatial_stride : 1));
    in = inner * kExpansion;
  }
  return stage;
}

class SlowFastR50 : public VideoBackbone {
 public:
  SlowFastR50(const SlowFastOptions& options, int64_t in_channels, int64_t num_classes,
              double dropout)
      : alpha_(options.alpha()), num_classes_(num_classes) {
    const SlowFastWidths w = SlowFastR50Widths(options);
    feature_dim_ = w.feature_dim;
    const int64_t ratio = options.fusion_conv_channel_ratio();
    const int64_t kernel = options.fusion_kernel();
    slow_stem_ = register_module("slow_stem", Stem(w.slow_stem, kSlowStemTemporalKernel, in_channels));
    fast_stem_ = register_module("fast_stem", Stem(w.fast_stem, kFastStemTemporalKernel, in_channels));
    fuse_[0] = register_module("fuse_stem", Fuse(w.fast_stem, ratio, kernel, alpha_));
    int64_t slow_in = w.slow_stem + ratio * w.fast_stem;
    int64_t fast_in = w.fast_stem;
    for (int s = 0; s < 4; ++s) {
      const int64_t stride = s > 0 ? 2 : 1;
      slow_stages_[s] = register_module(
          absl::StrCat("slow_layer", s + 1),
          MakeStage(slow_in, w.slow_inner[s], kBlocksPerStage[s], kSlowConv1TemporalKernel[s],
                    stride));
      fast_stages_[s] = register_module(
          absl::StrCat("fast_layer", s + 1),
          MakeStage(fast_in, w.fast_inner[s], kBlocksPerStage[s], kFastConv1TemporalKernel[s],
                    stride));
      const int64_t slow_out = w.slow_inner[s] * kExpansion;
      const int64_t fast_out = w.fast_inner[s] * kExpansion;
      if (s < 3) {
        fuse_[s + 1] = register_module(absl::StrCat("fuse_layer", s + 1),
                                       Fuse(fast_out, ratio, kernel, alpha_));
        slow_in = slow_out + ratio * fast_out;
      }
      fast_in = fast_out;
    }
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
    fc_ = register_module("fc", torch::nn::Linear(feature_dim_, num_classes));
    InitWeights();
  }

  torch::Tensor FeatureMap(const torch::Tensor& clip) override {
    TORCH_CHECK(clip.dim() == 5, "slowfast_r50 expects a clip [B, 3, T, H, W], got ", clip.sizes());
    const int64_t t = clip.size(2);
    TORCH_CHECK(t % alpha_ == 0, "slowfast_r50: clip length T = ", t,
                " is not divisible by backbone.slowfast_r50.alpha = ", alpha_);
    torch::Tensor fast = fast_stem_->forward(clip);
    torch::Tensor slow = slow_stem_->forward(clip.slice(/*dim=*/2, 0, t, alpha_));
    slow = fuse_[0]->forward(slow, fast);
    for (int s = 0; s < 4; ++s) {
      slow = slow_stages_[s]->forward(slow);
      fast = fast_stages_[s]->forward(fast);
      if (s < 3) slow = fuse_[s + 1]->forward(slow, fast);
    }
    // Fast [B, Cf, T, h, w] -> [B, Cf, T / alpha, h, w] by averaging each run
    // of alpha frames, so the two maps align in time.
    torch::Tensor fast_pooled = torch::nn::functional::avg_pool3d(
        fast, torch::nn::functional::AvgPool3dFuncOptions({alpha_, 1, 1}).stride({alpha_, 1, 1}));
    return torch::cat({slow, fast_pooled}, 1);
  }

  torch::Tensor Logits(const torch::Tensor& features) override {
    return fc_->forward(dropout_->forward(features));
  }

  int64_t feature_dim() const override { return feature_dim_; }
  int64_t num_classes() const override { return num_classes_; }

 private:
  // As slow_r50 (pytorchvideo init_net_weights "resnet"): convs kaiming
  // normal fan_out, BN gamma 1 / beta 0 except every bottleneck's bn3 (gamma
  // 0), fc normal(0, 0.01) with zero bias. The fusion BNs start at gamma 1.
  void InitWeights() { resnet3d::InitBottleneckResNetWeights(*this); }

  int64_t alpha_;
  int64_t num_classes_;
  int64_t feature_dim_ = 0;
  Stem slow_stem_{nullptr};
  Stem fast_stem_{nullptr};
  std::array<Fuse, 4> fuse_{nullptr, nullptr, nullptr, nullptr};
  std::array<torch::nn::Sequential, 4> slow_stages_{nullptr, nullptr, nullptr, nullptr};
  std::array<torch::nn::Sequential, 4> fast_stages_{nullptr, nullptr, nullptr, nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

SlowFastWidths SlowFastR50Widths(const SlowFastOptions& options) {
  SlowFastWidths w;
  const double m = options.width_multiplier();
  const int64_t beta_inv = std::max(1, options.beta_inv());
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    w.slow_inner[s] = ScaledWidth(base[s], m);
    w.fast_inner[s] = std::max<int64_t>(1, w.slow_inner[s] / beta_inv);
  }
  w.slow_stem = w.slow_inner[0];
  w.fast_stem = w.fast_inner[0];
  w.feature_dim = kExpansion * (w.slow_inner[3] + w.fast_inner[3]);
  return w;
}

absl::Status ValidateSlowFastR50(const SlowFastOptions& options, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckWidthMultiplier(options.width_multiplier(), &c);
  auto in_range = [&c](const char* field, int value, int lo, int hi) {
    c.Require(value >= lo && value <= hi, field, value,
              absl::StrCat("must be in [", lo, ", ", hi, "]"));
  };
  in_range("alpha", options.alpha(), 1, kMaxAlpha);
  in_range("beta_inv", options.beta_inv(), 1, kMaxBetaInv);
  in_range("fusion_conv_channel_ratio", options.fusion_conv_channel_ratio(), 1, kMaxFusionRatio);
  in_range("fusion_kernel", options.fusion_kernel(), 1, kMaxFusionKernel);
  c.Require(options.fusion_kernel() % 2 == 1, "fusion_kernel", options.fusion_kernel(),
            "must be odd (so the lateral convolution maps T frames to T / alpha)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> CreateSlowFastR50(const SlowFastOptions& options,
                                                                 const BackboneConfig& config) {
  return CallTorch("building backbone slowfast_r50", [&]() -> std::unique_ptr<VideoBackbone> {
    return std::make_unique<SlowFastR50>(options, config.input_channels(), config.num_classes(),
                                         config.dropout());
  });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), slowfast_r50, ValidateSlowFastR50, CreateSlowFastR50,
                      "width_multiplier: 0.25");

}  // namespace tb
