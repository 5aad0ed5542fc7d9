#include "semisup/timebalance_trainer.h"

#include "absl/strings/str_cat.h"
#include "core/autocast.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "reweighting/scorer.h"
#include "semisup/semi_supervised.h"

namespace tb {

torch::Tensor MixTeachers(const torch::Tensor& p_invariant, const torch::Tensor& p_distinctive,
                          const torch::Tensor& weights) {
  const torch::Tensor s = weights.to(p_invariant.dtype()).unsqueeze(1);
  return s * p_invariant + (1 - s) * p_distinctive;
}

TimeBalanceTrainer::TimeBalanceTrainer(std::shared_ptr<VideoBackbone> student,
                                       std::shared_ptr<VideoBackbone> invariant,
                                       std::shared_ptr<VideoBackbone> distinctive,
                                       std::map<std::string, float> scores,
                                       const TimeBalanceOptions& options, torch::Device device)
    : student_(std::move(student)),
      invariant_(std::move(invariant)),
      distinctive_(std::move(distinctive)),
      scores_(std::move(scores)),
      options_(options),
      device_(device) {
  student_->to(device_);
  for (auto* teacher : {invariant_.get(), distinctive_.get()}) {
    teacher->to(device_);
    teacher->eval();
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  }
}

void TimeBalanceTrainer::SetTraining(bool training) {
  student_->train(training);
  invariant_->eval();  // teachers never leave eval mode
  distinctive_->eval();
}

absl::StatusOr<torch::Tensor> TimeBalanceTrainer::Weights(const ClipBatch& batch) const {
  std::vector<float> w;
  for (const std::string& path : batch.paths) {
    auto it = scores_.find(path);
    if (it == scores_.end()) {
      return absl::NotFoundError(absl::StrCat("scores file ", options_.scores(),
                                              " has no weight for video ", path));
    }
    w.push_back(it->second);
  }
  return torch::tensor(w);
}

absl::StatusOr<StepResult> TimeBalanceTrainer::Step(const StepBatches& batches) {
  if (batches.unlabeled == nullptr) {
    return absl::FailedPreconditionError(
        "timebalance needs unlabeled videos (the labeled subset is the whole training set)");
  }
  const ClipBatch& lb = *batches.labeled;
  const ClipBatch& ub = *batches.unlabeled;
  ASSIGN_OR_RETURN(torch::Tensor s_l, Weights(lb));
  ASSIGN_OR_RETURN(torch::Tensor s_u, Weights(ub));
  return CallTorch("timebalance step", [&] {
    const int64_t nl = lb.clips.size(0);
    const torch::Tensor x = torch::cat({lb.clips, ub.clips}).to(device_);
    const torch::Tensor y = lb.labels.to(device_);
    const torch::Tensor s = torch::cat({s_l, s_u}).to(device_);
    torch::Tensor p_i, p_d;
    {
      torch::NoGradGuard no_grad;
      AutocastScope autocast(device_, options_.teacher_bf16() ? Precision::kBf16
                                                               : Precision::kFp32);
      p_i = torch::softmax(invariant_->forward(x).to(torch::kFloat), 1);
      p_d = torch::softmax(distinctive_->forward(x).to(torch::kFloat), 1);
    }
    const torch::Tensor p_t = MixTeachers(p_i, p_d, s);
    StepResult result =
        DistillationStep(student_->forward(x), p_t, y, ub.labels, options_.labeled_weight(),
                         options_.unlabeled_weight(), options_.distance());
    result.metrics["teacher_top1_l"] = Top1(p_t.slice(0, 0, nl), y);
    result.metrics["mean_s"] = s.mean().item<double>();
    return result;
  });
}

namespace {

absl::Status ValidateTimeBalance(const TimeBalanceOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.labeled_weight() >= 0, "labeled_weight", o.labeled_weight(), "must be >= 0");
  c.Require(o.unlabeled_weight() >= 0, "unlabeled_weight", o.unlabeled_weight(), "must be >= 0");
  if (o.has_teacher_backbone()) {
    c.Merge(ValidateBackbone(o.teacher_backbone(), c.Path("teacher_backbone")));
  }
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateTimeBalance(const TimeBalanceOptions& o,
                                                           const TrainerContext& context) {
  const BackboneConfig* teacher = o.has_teacher_backbone() ? &o.teacher_backbone() : nullptr;
  ASSIGN_OR_RETURN(auto invariant, LoadFrozenModel(context, teacher, o.invariant_teacher(),
                                                    context.path + ".invariant_teacher"));
  ASSIGN_OR_RETURN(auto distinctive, LoadFrozenModel(context, teacher, o.distinctive_teacher(),
                                                      context.path + ".distinctive_teacher"));
  if (o.scores().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field ", context.path, ".scores is required (the score stage's output; the "
        "pipeline fills it)"));
  }
  ASSIGN_OR_RETURN(TemporalScores scores, ReadScores(o.scores()));
  std::map<std::string, float> weights;
  for (const VideoWeight& v : scores.videos()) weights[v.video()] = v.weight();
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, context.CreateModel());
  return std::unique_ptr<Trainer>(new TimeBalanceTrainer(
      std::move(student), std::move(invariant), std::move(distinctive), std::move(weights), o,
      context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), timebalance, ValidateTimeBalance, CreateTimeBalance);

}  // namespace tb
