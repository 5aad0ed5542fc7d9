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

namespace {

InferencePrecision TeacherPrecision(const TimeBalanceOptions& o) {
  return TeacherInferencePrecision(
      o.teacher_precision(),
      o.teacher_bf16() ? InferencePrecision::kBf16Autocast : InferencePrecision::kFp32);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TimeBalanceTrainer>> TimeBalanceTrainer::Create(
    std::shared_ptr<VideoBackbone> student, std::shared_ptr<VideoBackbone> invariant,
    std::shared_ptr<VideoBackbone> distinctive, std::map<std::string, float> scores,
    const TimeBalanceOptions& options, torch::Device device) {
  InferenceOptions inference;
  inference.fold_batch_norm = options.fold_teachers();
  inference.channels_last = options.teacher_channels_last();
  inference.precision = TeacherPrecision(options);
  std::vector<InferenceModel> teachers;
  for (auto* teacher : {&invariant, &distinctive}) {
    const char* name = teacher == &invariant ? "invariant" : "distinctive";
    RETURN_IF_ERROR(CallTorch("moving a teacher", [&] { (*teacher)->to(device); }));
    absl::StatusOr<InferenceModel> prepared = InferenceModel::Adopt(std::move(*teacher), inference);
    if (!prepared.ok()) {
      return absl::Status(prepared.status().code(),
                          absl::StrCat("timebalance: preparing the ", name,
                                       " teacher: ", prepared.status().message()));
    }
    teachers.push_back(*std::move(prepared));
  }
  return std::unique_ptr<TimeBalanceTrainer>(
      new TimeBalanceTrainer(std::move(student), std::move(teachers[0]), std::move(teachers[1]),
                             std::move(scores), options, device));
}

TimeBalanceTrainer::TimeBalanceTrainer(std::shared_ptr<VideoBackbone> student,
                                       InferenceModel invariant, InferenceModel distinctive,
                                       std::map<std::string, float> scores,
                                       const TimeBalanceOptions& options, torch::Device device)
    : student_(std::move(student)),
      invariant_(std::move(invariant)),
      distinctive_(std::move(distinctive)),
      scores_(std::move(scores)),
      options_(options),
      device_(device) {
  student_->to(device_);
}

void TimeBalanceTrainer::SetTraining(bool training) {
  student_->train(training);  // the teachers are inference models: always eval mode
}

absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> TimeBalanceTrainer::TeacherProbabilities(
    const torch::Tensor& x) {
  ASSIGN_OR_RETURN(torch::Tensor p_i, invariant_.Probabilities(x));
  ASSIGN_OR_RETURN(torch::Tensor p_d, distinctive_.Probabilities(x));
  return std::make_pair(p_i, p_d);
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
  ASSIGN_OR_RETURN(const torch::Tensor x, CallTorch("timebalance step", [&] {
                     return torch::cat({lb.clips, ub.clips}).to(device_);
                   }));
  ASSIGN_OR_RETURN(auto teachers, TeacherProbabilities(x));
  return CallTorch("timebalance step", [&] {
    const int64_t nl = lb.clips.size(0);
    const torch::Tensor y = lb.labels.to(device_);
    const torch::Tensor s = torch::cat({s_l, s_u}).to(device_);
    const torch::Tensor p_t = MixTeachers(teachers.first, teachers.second, s);
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
  c.Require(!o.teacher_bf16() ||
                o.teacher_precision() == TimeBalanceOptions::TEACHER_PRECISION_UNSPECIFIED ||
                o.teacher_precision() == TimeBalanceOptions::TEACHER_BF16_AUTOCAST,
            "teacher_precision", TimeBalanceOptions::TeacherPrecision_Name(o.teacher_precision()),
            "contradicts teacher_bf16: true (which means TEACHER_BF16_AUTOCAST); set one of them");
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
  ASSIGN_OR_RETURN(std::unique_ptr<TimeBalanceTrainer> trainer,
                   TimeBalanceTrainer::Create(std::move(student), std::move(invariant),
                                              std::move(distinctive), std::move(weights), o,
                                              context.device));
  return std::unique_ptr<Trainer>(std::move(trainer));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), timebalance, ValidateTimeBalance, CreateTimeBalance);

}  // namespace tb
