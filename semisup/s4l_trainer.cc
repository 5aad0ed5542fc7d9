// S4L (Zhai et al., ICCV 2019), registered as `s4l` (S4lOptions): supervised
// cross-entropy on the labeled clips plus a self-supervised pretext loss on
// all clips of the step, labeled and unlabeled:
//   L = CE(f(x_l), y) + w(t) * L_pretext(f, labeled + unlabeled views).
// The unlabeled loader cuts the pretext's own views; a pretext whose views
// the labeled loader does not produce (anything but a single clip) runs on
// the unlabeled clips only.
// The default pretext is rotation prediction (ssl/rotation_objective.cc:
// all four rotations of every clip, a linear head). Any registered SSL
// objective can be the pretext; its heads are trained jointly and
// checkpointed as "pretext". Reference: weight 1.
#include <torch/nn/functional/loss.h>

#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"
#include "ssl/objective.h"

namespace tb {
namespace {

constexpr double kReferenceWeight = 1.0;

class S4lTrainer : public SemiSupervisedTrainer {
 public:
  S4lTrainer(std::shared_ptr<VideoBackbone> model, std::unique_ptr<SslObjective> pretext,
             const S4lOptions& o, torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device), pretext_(std::move(pretext)), options_(o) {
    pretext_->to(device_);
  }

  SamplerConfig UnlabeledSampler() const override { return pretext_->Sampler(); }
  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> p = model_->parameters();
    for (const torch::Tensor& t : pretext_->parameters()) {
      if (t.requires_grad()) p.push_back(t);
    }
    return p;
  }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}, {"pretext", pretext_.get()}};
  }
  void SetTraining(bool training) override {
    model_->train(training);
    pretext_->train(training);
  }
  void AfterOptimizerStep(int64_t step) override {
    pretext_->AfterOptimizerStep(*model_, step + 1);
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "s4l"));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    // The pretext runs on all clips: the labeled batch joins when it has the
    // pretext's views (the default rotation pretext reads the single clip
    // both loaders produce); otherwise on the unlabeled clips only.
    const ClipBatch& lb = *batches.labeled;
    bool labeled_too = true;
    for (const auto& [name, view] : ub->views) {
      auto it = lb.views.find(name);
      labeled_too &= it != lb.views.end() && it->second.sizes().slice(1) == view.sizes().slice(1);
    }
    ViewTensors views;
    for (const auto& [name, view] : ub->views) {
      views[name] = (labeled_too ? torch::cat({lb.views.at(name), view}) : view).to(device_);
    }
    ASSIGN_OR_RETURN(SslLoss pretext, pretext_->Loss(*model_, views));
    return CallTorch("s4l step", [&] {
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor logits = model_->forward(xl.to(device_)).to(torch::kFloat);
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits, y);
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result;
      result.loss = ce + w * pretext.loss;
      result.metrics = pretext.metrics;
      result.metrics["loss_ce"] = ce.item<double>();
      result.metrics["loss_pretext"] = pretext.loss.item<double>();
      result.metrics["weight_u"] = w;
      result.metrics["train_top1"] = Top1(logits, y);
      return result;
    });
  }

 private:
  std::unique_ptr<SslObjective> pretext_;
  S4lOptions options_;
};

// The pretext of `o` (unset = rotation, the reference's).
SslObjectiveConfig Pretext(const S4lOptions& o) {
  SslObjectiveConfig pretext = o.pretext();
  if (pretext.kind_case() == SslObjectiveConfig::KIND_NOT_SET) pretext.mutable_rotation();
  return pretext;
}

absl::Status ValidateS4l(const S4lOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Merge(ValidateSslObjective(Pretext(o), c.Path("pretext")));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateS4l(const S4lOptions& o,
                                                   const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  SslContext ssl;
  ssl.backbone = context.backbone;
  ssl.feature_dim = model->feature_dim();
  ssl.total_steps = std::max<int64_t>(1, context.total_steps);
  ssl.device = context.device;
  ASSIGN_OR_RETURN(std::unique_ptr<SslObjective> pretext, CreateSslObjective(Pretext(o), ssl));
  return std::unique_ptr<Trainer>(
      new S4lTrainer(std::move(model), std::move(pretext), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), s4l, ValidateS4l, CreateS4l);

}  // namespace tb
