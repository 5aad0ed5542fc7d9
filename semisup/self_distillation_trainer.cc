// Self-distillation (SD), registered as `self_distillation`
// (SelfDistillationOptions): a frozen teacher trained on the labeled videos
// (the supervised run's checkpoint) gives soft targets for every clip the
// student sees; labeled and unlabeled clips go through the student in one
// forward pass:
//   L = CE(f_S(x_l), y) + labeled_weight * D(p_S(x_l), p_T(x_l))
//                       + unlabeled_weight * D(p_S(x_u), p_T(x_u)),
// D as TimeBalance's (MSE or KL). TimeBalance's distillation with a single
// teacher and no per-video mixing.
#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"
#include "semisup/timebalance_trainer.h"

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
      const int64_t nl = xl.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor x = torch::cat({xl, xu}).to(device_);
      torch::Tensor p_t;
      {
        torch::NoGradGuard no_grad;
        p_t = torch::softmax(teacher_->forward(x).to(torch::kFloat), 1);
      }
      const torch::Tensor logits = model_->forward(x).to(torch::kFloat);
      const torch::Tensor p_s = torch::softmax(logits, 1);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, nl), y);
      const torch::Tensor d_l =
          DistillationDistance(p_s.slice(0, 0, nl), p_t.slice(0, 0, nl), options_.distance());
      const torch::Tensor d_u =
          DistillationDistance(p_s.slice(0, nl), p_t.slice(0, nl), options_.distance());
      StepResult result;
      result.loss = ce + options_.labeled_weight() * d_l + options_.unlabeled_weight() * d_u;
      result.metrics["loss_ce"] = ce.item<double>();
      result.metrics["loss_distill_l"] = d_l.item<double>();
      result.metrics["loss_distill_u"] = d_u.item<double>();
      result.metrics["train_top1"] = Top1(logits.slice(0, 0, nl), y);
      result.metrics["teacher_top1_u"] = Top1(p_t.slice(0, nl), ub->labels);
      return result;
    });
  }

 private:
  std::shared_ptr<VideoBackbone> teacher_;
  SelfDistillationOptions options_;
};

absl::StatusOr<std::unique_ptr<Trainer>> MakeSelfDistillationTrainer(const ExperimentConfig& config,
                                                                     const torch::Device& device) {
  const SelfDistillationOptions& o = config.trainer().self_distillation();
  if (!(o.labeled_weight() >= 0 && o.unlabeled_weight() >= 0)) {
    return absl::InvalidArgumentError(
        "config fields trainer.self_distillation.labeled_weight / unlabeled_weight must be >= 0");
  }
  BackboneConfig teacher_config =
      o.has_teacher_backbone() ? o.teacher_backbone() : config.backbone();
  if (teacher_config.num_classes() == 0) {
    teacher_config.set_num_classes(config.backbone().num_classes());
  }
  ASSIGN_OR_RETURN(
      std::shared_ptr<VideoBackbone> teacher,
      LoadFrozenModel(teacher_config, o.teacher(), "trainer.self_distillation.teacher"));
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, CreateBackbone(config.backbone()));
  return std::unique_ptr<Trainer>(
      new SelfDistillationTrainer(std::move(student), std::move(teacher), o, device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), self_distillation, MakeSelfDistillationTrainer);

}  // namespace tb
