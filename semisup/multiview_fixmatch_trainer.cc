// Multi-view pseudo-labeling over RGB and the temporal gradient (TG, frame
// differences of the same clip, T - 1 frames), after LTG's code (Xiao et
// al., CVPR 2022), registered twice with different reference defaults
// (MultiViewFixMatchOptions in semisup.proto):
//   tg_fixmatch  LTG's method: threshold 0.3, stage-wise feature alignment
//                with weight 1 (TG detached), a separate TG network;
//   mvpl         LTG's MvPL configs: threshold 0.3, no alignment, one
//                network for both views (Xiong et al., ICCV 2021; its
//                optical-flow view is not implemented).
// The loss is ComputeMultiViewLoss (semi_supervised.h). RGB and TG clips
// have different lengths, so each view is one forward pass (labeled, weak
// and strong clips of a view share BatchNorm statistics). Only the RGB
// network is evaluated, after precise BatchNorm statistics on RGB clips
// (PreciseBnReferenceBatches: LTG's precise_bn num_iters 200).
#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr double kReferenceWeight = 1.0;
constexpr int kReferencePreciseBnBatches = 200;

struct MultiViewDefaults {
  const char* name;
  float threshold;
  float alignment;
  bool separate_tg_model;
};
constexpr MultiViewDefaults kTgFixMatch{"tg_fixmatch", 0.3f, 1.0f, true};
constexpr MultiViewDefaults kMvpl{"mvpl", 0.3f, 0.0f, false};

float Alignment(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_feature_alignment_weight() ? o.feature_alignment_weight() : d.alignment;
}

bool SeparateTgModel(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_separate_tg_model() ? o.separate_tg_model() : d.separate_tg_model;
}

class MultiViewFixMatchTrainer : public SemiSupervisedTrainer {
 public:
  // `tg_model` null: the TG view goes through `model`.
  MultiViewFixMatchTrainer(std::shared_ptr<VideoBackbone> model,
                           std::shared_ptr<VideoBackbone> tg_model,
                           const MultiViewFixMatchOptions& o, const MultiViewDefaults& d,
                           torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        tg_model_(std::move(tg_model)),
        name_(d.name),
        options_(o) {
    if (tg_model_) tg_model_->to(device_);
    loss_.threshold = ThresholdOr(o.pseudo_label(), d.threshold);
    loss_.source = o.pseudo_label_source();
    loss_.normalization = o.pseudo_label().normalization();
    loss_.view_weight = o.view_weight();
    loss_.alignment_weight = Alignment(o, d);
    loss_.alignment_features = o.alignment_features();
    loss_.detach_tg = o.alignment_detach_tg();
    loss_.strong_clips = o.views().strong_clips();
  }

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return s;
  }

  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> params = model_->parameters();
    if (tg_model_) {
      for (const torch::Tensor& p : tg_model_->parameters()) params.push_back(p);
    }
    return params;
  }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    std::vector<std::pair<std::string, torch::nn::Module*>> modules = {{"model", model_.get()}};
    if (tg_model_) modules.push_back({"tg_model", tg_model_.get()});
    return modules;
  }
  void SetTraining(bool training) override {
    model_->train(training);
    if (tg_model_) tg_model_->train(training);
  }
  int PreciseBnReferenceBatches() const override { return kReferencePreciseBnBatches; }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, name_));
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", loss_.strong_clips));
    return CallTorch(name_ + " step", [&] {
      const int64_t nl = xl.size(0), nu = weak.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor rgb = torch::cat({xl, weak, strong}).to(device_);
      const torch::Tensor inputs[2] = {rgb, TemporalGradient(rgb)};
      VideoBackbone* models[2] = {model_.get(), tg_model_ ? tg_model_.get() : model_.get()};
      MultiViewOutputs views[2];
      for (int v = 0; v < 2; ++v) {
        views[v].stages = models[v]->StageFeatureMaps(inputs[v]);
        views[v].pooled = views[v].stages.back().mean({2, 3, 4});
        views[v].logits = models[v]->Logits(views[v].pooled);
      }
      MultiViewLossOptions o = loss_;
      o.unlabeled_weight = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      const MultiViewLoss loss = ComputeMultiViewLoss(views, y, nl, nu, o);
      StepResult result;
      result.loss = loss.total;
      const char* names[2] = {"rgb", "tg"};
      for (int v = 0; v < 2; ++v) {
        result.metrics[std::string("loss_ce_") + names[v]] = loss.ce[v].item<double>();
        result.metrics[std::string("loss_u_") + names[v]] = loss.unlabeled[v].item<double>();
        result.metrics[std::string("train_top1_") + names[v]] =
            Top1(views[v].logits.slice(0, 0, nl), y);
      }
      if (loss.alignment.defined()) {
        result.metrics["loss_align"] = loss.alignment.item<double>();
        for (size_t s = 0; s < loss.alignment_stages.size() && loss.alignment_stages.size() > 1;
             ++s) {
          result.metrics[absl::StrCat("loss_align_stage", s + 1)] =
              loss.alignment_stages[s].item<double>();
        }
      }
      result.metrics["weight_u"] = o.unlabeled_weight;
      AddPseudoLabelMetrics(loss.pseudo_labels, ub->labels, "", &result.metrics);
      return result;
    });
  }

 private:
  std::shared_ptr<VideoBackbone> tg_model_;
  std::string name_;
  MultiViewFixMatchOptions options_;
  MultiViewLossOptions loss_;
};

absl::Status ValidateMultiView(const MultiViewFixMatchOptions& o, const TrainerScope& scope,
                               const MultiViewDefaults& d) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(Alignment(o, d) >= 0, "feature_alignment_weight", Alignment(o, d), "must be >= 0");
  c.Require(o.view_weight() > 0, "view_weight", o.view_weight(), "must be > 0");
  c.Fail(scope.dataset.clip().num_frames() < 2, "",
         absl::StrCat("the temporal gradient needs dataset.clip.num_frames >= 2, got ",
                      scope.dataset.clip().num_frames()));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateMultiView(const MultiViewFixMatchOptions& o,
                                                         const TrainerContext& context,
                                                         const MultiViewDefaults& d) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  std::shared_ptr<VideoBackbone> tg_model;
  if (SeparateTgModel(o, d)) {
    ASSIGN_OR_RETURN(tg_model, context.CreateModel());
  }
  return std::unique_ptr<Trainer>(new MultiViewFixMatchTrainer(
      std::move(model), std::move(tg_model), o, d, context.device));
}

absl::Status ValidateTgFixMatch(const MultiViewFixMatchOptions& o, const TrainerScope& scope) {
  return ValidateMultiView(o, scope, kTgFixMatch);
}
absl::StatusOr<std::unique_ptr<Trainer>> CreateTgFixMatch(const MultiViewFixMatchOptions& o,
                                                          const TrainerContext& context) {
  return CreateMultiView(o, context, kTgFixMatch);
}
absl::Status ValidateMvpl(const MultiViewFixMatchOptions& o, const TrainerScope& scope) {
  return ValidateMultiView(o, scope, kMvpl);
}
absl::StatusOr<std::unique_ptr<Trainer>> CreateMvpl(const MultiViewFixMatchOptions& o,
                                                    const TrainerContext& context) {
  return CreateMultiView(o, context, kMvpl);
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), tg_fixmatch, ValidateTgFixMatch, CreateTgFixMatch);
TB_REGISTER_COMPONENT(TrainerRegistry(), mvpl, ValidateMvpl, CreateMvpl);

}  // namespace tb
