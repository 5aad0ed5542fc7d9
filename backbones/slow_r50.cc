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
#include "core/torch_status.h"

namespace tb {
namespace {

constexpr float kMaxWidthMultiplier = 8.0f;
constexpr int64_t kExpansion = 4;
constexpr std::array<int, 4> kBlocksPerStage = {3, 4, 6, 3};
// Temporal kernel of conv1 per stage (pytorchvideo stage_conv_a_kernel_size
// (1,1,1), (1,1,1), (3,1,1), (3,1,1); mmaction2 inflate (0, 0, 1, 1)).
constexpr std::array<int64_t, 4> kConv1TemporalKernel = {1, 1, 3, 3};

using Triple = torch::ExpandingArray<3>;

torch::nn::Conv3d Conv(int64_t in, int64_t out, Triple kernel, Triple stride, Triple padding) {
  return torch::nn::Conv3d(
      torch::nn::Conv3dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// pytorchvideo's defaults (norm_eps 1e-5, norm_momentum 0.1), spelled out.
torch::nn::BatchNorm3d Bn(int64_t channels) {
  return torch::nn::BatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
}

// Conv(3, 64w, 1x7x7, stride 1x2x2, padding 0x3x3) + BN + ReLU, then
// MaxPool3d(1x3x3, stride 1x2x2, padding 0x1x1): H and W / 4, T kept.
struct SlowStemImpl : torch::nn::Module {
  explicit SlowStemImpl(int64_t out) {
    conv = register_module("conv", Conv(3, out, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}));
    bn = register_module("bn", Bn(out));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn->forward(conv->forward(x));
    y.relu_();
    return torch::nn::functional::max_pool3d(
        y, torch::nn::functional::MaxPool3dFuncOptions({1, 3, 3}).stride({1, 2, 2}).padding(
               {0, 1, 1}));
  }

  torch::nn::Conv3d conv{nullptr};
  torch::nn::BatchNorm3d bn{nullptr};
};
TORCH_MODULE(SlowStem);

// Bottleneck: conv1 (kt x 1 x 1) -> conv2 (1 x 3 x 3, spatial stride) ->
// conv3 (1 x 1 x 1, inner * 4), each followed by BN, ReLU after the first
// two and after the residual sum. The shortcut is a strided 1x1x1 projection
// + BN when the shape changes (the first block of every stage).
struct BottleneckImpl : torch::nn::Module {
  BottleneckImpl(int64_t in, int64_t inner, int64_t temporal_kernel, int64_t spatial_stride) {
    const int64_t out = inner * kExpansion;
    conv1 = register_module(
        "conv1", Conv(in, inner, {temporal_kernel, 1, 1}, 1, {temporal_kernel / 2, 0, 0}));
    bn1 = register_module("bn1", Bn(inner));
    conv2 = register_module(
        "conv2", Conv(inner, inner, {1, 3, 3}, {1, spatial_stride, spatial_stride}, {0, 1, 1}));
    bn2 = register_module("bn2", Bn(inner));
    conv3 = register_module("conv3", Conv(inner, out, 1, 1, 0));
    bn3 = register_module("bn3", Bn(out));
    if (spatial_stride != 1 || in != out) {
      downsample = register_module(
          "downsample",
          torch::nn::Sequential(Conv(in, out, 1, {1, spatial_stride, spatial_stride}, 0), Bn(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = bn1->forward(conv1->forward(x));
    y.relu_();
    y = bn2->forward(conv2->forward(y));
    y.relu_();
    y = bn3->forward(conv3->forward(y));
    y += downsample ? downsample->forward(x) : x;
    return torch::relu_(y);
  }

  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm3d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class SlowR50 : public VideoBackbone {
 public:
  SlowR50(const std::array<int64_t, 4>& inner, int64_t num_classes, double dropout)
      : num_classes_(num_classes), feature_dim_(inner[3] * kExpansion) {
    stem_ = register_module("stem", SlowStem(inner[0]));
    int64_t in = inner[0];
    for (int s = 0; s < 4; ++s) {
      torch::nn::Sequential stage;
      for (int b = 0; b < kBlocksPerStage[s]; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        stage->push_back(Bottleneck(in, inner[s], kConv1TemporalKernel[s], stride));
        in = inner[s] * kExpansion;
      }
      stages_[s] = register_module(absl::StrCat("layer", s + 1), stage);
    }
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
    fc_ = register_module("fc", torch::nn::Linear(feature_dim_, num_classes));
    InitWeights();
  }

  torch::Tensor FeatureMap(const torch::Tensor& clip) override {
    return RunStages(stem_->forward(clip), stages_, nullptr);
  }

  std::vector<torch::Tensor> StageFeatureMaps(const torch::Tensor& clip) override {
    std::vector<torch::Tensor> outputs;
    RunStages(stem_->forward(clip), stages_, &outputs);
    return outputs;
  }

  torch::Tensor Logits(const torch::Tensor& features) override {
    return fc_->forward(dropout_->forward(features));
  }

  int64_t feature_dim() const override { return feature_dim_; }
  int64_t num_classes() const override { return num_classes_; }

 private:
  // pytorchvideo's init_net_weights(style="resnet"): convs c2_msra_fill
  // (kaiming_normal_, fan_out, relu), BN gamma 1 and beta 0 except the last
  // BN of every residual branch (bn3, pytorchvideo's block_final_bn), whose
  // gamma is 0 so each block starts as the identity; fc normal(0, 0.01).
  void InitWeights() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv3d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
      } else if (auto* bn = m->as<torch::nn::BatchNorm3d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      } else if (auto* fc = m->as<torch::nn::Linear>()) {
        torch::nn::init::normal_(fc->weight, 0.0, 0.01);
        torch::nn::init::zeros_(fc->bias);
      }
    }
    for (auto& stage : stages_) {
      for (auto& block : *stage) {
        torch::nn::init::zeros_(block.ptr()->as<BottleneckImpl>()->bn3->weight);
      }
    }
  }

  int64_t num_classes_;
  int64_t feature_dim_;
  SlowStem stem_{nullptr};
  std::array<torch::nn::Sequential, 4> stages_{nullptr, nullptr, nullptr, nullptr};
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

std::array<int64_t, 4> SlowR50InnerWidths(float width_multiplier) {
  std::array<int64_t, 4> widths{};
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    widths[s] = std::max<int64_t>(1, std::llround(base[s] * static_cast<double>(width_multiplier)));
  }
  return widths;
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> MakeSlowR50(const BackboneConfig& config) {
  const float w = config.slow_r50().width_multiplier();
  // The negated comparison also rejects NaN.
  if (!(w > 0.0f && w <= kMaxWidthMultiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone.slow_r50.width_multiplier must be in (0, ", kMaxWidthMultiplier, "], got ", w));
  }
  if (!(config.dropout() >= 0.0f && config.dropout() < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.dropout must be in [0, 1), got ", config.dropout()));
  }
  if (config.num_classes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.num_classes must be > 0, got ", config.num_classes()));
  }
  return CallTorch("building backbone slow_r50", [&]() -> std::unique_ptr<VideoBackbone> {
    return std::make_unique<SlowR50>(SlowR50InnerWidths(w), config.num_classes(),
                                     config.dropout());
  });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), slow_r50, MakeSlowR50);

}  // namespace tb
