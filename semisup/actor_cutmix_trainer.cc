// ActorCutMix (Zou et al., 2021), registered as `actor_cutmix`
// (ActorCutMixOptions in semisup.proto): FixMatch whose strong views are,
// on a random half of the steps, the weak clips' actors pasted onto the
// batch's mirror videos' backgrounds, trained towards labels mixed by the
// actor's share of the clip. The actor masks come with the weak view
// ("weak_actor", SamplerConfig.actor_masks) from each video's `.actors`
// box file (datasets/actor_boxes.h).
//
// Example config:
//   trainer {
//     actor_cutmix { schedule { warmup_steps: 100 } }
//     labeled_batch_size: 8 unlabeled_batch_size: 8
//   }
#include "semisup/actor_cutmix_trainer.h"

#include <torch/nn/functional/loss.h>

#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {

ActorCutMixBatch MixActors(const torch::Tensor& x, const torch::Tensor& masks) {
  TORCH_CHECK(x.dim() == 5 && masks.dim() == 5 && masks.size(1) == 1 &&
                  masks.size(0) == x.size(0) && masks.size(2) == x.size(2),
              "MixActors: clips ", x.sizes(), " and masks ", masks.sizes(),
              " must be [N, C, T, H, W] and [N, 1, T, H, W]");
  const int64_t n = x.size(0);
  const torch::Tensor m = masks.to(x.scalar_type());
  const torch::Tensor share = m.flatten(1).mean(1);
  torch::Tensor valid = (share > 0) & (share < 1);
  if (n % 2 == 1) valid.index_put_({n / 2}, false);
  const torch::Tensor v = valid.to(x.scalar_type()).view({n, 1, 1, 1, 1});
  const torch::Tensor actor = v * m + (1 - v);  // invalid clips: all actor
  ActorCutMixBatch out;
  out.clips = x * actor + (x * (1 - actor)).flip(0) * (1 - actor);
  out.valid = valid;
  out.actor_fraction = actor.flatten(1).mean(1);
  return out;
}

torch::Tensor ActorCutMixTargets(const torch::Tensor& labels, const torch::Tensor& actor_fraction,
                                 int64_t num_classes) {
  const torch::Tensor w = (1 - (actor_fraction - 1).pow(4)).unsqueeze(1);
  const torch::Tensor own = torch::one_hot(labels, num_classes).to(w.scalar_type());
  return w * own + (1 - w) * own.flip(0);
}

bool ActorCutMixThisStep(int64_t step, double probability) {
  // SplitMix64 of the step: a uniform draw in [0, 1) independent of the
  // data order and of how the run was resumed.
  uint64_t z = static_cast<uint64_t>(step) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53 < probability;
}

namespace {

constexpr float kReferenceThreshold = 0.95f;
constexpr double kReferenceWeight = 1.0;

class ActorCutMixTrainer : public SemiSupervisedTrainer {
 public:
  ActorCutMixTrainer(std::shared_ptr<VideoBackbone> model, const ActorCutMixOptions& o,
                     torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device), options_(o) {}

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    s.mutable_actor_masks()->add_views("weak");
    s.mutable_actor_masks()->set_score_threshold(options_.score_threshold());
    return s;
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "actor_cutmix"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", 1));
    ASSIGN_OR_RETURN(torch::Tensor masks, BatchView(*ub, "weak_actor", 1));
    return CallTorch("actor_cutmix step", [&] {
      const int64_t nl = xl.size(0), nu = weak.size(0);
      const bool mix = ActorCutMixThisStep(batches.step, options_.probability());
      ActorCutMixBatch mixed;
      if (mix) {
        mixed = MixActors(weak, masks);
        strong = torch::where(mixed.valid.view({nu, 1, 1, 1, 1}), mixed.clips, strong);
      }
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor logits =
          model_->forward(torch::cat({xl, weak, strong}).to(device_)).to(torch::kFloat);
      const torch::Tensor logits_l = logits.slice(0, 0, nl);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      const PseudoLabels pl =
          MakePseudoLabels(torch::softmax(logits.slice(0, nl, nl + nu), 1),
                           ThresholdOr(options_.pseudo_label(), kReferenceThreshold));
      const torch::Tensor logits_s = logits.slice(0, nl + nu);
      const auto normalization = options_.pseudo_label().normalization();
      const torch::Tensor loss_u =
          mix ? SoftPseudoLabelLoss(
                    logits_s,
                    ActorCutMixTargets(pl.labels, mixed.actor_fraction.to(device_),
                                       logits.size(1)),
                    pl.mask, normalization)
              : PseudoLabelLoss(logits_s, pl, normalization);
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result = PseudoLabelStep(ce, loss_u, w, logits_l, y, pl, ub->labels);
      result.metrics["acm_applied"] = mix ? 1 : 0;
      if (mix) {
        result.metrics["acm_valid"] = mixed.valid.to(torch::kFloat).mean().item<double>();
        result.metrics["actor_fraction"] = mixed.actor_fraction.mean().item<double>();
      }
      return result;
    });
  }

 private:
  ActorCutMixOptions options_;
};

absl::Status ValidateActorCutMix(const ActorCutMixOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.probability() >= 0 && o.probability() <= 1, "probability", o.probability(),
            "must be in [0, 1]");
  c.Require(o.score_threshold() >= 0 && o.score_threshold() <= 1, "score_threshold",
            o.score_threshold(), "must be in [0, 1]");
  c.Require(o.views().strong_clips() == 1, "views.strong_clips", o.views().strong_clips(),
            "must be 1 (one cut-mixed clip per weak clip, as the official code)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateActorCutMix(const ActorCutMixOptions& o,
                                                           const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(new ActorCutMixTrainer(std::move(model), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), actor_cutmix, ValidateActorCutMix, CreateActorCutMix);

}  // namespace tb
