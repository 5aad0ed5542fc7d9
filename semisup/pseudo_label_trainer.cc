// PseudoLabel (Lee, 2013), registered as `pseudo_label`
// (PseudoLabelTrainerOptions): labeled and unlabeled clips go through the
// model in one forward pass; each unlabeled clip whose maximum predicted
// probability reaches the threshold is trained towards its own argmax:
//   L = CE(f(x_l), y) + w(t) * PseudoLabelLoss(f(x_u), argmax f(x_u)).
// Reference: threshold 0.95, weight 1.
#include <torch/nn/functional/loss.h>

#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr float kReferenceThreshold = 0.95f;
constexpr double kReferenceWeight = 1.0;

class PseudoLabelTrainer : public SemiSupervisedTrainer {
 public:
  PseudoLabelTrainer(std::shared_ptr<VideoBackbone> model, const PseudoLabelTrainerOptions& o,
                     torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device), options_(o) {}

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "pseudo_label"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor xu, LabeledClips(*ub));
    return CallTorch("pseudo_label step", [&] {
      const int64_t nl = xl.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor logits = model_->forward(torch::cat({xl, xu}).to(device_));
      const torch::Tensor logits_l = logits.slice(0, 0, nl).to(torch::kFloat);
      const torch::Tensor logits_u = logits.slice(0, nl);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      const PseudoLabels pl =
          MakePseudoLabels(torch::softmax(logits_u.to(torch::kFloat), 1),
                           ThresholdOr(options_.pseudo_label(), kReferenceThreshold));
      const torch::Tensor loss_u =
          PseudoLabelLoss(logits_u, pl, options_.pseudo_label().normalization());
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      return PseudoLabelStep(ce, loss_u, w, logits_l, y, pl, ub->labels);
    });
  }

 private:
  PseudoLabelTrainerOptions options_;
};

absl::Status ValidatePseudoLabel(const PseudoLabelTrainerOptions& o, const TrainerScope& scope) {
  return ValidateSemiSupervised(o, scope);
}

absl::StatusOr<std::unique_ptr<Trainer>> CreatePseudoLabel(const PseudoLabelTrainerOptions& o,
                                                           const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(new PseudoLabelTrainer(std::move(model), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), pseudo_label, ValidatePseudoLabel, CreatePseudoLabel);

}  // namespace tb
