// TACL (Tong, Tang & Wang, IEEE TCSVT 2022), registered as `tacl`
// (TaclOptions in semisup.proto). FixMatch's weak and strong views of one
// clip position; every strong clip is re-indexed in time (FINE: one motion
// phase stretched over the clip; COARSE: the whole clip at a lower frame
// rate) with a strength that rises over the run (augmentation curriculum),
// and the weak clip's argmax is its target where the weak confidence reaches
// its class's curriculum threshold (FlexMatch-style class-wise thresholds
// from a moving estimate of each class's learning effect):
//   L = CE(f(x_l), y) + w(t) * PseudoLabelLoss(f(T_s(strong)), argmax f(weak)).
//
// Example config:
//   trainer {
//     tacl { schedule { warmup_steps: 100 } }
//     labeled_batch_size: 8 unlabeled_batch_size: 8
//   }
#include "semisup/tacl_trainer.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "core/collectives.h"
#include "core/config_check.h"
#include "core/rng.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

double TaclCurriculumStrength(int64_t step, int64_t ramp_steps) {
  if (ramp_steps <= 0) return 1.0;
  return std::min(1.0, static_cast<double>(std::max<int64_t>(step, 0)) / ramp_steps);
}

int64_t TaclFineWindow(int64_t frames, double min_window_fraction, double strength) {
  const int64_t min_window =
      std::max<int64_t>(1, std::llround(min_window_fraction * static_cast<double>(frames)));
  const int64_t window =
      std::llround(static_cast<double>(frames) - strength * static_cast<double>(frames - min_window));
  return std::clamp<int64_t>(window, 1, frames);
}

int64_t TaclCoarseHold(int64_t max_hold, double strength) {
  return std::max<int64_t>(1, std::llround(1.0 + strength * static_cast<double>(max_hold - 1)));
}

std::vector<int64_t> TaclFineIndices(int64_t frames, int64_t window, int64_t start) {
  CHECK(window >= 1 && window <= frames && start >= 0 && start + window <= frames)
      << "TaclFineIndices: window " << window << " at " << start << " of " << frames << " frames";
  std::vector<int64_t> indices(frames);
  for (int64_t i = 0; i < frames; ++i) indices[i] = start + i * window / frames;
  return indices;
}

std::vector<int64_t> TaclCoarseIndices(int64_t frames, int64_t hold, int64_t phase) {
  CHECK(hold >= 1 && phase >= 0 && phase < hold)
      << "TaclCoarseIndices: hold " << hold << ", phase " << phase;
  std::vector<int64_t> indices(frames);
  for (int64_t i = 0; i < frames; ++i) indices[i] = std::min(frames - 1, phase + hold * (i / hold));
  return indices;
}

TaclTemporalDraw TaclDrawTemporalAugmentation(const TaclOptions& options, int64_t frames,
                                              double strength, int64_t step, int64_t video,
                                              int64_t slot) {
  RngStream rng(options.seed(), static_cast<uint64_t>(step), static_cast<uint64_t>(video),
                static_cast<uint32_t>(slot), /*purpose=*/0x7ac1);
  TaclTemporalDraw draw;
  draw.fine = rng.Bernoulli(options.fine_probability());
  if (draw.fine) {
    const int64_t window = TaclFineWindow(frames, options.min_window_fraction(), strength);
    const int64_t start = static_cast<int64_t>(rng.UniformInt(frames - window + 1));
    draw.indices = TaclFineIndices(frames, window, start);
  } else {
    const int64_t hold = TaclCoarseHold(options.max_hold(), strength);
    const int64_t phase = static_cast<int64_t>(rng.UniformInt(hold));
    draw.indices = TaclCoarseIndices(frames, hold, phase);
  }
  return draw;
}

torch::Tensor TaclApplyTemporal(const torch::Tensor& clips,
                                const std::vector<std::vector<int64_t>>& indices) {
  TORCH_CHECK(clips.dim() == 5 && clips.size(0) == static_cast<int64_t>(indices.size()),
              "TaclApplyTemporal: clips ", clips.sizes(), " for ", indices.size(), " index rows");
  std::vector<torch::Tensor> rows;
  rows.reserve(indices.size());
  for (size_t n = 0; n < indices.size(); ++n) {
    const torch::Tensor index =
        torch::tensor(indices[n], torch::TensorOptions().dtype(torch::kInt64).device(clips.device()));
    rows.push_back(clips[static_cast<int64_t>(n)].index_select(1, index));
  }
  return torch::stack(rows);
}

torch::Tensor TaclClassThresholds(const torch::Tensor& sigma, const torch::Tensor& unused,
                                  double tau, bool warmup,
                                  TaclOptions::ThresholdMapping mapping) {
  const torch::Tensor s = sigma.to(torch::kDouble);
  torch::Tensor denominator = s.max();
  if (warmup) denominator = torch::maximum(denominator, unused.to(torch::kDouble).reshape({}));
  // All zero: no class has a confident prediction yet, beta = 0.
  const torch::Tensor beta =
      torch::where(denominator > 0, s / denominator.clamp_min(1e-300), torch::zeros_like(s));
  const torch::Tensor mapped = mapping == TaclOptions::LINEAR ? beta : beta / (2.0 - beta);
  return mapped * tau;
}

PseudoLabels TaclPseudoLabels(const torch::Tensor& probabilities,
                              const torch::Tensor& thresholds) {
  const torch::Tensor p = probabilities.detach();
  const auto [confidence, labels] = p.max(1);
  const torch::Tensor required =
      thresholds.to(p.device()).to(torch::kDouble).index_select(0, labels);
  PseudoLabels out;
  out.labels = labels;
  out.mask = confidence.to(torch::kDouble).ge(required).to(p.scalar_type());
  return out;
}

torch::Tensor TaclBatchCounts(const torch::Tensor& probabilities, double tau) {
  const torch::Tensor p = probabilities.detach();
  const int64_t classes = p.size(1);
  const auto [confidence, labels] = p.max(1);
  const torch::Tensor confident = confidence.to(torch::kDouble).ge(tau);
  const torch::Tensor per_class =
      (torch::one_hot(labels, classes).to(torch::kDouble) * confident.to(torch::kDouble).unsqueeze(1))
          .sum(0);
  const torch::Tensor unconfident = (~confident).to(torch::kDouble).sum().reshape({1});
  return torch::cat({per_class, unconfident});
}

void TaclUpdateLearningEffect(const torch::Tensor& counts, double decay, torch::Tensor& sigma,
                              torch::Tensor& unused) {
  torch::NoGradGuard no_grad;
  const int64_t classes = sigma.size(0);
  const torch::Tensor c = counts.to(sigma.device()).to(torch::kDouble);
  const double n = c.sum().item<double>();
  if (n <= 0) return;
  sigma.mul_(decay).add_(c.slice(0, 0, classes).to(sigma.scalar_type()), (1 - decay) / n);
  unused.mul_(decay).add_(c.slice(0, classes).to(unused.scalar_type()), (1 - decay) / n);
}

namespace {

constexpr float kReferenceThreshold = 0.95f;  // FixMatch's and FlexMatch's tau
constexpr double kReferenceWeight = 1.0;      // FixMatch's lambda_u

// The moving learning-effect estimate (checkpoint module "tacl_state"): the
// share sigma_c of recent unlabeled clips confidently predicted as class c,
// and the share u predicted below tau. Every rank adds the global batch's
// counts, so the state stays equal across ranks.
class TaclStateImpl : public torch::nn::Module, public CollectiveUser {
 public:
  explicit TaclStateImpl(int64_t classes) {
    sigma = register_buffer("sigma", torch::zeros({classes}, torch::kDouble));
    unused = register_buffer("unused", torch::ones({1}, torch::kDouble));
  }
  void SetCollectives(std::shared_ptr<Collectives> collectives) override {
    collectives_ = std::move(collectives);
  }
  void Update(const torch::Tensor& probabilities, double tau, double decay) {
    // On the state's device (the model's), where the collectives expect it.
    torch::Tensor counts = TaclBatchCounts(probabilities, tau).to(sigma.device()).contiguous();
    if (IsDistributed(collectives_.get())) collectives_->AllReduceSum({counts});
    TaclUpdateLearningEffect(counts, decay, sigma, unused);
  }

  torch::Tensor sigma, unused;

 private:
  std::shared_ptr<Collectives> collectives_;
};
TORCH_MODULE(TaclState);

class TaclTrainer : public SemiSupervisedTrainer {
 public:
  TaclTrainer(std::shared_ptr<VideoBackbone> model, const TaclOptions& o, int64_t classes,
              int64_t total_steps, torch::Device device)
      : SemiSupervisedTrainer(std::move(model), device),
        options_(o),
        ramp_steps_(std::llround(o.curriculum_fraction() * static_cast<double>(total_steps))),
        state_(classes) {
    state_->to(device_);
  }

  SamplerConfig UnlabeledSampler() const override {
    SamplerConfig s;
    *s.mutable_weak_strong() = options_.views();
    return s;
  }

  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}, {"tacl_state", state_.get()}};
  }

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override {
    ASSIGN_OR_RETURN(const ClipBatch* ub, Unlabeled(batches, "tacl"));
    const int64_t k = options_.views().strong_clips();
    ASSIGN_OR_RETURN(torch::Tensor xl, LabeledClips(*batches.labeled));
    ASSIGN_OR_RETURN(torch::Tensor weak, BatchView(*ub, "weak", 1));
    ASSIGN_OR_RETURN(torch::Tensor strong, BatchView(*ub, "strong", k));
    return CallTorch("tacl step", [&] {
      const int64_t nu = weak.size(0);
      const int64_t frames = strong.size(2);
      const double strength = TaclCurriculumStrength(batches.step, ramp_steps_);
      // Strong clips are clip-major: row j * nu + i is slot j of video i.
      std::vector<std::vector<int64_t>> indices(k * nu);
      int64_t fine = 0;
      for (int64_t j = 0; j < k; ++j) {
        for (int64_t i = 0; i < nu; ++i) {
          const int64_t video =
              static_cast<int64_t>(ub->videos.size()) == nu ? ub->videos[i] : i;
          TaclTemporalDraw d =
              TaclDrawTemporalAugmentation(options_, frames, strength, batches.step, video, j);
          fine += d.fine ? 1 : 0;
          indices[j * nu + i] = std::move(d.indices);
        }
      }
      const torch::Tensor augmented = TaclApplyTemporal(strong, indices);

      const torch::Tensor y = batches.labeled->labels.to(device_);
      const LabeledWeakStrongLogits z = ForwardLabeledWeakStrong(
          *model_, xl, weak, augmented, options_.shared_bn_forward(), device_);
      const torch::Tensor logits_l = z.labeled.to(torch::kFloat);
      const torch::Tensor& logits_w = z.weak;
      const torch::Tensor& logits_s = z.strong;
      const torch::Tensor ce = torch::nn::functional::cross_entropy(logits_l, y);
      const torch::Tensor p_w = torch::softmax(logits_w.detach().to(torch::kFloat), 1);
      const double tau = ThresholdOr(options_.pseudo_label(), kReferenceThreshold);
      const torch::Tensor thresholds =
          options_.flexible_threshold()
              ? TaclClassThresholds(state_->sigma, state_->unused, tau,
                                    options_.threshold_warmup(), options_.threshold_mapping())
              : torch::full({p_w.size(1)}, tau, torch::kDouble);
      const PseudoLabels pl = TaclPseudoLabels(p_w, thresholds);
      const torch::Tensor loss_u = PseudoLabelLoss(logits_s, RepeatPseudoLabels(pl, k),
                                                   options_.pseudo_label().normalization());
      const double w = UnlabeledWeight(options_.schedule(), kReferenceWeight, batches.step);
      StepResult result = PseudoLabelStep(ce, loss_u, w, logits_l, y, pl, ub->labels);
      // The learning effect counts this batch after its thresholds were used
      // (FlexMatch updates its per-sample record after the mask).
      if (options_.flexible_threshold()) {
        state_->Update(p_w, tau, options_.learning_effect_decay());
      }
      const torch::Tensor t = thresholds.to(torch::kCPU);
      result.metrics["curriculum_strength"] = strength;
      result.metrics["fine_share"] = static_cast<double>(fine) / static_cast<double>(k * nu);
      result.metrics["threshold_mean"] = t.mean().item<double>();
      result.metrics["threshold_min"] = t.min().item<double>();
      result.metrics["unconfident_share"] = state_->unused.item<double>();
      return result;
    });
  }

 private:
  TaclOptions options_;
  int64_t ramp_steps_;  // steps of the augmentation curriculum
  TaclState state_;
};

absl::Status ValidateTacl(const TaclOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Merge(ValidateSemiSupervised(o, scope));
  c.Require(o.curriculum_fraction() >= 0 && o.curriculum_fraction() <= 1, "curriculum_fraction",
            o.curriculum_fraction(), "must be in [0, 1]");
  c.Require(o.min_window_fraction() > 0 && o.min_window_fraction() <= 1, "min_window_fraction",
            o.min_window_fraction(), "must be in (0, 1]");
  c.Require(o.max_hold() >= 1, "max_hold", o.max_hold(), "must be >= 1 (1 = no COARSE change)");
  const int frames = scope.dataset.clip().num_frames();
  c.Require(o.max_hold() <= frames, "max_hold", o.max_hold(),
            absl::StrCat("must be <= dataset.clip.num_frames (", frames, ")"));
  c.Require(o.fine_probability() >= 0 && o.fine_probability() <= 1, "fine_probability",
            o.fine_probability(), "must be in [0, 1]");
  c.Require(o.learning_effect_decay() >= 0 && o.learning_effect_decay() < 1,
            "learning_effect_decay", o.learning_effect_decay(), "must be in [0, 1)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateTacl(const TaclOptions& o,
                                                    const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  const int64_t classes = context.backbone.num_classes();
  if (classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field ", context.path, ": tacl needs backbone.num_classes >= 1, got ",
                     classes));
  }
  return std::unique_ptr<Trainer>(
      new TaclTrainer(std::move(model), o, classes, context.total_steps, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), tacl, ValidateTacl, CreateTacl);

}  // namespace tb
