// FixMatch for video (Sohn et al., 2020), registered as `fixmatch`
// (FixMatchOptions). The unlabeled sampler cuts one clip position as a weak
// view (crop + flip) and K strong views (default: + RandAugment + cutout).
// The weak view's confident argmax is the target of every strong view:
//   L = CE(f(x_l), y) + w(t) * PseudoLabelLoss(f(strong), argmax f(weak)).
// With shared_bn_forward the labeled, weak and strong clips go through the
// model in one pass (one set of BatchNorm batch statistics), as in the
// reference implementation; otherwise one pass each. The weak predictions
// carry no gradient. Reference: threshold 0.95, weight 1.
#include <torch/nn/functional/loss.h>

#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr float kReferenceThreshold = 0.95f;
constexpr double kReferenceWeight = 1.0;

class FixMatchTrainer : public SemiSupervisedTrainer {
 public:
  FixMatchTrainer(std::shared_ptr<VideoBackbone> model, const FixMatchOptions& o,
                  torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device), options_(o) {}

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return s;
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "fixmatch"));
    const int64_t k = options_.views().strong_clips();
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", k));
    return CallTorch("fixmatch step", [&] {
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const LabeledWeakStrongLogits z = ForwardLabeledWeakStrong(
          *model_, xl, weak, strong, options_.shared_bn_forward(), device_);
      const torch::Tensor logits_l = z.labeled.to(torch::kFloat);
      const torch::Tensor& logits_w = z.weak;
      const torch::Tensor& logits_s = z.strong;
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      const PseudoLabels pl =
          MakePseudoLabels(torch::softmax(logits_w.to(torch::kFloat), 1),
                           ThresholdOr(options_.pseudo_label(), kReferenceThreshold));
      const torch::Tensor loss_u = PseudoLabelLoss(logits_s, RepeatPseudoLabels(pl, k),
                                                   options_.pseudo_label().normalization());
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      return PseudoLabelStep(ce, loss_u, w, logits_l, y, pl, ub->labels);
    });
  }

 private:
  FixMatchOptions options_;
};

absl::Status ValidateFixMatch(const FixMatchOptions& o, const TrainerScope& scope) {
  return ValidateSemiSupervised(o, scope);
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateFixMatch(const FixMatchOptions& o,
                                                        const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(new FixMatchTrainer(std::move(model), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), fixmatch, ValidateFixMatch, CreateFixMatch);

}  // namespace tb
