#include "semisup/timebalance_trainer.h"

#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/autocast.h"
#include "core/checkpoint.h"
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

torch::Tensor DistillationDistance(const torch::Tensor& p_student, const torch::Tensor& p_teacher,
                                   TimeBalanceOptions::Distance distance) {
  const torch::Tensor target = p_teacher.detach();
  if (distance == TimeBalanceOptions::KL) {
    const torch::Tensor log_ratio =
        torch::log(target.clamp_min(1e-12)) - torch::log(p_student.clamp_min(1e-12));
    return (target * log_ratio).sum(1).mean();
  }
  return (p_student - target).pow(2).mean();
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
    const torch::Tensor logits = student_->forward(x);
    const torch::Tensor p_s = torch::softmax(logits.to(torch::kFloat), 1);
    const torch::Tensor ce =
        torch::nn::functional::cross_entropy(logits.slice(0, 0, nl).to(torch::kFloat), y);
    const torch::Tensor d_l =
        DistillationDistance(p_s.slice(0, 0, nl), p_t.slice(0, 0, nl), options_.distance());
    const torch::Tensor d_u =
        DistillationDistance(p_s.slice(0, nl), p_t.slice(0, nl), options_.distance());
    StepResult result;
    result.loss = ce + options_.labeled_weight() * d_l + options_.unlabeled_weight() * d_u;
    auto accuracy = [](const torch::Tensor& p, const torch::Tensor& labels) {
      return p.argmax(1).eq(labels).to(torch::kFloat).mean().item<double>();
    };
    const torch::Tensor yu = ub.labels.to(device_);
    result.metrics["loss_ce"] = ce.item<double>();
    result.metrics["loss_distill_l"] = d_l.item<double>();
    result.metrics["loss_distill_u"] = d_u.item<double>();
    result.metrics["train_top1"] = accuracy(p_s.slice(0, 0, nl), y);
    result.metrics["teacher_top1_l"] = accuracy(p_t.slice(0, 0, nl), y);
    result.metrics["pseudo_label_acc_u"] = accuracy(p_t.slice(0, nl), yu);
    result.metrics["mean_s"] = s.mean().item<double>();
    return result;
  });
}

namespace {

absl::StatusOr<std::unique_ptr<Trainer>> MakeTimeBalanceTrainer(const ExperimentConfig& config,
                                                                const torch::Device& device) {
  const TimeBalanceOptions& o = config.trainer().timebalance();
  BackboneConfig teacher_config = o.has_teacher_backbone() ? o.teacher_backbone()
                                                           : config.backbone();
  if (teacher_config.num_classes() == 0) {
    teacher_config.set_num_classes(config.backbone().num_classes());
  }
  if (!(o.labeled_weight() >= 0 && o.unlabeled_weight() >= 0)) {
    return absl::InvalidArgumentError(
        "config fields trainer.timebalance.labeled_weight / unlabeled_weight must be >= 0");
  }
  if (o.scores().empty()) {
    return absl::InvalidArgumentError(
        "config field trainer.timebalance.scores is required (the score stage's output)");
  }
  ASSIGN_OR_RETURN(auto invariant, LoadFrozenModel(teacher_config, o.invariant_teacher(),
                                                    "trainer.timebalance.invariant_teacher"));
  ASSIGN_OR_RETURN(auto distinctive, LoadFrozenModel(teacher_config, o.distinctive_teacher(),
                                                      "trainer.timebalance.distinctive_teacher"));
  ASSIGN_OR_RETURN(auto score_list, ReadScores(o.scores()));
  std::map<std::string, float> scores(score_list.begin(), score_list.end());
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> student, CreateBackbone(config.backbone()));
  return std::unique_ptr<Trainer>(new TimeBalanceTrainer(
      std::move(student), std::move(invariant), std::move(distinctive), std::move(scores), o,
      device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), timebalance, MakeTimeBalanceTrainer);

}  // namespace tb
