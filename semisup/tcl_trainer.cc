// TCL (Singh et al., CVPR 2021), registered as `tcl` (TclOptions in
// semisup.proto: the phases and the loss of each). Every unlabeled video
// comes as two clips of one span, "base" (T frames) and "slow" (T / 2
// frames at twice the stride); the model's softmax distributions of the two
// are contrasted per video (instance, NT-Xent) and per pseudo-label group
// (group contrastive), and the run ends with a pseudo-label fine-tuning
// phase. Labeled, base and slow clips take separate forward passes, as in
// the official code (the two speeds have different lengths anyway).
//
// Example config:
//   trainer {
//     tcl { schedule { warmup_steps: 100 } }
//     labeled_batch_size: 8 unlabeled_batch_size: 24
//   }
#include "semisup/tcl_trainer.h"

#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"
#include "ssl/losses.h"

namespace tb {

torch::Tensor GroupContrastiveLoss(const torch::Tensor& p_base, const torch::Tensor& p_slow,
                                   double temperature, bool detach_base, int64_t* groups) {
  TORCH_CHECK(p_base.dim() == 2 && p_base.sizes() == p_slow.sizes(),
              "GroupContrastiveLoss: p_base ", p_base.sizes(), " and p_slow ", p_slow.sizes(),
              " must be the same [N, C]");
  const int64_t classes = p_base.size(1);
  // Membership [N, C] of each video in its argmax class, per speed.
  const auto members = [&](const torch::Tensor& p) {
    return torch::one_hot(p.detach().argmax(1), classes).to(p.scalar_type());
  };
  const torch::Tensor m_base = members(p_base), m_slow = members(p_slow);
  const torch::Tensor n_base = m_base.sum(0), n_slow = m_slow.sum(0);
  const torch::Tensor shared = torch::nonzero((n_base > 0) & (n_slow > 0)).squeeze(1);
  if (groups != nullptr) *groups = shared.size(0);
  if (shared.size(0) <= 1) return (p_slow * 0).sum();  // keeps the graph and dtype
  // Group means [K, C]: (members^T p) / counts, for the shared classes.
  const auto means = [&](const torch::Tensor& m, const torch::Tensor& n, const torch::Tensor& p) {
    return m.t().matmul(p).index_select(0, shared) / n.index_select(0, shared).unsqueeze(1);
  };
  const torch::Tensor g_base = means(m_base, n_base, detach_base ? p_base.detach() : p_base);
  const torch::Tensor g_slow = means(m_slow, n_slow, p_slow);
  return ssl::NtXent(g_base, g_slow, temperature);
}

namespace {

constexpr double kReferenceInstanceWeight = 9.0;  // the README command's --gamma 9
constexpr float kReferenceThreshold = 0.8f;       // the README command's --threshold 0.8

class TclTrainer : public SemiSupervisedTrainer {
 public:
  TclTrainer(std::shared_ptr<VideoBackbone> model, const TclOptions& o, int64_t total_steps,
             torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        options_(o),
        finetune_start_(total_steps -
                        static_cast<int64_t>(std::llround(o.finetune_fraction() * total_steps))) {
  }

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_two_speed() = options_.views();
    return s;
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "tcl"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor base, BatchView(*ub, "base", 1));
    ASSIGN_OR_RETURN(torch::Tensor slow, BatchView(*ub, "slow", 1));
    return CallTorch("tcl step", [&] {
      const bool finetune = batches.step >= finetune_start_;
      // The ramp of the contrastive terms: 0 in the warm-up, then the
      // schedule's sigmoid (1 without ramp-up).
      UnlabeledSchedule unit = options_.schedule();
      unit.set_weight(1.0f);
      const double ramp = UnlabeledWeight(unit, 1.0, batches.step);
      StepResult result;
      torch::Tensor unlabeled_loss;
      if (finetune) {
        unlabeled_loss = FinetuneLoss(base, slow, ub->labels, &result);
      } else if (ramp > 0) {
        unlabeled_loss = ContrastiveLoss(base, slow, ramp, &result);
      }
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor logits_l = model_->forward(xl.to(device_)).to(torch::kFloat);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      result.loss = unlabeled_loss.defined() ? ce + unlabeled_loss : ce;
      result.metrics["loss_ce"] = ce.item<double>();
      result.metrics["train_top1"] = Top1(logits_l, y);
      result.metrics["finetune_phase"] = finetune ? 1 : 0;
      return result;
    });
  }

 private:
  torch::Tensor Probabilities(const torch::Tensor& clips) {
    return torch::softmax(model_->forward(clips.to(device_)).to(torch::kFloat), 1);
  }

  // r * (weight * L_ic + group_weight * L_gc) on the two speeds.
  torch::Tensor ContrastiveLoss(const torch::Tensor& base, const torch::Tensor& slow, double ramp,
                                StepResult* result) {
    const torch::Tensor p_base = Probabilities(base);
    const torch::Tensor p_slow = Probabilities(slow);
    const double tau = options_.temperature();
    const torch::Tensor instance =
        ssl::NtXent(options_.detach_base() ? p_base.detach() : p_base, p_slow, tau);
    int64_t groups = 0;
    const torch::Tensor group =
        GroupContrastiveLoss(p_base, p_slow, tau, options_.detach_base(), &groups);
    const double w_instance = ramp * (options_.schedule().has_weight()
                                          ? options_.schedule().weight()
                                          : kReferenceInstanceWeight);
    const double w_group = ramp * options_.group_weight();
    result->metrics["loss_instance"] = instance.item<double>();
    result->metrics["loss_group"] = group.item<double>();
    result->metrics["groups"] = static_cast<double>(groups);
    result->metrics["weight_instance"] = w_instance;
    result->metrics["weight_group"] = w_group;
    return w_instance * instance + w_group * group;
  }

  // pseudo_label_weight * PseudoLabelLoss(target clip, argmax of the base clip).
  torch::Tensor FinetuneLoss(const torch::Tensor& base, const torch::Tensor& slow,
                             const torch::Tensor& hidden_labels, StepResult* result) {
    const torch::Tensor logits_base = model_->forward(base.to(device_)).to(torch::kFloat);
    const PseudoLabels pl = MakePseudoLabels(
        torch::softmax(logits_base, 1), ThresholdOr(options_.pseudo_label(), kReferenceThreshold));
    const torch::Tensor target_logits =
        options_.pseudo_label_target() == TclOptions::SLOW_CLIP
            ? model_->forward(slow.to(device_)).to(torch::kFloat)
            : logits_base;
    const torch::Tensor loss =
        PseudoLabelLoss(target_logits, pl, options_.pseudo_label().normalization());
    result->metrics["loss_pl"] = loss.item<double>();
    result->metrics["weight_pl"] = options_.pseudo_label_weight();
    AddPseudoLabelMetrics(pl, hidden_labels, "", &result->metrics);
    return options_.pseudo_label_weight() * loss;
  }

  TclOptions options_;
  int64_t finetune_start_;  // first step of the fine-tuning phase
};

absl::Status ValidateTcl(const TclOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.group_weight() >= 0, "group_weight", o.group_weight(), "must be >= 0");
  c.Require(o.finetune_fraction() >= 0 && o.finetune_fraction() <= 1, "finetune_fraction",
            o.finetune_fraction(), "must be in [0, 1]");
  c.Require(o.pseudo_label_weight() >= 0, "pseudo_label_weight", o.pseudo_label_weight(),
            "must be >= 0");
  const int frames = scope.dataset.clip().num_frames();
  const int ratio = o.views().speed_ratio();
  c.Require(ratio < 2 || frames % ratio == 0, "views.speed_ratio", ratio,
            absl::StrCat("must divide dataset.clip.num_frames (", frames,
                         ") so that the slow clip covers the base clip's span"));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateTcl(const TclOptions& o,
                                                   const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(
      new TclTrainer(std::move(model), o, context.total_steps, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), tcl, ValidateTcl, CreateTcl);

}  // namespace tb
