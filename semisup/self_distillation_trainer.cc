// Self-distillation (SD), registered as `self_distillation`
// (SelfDistillationOptions): a frozen teacher trained on the labeled videos
// (the supervised run's checkpoint) gives soft targets for every clip the
// student sees; labeled and unlabeled clips go through the student in one
// forward pass:
//   L = CE(f_S(x_l), y) + labeled_weight * D(p_S(x_l), p_T(x_l))
//                       + unlabeled_weight * D(p_S(x_u), p_T(x_u)),
// D as TimeBalance's (MSE or KL). TimeBalance's distillation with a single
// teacher and no per-video mixing. The teacher runs as an InferenceModel
// (BatchNorms folded unless fold_teacher is false; see
// LoadSelfDistillationTeacher).
#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

class SelfDistillationTrainer : public SemiSupervisedTrainer {
 public:
  SelfDistillationTrainer(std::shared_ptr<VideoBackbone> student, InferenceModel teacher,
                          const SelfDistillationOptions& o, torch::Device device)
      : SemiSupervisedTrainer(std::move(student), device),
        teacher_(std::move(teacher)),
        options_(o) {}

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "self_distillation"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor xu, LabeledClips(*ub));
    ASSIGN_OR_RETURN(const torch::Tensor x, CallTorch("self_distillation step", [&] {
                       return torch::cat({xl, xu}).to(device_);
                     }));
    // The frozen teacher (an InferenceModel): fp32, outside autograd.
    ASSIGN_OR_RETURN(const torch::Tensor p_t, teacher_.Probabilities(x));
    return CallTorch("self_distillation step", [&] {
      const torch::Tensor y = batches.labeled->labels.to(device_);
      return DistillationStep(model_->forward(x), p_t, y, ub->labels, options_.labeled_weight(),
                              options_.unlabeled_weight(), options_.distance());
    });
  }

 private:
  InferenceModel teacher_;
  SelfDistillationOptions options_;
};

absl::Status ValidateSelfDistillation(const SelfDistillationOptions& o,
                                      const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Merge(ValidateSelfDistillationOptions(o, scope.path));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateSelfDistillation(const SelfDistillationOptions& o,
                                                                const TrainerContext& context) {
  ASSIGN_OR_RETURN(InferenceModel teacher, LoadSelfDistillationTeacher(context, o, context.path));
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, context.CreateModel());
  return std::unique_ptr<Trainer>(
      new SelfDistillationTrainer(std::move(student), std::move(teacher), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), self_distillation, ValidateSelfDistillation,
                      CreateSelfDistillation);

}  // namespace tb
