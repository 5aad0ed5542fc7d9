// Entropy minimisation (Grandvalet & Bengio, NIPS 2004), registered as
// `entropy_minimization` (EntropyMinimizationOptions): labeled and unlabeled
// clips go through the model in one forward pass (shared BatchNorm
// statistics) and
//   L = CE(f(x_l), y) + w(t) * mean_i H(softmax(f(x_u)_i)),
// H(p) = -sum_c p_c log p_c, w(t) the UnlabeledSchedule (weight 1 unless
// set). The smallest complete semi-supervised method: the worked example of
// docs/EXTENDING.md (one file, one options message, one BUILD target).
//
// Example config:
//   trainer { entropy_minimization { schedule { weight: 0.5 rampup_steps: 100 } }
//             labeled_batch_size: 8 unlabeled_batch_size: 8 }
#include <torch/nn/functional/loss.h>

#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr double kDefaultWeight = 1.0;

class EntropyMinimizationTrainer : public SemiSupervisedTrainer {
 public:
  EntropyMinimizationTrainer(std::shared_ptr<VideoBackbone> model,
                             const EntropyMinimizationOptions& o, torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device), options_(o) {}

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "entropy_minimization"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor xu, LabeledClips(*ub));
    return CallTorch("entropy_minimization step", [&] {
      const int64_t nl = xl.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor logits = model_->forward(torch::cat({xl, xu}).to(device_));
      const torch::Tensor logits_l = logits.slice(0, 0, nl).to(torch::kFloat);
      const torch::Tensor log_p_u = torch::log_softmax(logits.slice(0, nl).to(torch::kFloat), 1);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      const torch::Tensor entropy = -(log_p_u.exp() * log_p_u).sum(1).mean();
      const double w = UnlabeledWeight(options_.schedule(), kDefaultWeight, batches.step);
      StepResult result;
      result.loss = ce + w * entropy;
      result.metrics["loss_ce"] = ce.item<double>();
      result.metrics["loss_entropy"] = entropy.item<double>();
      result.metrics["weight_u"] = w;
      result.metrics["train_top1"] = Top1(logits_l, y);
      result.metrics["pl_acc_all"] = Top1(log_p_u, ub->labels);
      return result;
    });
  }

 private:
  EntropyMinimizationOptions options_;
};

absl::Status ValidateEntropyMinimization(const EntropyMinimizationOptions& o,
                                         const TrainerScope& scope) {
  return ValidateSemiSupervised(o, scope);
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateEntropyMinimization(
    const EntropyMinimizationOptions& o, const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(
      new EntropyMinimizationTrainer(std::move(model), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), entropy_minimization, ValidateEntropyMinimization,
                      CreateEntropyMinimization);

}  // namespace tb
