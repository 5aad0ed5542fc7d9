#include "backbones/tsm.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include "absl/strings/str_cat.h"
#include "core/torch_status.h"
#include "backbones/sync_batch_norm.h"

namespace tb {
namespace {

// A bias-free 2D convolution with a square kernel and "same" padding.
torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(kernel / 2).bias(false));
}

// eps and momentum are spelled out because they are part of the parity
// contract with torchvision, not because they differ from the defaults.
SyncBatchNorm Bn(int64_t channels) {
  return SyncBatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(1e-5).momentum(0.1));
}

// torchvision's resnet BasicBlock (conv1, bn1, conv2, bn2, downsample.{0,1})
// with TSM's residual shift: only the residual branch's conv1 sees the
// temporally shifted input.
struct TsmBasicBlockImpl : torch::nn::Module {
  TsmBasicBlockImpl(int64_t in, int64_t out, int64_t stride, int64_t shift_div)
      : shift_div(shift_div) {
    conv1 = register_module("conv1", Conv(in, out, 3, stride));
    bn1 = register_module("bn1", Bn(out));
    conv2 = register_module("conv2", Conv(out, out, 3, 1));
    bn2 = register_module("bn2", Bn(out));
    if (stride != 1 || in != out) {
      downsample =
          register_module("downsample", torch::nn::Sequential(Conv(in, out, 1, stride), Bn(out)));
    }
  }

  // `x` holds frames [N*num_frames, C, H, W].
  torch::Tensor forward(const torch::Tensor& x, int64_t num_frames) {
    torch::Tensor out = torch::relu(bn1->forward(conv1->forward(TemporalShift(x, num_frames,
                                                                              shift_div))));
    out = bn2->forward(conv2->forward(out));
    out += downsample ? downsample->forward(x) : x;
    return torch::relu_(out);
  }

  int64_t shift_div;
  torch::nn::Conv2d conv1{nullptr};
  SyncBatchNorm bn1{nullptr};
  torch::nn::Conv2d conv2{nullptr};
  SyncBatchNorm bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(TsmBasicBlock);

// torchvision's resnet18 (BasicBlock, [2, 2, 2, 2]) run per frame, with the
// residual shift in every block.
class TsmR18 : public VideoBackbone {
 public:
  TsmR18(const std::array<int64_t, 4>& widths, int64_t shift_div, int64_t in_channels,
         int64_t num_classes, double dropout)
      : num_classes_(num_classes), feature_dim_(widths[3]) {
    conv1_ = register_module(
        "conv1",
        torch::nn::Conv2d(
            torch::nn::Conv2dOptions(in_channels, widths[0], 7).stride(2).padding(3).bias(false)));
    bn1_ = register_module("bn1", Bn(widths[0]));
    maxpool_ = register_module(
        "maxpool", torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
    int64_t in = widths[0];
    for (int s = 0; s < 4; ++s) {
      torch::nn::ModuleList stage;
      for (int b = 0; b < 2; ++b) {
        const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
        TsmBasicBlock block(in, widths[s], stride, shift_div);
        stage->push_back(block);
        blocks_.push_back(block);
        in = widths[s];
      }
      register_module(absl::StrCat("layer", s + 1), stage);
    }
    dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
    fc_ = register_module("fc", torch::nn::Linear(widths[3], num_classes));
    InitWeights();
  }

  torch::Tensor FeatureMap(const torch::Tensor& clip) override {
    TORCH_CHECK(clip.dim() == 5, "tsm_r18 expects a clip [B, C, T, H, W], got ", clip.sizes());
    const int64_t batch = clip.size(0);
    const int64_t frames = clip.size(2);
    // [B, C, T, H, W] -> [B, T, C, H, W] -> [B*T, C, H, W].
    torch::Tensor x =
        clip.transpose(1, 2).reshape({batch * frames, clip.size(1), clip.size(3), clip.size(4)});
    x = maxpool_->forward(bn1_->forward(conv1_->forward(x)).relu_());
    for (auto& block : blocks_) x = block->forward(x, frames);
    // [B*T, D, h, w] -> [B, T, D, h, w] -> [B, D, T, h, w].
    return x.view({batch, frames, x.size(1), x.size(2), x.size(3)})
        .transpose(1, 2)
        .contiguous();
  }

  torch::Tensor Logits(const torch::Tensor& features) override {
    return fc_->forward(dropout_->forward(features));
  }

  int64_t feature_dim() const override { return feature_dim_; }
  int64_t num_classes() const override { return num_classes_; }

 private:
  // torchvision's resnet initialisation (fc keeps nn.Linear's default, as in
  // torchvision), so that training from scratch starts from the same
  // distribution as the reference.
  void InitWeights() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->as<SyncBatchNormImpl>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      }
    }
  }

  int64_t num_classes_;
  int64_t feature_dim_;
  torch::nn::Conv2d conv1_{nullptr};
  SyncBatchNorm bn1_{nullptr};
  torch::nn::MaxPool2d maxpool_{nullptr};
  std::vector<TsmBasicBlock> blocks_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

torch::Tensor TemporalShift(const torch::Tensor& x, int64_t num_frames, int64_t shift_div) {
  TORCH_CHECK(x.dim() == 4, "TemporalShift expects frames [N*T, C, H, W], got ", x.sizes());
  TORCH_CHECK(num_frames > 0 && x.size(0) % num_frames == 0, "TemporalShift: ", x.size(0),
              " frames are not a multiple of num_frames = ", num_frames);
  TORCH_CHECK(shift_div >= 2, "TemporalShift: shift_div must be >= 2, got ", shift_div);
  const int64_t channels = x.size(1);
  const int64_t fold = channels / shift_div;
  if (fold == 0) return x;
  const int64_t clips = x.size(0) / num_frames;
  const torch::Tensor v = x.reshape({clips, num_frames, channels, x.size(2), x.size(3)});
  const torch::Tensor zeros = torch::zeros({clips, 1, fold, x.size(2), x.size(3)}, x.options());
  // Channels [0, fold): frame t takes frame t+1; the last frame gets zeros.
  const torch::Tensor back =
      torch::cat({v.slice(2, 0, fold).slice(1, 1, num_frames), zeros}, /*dim=*/1);
  // Channels [fold, 2 fold): frame t takes frame t-1; the first frame gets zeros.
  const torch::Tensor ahead =
      torch::cat({zeros, v.slice(2, fold, 2 * fold).slice(1, 0, num_frames - 1)}, /*dim=*/1);
  const torch::Tensor shifted =
      torch::cat({back, ahead, v.slice(2, 2 * fold, channels)}, /*dim=*/2);
  return shifted.view(x.sizes());
}

std::array<int64_t, 4> TsmStageWidths(float width_multiplier) {
  std::array<int64_t, 4> widths{};
  const int64_t base[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) widths[s] = ScaledWidth(base[s], width_multiplier);
  return widths;
}

absl::Status ValidateTsmR18(const TsmOptions& options, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckWidthMultiplier(options.width_multiplier(), &c);
  c.Require(options.shift_div() >= 2, "shift_div", options.shift_div(), "must be >= 2");
  return c.status();
}

absl::StatusOr<std::unique_ptr<VideoBackbone>> CreateTsmR18(const TsmOptions& options,
                                                            const BackboneConfig& config) {
  return CallTorch("building backbone tsm_r18", [&]() -> std::unique_ptr<VideoBackbone> {
    return std::make_unique<TsmR18>(TsmStageWidths(options.width_multiplier()),
                                    options.shift_div(), config.input_channels(),
                                    config.num_classes(), config.dropout());
  });
}

TB_REGISTER_COMPONENT(BackboneRegistry(), tsm_r18, ValidateTsmR18, CreateTsmR18,
                      "width_multiplier: 0.125");

}  // namespace tb
