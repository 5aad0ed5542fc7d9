// 3DRotNet (Jing & Tian 2018): rotation prediction. Every clip of the
// single-clip view "clip" [B, 1, 3, T, S, S] is rotated by all four
// multiples of 90 degrees in the (H, W) plane (the same rotation for all its
// frames), giving 4B clips with labels 0..3; a linear head on the pooled
// backbone features predicts the rotation (cross-entropy). Using all four
// rotations of every clip keeps the labels balanced and deterministic.
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/linear.h>

#include "core/status_macros.h"
#include "core/torch_status.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

class RotationObjective : public SslObjective {
 public:
  explicit RotationObjective(int64_t feature_dim) {
    head_ = register_module("rotation_head", torch::nn::Linear(feature_dim, 4));
  }
  SamplerConfig Sampler() const override {
    SamplerConfig s;
    s.mutable_clip();
    return s;
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clip, GetView(views, "clip", 1));
    return CallTorch("rotation loss", [&] {
      const torch::Tensor x = clip.squeeze(1);
      const int64_t b = x.size(0);
      const torch::Tensor labels =
          torch::arange(4, torch::TensorOptions().dtype(torch::kInt64).device(x.device()))
              .repeat_interleave(b);
      const torch::Tensor rotated = ssl::RotateClips(x.repeat({4, 1, 1, 1, 1}), labels);
      const torch::Tensor logits = head_->forward(backbone.Features(rotated));
      SslLoss out;
      out.loss = torch::nn::functional::cross_entropy(logits, labels);
      out.metrics["loss_rotation"] = out.loss.item<double>();
      out.metrics["rotation_top1"] =
          logits.argmax(1).eq(labels).to(torch::kFloat).mean().item<double>();
      return out;
    });
  }

 private:
  torch::nn::Linear head_{nullptr};
};

absl::Status ValidateRotation(const RotationOptions&, const ConfigScope&) {
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateRotation(const RotationOptions&,
                                                             const SslContext& context) {
  return std::unique_ptr<SslObjective>(new RotationObjective(context.feature_dim));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), rotation, ValidateRotation, CreateRotation, "");

}  // namespace tb
