// MotionFit: the multi-clip and self-training losses against
// semisup/testdata/motion_fit_reference.py (values and gradients, float64),
// the three phases of the trainer against an independent computation with
// its own networks, the motion model frozen after its phase, and the
// options' validation.
#include "semisup/motion_fit_trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/reference_tensors.h"
#include "google/protobuf/text_format.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

namespace F = torch::nn::functional;
constexpr int kClasses = 4;

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tolerance = 1e-9) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LT((actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>(),
            tolerance)
      << what;
}

TEST(MotionFitLosses, MatchTheReference) {
  const auto refs = ::tb::testing::RunReferenceTensors("semisup/testdata/motion_fit_reference.py",
                                                       "motion_fit_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) { return refs->at(name); };
  const int64_t k = 2;
  const torch::Tensor labels = ref("labels").to(torch::kLong);

  const torch::Tensor motion = ref("motion_logits").clone().requires_grad_(true);
  ExpectClose(MultiClipMean(motion, k), ref("multi_clip_mean"), "multi-clip mean");
  const torch::Tensor multi = MultiClipCrossEntropy(motion, labels, k);
  ExpectClose(multi, ref("multi_clip_ce"), "multi-clip CE");
  multi.backward();
  ExpectClose(motion.grad(), ref("multi_clip_grad"), "multi-clip CE gradient");

  for (const std::string kind : {"hard", "soft"}) {
    SCOPED_TRACE(kind);
    MotionFitOptions o;
    o.mutable_pseudo_label()->set_threshold(0.45f);
    o.set_soft_targets(kind == "soft");
    o.set_temperature(kind == "soft" ? 2.0f : 1.0f);
    const torch::Tensor rgb = ref("rgb_logits").clone().requires_grad_(true);
    const torch::Tensor motion_leaf = ref("motion_logits").clone().requires_grad_(true);
    PseudoLabels pl;
    const torch::Tensor loss = MotionFitSelfTrainingLoss(rgb, motion_leaf, k, o, &pl);
    ExpectClose(loss, ref(kind + "_loss"), "loss");
    ExpectClose(pl.labels, ref(kind + "_labels"), "pseudo-labels");
    ExpectClose(pl.mask, ref(kind + "_mask"), "mask");
    loss.backward();
    ExpectClose(rgb.grad(), ref(kind + "_grad"), "gradient");
    EXPECT_FALSE(motion_leaf.grad().defined()) << "no gradient into the motion model";
  }
}

TrainerContext Context(int64_t total_steps) {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.dataset.set_labeled_fraction(0.5f);
  context.dataset.mutable_clip()->set_num_frames(4);
  context.dataset.mutable_augmentation()->set_flip_probability(0.25f);
  context.total_steps = total_steps;
  return context;
}

absl::Status Validate(const std::string& text) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  const TrainerContext context = Context(10);
  return ValidateTrainer(config, {"trainer", context.backbone, context.dataset});
}

std::unique_ptr<Trainer> Make(const std::string& text, int64_t total_steps) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  EXPECT_TRUE(Validate(text).ok()) << Validate(text);
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config, Context(total_steps));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(*trainer) : nullptr;
}

// A batch of n videos with 2 RGB clips and their 2 flow clips each.
ClipBatch Batch(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.views["clips"] = torch::randn({n, 2, 3, 4, 16, 16});
  b.views["clips_flow"] = torch::rand({n, 2, 2, 4, 16, 16}) * 2 - 1;
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return b;
}

VideoBackbone& Module(Trainer& t, const std::string& name) {
  for (auto& [n, m] : t.CheckpointModules()) {
    if (n == name) return *dynamic_cast<VideoBackbone*>(m);
  }
  ADD_FAILURE() << "no checkpoint module " << name;
  return t.EvaluationModel();
}

torch::Tensor ClipMajorOf(const torch::Tensor& view) {
  return view.transpose(0, 1).flatten(0, 1);  // [B, K, ...] -> [K * B, ...]
}

// 9 steps: motion [0, 3), self-training [3, 6), fine-tuning [6, 9).
TEST(MotionFitTrainer, ThreePhasesMatchAnIndependentComputation) {
  auto t = Make("motion_fit { motion_fraction: 0.34 finetune_fraction: 0.34 }", 9);
  ASSERT_NE(t, nullptr);
  for (const SamplerConfig& s : {t->LabeledSampler(), t->UnlabeledSampler()}) {
    EXPECT_EQ(s.kind_case(), SamplerConfig::kRho);
    EXPECT_EQ(s.rho().rho(), 2);
    EXPECT_EQ(s.rho().augmentation().flip_probability(), 0.25f);  // dataset.augmentation
    EXPECT_TRUE(s.has_flow());
    EXPECT_TRUE(s.flow().normalize());
  }
  ASSERT_EQ(t->CheckpointModules().size(), 2u);
  VideoBackbone& rgb = t->EvaluationModel();
  VideoBackbone& motion = Module(*t, "motion_model");
  EXPECT_EQ(&rgb, &Module(*t, "model"));
  t->SetTraining(false);  // BatchNorm in eval mode: independent passes agree
  const ClipBatch lb = Batch(2, 2), ub = Batch(3, 3);
  const torch::Tensor y = lb.labels;
  const torch::Tensor xl = ClipMajorOf(lb.views.at("clips"));
  const torch::Tensor fl = ClipMajorOf(lb.views.at("clips_flow"));
  const torch::Tensor xu = ClipMajorOf(ub.views.at("clips"));
  const torch::Tensor fu = ClipMajorOf(ub.views.at("clips_flow"));

  // Motion phase: the multi-clip CE of the motion model on the flow.
  auto m = t->Step({&lb, &ub, 2});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->metrics.at("phase"), 0.0);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor logits = motion.forward(fl);
    const torch::Tensor video = (logits.slice(0, 0, 2) + logits.slice(0, 2, 4)) / 2;
    EXPECT_NEAR(m->loss.item<double>(), F::cross_entropy(video, y).item<double>(), 1e-5);
  }
  m->loss.backward();
  for (const torch::Tensor& p : rgb.parameters()) EXPECT_FALSE(p.grad().defined());
  bool motion_has_gradient = false;
  for (const torch::Tensor& p : motion.parameters()) motion_has_gradient |= p.grad().defined();
  EXPECT_TRUE(motion_has_gradient);

  // Self-training: every RGB clip of an unlabeled video against the motion
  // model's argmax of the video's mean logits (threshold 0: all selected).
  auto s = t->Step({&lb, &ub, 3});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->metrics.at("phase"), 1.0);
  for (const torch::Tensor& p : motion.parameters()) {
    EXPECT_FALSE(p.grad().defined()) << "the motion model's gradients are cleared";
  }
  EXPECT_FALSE(motion.is_training());
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor ml = motion.forward(fu);
    const torch::Tensor pl = ((ml.slice(0, 0, 3) + ml.slice(0, 3, 6)) / 2).argmax(1);
    const double expected = F::cross_entropy(rgb.forward(xu), pl.repeat({2})).item<double>();
    EXPECT_NEAR(s->loss.item<double>(), expected, 1e-5);
    EXPECT_NEAR(s->metrics.at("loss_pl"), expected, 1e-5);
    EXPECT_EQ(s->metrics.at("mask_rate"), 1.0);
    EXPECT_EQ(s->metrics.count("loss_ce"), 0u);  // labeled_weight 0
  }

  // Fine-tuning: the RGB model's CE on every labeled clip.
  auto f = t->Step({&lb, &ub, 8});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metrics.at("phase"), 2.0);
  {
    torch::NoGradGuard no_grad;
    const double expected = F::cross_entropy(rgb.forward(xl), y.repeat({2})).item<double>();
    EXPECT_NEAR(f->loss.item<double>(), expected, 1e-5);
  }
  // Fine-tuning reads no unlabeled batch; self-training needs one.
  EXPECT_TRUE(t->Step({&lb, nullptr, 8}).ok());
  EXPECT_FALSE(t->Step({&lb, nullptr, 3}).ok());
}

TEST(MotionFitTrainer, LabeledWeightAddsTheRgbCrossEntropyToSelfTraining) {
  auto t = Make("motion_fit { labeled_weight: 0.5 soft_targets: true }", 9);
  ASSERT_NE(t, nullptr);
  t->SetTraining(false);
  const ClipBatch lb = Batch(2, 4), ub = Batch(3, 5);
  auto s = t->Step({&lb, &ub, 4});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->loss.item<double>(),
              s->metrics.at("loss_pl") + 0.5 * s->metrics.at("loss_ce"), 1e-5);
}

TEST(MotionFitTrainer, MissingFlowIsAnErrorNamingTheView) {
  auto t = Make("motion_fit {}", 9);
  ASSERT_NE(t, nullptr);
  ClipBatch lb = Batch(2, 4);
  lb.views.erase("clips_flow");
  const ClipBatch ub = Batch(3, 5);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("clips_flow"), std::string::npos)
      << r.status();
}

TEST(MotionFitTrainer, ValidationNamesTheField) {
  EXPECT_TRUE(Validate("motion_fit {}").ok());
  const auto message = [](const std::string& text) {
    return std::string(Validate(text).message());
  };
  EXPECT_NE(message("motion_fit { motion_fraction: 0 }").find("motion_fit.motion_fraction"),
            std::string::npos);
  EXPECT_NE(message("motion_fit { motion_fraction: 0.7 finetune_fraction: 0.5 }")
                .find("motion_fit.finetune_fraction"),
            std::string::npos);
  EXPECT_NE(message("motion_fit { clips: 0 }").find("motion_fit.clips"), std::string::npos);
  EXPECT_NE(message("motion_fit { temperature: 0 }").find("motion_fit.temperature"),
            std::string::npos);
}

}  // namespace
}  // namespace tb
