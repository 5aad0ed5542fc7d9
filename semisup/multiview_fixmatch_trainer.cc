// Multi-view pseudo-labeling over RGB and the temporal gradient (TG, frame
// differences of the same clip, T - 1 frames) through one backbone,
// registered twice with different reference defaults
// (MultiViewFixMatchOptions):
//   tg_fixmatch  threshold 0.3, feature alignment weight 1 (Xiao et al.,
//                CVPR 2022);
//   mvpl         threshold 0.95, no alignment (Xiong et al., ICCV 2021;
//                its optical-flow view is not implemented).
// Per step, with p_v(.) = softmax(f(view v of .)), v in {RGB, TG}:
//   pseudo-label  = argmax of (p_RGB(weak) + p_TG(weak)) / 2, masked at the
//                   threshold, no gradient;
//   L = sum_v CE(f(v(x_l)), y) + w(t) * sum_v PseudoLabelLoss(f(v(strong)))
//       + alignment * mean over weak clips of (1 - cos(g_RGB, g_TG)),
// with g the pooled backbone features. RGB and TG clips have different
// lengths, so each view is one forward pass (labeled, weak and strong clips
// of a view share BatchNorm statistics). Only RGB is used at test time.
#include <torch/nn/functional/distance.h>
#include <torch/nn/functional/loss.h>

#include "absl/strings/str_cat.h"
#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "semisup/semi_supervised.h"

namespace tb {
namespace {

constexpr double kReferenceWeight = 1.0;

class MultiViewFixMatchTrainer : public SemiSupervisedTrainer {
 public:
  MultiViewFixMatchTrainer(std::string name, std::shared_ptr<VideoBackbone> model,
                           const MultiViewFixMatchOptions& o, float threshold, float alignment,
                           torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        name_(std::move(name)),
        options_(o),
        threshold_(threshold),
        alignment_(alignment) {}

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return s;
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, name_));
    const int64_t k = options_.views().strong_clips();
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", k));
    return CallTorch(name_ + " step", [&] {
      namespace F = torch::nn::functional;
      const int64_t nl = xl.size(0), nu = weak.size(0);
      const torch::Tensor y = batches.labeled->labels.to(device_);
      const torch::Tensor rgb = torch::cat({xl, weak, strong}).to(device_);
      const torch::Tensor views[2] = {rgb, TemporalGradient(rgb)};
      const char* names[2] = {"rgb", "tg"};
      torch::Tensor features[2], logits[2];
      for (int v = 0; v < 2; ++v) {
        features[v] = model_->Features(views[v]);
        logits[v] = model_->Logits(features[v]).to(torch::kFloat);
      }
      const torch::Tensor p_weak = (torch::softmax(logits[0].slice(0, nl, nl + nu), 1) +
                                    torch::softmax(logits[1].slice(0, nl, nl + nu), 1)) /
                                   2;
      const PseudoLabels pl = MakePseudoLabels(p_weak, threshold_);
      const PseudoLabels pl_strong = RepeatPseudoLabels(pl, k);
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result;
      torch::Tensor loss = torch::zeros({}, rgb.options());
      for (int v = 0; v < 2; ++v) {
        const torch::Tensor ce = F::cross_entropy(logits[v].slice(0, 0, nl), y);
        const torch::Tensor loss_u = PseudoLabelLoss(logits[v].slice(0, nl + nu), pl_strong,
                                                     options_.pseudo_label().normalization());
        loss = loss + ce + w * loss_u;
        result.metrics[std::string("loss_ce_") + names[v]] = ce.item<double>();
        result.metrics[std::string("loss_u_") + names[v]] = loss_u.item<double>();
        result.metrics[std::string("train_top1_") + names[v]] = Top1(logits[v].slice(0, 0, nl), y);
      }
      if (alignment_ > 0) {
        const torch::Tensor cosine =
            F::cosine_similarity(features[0].slice(0, nl, nl + nu).to(torch::kFloat),
                                 features[1].slice(0, nl, nl + nu).to(torch::kFloat),
                                 F::CosineSimilarityFuncOptions().dim(1));
        const torch::Tensor align = (1 - cosine).mean();
        loss = loss + alignment_ * align;
        result.metrics["loss_align"] = align.item<double>();
      }
      result.loss = loss;
      result.metrics["weight_u"] = w;
      AddPseudoLabelMetrics(pl, ub->labels, "", &result.metrics);
      return result;
    });
  }

 private:
  std::string name_;
  MultiViewFixMatchOptions options_;
  float threshold_, alignment_;
};

struct MultiViewDefaults {
  const char* name;
  float threshold;
  float alignment;
};
constexpr MultiViewDefaults kTgFixMatch{"tg_fixmatch", 0.3f, 1.0f};
constexpr MultiViewDefaults kMvpl{"mvpl", 0.95f, 0.0f};

float Alignment(const MultiViewFixMatchOptions& o, const MultiViewDefaults& d) {
  return o.has_feature_alignment_weight() ? o.feature_alignment_weight() : d.alignment;
}

absl::Status ValidateMultiView(const MultiViewFixMatchOptions& o, const TrainerScope& scope,
                               const MultiViewDefaults& d) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(Alignment(o, d) >= 0, "feature_alignment_weight", Alignment(o, d), "must be >= 0");
  c.Fail(scope.dataset.clip().num_frames() < 2, "",
         absl::StrCat("the temporal gradient needs dataset.clip.num_frames >= 2, got ",
                      scope.dataset.clip().num_frames()));
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateMultiView(const MultiViewFixMatchOptions& o,
                                                         const TrainerContext& context,
                                                         const MultiViewDefaults& d) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(
      new MultiViewFixMatchTrainer(d.name, std::move(model), o,
                                   ThresholdOr(o.pseudo_label(), d.threshold), Alignment(o, d),
                                   context.device));
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
