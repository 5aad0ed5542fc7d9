// Self-distillation (SD), registered as `self_distillation`
// (SelfDistillationOptions): a frozen teacher trained on the labeled videos
// (the supervised run's checkpoint) gives soft targets for every clip the
// student sees; labeled and unlabeled clips go through the student in one
// forward pass:
//   L = CE(f_S(x_l), y) + labeled_weight * D(p_S(x_l), p_T(x_l))
//                       + unlabeled_weight * D(p_S(x_u), p_T(x_u)),
// D as TimeBalance's (MSE or KL). TimeBalance's distillation with a single
// teacher and no per-video mixing.
#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

class SelfDistillationTrainer : public SemiSupervisedTrainer {
 public:
  SelfDistillationTrainer(std::shared_ptr<VideoBackbone> student,
                          std::shared_ptr<VideoBackbone> teacher, const SelfDistillationOptions& o,
                          torch::Device device)
      : SemiSupervisedTrainer(std::move(student), device),
        teacher_(std::move(teacher)),
        options_(o) {
    teacher_->to(device_);
  }
  void SetTraining(bool training) override {
    model_->train(training);
    teacher_->eval();
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "self_distillation"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor xu, LabeledClips(*ub));
    return CallTorch("self_distillation step", [&] {
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor x = torch::cat({xl, xu}).to(device_);
      torch::Tensor p_t;
      {
        torch::NoGradGuard no_grad;
        p_t = torch::softmax(teacher_->forward(x).to(torch::kFloat), 1);
      }
      return DistillationStep(model_->forward(x), p_t, y, ub->labels, options_.labeled_weight(),
                              options_.unlabeled_weight(), options_.distance());
    });
  }

 private:
  std::shared_ptr<VideoBackbone> teacher_;
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
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> teacher,
                   LoadFrozenModel(context,
                                   o.has_teacher_backbone() ? &o.teacher_backbone() : nullptr,
                                   o.teacher(), context.path + ".teacher"));
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, context.CreateModel());
  return std::unique_ptr<Trainer>(
      new SelfDistillationTrainer(std::move(student), std::move(teacher), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), self_distillation, ValidateSelfDistillation,
                      CreateSelfDistillation);

}  // namespace tb
