// Cross-model pseudo-labeling (Xu et al., CVPR 2022), registered as `cmpl`
// (CmplOptions): the primary model F (the experiment's backbone) and an
// auxiliary model A, the same architecture at auxiliary_width times the
// width. Each model's confident weak-view argmax is the target of the other
// model's strong view:
//   L = CE(F(x_l), y) + CE(A(x_l), y)
//       + w(t) * (PseudoLabelLoss(F(strong), argmax A(weak))
//                 + PseudoLabelLoss(A(strong), argmax F(weak))).
// Each model sees labeled, weak and strong clips in one forward pass. F is
// evaluated; both are checkpointed ("model", "auxiliary") and trained by the
// same optimizer. Reference: threshold 0.95, weight 1, width 1/4.
#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr float kReferenceThreshold = 0.95f;
constexpr double kReferenceWeight = 1.0;

class CmplTrainer : public SemiSupervisedTrainer {
 public:
  CmplTrainer(std::shared_ptr<VideoBackbone> model, std::shared_ptr<VideoBackbone> auxiliary,
              const CmplOptions& o, torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        auxiliary_(std::move(auxiliary)),
        options_(o) {
    auxiliary_->to(device_);
  }

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return s;
  }
  std::vector<torch::Tensor> TrainableParameters() override {
    std::vector<torch::Tensor> p = model_->parameters();
    for (const torch::Tensor& a : auxiliary_->parameters()) p.push_back(a);
    return p;
  }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}, {"auxiliary", auxiliary_.get()}};
  }
  void SetTraining(bool training) override {
    model_->train(training);
    auxiliary_->train(training);
  }
  VideoBackbone& auxiliary() { return *auxiliary_; }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "cmpl"));
    const int64_t k = options_.views().strong_clips();
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", k));
    return CallTorch("cmpl step", [&] {
      const int64_t nl = xl.size(0), nu = weak.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor x = torch::cat({xl, weak, strong}).to(device_);
      const float threshold = ThresholdOr(options_.pseudo_label(), kReferenceThreshold);
      const auto normalization = options_.pseudo_label().normalization();
      const torch::Tensor logits_f = model_->forward(x).to(torch::kFloat);
      const torch::Tensor logits_a = auxiliary_->forward(x).to(torch::kFloat);
      const PseudoLabels from_f =
          MakePseudoLabels(torch::softmax(logits_f.slice(0, nl, nl + nu), 1), threshold);
      const PseudoLabels from_a =
          MakePseudoLabels(torch::softmax(logits_a.slice(0, nl, nl + nu), 1), threshold);
      namespace F = torch::nn::functional;
      const torch::Tensor ce_f = F::cross_entropy(logits_f.slice(0, 0, nl), y);
      const torch::Tensor ce_a = F::cross_entropy(logits_a.slice(0, 0, nl), y);
      const torch::Tensor u_f =
          PseudoLabelLoss(logits_f.slice(0, nl + nu), RepeatPseudoLabels(from_a, k), normalization);
      const torch::Tensor u_a =
          PseudoLabelLoss(logits_a.slice(0, nl + nu), RepeatPseudoLabels(from_f, k), normalization);
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result;
      result.loss = ce_f + ce_a + w * (u_f + u_a);
      result.metrics["loss_ce"] = ce_f.item<double>();
      result.metrics["loss_ce_aux"] = ce_a.item<double>();
      result.metrics["loss_u"] = u_f.item<double>();
      result.metrics["loss_u_aux"] = u_a.item<double>();
      result.metrics["weight_u"] = w;
      result.metrics["train_top1"] = Top1(logits_f.slice(0, 0, nl), y);
      result.metrics["train_top1_aux"] = Top1(logits_a.slice(0, 0, nl), y);
      // The primary model's pseudo-labels (trained into A) and the
      // auxiliary's (trained into F).
      AddPseudoLabelMetrics(from_f, ub->labels, "", &result.metrics);
      AddPseudoLabelMetrics(from_a, ub->labels, "aux_", &result.metrics);
      return result;
    });
  }

 private:
  std::shared_ptr<VideoBackbone> auxiliary_;
  CmplOptions options_;
};

absl::Status ValidateCmpl(const CmplOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.auxiliary_width() > 0 && o.auxiliary_width() <= 1, "auxiliary_width",
            o.auxiliary_width(), "must be in (0, 1]");
  if (c.ok() && scope.backbone.kind_case() != BackboneConfig::KIND_NOT_SET) {
    const auto scaled = ScaleBackboneWidth(scope.backbone, o.auxiliary_width());
    c.Fail(!scaled.ok(), "auxiliary_width",
           absl::StrCat("the auxiliary model is the backbone at a fraction of its width: ",
                        scaled.status().message()));
  }
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateCmpl(const CmplOptions& o,
                                                    const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  ASSIGN_OR_RETURN(BackboneConfig aux_config,
                   ScaleBackboneWidth(context.backbone, o.auxiliary_width()));
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> auxiliary, context.CreateModel(aux_config));
  return std::unique_ptr<Trainer>(
      new CmplTrainer(std::move(model), std::move(auxiliary), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), cmpl, ValidateCmpl, CreateCmpl);

}  // namespace tb
