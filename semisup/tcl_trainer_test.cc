// TCL (semisup/tcl_trainer.h, TclOptions): the group contrastive loss by
// hand, both contrastive terms and the fine-tuning term against the official
// reductions (values and gradients, semisup/testdata/tcl_reference.py), the
// trainer's three phases against an independent computation, and the
// option checks.
#include "semisup/tcl_trainer.h"

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/reference_tensors.h"
#include "google/protobuf/text_format.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"
#include "ssl/losses.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

constexpr int kClasses = 4;

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tolerance = 1e-9) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LT((actual - expected).abs().max().item<double>(), tolerance) << what;
}

TEST(TclGroupContrastiveLoss, TwoSeparatedGroupsByHand) {
  // Two videos, each its own class in both speeds: the group means are the
  // rows themselves, orthogonal one-hot vectors. Every one of the 4 anchors
  // has its positive at cosine 1 and two negatives at cosine 0, so with
  // tau = 0.5 each term is -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2).
  const torch::Tensor p = torch::tensor({{1.0, 0.0}, {0.0, 1.0}}, torch::kDouble);
  int64_t groups = 0;
  const torch::Tensor loss = GroupContrastiveLoss(p, p.clone(), 0.5, true, &groups);
  EXPECT_EQ(groups, 2);
  EXPECT_NEAR(loss.item<double>(), std::log(1 + 2 * std::exp(-2.0)), 1e-12);
}

TEST(TclGroupContrastiveLoss, GroupsAreMeansOverEachSpeedsOwnArgmax) {
  // Base argmax: 0, 1, 2; slow argmax: 0, 1, 1. Classes 0 and 1 are shared;
  // class 1's slow group is the mean of rows 1 and 2, class 2 has no slow
  // group and drops out.
  const torch::Tensor base =
      torch::tensor({{0.7, 0.2, 0.1}, {0.1, 0.8, 0.1}, {0.2, 0.2, 0.6}}, torch::kDouble);
  const torch::Tensor slow = torch::tensor({{0.6, 0.3, 0.1}, {0.2, 0.5, 0.3}, {0.1, 0.5, 0.4}},
                                           torch::kDouble)
                                 .requires_grad_(true);
  int64_t groups = 0;
  const torch::Tensor loss = GroupContrastiveLoss(base, slow, 0.5, true, &groups);
  EXPECT_EQ(groups, 2);
  const torch::Tensor g_base = base.slice(0, 0, 2);
  const torch::Tensor g_slow = torch::stack({slow[0], (slow[1] + slow[2]) / 2});
  EXPECT_NEAR(loss.item<double>(), ssl::NtXent(g_base, g_slow, 0.5).item<double>(), 1e-12);
  // One shared group has no negative (0); none at all is 0 as well.
  const torch::Tensor one = torch::tensor({{0.9, 0.1}, {0.8, 0.2}}, torch::kDouble);
  EXPECT_EQ(GroupContrastiveLoss(one, one, 0.5, true, &groups).item<double>(), 0.0);
  EXPECT_EQ(groups, 1);
  const torch::Tensor other = torch::tensor({{0.1, 0.9}, {0.2, 0.8}}, torch::kDouble);
  EXPECT_EQ(GroupContrastiveLoss(one, other, 0.5, true, &groups).item<double>(), 0.0);
  EXPECT_EQ(groups, 0);
}

// Values and gradients (with respect to both speeds' logits) of the
// instance and group contrastive terms, their weighted sum (gamma 9), and
// the fine-tuning pseudo-label term (threshold 0.8, mean over all videos),
// against semisup/testdata/tcl_reference.py's re-implementation of the
// official main.py.
TEST(TclLosses, MatchOfficialReductionsAndGradients) {
  const auto refs = ::tb::testing::RunReferenceTensors("semisup/testdata/tcl_reference.py",
                                                       "tcl_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) { return refs->at(name); };
  const auto leaf = [&](const std::string& name) { return ref(name).clone().requires_grad_(true); };
  using Loss = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>;
  const Loss instance = [](const torch::Tensor& zb, const torch::Tensor& zs) {
    return ssl::NtXent(torch::softmax(zb, 1).detach(), torch::softmax(zs, 1), 0.5);
  };
  const Loss group = [](const torch::Tensor& zb, const torch::Tensor& zs) {
    return GroupContrastiveLoss(torch::softmax(zb, 1), torch::softmax(zs, 1), 0.5);
  };
  const Loss contrastive = [&](const torch::Tensor& zb, const torch::Tensor& zs) {
    return 9 * instance(zb, zs) + group(zb, zs);
  };
  for (const auto& [name, loss_fn] : std::vector<std::pair<std::string, Loss>>{
           {"instance", instance}, {"group", group}, {"contrastive", contrastive}}) {
    const torch::Tensor zb = leaf("logits_base"), zs = leaf("logits_slow");
    const torch::Tensor loss = loss_fn(zb, zs);
    if (name != "contrastive") ExpectClose(loss, ref(name), name);
    loss.backward();
    const torch::Tensor grad_base = zb.grad().defined() ? zb.grad() : torch::zeros_like(zb);
    ExpectClose(grad_base, ref(name + "_grad_base"), name + " gradient (base)");
    ExpectClose(zs.grad(), ref(name + "_grad_slow"), name + " gradient (slow)");
  }
  int64_t groups = 0;
  GroupContrastiveLoss(torch::softmax(ref("logits_base"), 1),
                       torch::softmax(ref("logits_slow"), 1), 0.5, true, &groups);
  EXPECT_EQ(groups, ref("groups").item<int64_t>());

  const torch::Tensor zb = leaf("logits_base");
  const PseudoLabels pl = MakePseudoLabels(torch::softmax(zb, 1), 0.8f);
  ExpectClose(pl.mask.to(torch::kDouble), ref("pl_mask"), "pseudo-label mask");
  const torch::Tensor loss = PseudoLabelLoss(zb, pl, PseudoLabelOptions::ALL);
  ExpectClose(loss, ref("pl"), "pseudo-label loss");
  loss.backward();
  ExpectClose(zb.grad(), ref("pl_grad_base"), "pseudo-label gradient");
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

ClipBatch Labeled(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.clips = torch::randn({n, 3, 4, 16, 16});
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return b;
}

ClipBatch Unlabeled(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.views["base"] = torch::randn({n, 1, 3, 4, 16, 16});
  b.views["slow"] = torch::randn({n, 1, 3, 2, 16, 16});
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return b;
}

// Warm-up 2 steps, fine-tuning over the last quarter of 8 steps (steps 6
// and 7): CE alone, then CE + 9 L_ic + 2 L_gc, then CE + PL at threshold 0.
TEST(TclTrainer, ThreePhasesMatchAnIndependentComputation) {
  auto t = Make(
      "tcl { schedule { warmup_steps: 2 } group_weight: 2 finetune_fraction: 0.25 "
      "pseudo_label { threshold: 0 } }",
      8);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->UnlabeledSampler().kind_case(), SamplerConfig::kTwoSpeed);
  EXPECT_EQ(t->UnlabeledSampler().two_speed().speed_ratio(), 2);
  t->SetTraining(false);  // BatchNorm in eval mode: the split into passes does not matter
  const ClipBatch lb = Labeled(2, 2), ub = Unlabeled(5, 3);
  torch::Tensor ce, p_base, p_slow, logits_base;
  {
    torch::NoGradGuard no_grad;
    VideoBackbone& m = t->EvaluationModel();
    ce = torch::nn::functional::cross_entropy(m.forward(lb.clips), lb.labels);
    logits_base = m.forward(ub.views.at("base").squeeze(1));
    p_base = torch::softmax(logits_base, 1);
    p_slow = torch::softmax(m.forward(ub.views.at("slow").squeeze(1)), 1);
  }
  auto warm = t->Step({&lb, &ub, 1});
  ASSERT_TRUE(warm.ok()) << warm.status();
  EXPECT_NEAR(warm->loss.item<double>(), ce.item<double>(), 1e-5);
  EXPECT_EQ(warm->metrics.count("loss_instance"), 0u);

  auto contrast = t->Step({&lb, &ub, 2});
  ASSERT_TRUE(contrast.ok()) << contrast.status();
  const double instance = ssl::NtXent(p_base, p_slow, 0.5).item<double>();
  const double group = GroupContrastiveLoss(p_base, p_slow, 0.5).item<double>();
  EXPECT_NEAR(contrast->metrics.at("loss_instance"), instance, 1e-5);
  EXPECT_NEAR(contrast->metrics.at("loss_group"), group, 1e-5);
  EXPECT_EQ(contrast->metrics.at("weight_instance"), 9.0);
  EXPECT_NEAR(contrast->loss.item<double>(), ce.item<double>() + 9 * instance + 2 * group, 1e-4);
  EXPECT_EQ(contrast->metrics.at("finetune_phase"), 0.0);

  auto finetune = t->Step({&lb, &ub, 6});
  ASSERT_TRUE(finetune.ok()) << finetune.status();
  EXPECT_EQ(finetune->metrics.at("finetune_phase"), 1.0);
  EXPECT_EQ(finetune->metrics.count("loss_instance"), 0u);
  const double pl = torch::nn::functional::cross_entropy(logits_base, p_base.argmax(1))
                        .item<double>();  // threshold 0: every video selected
  EXPECT_NEAR(finetune->metrics.at("loss_pl"), pl, 1e-5);
  EXPECT_NEAR(finetune->loss.item<double>(), ce.item<double>() + pl, 1e-5);
  EXPECT_EQ(finetune->metrics.at("mask_rate"), 1.0);
}

TEST(TclTrainer, CrossSpeedPseudoLabelsTrainTheSlowClip) {
  auto t = Make(
      "tcl { finetune_fraction: 1 pseudo_label_target: SLOW_CLIP pseudo_label { threshold: 0 } }",
      4);
  ASSERT_NE(t, nullptr);
  t->SetTraining(false);
  const ClipBatch lb = Labeled(2, 4), ub = Unlabeled(3, 5);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    VideoBackbone& m = t->EvaluationModel();
    const torch::Tensor labels = m.forward(ub.views.at("base").squeeze(1)).argmax(1);
    expected = torch::nn::functional::cross_entropy(m.forward(ub.views.at("slow").squeeze(1)),
                                                    labels);
  }
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->metrics.at("loss_pl"), expected.item<double>(), 1e-5);
}

TEST(TclTrainer, BadOptionsNameTheField) {
  const TrainerContext context = Context(10);
  const auto expect_error = [&](const std::string& text, const std::string& message) {
    const absl::Status s = Validate(text, context);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.message().find(message), std::string::npos) << s;
  };
  expect_error("tcl { temperature: 0 }", "config field trainer.tcl.temperature = 0");
  expect_error("tcl { finetune_fraction: 1.5 }",
               "config field trainer.tcl.finetune_fraction = 1.5: must be in [0, 1]");
  expect_error("tcl { views { speed_ratio: 3 } }",
               "config field trainer.tcl.views.speed_ratio = 3: must divide "
               "dataset.clip.num_frames (4)");
  expect_error("tcl { views { speed_ratio: 1 } }",
               "config field trainer.tcl.views.speed_ratio = 1: must be in [2, 8]");
  expect_error("tcl { pseudo_label { threshold: 2 } }",
               "config field trainer.tcl.pseudo_label.threshold = 2");
  TrainerContext all_labeled = context;
  all_labeled.dataset.set_labeled_fraction(1.0f);
  TrainerConfig config;
  config.mutable_tcl();
  const absl::Status s =
      ValidateTrainer(config, {"trainer", all_labeled.backbone, all_labeled.dataset});
  EXPECT_NE(s.message().find("config field trainer.tcl: this method trains on unlabeled videos"),
            std::string::npos)
      << s;
}

}  // namespace
}  // namespace tb
