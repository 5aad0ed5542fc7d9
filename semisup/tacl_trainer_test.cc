// TACL (semisup/tacl_trainer.h, TaclOptions): the temporal augmentations'
// exact frame indices, the augmentation curriculum, the class-wise
// curriculum thresholds, the unlabeled loss (values and gradients) and the
// learning-effect update against semisup/testdata/tacl_reference.py, a
// trainer step against an independent computation, and the option checks.
#include "semisup/tacl_trainer.h"

#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/reference_tensors.h"
#include "google/protobuf/text_format.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

constexpr int kClasses = 4;
using Indices = std::vector<int64_t>;

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tolerance = 1e-9) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LT((actual.to(torch::kDouble) - expected).abs().max().item<double>(), tolerance) << what;
}

TEST(TaclTemporal, FineIndicesStretchOneWindowOverTheClip) {
  EXPECT_EQ(TaclFineIndices(8, 8, 0), (Indices{0, 1, 2, 3, 4, 5, 6, 7}));  // identity
  EXPECT_EQ(TaclFineIndices(8, 4, 2), (Indices{2, 2, 3, 3, 4, 4, 5, 5}));  // half, 2x slower
  EXPECT_EQ(TaclFineIndices(8, 3, 5), (Indices{5, 5, 5, 6, 6, 6, 7, 7}));  // 5 + floor(3i/8)
  EXPECT_EQ(TaclFineIndices(8, 1, 7), (Indices(8, 7)));                    // one frame
  EXPECT_EQ(TaclFineIndices(4, 2, 1), (Indices{1, 1, 2, 2}));
}

TEST(TaclTemporal, CoarseIndicesHoldEveryKthFrame) {
  EXPECT_EQ(TaclCoarseIndices(8, 1, 0), (Indices{0, 1, 2, 3, 4, 5, 6, 7}));  // identity
  EXPECT_EQ(TaclCoarseIndices(8, 2, 0), (Indices{0, 0, 2, 2, 4, 4, 6, 6}));
  EXPECT_EQ(TaclCoarseIndices(8, 2, 1), (Indices{1, 1, 3, 3, 5, 5, 7, 7}));
  // Phase 2, hold 3: 2, 5, and 8 clamped to the last frame.
  EXPECT_EQ(TaclCoarseIndices(8, 3, 2), (Indices{2, 2, 2, 5, 5, 5, 7, 7}));
  EXPECT_EQ(TaclCoarseIndices(4, 4, 3), (Indices{3, 3, 3, 3}));
}

TEST(TaclTemporal, ApplyReindexesEachRowInTime) {
  // Frame t of row n holds the value 10 n + t everywhere.
  const torch::Tensor frames = torch::arange(4, torch::kFloat).view({1, 1, 4, 1, 1});
  const torch::Tensor rows = torch::arange(2, torch::kFloat).view({2, 1, 1, 1, 1});
  const torch::Tensor clips = (10 * rows + frames).expand({2, 3, 4, 2, 2}).contiguous();
  const torch::Tensor out = TaclApplyTemporal(clips, {{1, 1, 2, 2}, {3, 0, 3, 0}});
  ASSERT_EQ(out.sizes(), clips.sizes());
  const torch::Tensor expected =
      torch::tensor({{1.0f, 1.0f, 2.0f, 2.0f}, {13.0f, 10.0f, 13.0f, 10.0f}}).view({2, 1, 4, 1, 1});
  EXPECT_TRUE(torch::equal(out, expected.expand({2, 3, 4, 2, 2})));
}

TEST(TaclTemporal, DrawsArePureFunctionsOfSeedStepVideoAndSlot) {
  TaclOptions o;
  const TaclTemporalDraw a = TaclDrawTemporalAugmentation(o, 8, 1.0, 17, 3, 0);
  const TaclTemporalDraw b = TaclDrawTemporalAugmentation(o, 8, 1.0, 17, 3, 0);
  EXPECT_EQ(a.fine, b.fine);
  EXPECT_EQ(a.indices, b.indices);
  // Strength 0 is the identity whatever is drawn.
  for (int64_t video = 0; video < 20; ++video) {
    EXPECT_EQ(TaclDrawTemporalAugmentation(o, 8, 0.0, 5, video, 0).indices,
              (Indices{0, 1, 2, 3, 4, 5, 6, 7}));
  }
  // At full strength (window 4, hold 2) every draw is one of the 5 FINE
  // windows or the 2 COARSE phases, and over many videos all of them occur.
  std::set<Indices> seen;
  int fine = 0;
  for (int64_t video = 0; video < 400; ++video) {
    const TaclTemporalDraw d = TaclDrawTemporalAugmentation(o, 8, 1.0, 9, video, 1);
    if (d.fine) {
      ++fine;
      EXPECT_EQ(d.indices, TaclFineIndices(8, 4, d.indices[0])) << video;
    } else {
      EXPECT_EQ(d.indices, TaclCoarseIndices(8, 2, d.indices[0])) << video;
    }
    seen.insert(d.indices);
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_GT(fine, 150);
  EXPECT_LT(fine, 250);
  // The seed changes the draws; fine_probability 0 / 1 fixes the kind.
  TaclOptions other;
  other.set_seed(1);
  int differ = 0;
  for (int64_t video = 0; video < 50; ++video) {
    differ += TaclDrawTemporalAugmentation(o, 8, 1.0, 9, video, 0).indices !=
              TaclDrawTemporalAugmentation(other, 8, 1.0, 9, video, 0).indices;
  }
  EXPECT_GT(differ, 10);
  TaclOptions coarse_only;
  coarse_only.set_fine_probability(0);
  TaclOptions fine_only;
  fine_only.set_fine_probability(1);
  for (int64_t video = 0; video < 30; ++video) {
    EXPECT_FALSE(TaclDrawTemporalAugmentation(coarse_only, 8, 1.0, 2, video, 0).fine);
    EXPECT_TRUE(TaclDrawTemporalAugmentation(fine_only, 8, 1.0, 2, video, 0).fine);
  }
}

class TaclReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto refs = ::tb::testing::RunReferenceTensors("semisup/testdata/tacl_reference.py",
                                                   "tacl_reference.txt");
    ASSERT_TRUE(refs.ok()) << refs.status();
    refs_ = new std::map<std::string, torch::Tensor>(std::move(*refs));
  }
  static torch::Tensor Ref(const std::string& name) {
    EXPECT_TRUE(refs_ != nullptr && refs_->count(name)) << name;
    return refs_->at(name);
  }
  static std::map<std::string, torch::Tensor>* refs_;
};
std::map<std::string, torch::Tensor>* TaclReference::refs_ = nullptr;

TEST_F(TaclReference, CurriculumMatches) {
  const torch::Tensor strength = Ref("strength"), window = Ref("window"), hold = Ref("hold");
  for (int64_t step = 0; step < strength.size(0); ++step) {
    const double s = TaclCurriculumStrength(step, 10);
    EXPECT_NEAR(s, strength[step].item<double>(), 1e-12) << step;
    EXPECT_EQ(TaclFineWindow(8, 0.5, s), window[step].item<int64_t>()) << step;
    EXPECT_EQ(TaclCoarseHold(4, s), hold[step].item<int64_t>()) << step;
  }
  EXPECT_EQ(TaclCurriculumStrength(0, 0), 1.0);  // no curriculum: full strength at once
}

TEST_F(TaclReference, ClassThresholdsMatch) {
  const torch::Tensor sigma = Ref("sigma"), unused = Ref("unused");
  const double tau = 0.9;
  ExpectClose(TaclClassThresholds(sigma, unused, tau, true, TaclOptions::CONVEX),
              Ref("thresholds_warm_convex"), "warm-up, convex");
  ExpectClose(TaclClassThresholds(sigma, unused, tau, true, TaclOptions::LINEAR),
              Ref("thresholds_warm_linear"), "warm-up, linear");
  ExpectClose(TaclClassThresholds(sigma, unused, tau, false, TaclOptions::CONVEX),
              Ref("thresholds_cold_convex"), "no warm-up, convex");
  const torch::Tensor early = torch::tensor({0.8}, torch::kDouble);
  ExpectClose(TaclClassThresholds(sigma, early, tau, true, TaclOptions::CONVEX),
              Ref("thresholds_early"), "warm-up with many unconfident clips");
  ExpectClose(TaclClassThresholds(sigma, early, tau, false, TaclOptions::CONVEX),
              Ref("thresholds_early_cold"), "no warm-up with many unconfident clips");
  ExpectClose(TaclClassThresholds(torch::zeros({kClasses}, torch::kDouble),
                                  torch::ones({1}, torch::kDouble), tau, true,
                                  TaclOptions::CONVEX),
              Ref("thresholds_initial"), "initial state");
  // No warm-up and nothing confident yet: beta = 0, not 0 / 0.
  const torch::Tensor none = TaclClassThresholds(torch::zeros({kClasses}, torch::kDouble),
                                                 torch::ones({1}, torch::kDouble), tau, false,
                                                 TaclOptions::CONVEX);
  EXPECT_TRUE(torch::equal(none, torch::zeros({kClasses}, torch::kDouble)));
}

TEST_F(TaclReference, UnlabeledLossAndGradientMatch) {
  const torch::Tensor p_weak = torch::softmax(Ref("logits_weak"), 1);
  const torch::Tensor thresholds =
      TaclClassThresholds(Ref("sigma"), Ref("unused"), 0.9, true, TaclOptions::CONVEX);
  const PseudoLabels pl = TaclPseudoLabels(p_weak, thresholds);
  ExpectClose(pl.mask, Ref("mask_all"), "mask");
  // The fixture selects some clips and rejects others.
  EXPECT_GT(pl.mask.sum().item<double>(), 0);
  EXPECT_LT(pl.mask.sum().item<double>(), pl.mask.size(0));
  for (const auto& [name, normalization] :
       {std::pair<std::string, PseudoLabelOptions::Normalization>{"all", PseudoLabelOptions::ALL},
        {"selected", PseudoLabelOptions::SELECTED}}) {
    const torch::Tensor z = Ref("logits_strong").clone().requires_grad_(true);
    const torch::Tensor loss = PseudoLabelLoss(z, pl, normalization);
    ExpectClose(loss, Ref("loss_" + name), "loss " + name, 1e-12);
    loss.backward();
    ExpectClose(z.grad(), Ref("grad_" + name), "gradient " + name, 1e-12);
  }
}

TEST_F(TaclReference, LearningEffectUpdateMatches) {
  const torch::Tensor p_weak = torch::softmax(Ref("logits_weak"), 1);
  const torch::Tensor counts = TaclBatchCounts(p_weak, 0.9);
  ExpectClose(counts, Ref("counts"), "counts");
  torch::Tensor sigma = Ref("sigma").clone(), unused = Ref("unused").clone();
  TaclUpdateLearningEffect(counts, 0.95, sigma, unused);
  ExpectClose(sigma, Ref("sigma_next"), "sigma");
  ExpectClose(unused, Ref("unused_next"), "u");
}

TrainerContext Context(int64_t total_steps) {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.dataset.set_labeled_fraction(0.5f);
  context.dataset.mutable_clip()->set_num_frames(4);
  context.total_steps = total_steps;
  return context;
}

absl::Status Validate(const std::string& text, const TrainerContext& context) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  return ValidateTrainer(config, {"trainer", context.backbone, context.dataset});
}

std::unique_ptr<Trainer> Make(const std::string& text, int64_t total_steps) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  EXPECT_TRUE(Validate(text, Context(total_steps)).ok());
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config, Context(total_steps));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(*trainer) : nullptr;
}

// 2 labeled clips and `n` unlabeled videos (weak and strong views), T = 4.
std::pair<ClipBatch, ClipBatch> Batches(int seed, int n) {
  torch::manual_seed(seed);
  ClipBatch lb;
  lb.clips = torch::randn({2, 3, 4, 16, 16});
  lb.labels = torch::randint(0, kClasses, {2}, torch::kInt64);
  ClipBatch ub;
  ub.views["weak"] = torch::randn({n, 1, 3, 4, 16, 16});
  ub.views["strong"] = torch::randn({n, 1, 3, 4, 16, 16});
  ub.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return {std::move(lb), std::move(ub)};
}

// The trainer's state buffers ("tacl_state"): sigma [C] and u [1].
std::pair<torch::Tensor, torch::Tensor> State(Trainer& t) {
  for (const auto& [name, module] : t.CheckpointModules()) {
    if (name != "tacl_state") continue;
    const auto buffers = module->named_buffers();
    return {buffers["sigma"].clone(), buffers["unused"].clone()};
  }
  ADD_FAILURE() << "no checkpoint module tacl_state";
  return {};
}

// Two steps of 8 (curriculum over the first half, so strengths 0.25 and
// 0.5 at steps 1 and 2) against an independent computation: the strong clips
// re-indexed by the draws, the first step's thresholds from the initial
// state (all 0: every clip selected), the second's from the state after one
// update, the state checkpointed.
TEST(TaclTrainer, StepsMatchAnIndependentComputation) {
  auto t = Make("tacl { pseudo_label { threshold: 0.5 } learning_effect_decay: 0.5 }", 8);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->UnlabeledSampler().kind_case(), SamplerConfig::kWeakStrong);
  t->SetTraining(false);  // BatchNorm in eval mode: one pass or three is the same
  auto [lb, ub] = Batches(2, 5);
  ub.videos = {11, 4, 7, 30, 2};
  const TaclOptions o;  // the draws' options: defaults (seed 0, p 0.5)
  auto [sigma, unused] = State(*t);
  EXPECT_TRUE(torch::equal(sigma, torch::zeros({kClasses}, torch::kDouble)));
  EXPECT_EQ(unused.item<double>(), 1.0);
  for (int64_t step : {1, 2}) {
    const double strength = step / 4.0;
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < 5; ++i) {
      const Indices idx =
          TaclDrawTemporalAugmentation(o, 4, strength, step, ub.videos[i], 0).indices;
      rows.push_back(ub.views.at("strong")[i][0].index_select(1, torch::tensor(idx)));
    }
    torch::Tensor ce, p_weak, logits_strong;
    {
      torch::NoGradGuard no_grad;
      VideoBackbone& m = t->EvaluationModel();
      ce = torch::nn::functional::cross_entropy(m.forward(lb.clips), lb.labels);
      p_weak = torch::softmax(m.forward(ub.views.at("weak").squeeze(1)), 1);
      logits_strong = m.forward(torch::stack(rows));
    }
    // Thresholds by hand: 0.5 * M(sigma_c / max(max sigma, u)).
    const torch::Tensor beta = sigma / torch::maximum(sigma.max(), unused[0]);
    const torch::Tensor thresholds = 0.5 * beta / (2 - beta);
    const auto [confidence, labels] = p_weak.max(1);
    const torch::Tensor mask =
        (confidence.to(torch::kDouble) >= thresholds.index_select(0, labels)).to(torch::kFloat);
    if (step == 1) {
      EXPECT_EQ(mask.sum().item<double>(), 5.0);
    }
    const torch::Tensor per_clip = torch::nn::functional::cross_entropy(
        logits_strong, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(
                                   torch::kNone));
    const double loss_u = (per_clip * mask).sum().item<double>() / 5;
    auto r = t->Step({&lb, &ub, step});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NEAR(r->metrics.at("curriculum_strength"), strength, 1e-12);
    EXPECT_NEAR(r->metrics.at("loss_u"), loss_u, 1e-5) << step;
    EXPECT_NEAR(r->loss.item<double>(), ce.item<double>() + loss_u, 1e-4) << step;
    EXPECT_NEAR(r->metrics.at("threshold_mean"), thresholds.mean().item<double>(), 1e-12);
    EXPECT_NEAR(r->metrics.at("mask_rate"), mask.mean().item<double>(), 1e-12);
    // The state after the step: one moving-average update with this batch.
    const torch::Tensor confident = (confidence.to(torch::kDouble) >= 0.5).to(torch::kDouble);
    const torch::Tensor n_c =
        (torch::one_hot(labels, kClasses).to(torch::kDouble) * confident.unsqueeze(1)).sum(0);
    sigma = 0.5 * sigma + 0.5 * n_c / 5;
    unused = 0.5 * unused + 0.5 * (5 - confident.sum()) / 5;
    const auto [s, u] = State(*t);
    ExpectClose(s, sigma, "sigma after step " + std::to_string(step), 1e-12);
    ExpectClose(u, unused, "u after step " + std::to_string(step), 1e-12);
  }
}

TEST(TaclTrainer, ConstantThresholdWithoutCurriculum) {
  auto t = Make("tacl { flexible_threshold: false pseudo_label { threshold: 0.3 } }", 4);
  ASSERT_NE(t, nullptr);
  t->SetTraining(false);
  auto [lb, ub] = Batches(3, 3);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->metrics.at("threshold_mean"), 0.3, 1e-6);
  EXPECT_NEAR(r->metrics.at("threshold_min"), 0.3, 1e-6);
  const auto [s, u] = State(*t);  // not updated
  EXPECT_TRUE(torch::equal(s, torch::zeros({kClasses}, torch::kDouble)));
}

TEST(TaclTrainer, BadOptionsNameTheField) {
  const TrainerContext context = Context(10);
  const auto expect_error = [&](const std::string& text, const std::string& message) {
    const absl::Status s = Validate(text, context);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(message), std::string::npos) << s;
  };
  expect_error("tacl { curriculum_fraction: 1.5 }",
               "config field trainer.tacl.curriculum_fraction = 1.5: must be in [0, 1]");
  expect_error("tacl { min_window_fraction: 0 }",
               "config field trainer.tacl.min_window_fraction = 0: must be in (0, 1]");
  expect_error("tacl { max_hold: 0 }", "config field trainer.tacl.max_hold = 0: must be >= 1");
  expect_error("tacl { max_hold: 5 }",
               "config field trainer.tacl.max_hold = 5: must be <= dataset.clip.num_frames (4)");
  expect_error("tacl { fine_probability: -0.5 }",
               "config field trainer.tacl.fine_probability = -0.5: must be in [0, 1]");
  expect_error("tacl { learning_effect_decay: 1 }",
               "config field trainer.tacl.learning_effect_decay = 1: must be in [0, 1)");
  expect_error("tacl { pseudo_label { threshold: 2 } }",
               "config field trainer.tacl.pseudo_label.threshold = 2");
  expect_error("tacl { views { strong_clips: 0 } }", "config field trainer.tacl.views.");
  TrainerContext all_labeled = context;
  all_labeled.dataset.set_labeled_fraction(1.0f);
  TrainerConfig config;
  config.mutable_tacl();
  const absl::Status s =
      ValidateTrainer(config, {"trainer", all_labeled.backbone, all_labeled.dataset});
  EXPECT_NE(s.message().find("config field trainer.tacl: this method trains on unlabeled videos"),
            std::string::npos)
      << s;
  EXPECT_TRUE(Validate("tacl {}", context).ok());
}

}  // namespace
}  // namespace tb
