// Mean Teacher (Tarvainen & Valpola, 2017), registered as `mean_teacher`
// (MeanTeacherOptions), optionally with self-distillation from a frozen
// labeled-data teacher (MT+SD). Labeled and unlabeled samples are cut twice
// (weak_strong sampler, both views under the dataset augmentation unless
// configured): the student sees view "weak", the EMA teacher view "strong".
//   L = CE(student(x_l), y)
//       + w(t) * mean((softmax(student(x)) - softmax(teacher(x')))^2)
//       [+ SD terms: labeled_weight * D(p_S(x_l), p_SD(x_l))
//                    + unlabeled_weight * D(p_S(x_u), p_SD(x_u))]
// over the unlabeled clips (and the labeled ones with
// consistency_on_labeled). After every optimizer step
//   teacher = a * teacher + (1 - a) * student,  a = min(1 - 1 / (n + 1),
//   decay) after n steps (0.5 after the first, as in the reference code),
//   decay = ema_decay during warm-up and ramp-up, then
//   ema_decay_after_rampup. The teacher runs without gradients; with
// teacher_batch_norm OWN_BATCH (the reference) it is in train mode, so it
// normalises with its own batch's statistics, and the EMA averages parameters
// only; with COPY_STUDENT it runs in eval mode on BatchNorm statistics copied
// from the student. It is checkpointed as "ema_teacher" and evaluated at the
// end when evaluate_teacher is set. The first step of a fresh run copies the
// student into the teacher, i.e. after init_checkpoint has been loaded into
// the student. Reference: weight 100 (element-mean MSE of probabilities),
// decay 0.99 then 0.999.
#include <torch/nn/functional/loss.h>

#include <optional>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"
#include "ssl/losses.h"

namespace tb {
namespace {

constexpr double kReferenceWeight = 100.0;

SamplerConfig TwoViews(const DatasetConfig& dataset) {
  SamplerConfig s;
  *s.mutable_weak_strong()->mutable_weak() = dataset.augmentation();
  *s.mutable_weak_strong()->mutable_strong() = dataset.augmentation();
  return s;
}

class MeanTeacherTrainer : public SemiSupervisedTrainer {
 public:
  MeanTeacherTrainer(std::shared_ptr<VideoBackbone> student, std::shared_ptr<VideoBackbone> ema,
                     std::optional<InferenceModel> sd_teacher, const MeanTeacherOptions& o,
                     const DatasetConfig& dataset, torch::Device device)
      : SemiSupervisedTrainer(std::move(student), device),
        ema_(std::move(ema)),
        sd_teacher_(std::move(sd_teacher)),
        options_(o),
        sampler_(TwoViews(dataset)) {
    ema_->to(device_);
    ema_->eval();
  }

  bool TeacherOwnBatch() const {
    return options_.teacher_batch_norm() == MeanTeacherOptions::OWN_BATCH;
  }

  SamplerConfig LabeledSampler() const override {
    return options_.consistency_on_labeled() ? sampler_ : SamplerConfig();
  }
  SamplerConfig UnlabeledSampler() const override { return sampler_; }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}, {"ema_teacher", ema_.get()}};
  }
  VideoBackbone& EvaluationModel() override {
    return options_.evaluate_teacher() ? *ema_ : *model_;
  }
  void SetTraining(bool training) override {
    model_->train(training);
    ema_->train(training && TeacherOwnBatch());
  }

  VideoBackbone& InitializationModel() override { return *model_; }

  // `step` is the index of the step just taken, so step + 1 steps are done.
  void AfterOptimizerStep(int64_t step) override {
    const int64_t done = step + 1;
    const double decay = RampUpDone(options_.schedule(), done) ? options_.ema_decay_after_rampup()
                                                               : options_.ema_decay();
    ssl::EmaUpdate(*ema_, *model_, std::min(1.0 - 1.0 / (done + 1), decay),
                   TeacherOwnBatch() ? ssl::EmaBuffers::kKeep : ssl::EmaBuffers::kCopy);
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "mean_teacher"));
    const ClipBatch& lb = *batches.labeled;
    const bool on_labeled = options_.consistency_on_labeled();
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(lb));
    torch::Tensor xl_teacher;
    if (on_labeled) {
      ASSIGN_OR_RETURN(xl_teacher, BatchView(lb, "strong", 1));
    }
    ASSIGN_OR_RETURN(torch::Tensor xu, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor xu_teacher, BatchView(*ub, "strong", 1));
    // The self-distillation teacher (a frozen InferenceModel, no RNG use)
    // sees the student's clips; its fp32 probabilities are outside autograd.
    torch::Tensor p_sd;
    if (sd_teacher_) {
      ASSIGN_OR_RETURN(const torch::Tensor x_sd, CallTorch("mean_teacher step", [&] {
                         return torch::cat({xl, xu}).to(device_);
                       }));
      ASSIGN_OR_RETURN(p_sd, sd_teacher_->Probabilities(x_sd));
    }
    return CallTorch("mean_teacher step", [&] {
      // The trainer is built before init_checkpoint is loaded into the
      // student; the teacher starts from the loaded weights.
      if (batches.step == 0) ssl::EmaUpdate(*ema_, *model_, 0.0);
      const int64_t nl = xl.size(0);
      const torch::Tensor y = lb.labels.to(device_);
      const torch::Tensor x = torch::cat({xl, xu}).to(device_);
      const torch::Tensor logits = model_->forward(x).to(torch::kFloat);
      const torch::Tensor p_student = torch::softmax(logits, 1);
      torch::Tensor p_teacher;
      {
        torch::NoGradGuard no_grad;
        const torch::Tensor x_teacher =
            (on_labeled ? torch::cat({xl_teacher, xu_teacher}) : xu_teacher).to(device_);
        p_teacher = torch::softmax(ema_->forward(x_teacher).to(torch::kFloat), 1);
      }
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, nl), y);
      const torch::Tensor consistency =
          (p_student.slice(0, on_labeled ? 0 : nl) - p_teacher).pow(2).mean();
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result;
      result.loss = ce + w * consistency;
      if (sd_teacher_) {
        const SelfDistillationOptions& sd = options_.self_distillation();
        const torch::Tensor d_l =
            DistillationDistance(p_student.slice(0, 0, nl), p_sd.slice(0, 0, nl), sd.distance());
        const torch::Tensor d_u =
            DistillationDistance(p_student.slice(0, nl), p_sd.slice(0, nl), sd.distance());
        result.loss = result.loss + sd.labeled_weight() * d_l + sd.unlabeled_weight() * d_u;
        result.metrics["loss_distill_l"] = d_l.item<double>();
        result.metrics["loss_distill_u"] = d_u.item<double>();
      }
      result.metrics["loss_ce"] = ce.item<double>();
      result.metrics["loss_consistency"] = consistency.item<double>();
      result.metrics["weight_u"] = w;
      result.metrics["train_top1"] = Top1(logits.slice(0, 0, nl), y);
      result.metrics["pl_acc_all"] = Top1(p_teacher.slice(0, on_labeled ? nl : 0), ub->labels);
      return result;
    });
  }

 private:
  std::shared_ptr<VideoBackbone> ema_;
  std::optional<InferenceModel> sd_teacher_;
  MeanTeacherOptions options_;
  SamplerConfig sampler_;
};

absl::Status ValidateMeanTeacher(const MeanTeacherOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.ema_decay() >= 0 && o.ema_decay() < 1, "ema_decay", o.ema_decay(),
            "must be in [0, 1)");
  c.Require(o.ema_decay_after_rampup() >= 0 && o.ema_decay_after_rampup() < 1,
            "ema_decay_after_rampup", o.ema_decay_after_rampup(), "must be in [0, 1)");
  if (o.has_self_distillation()) {
    c.Merge(ValidateSelfDistillationOptions(o.self_distillation(),
                                            c.Path("self_distillation")));
  }
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateMeanTeacher(const MeanTeacherOptions& o,
                                                           const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, context.CreateModel());
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> ema, MakeEmaCopy(context, *student));
  std::optional<InferenceModel> sd_teacher;
  if (o.has_self_distillation()) {
    ASSIGN_OR_RETURN(sd_teacher, LoadSelfDistillationTeacher(context, o.self_distillation(),
                                                             context.path + ".self_distillation"));
  }
  return std::unique_ptr<Trainer>(new MeanTeacherTrainer(
      std::move(student), std::move(ema), std::move(sd_teacher), o, context.dataset,
      context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), mean_teacher, ValidateMeanTeacher, CreateMeanTeacher);

}  // namespace tb
