// Arrow of time (Wei, Lim, Zisserman & Freeman, CVPR 2018), registered as
// `playback_direction` (PlaybackDirectionOptions): every clip of the
// single-clip view "clip" [B, 1, 3, T, S, S] is shown forward (label 0) and
// reversed in time (label 1), and a head on the pooled backbone features
// predicts the direction:
//   L = CE(head(f(x)), 0) / 2 + CE(head(f(reverse_T(x))), 1) / 2,
// the mean over the 2B clips. Showing both directions of every clip keeps
// the labels balanced and the loss deterministic, as 3DRotNet's all-four-
// rotations does. A clip whose frames are all alike looks the same both ways
// and cannot be classified (its loss is at least log 2); the objective rewards
// features that see motion and its direction. It is the worked example of
// docs/EXTENDING.md: one file, one options message, one BUILD target.
//
// Example config:
//   trainer { ssl { objective { playback_direction { hidden: 64 } } } }
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "ssl/objective.h"

namespace tb {
namespace {

class PlaybackDirectionObjective : public SslObjective {
 public:
  PlaybackDirectionObjective(const PlaybackDirectionOptions& o, int64_t feature_dim) {
    torch::nn::Sequential head;
    if (o.hidden() > 0) {
      head->push_back(torch::nn::Linear(feature_dim, o.hidden()));
      head->push_back(torch::nn::ReLU());
      head->push_back(torch::nn::Linear(o.hidden(), 2));
    } else {
      head->push_back(torch::nn::Linear(feature_dim, 2));
    }
    head_ = register_module("direction_head", head);
  }

  SamplerConfig Sampler() const override {
    SamplerConfig s;
    s.mutable_clip();
    return s;
  }

  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clip, GetView(views, "clip", 1));
    return CallTorch("playback direction loss", [&] {
      const torch::Tensor x = clip.squeeze(1);  // [B, 3, T, S, S]
      const int64_t b = x.size(0);
      const torch::Tensor both = torch::cat({x, x.flip({2})});
      const torch::Tensor labels =
          torch::arange(2, torch::TensorOptions().dtype(torch::kInt64).device(x.device()))
              .repeat_interleave(b);
      const torch::Tensor logits = head_->forward(backbone.Features(both));
      SslLoss out;
      out.loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), labels);
      out.metrics["loss_direction"] = out.loss.item<double>();
      out.metrics["direction_top1"] =
          logits.argmax(1).eq(labels).to(torch::kFloat).mean().item<double>();
      return out;
    });
  }

 private:
  torch::nn::Sequential head_{nullptr};
};

absl::Status ValidatePlaybackDirection(const PlaybackDirectionOptions& o,
                                       const ConfigScope& scope) {
  return FieldChecker(scope.path)
      .Require(o.hidden() >= 0, "hidden", o.hidden(), "must be >= 0 (0 = a linear head)")
      .status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreatePlaybackDirection(
    const PlaybackDirectionOptions& o, const SslContext& context) {
  return std::unique_ptr<SslObjective>(new PlaybackDirectionObjective(o, context.feature_dim));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), playback_direction, ValidatePlaybackDirection,
                      CreatePlaybackDirection, "", "hidden: 16");

}  // namespace tb
