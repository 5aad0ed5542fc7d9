// MotionFit (Gavrilyuk et al., ICCV 2021), registered as `motion_fit`
// (MotionFitOptions in semisup.proto: the three phases and the loss of
// each). Two networks: the motion model (the experiment's backbone with a
// 2-channel input, fed the stored TV-L1 flow of the clips) and the RGB
// model, which is the one evaluated. The motion model is trained only in
// the first phase; afterwards it runs in eval mode without gradients and
// its gradients are cleared every step, so the optimizer (Adam skips
// parameters without a gradient) leaves it exactly as the first phase
// ended. Likewise the RGB model has no gradient, so no update, before the
// second phase.
//
// Example config:
//   trainer {
//     motion_fit { clips: 2 }
//     labeled_batch_size: 8 unlabeled_batch_size: 8
//   }
#include "semisup/motion_fit_trainer.h"

#include <cmath>
#include <utility>

#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

torch::Tensor MultiClipMean(const torch::Tensor& clip_major, int64_t clips) {
  TORCH_CHECK(clips >= 1 && clip_major.dim() == 2 && clip_major.size(0) % clips == 0,
              "MultiClipMean: ", clip_major.sizes(), " is not [K * B, C] for K = ", clips);
  return clip_major.view({clips, clip_major.size(0) / clips, clip_major.size(1)}).mean(0);
}

torch::Tensor MultiClipCrossEntropy(const torch::Tensor& clip_major_logits,
                                    const torch::Tensor& labels, int64_t clips) {
  return torch::nn::functional::cross_entropy(MultiClipMean(clip_major_logits, clips), labels);
}

torch::Tensor MotionFitSelfTrainingLoss(const torch::Tensor& rgb_logits,
                                        const torch::Tensor& motion_logits, int64_t clips,
                                        const MotionFitOptions& options,
                                        PseudoLabels* pseudo_labels) {
  torch::Tensor p;
  {
    torch::NoGradGuard no_grad;
    p = torch::softmax(MultiClipMean(motion_logits.detach(), clips) / options.temperature(), 1);
  }
  const PseudoLabels videos = MakePseudoLabels(p, ThresholdOr(options.pseudo_label(), 0.0f));
  if (pseudo_labels != nullptr) *pseudo_labels = videos;
  const PseudoLabels rows = RepeatPseudoLabels(videos, clips);
  const auto normalization = options.pseudo_label().normalization();
  if (options.soft_targets()) {
    return SoftPseudoLabelLoss(rgb_logits, p.repeat({clips, 1}), rows.mask, normalization);
  }
  return PseudoLabelLoss(rgb_logits, rows, normalization);
}

namespace {

enum class Phase { kMotion, kSelfTraining, kFinetune };

class MotionFitTrainer : public SemiSupervisedTrainer {
 public:
  MotionFitTrainer(std::shared_ptr<VideoBackbone> model, std::shared_ptr<VideoBackbone> motion,
                   const MotionFitOptions& o, const Augmentation& augmentation,
                   int64_t total_steps, torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        motion_(std::move(motion)),
        options_(o),
        augmentation_(augmentation),
        motion_end_(std::llround(o.motion_fraction() * total_steps)),
        finetune_start_(total_steps - std::llround(o.finetune_fraction() * total_steps)) {
    motion_->to(device_);
  }

  SamplerConfig LabeledSampler() const override { return Sampler(); }
  SamplerConfig UnlabeledSampler() const override { return Sampler(); }

  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> params = model_->parameters();
    for (const torch::Tensor& p : motion_->parameters()) params.push_back(p);
    return params;
  }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}, {"motion_model", motion_.get()}};
  }
  void SetTraining(bool training) override {
    training_ = training;
    model_->train(training);
    motion_->train(training);
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    const int64_t k = options_.clips();
    const Phase phase = PhaseAt(batches.step);
    ASSIGN_OR_RETURN(torch::Tensor xl, BatchView(*batches.labeled, "clips", k));
    ASSIGN_OR_RETURN(torch::Tensor fl, BatchView(*batches.labeled, "clips_flow", k));
    const ClipBatch* ub = nullptr;
    torch::Tensor xu, fu;
    if (phase == Phase::kSelfTraining) {
      ASSIGN_OR_RETURN(ub, Unlabeled(batches, "motion_fit"));
      ASSIGN_OR_RETURN(xu, BatchView(*ub, "clips", k));
      ASSIGN_OR_RETURN(fu, BatchView(*ub, "clips_flow", k));
    }
    return CallTorch("motion_fit step", [&] {
      StepResult result;
      result.metrics["phase"] = static_cast<double>(phase);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      if (phase == Phase::kMotion) {
        motion_->train(training_);
        const torch::Tensor logits = motion_->forward(fl.to(device_)).to(torch::kFloat);
        result.loss = MultiClipCrossEntropy(logits, y, k);
        result.metrics["loss_motion"] = result.loss.item<double>();
        result.metrics["train_top1_motion"] = Top1(MultiClipMean(logits, k), y);
        return result;
      }
      FreezeMotionModel();
      // The RGB model's CE on every labeled clip (each clip a sample).
      const auto labeled_ce = [&] {
        const torch::Tensor logits = model_->forward(xl.to(device_)).to(torch::kFloat);
        result.metrics["train_top1"] = Top1(logits, y.repeat({k}));
        return torch::nn::functional::cross_entropy(logits, y.repeat({k}));
      };
      if (phase == Phase::kFinetune) {
        result.loss = labeled_ce();
        result.metrics["loss_ce"] = result.loss.item<double>();
        return result;
      }
      torch::Tensor motion_logits;
      {
        torch::NoGradGuard no_grad;
        motion_logits = motion_->forward(fu.to(device_)).to(torch::kFloat);
      }
      const torch::Tensor rgb_logits = model_->forward(xu.to(device_)).to(torch::kFloat);
      PseudoLabels pl;
      const torch::Tensor loss_pl =
          MotionFitSelfTrainingLoss(rgb_logits, motion_logits, k, options_, &pl);
      result.loss = loss_pl;
      result.metrics["loss_pl"] = loss_pl.item<double>();
      if (options_.labeled_weight() > 0) {
        const torch::Tensor ce = labeled_ce();
        result.metrics["loss_ce"] = ce.item<double>();
        result.loss = result.loss + options_.labeled_weight() * ce;
      }
      AddPseudoLabelMetrics(pl, ub->labels, "", &result.metrics);
      return result;
    });
  }

 private:
  Phase PhaseAt(int64_t step) const {
    if (step < motion_end_) return Phase::kMotion;
    return step < finetune_start_ ? Phase::kSelfTraining : Phase::kFinetune;
  }

  SamplerConfig Sampler() const {
    SamplerConfig s;
    s.mutable_rho()->set_rho(options_.clips());
    *s.mutable_rho()->mutable_augmentation() = augmentation_;
    s.mutable_flow()->set_normalize(options_.normalize_flow());
    return s;
  }

  // After the motion phase: inference statistics, and no gradient (an
  // undefined gradient makes the optimizer skip the parameter, where a
  // zeroed one would still move it through Adam's moments).
  void FreezeMotionModel() {
    motion_->eval();
    for (torch::Tensor& p : motion_->parameters()) {
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
  }

  std::shared_ptr<VideoBackbone> motion_;
  MotionFitOptions options_;
  Augmentation augmentation_;
  int64_t motion_end_;      // first step of self-training
  int64_t finetune_start_;  // first step of fine-tuning
  bool training_ = true;
};

absl::Status ValidateMotionFit(const MotionFitOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.motion_fraction() > 0 && o.motion_fraction() < 1, "motion_fraction",
            o.motion_fraction(), "must be in (0, 1)");
  c.Require(o.finetune_fraction() >= 0 && o.finetune_fraction() < 1, "finetune_fraction",
            o.finetune_fraction(), "must be in [0, 1)");
  c.Require(o.motion_fraction() + o.finetune_fraction() <= 1, "finetune_fraction",
            o.finetune_fraction(),
            absl::StrCat("plus motion_fraction (", o.motion_fraction(), ") must be <= 1"));
  c.Require(o.clips() >= 1, "clips", o.clips(), "must be >= 1");
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.labeled_weight() >= 0, "labeled_weight", o.labeled_weight(), "must be >= 0");
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateMotionFit(const MotionFitOptions& o,
                                                         const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  BackboneConfig motion_config = context.backbone;
  motion_config.set_input_channels(2);
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> motion, context.CreateModel(motion_config));
  return std::unique_ptr<Trainer>(new MotionFitTrainer(std::move(model), std::move(motion), o,
                                                       context.dataset.augmentation(),
                                                       context.total_steps, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), motion_fit, ValidateMotionFit, CreateMotionFit);

}  // namespace tb
