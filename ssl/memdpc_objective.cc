// MemDPC (Han, Xie & Zisserman, ECCV 2020), registered as `memdpc`
// (MemDpcOptions in ssl/ssl.proto; the loss and head in
// ssl/memdpc_objective.h). Written from the paper and a reading of the
// official code (github.com/TengdaHan/MemDPC: memdpc/model.py MemDPC_BD,
// backbone/convrnn.py, memdpc/dataset.py, memdpc/main.py).
//
// Sampling: one clip of num_seq * seq_len frames at frame_stride from a
// random start (the `clip` sampler with its own length, stride and
// augmentation; view "clip" [B, 1, 3, N * T, S, S]), one crop, flip and
// colour draw for the whole clip. It is cut into N consecutive blocks of T
// frames, which go through the backbone as one batch of B * N clips; each
// block's feature map [C, T', H', W'] is averaged over T'. The head predicts
// the last pred_step blocks' maps from the others, forwards and (bidirectional)
// backwards in time, and the loss is the sum of the two directions' dense
// contrastive losses (every (video, block, location) of the batch a class of
// its own). docs/BASELINES.md lists the differences from the official code.
//
// Example config:
//   trainer { ssl { objective { memdpc { seq_len: 4 num_seq: 6 pred_step: 2
//                                        mem_size: 256 frame_stride: 1 } } } }
#include "ssl/memdpc_objective.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/dropout.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "ssl/objective.h"

namespace tb {

namespace ssl {

torch::Tensor DenseContrastiveLoss(const torch::Tensor& pred, const torch::Tensor& target,
                                   Collectives* collectives, double* top1) {
  TORCH_CHECK(pred.dim() == 5 && pred.sizes() == target.sizes(),
              "DenseContrastiveLoss: pred and target must both be [B, K, C, H, W], got ",
              pred.sizes(), " and ", target.sizes());
  const int64_t c = pred.size(2);
  // Rows ordered (b, k, h, w).
  const torch::Tensor p = GlobalBatch(pred, 0, collectives).permute({0, 1, 3, 4, 2}).reshape({-1, c});
  const torch::Tensor t =
      GlobalBatch(target, 0, collectives).permute({0, 1, 3, 4, 2}).reshape({-1, c});
  const torch::Tensor logits = torch::matmul(p, t.t());
  const torch::Tensor labels =
      torch::arange(logits.size(0), torch::TensorOptions().dtype(torch::kLong).device(p.device()));
  if (top1 != nullptr) {
    torch::NoGradGuard no_grad;
    *top1 = logits.argmax(1).eq(labels).to(torch::kDouble).mean().item<double>();
  }
  return torch::nn::functional::cross_entropy(logits, labels);
}

}  // namespace ssl

namespace {

void OrthogonalInit(torch::nn::Module& module, double gain) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    if (p.key().find("bias") != std::string::npos) {
      p.value().zero_();
    } else {
      torch::nn::init::orthogonal_(p.value(), gain);
    }
  }
}

torch::nn::Conv2d Conv1x1(int64_t in, int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).bias(true));
}

}  // namespace

ConvGru1x1Impl::ConvGru1x1Impl(int64_t channels) {
  reset_gate_ = register_module("reset_gate", Conv1x1(2 * channels, channels));
  update_gate_ = register_module("update_gate", Conv1x1(2 * channels, channels));
  out_gate_ = register_module("out_gate", Conv1x1(2 * channels, channels));
}

torch::Tensor ConvGru1x1Impl::Step(const torch::Tensor& x, const torch::Tensor& h) {
  const torch::Tensor xh = torch::cat({x, h}, 1);
  const torch::Tensor z = torch::sigmoid(update_gate_->forward(xh));
  const torch::Tensor r = torch::sigmoid(reset_gate_->forward(xh));
  const torch::Tensor o = torch::tanh(out_gate_->forward(torch::cat({x, h * r}, 1)));
  return h * (1 - z) + o * z;
}

MemDpcHeadImpl::MemDpcHeadImpl(int64_t channels, int64_t memory_size, double gru_dropout,
                               bool bidirectional)
    : gru_dropout_(gru_dropout), bidirectional_(bidirectional) {
  forward_ = register_module("aggregate_forward", ConvGru1x1(channels));
  if (bidirectional_) backward_ = register_module("aggregate_backward", ConvGru1x1(channels));
  torch::nn::Sequential predictor;
  predictor->push_back(Conv1x1(channels, channels));
  predictor->push_back(torch::nn::ReLU());
  predictor->push_back(Conv1x1(channels, memory_size));
  predictor_ = register_module("predictor", predictor);
  memory_ = register_parameter("memory", torch::randn({memory_size, channels}));
  OrthogonalInit(*forward_, 0.1);
  if (bidirectional_) OrthogonalInit(*backward_, 0.1);
  OrthogonalInit(*predictor_, 0.1);
}

torch::Tensor MemDpcHeadImpl::Predict(const torch::Tensor& features, int64_t pred_step,
                                      bool reversed) {
  TORCH_CHECK(features.dim() == 5, "MemDPC head: features must be [B, N, C, H, W], got ",
              features.sizes());
  const int64_t n = features.size(1);
  TORCH_CHECK(pred_step >= 1 && pred_step < n, "MemDPC head: pred_step ", pred_step,
              " needs at least ", pred_step + 1, " blocks, got ", n);
  TORCH_CHECK(!reversed || bidirectional_, "MemDPC head: no backward aggregator");
  ConvGru1x1& gru = reversed ? backward_ : forward_;
  const torch::Tensor seq = reversed ? features.flip({1}) : features;
  auto step = [&](const torch::Tensor& x, const torch::Tensor& h) {
    return torch::nn::functional::dropout(
        gru->Step(torch::relu(x), h),
        torch::nn::functional::DropoutFuncOptions().p(gru_dropout_).training(is_training()));
  };
  torch::Tensor h = torch::zeros_like(seq.select(1, 0));
  for (int64_t t = 0; t < n - pred_step; ++t) h = step(seq.select(1, t), h);
  std::vector<torch::Tensor> predictions;
  for (int64_t k = 0; k < pred_step; ++k) {
    if (k > 0) h = step(predictions.back(), h);
    const torch::Tensor weights = torch::softmax(predictor_->forward(h), 1);  // [B, M, H, W]
    predictions.push_back(torch::einsum("bmhw,mc->bchw", {weights, memory_}));
  }
  return torch::stack(predictions, 1);
}

MemDpcHeadImpl::Terms MemDpcHeadImpl::Loss(const torch::Tensor& features, int64_t pred_step,
                                           Collectives* collectives) {
  const int64_t n = features.size(1);
  Terms out;
  out.forward = ssl::DenseContrastiveLoss(Predict(features, pred_step, false),
                                          features.slice(1, n - pred_step), collectives,
                                          &out.forward_top1);
  out.loss = out.forward;
  if (bidirectional_) {
    out.backward = ssl::DenseContrastiveLoss(Predict(features, pred_step, true),
                                             features.flip({1}).slice(1, n - pred_step),
                                             collectives, &out.backward_top1);
    out.loss = out.loss + out.backward;
  }
  return out;
}

namespace {

// The sequence clip's augmentation when the options leave it unset: the
// official training transform (memdpc/main.py) with one draw per clip.
Augmentation MemDpcReferenceAugmentation() {
  Augmentation a;
  a.set_min_crop_scale(0.5f);
  a.set_max_crop_scale(1.0f);
  a.set_min_aspect_ratio(0.75f);
  a.set_max_aspect_ratio(1.3333f);
  a.set_flip_probability(0.5f);
  for (RandomFactor* f : {a.mutable_brightness(), a.mutable_contrast(), a.mutable_saturation()}) {
    f->set_probability(1.0f);
    f->set_min(0.5f);
    f->set_max(1.5f);
  }
  a.set_hue_probability(1.0f);
  a.set_max_hue_shift(0.25f);
  a.set_grayscale_probability(0.25f);
  return a;
}

class MemDpcObjective : public SslObjective {
 public:
  MemDpcObjective(const MemDpcOptions& o, int64_t feature_dim) : options_(o) {
    head_ = register_module(
        "memdpc_head", MemDpcHead(feature_dim, o.mem_size(), o.gru_dropout(), o.bidirectional()));
  }

  SamplerConfig Sampler() const override {
    SamplerConfig s;
    ClipSamplerOptions* clip = s.mutable_clip();
    clip->set_num_frames(options_.num_seq() * options_.seq_len());
    clip->set_stride(options_.frame_stride());
    *clip->mutable_augmentation() = options_.has_augmentation() ? options_.augmentation()
                                                                : MemDpcReferenceAugmentation();
    return s;
  }

  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clip, GetView(views, "clip", 1));
    const int64_t n = options_.num_seq(), t = options_.seq_len();
    if (clip.size(3) != n * t) {
      return absl::InvalidArgumentError(absl::StrCat(
          "memdpc: the clip has ", clip.size(3), " frames but num_seq * seq_len = ", n, " * ", t,
          " = ", n * t, " (feed it the objective's own sampler)"));
    }
    ASSIGN_OR_RETURN(torch::Tensor features, CallTorch("memdpc block features", [&] {
      const int64_t b = clip.size(0), s_h = clip.size(4), s_w = clip.size(5);
      // [B, 3, N * T, S, S] -> [B * N, 3, T, S, S], blocks of a video adjacent.
      const torch::Tensor blocks = clip.squeeze(1)
                                       .reshape({b, 3, n, t, s_h, s_w})
                                       .permute({0, 2, 1, 3, 4, 5})
                                       .reshape({b * n, 3, t, s_h, s_w});
      const torch::Tensor map = backbone.FeatureMap(blocks).mean(2);  // [B * N, C, H', W']
      return map.reshape({b, n, map.size(1), map.size(2), map.size(3)});
    }));
    const int64_t rows = features.size(0) * options_.pred_step() * features.size(3) *
                         features.size(4);
    if (rows < 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "memdpc: the dense contrastive loss needs at least 2 (video, block, location) rows, got ",
          features.size(0), " video(s) x pred_step ", options_.pred_step(), " x a ",
          features.size(3), "x", features.size(4),
          " feature map; use a larger batch, crop or pred_step"));
    }
    return CallTorch("memdpc loss", [&] {
      const MemDpcHeadImpl::Terms terms =
          head_->Loss(features.to(torch::kFloat), options_.pred_step(), collectives());
      SslLoss out;
      out.loss = terms.loss;
      out.metrics["loss_dpc_forward"] = terms.forward.item<double>();
      out.metrics["dpc_top1_forward"] = terms.forward_top1;
      if (terms.backward.defined()) {
        out.metrics["loss_dpc_backward"] = terms.backward.item<double>();
        out.metrics["dpc_top1_backward"] = terms.backward_top1;
      }
      return out;
    });
  }

 private:
  const MemDpcOptions options_;
  MemDpcHead head_{nullptr};
};

absl::Status ValidateMemDpc(const MemDpcOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.seq_len() >= 1, "seq_len", o.seq_len(), "must be >= 1 (frames per block)");
  c.Require(o.num_seq() >= 2, "num_seq", o.num_seq(),
            "must be >= 2 (at least one context block and one predicted block)");
  if (c.ok()) {
    c.Require(o.pred_step() >= 1 && o.pred_step() < o.num_seq(), "pred_step", o.pred_step(),
              absl::StrCat("must be in [1, num_seq - 1] = [1, ", o.num_seq() - 1,
                           "] (at least one context block to predict from)"));
    c.Require(static_cast<int64_t>(o.num_seq()) * o.seq_len() <= 512, "num_seq", o.num_seq(),
              absl::StrCat("num_seq * seq_len = ", static_cast<int64_t>(o.num_seq()) * o.seq_len(),
                           " frames must be <= 512 (the clip sampler's limit)"));
  }
  c.Require(o.mem_size() >= 1, "mem_size", o.mem_size(), "must be >= 1");
  c.Require(o.frame_stride() >= 1 && o.frame_stride() <= 64, "frame_stride", o.frame_stride(),
            "must be in [1, 64]");
  c.Require(o.gru_dropout() >= 0 && o.gru_dropout() < 1, "gru_dropout", o.gru_dropout(),
            "must be in [0, 1)");
  if (c.ok() && o.has_augmentation()) {
    SamplerConfig s;
    *s.mutable_clip()->mutable_augmentation() = o.augmentation();
    c.Merge(ValidateSamplerOptions(s, scope.path));
  }
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateMemDpc(const MemDpcOptions& o,
                                                           const SslContext& context) {
  return std::unique_ptr<SslObjective>(new MemDpcObjective(o, context.feature_dim));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), memdpc, ValidateMemDpc, CreateMemDpc, "",
                      "seq_len: 2 num_seq: 2 pred_step: 1 mem_size: 8 frame_stride: 1",
                      "seq_len: 1 num_seq: 4 pred_step: 2 mem_size: 4 bidirectional: false");

}  // namespace tb
