// ActorCutMix (semisup/actor_cutmix_trainer.h, ActorCutMixOptions): the mix
// and the mixed labels by hand, the strong view, targets, loss and gradient
// against the official reductions (semisup/testdata/
// actor_cutmix_reference.py), the trainer's step with and without the mix,
// and the option checks.
#include "semisup/actor_cutmix_trainer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/reference_tensors.h"
#include "google/protobuf/text_format.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tolerance = 1e-9) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_LT((actual - expected).abs().max().item<double>(), tolerance) << what;
}

TEST(ActorCutMix, PastesEachActorOntoTheMirrorVideosBackgroundByHand) {
  // Two clips of 1 channel, 1 frame, 1 x 2 pixels: clip 0 = (1, 2) with its
  // actor on the left pixel, clip 1 = (3, 4) with its actor on the right.
  // Mixed clip 0 keeps its actor (1); its background pixel (right) takes
  // clip 1's background there, but that is clip 1's actor, which clip 1's
  // own mask removes: 0 (the normalised mean colour). Likewise mixed clip 1
  // is (0, 4): the official double masking leaves a hole wherever the
  // mirror's actor was.
  const torch::Tensor x = torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({2, 1, 1, 1, 2});
  const torch::Tensor m = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kDouble).view({2, 1, 1, 1, 2});
  const ActorCutMixBatch mixed = MixActors(x, m);
  ExpectClose(mixed.clips.flatten(), torch::tensor({1.0, 0.0, 0.0, 4.0}, torch::kDouble), "mix");
  EXPECT_TRUE(mixed.valid.all().item<bool>());
  ExpectClose(mixed.actor_fraction, torch::tensor({0.5, 0.5}, torch::kDouble), "fraction");
  // w = 1 - (0.5 - 1)^4 = 15/16 of the own label, 1/16 of the mirror's.
  const torch::Tensor t =
      ActorCutMixTargets(torch::tensor({0, 2}, torch::kLong), mixed.actor_fraction, 3);
  ExpectClose(t, torch::tensor({{15.0 / 16, 0.0, 1.0 / 16}, {1.0 / 16, 0.0, 15.0 / 16}},
                               torch::kDouble),
              "targets");
}

TEST(ActorCutMix, MatchesTheOfficialStrongViewAndLoss) {
  const auto refs = ::tb::testing::RunReferenceTensors(
      "semisup/testdata/actor_cutmix_reference.py", "actor_cutmix_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) { return refs->at(name); };
  const ActorCutMixBatch mixed = MixActors(ref("weak"), ref("mask"));
  ExpectClose(mixed.valid.to(torch::kDouble), ref("valid"), "valid clips");
  const torch::Tensor strong =
      torch::where(mixed.valid.view({-1, 1, 1, 1, 1}), mixed.clips, ref("strong"));
  ExpectClose(strong, ref("mixed_strong"), "strong view");
  const PseudoLabels pl = MakePseudoLabels(torch::softmax(ref("logits_weak"), 1), 0.95f);
  const torch::Tensor targets = ActorCutMixTargets(pl.labels, mixed.actor_fraction, 4);
  ExpectClose(targets, ref("targets"), "targets");
  const torch::Tensor logits = ref("logits_strong").clone().requires_grad_(true);
  const torch::Tensor loss = SoftPseudoLabelLoss(logits, targets, pl.mask, PseudoLabelOptions::ALL);
  ExpectClose(loss, ref("loss"), "loss");
  loss.backward();
  ExpectClose(logits.grad(), ref("grad_strong"), "gradient");
}

TEST(ActorCutMix, TheDrawIsPerStepAndHasTheConfiguredRate) {
  int mixed = 0;
  for (int64_t step = 0; step < 4000; ++step) mixed += ActorCutMixThisStep(step, 0.5) ? 1 : 0;
  EXPECT_NEAR(mixed / 4000.0, 0.5, 0.03);
  EXPECT_EQ(ActorCutMixThisStep(17, 0.5), ActorCutMixThisStep(17, 0.5));
  EXPECT_FALSE(ActorCutMixThisStep(17, 0.0));
  EXPECT_TRUE(ActorCutMixThisStep(17, 1.0));
}

constexpr int kClasses = 4;

TrainerContext Context() {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.dataset.set_labeled_fraction(0.5f);
  return context;
}

std::unique_ptr<Trainer> Make(const std::string& text) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  EXPECT_TRUE(ValidateTrainer(config, {"trainer", Context().backbone, Context().dataset}).ok());
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config, Context());
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? std::move(*trainer) : nullptr;
}

// probability 1: every step mixes; threshold 0: every clip selected. The
// loss equals CE + the soft-label loss of the model's own logits on the
// mixed strong view, computed independently here.
TEST(ActorCutMixTrainer, StepTrainsTheMixedViewTowardsTheMixedLabels) {
  auto t = Make("actor_cutmix { probability: 1 pseudo_label { threshold: 0 } }");
  ASSERT_NE(t, nullptr);
  const SamplerConfig sampler = t->UnlabeledSampler();
  EXPECT_EQ(sampler.kind_case(), SamplerConfig::kWeakStrong);
  ASSERT_EQ(sampler.actor_masks().views_size(), 1);
  EXPECT_EQ(sampler.actor_masks().views(0), "weak");
  EXPECT_FLOAT_EQ(sampler.actor_masks().score_threshold(), 0.4f);
  t->SetTraining(false);
  torch::manual_seed(3);
  ClipBatch lb, ub;
  lb.clips = torch::randn({2, 3, 4, 16, 16});
  lb.labels = torch::randint(0, kClasses, {2}, torch::kInt64);
  ub.views["weak"] = torch::randn({4, 1, 3, 4, 16, 16});
  ub.views["strong"] = torch::randn({4, 1, 3, 4, 16, 16});
  ub.views["weak_actor"] = (torch::rand({4, 1, 1, 4, 16, 16}) < 0.3).to(torch::kFloat);
  ub.labels = torch::zeros({4}, torch::kInt64);
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    VideoBackbone& m = t->EvaluationModel();
    const torch::Tensor weak = ub.views["weak"].squeeze(1);
    const ActorCutMixBatch mixed = MixActors(weak, ub.views["weak_actor"].squeeze(1));
    const torch::Tensor labels = m.forward(weak).argmax(1);
    const torch::Tensor targets = ActorCutMixTargets(labels, mixed.actor_fraction, kClasses);
    const torch::Tensor logp = torch::log_softmax(m.forward(mixed.clips), 1);
    expected = torch::nn::functional::cross_entropy(m.forward(lb.clips), lb.labels) -
               (targets * logp).sum(1).mean();
  }
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metrics.at("acm_applied"), 1.0);
  EXPECT_EQ(r->metrics.at("acm_valid"), 1.0);
  EXPECT_NEAR(r->loss.item<double>(), expected.item<double>(), 1e-4);

  auto plain = Make("actor_cutmix { probability: 0 pseudo_label { threshold: 0 } }");
  plain->SetTraining(false);
  auto p = plain->Step({&lb, &ub, 0});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->metrics.at("acm_applied"), 0.0);
  EXPECT_EQ(p->metrics.count("acm_valid"), 0u);
}

TEST(ActorCutMixTrainer, BadOptionsNameTheField) {
  const TrainerContext context = Context();
  const auto error = [&](const std::string& text) {
    TrainerConfig config;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
    return ValidateTrainer(config, {"trainer", context.backbone, context.dataset});
  };
  EXPECT_NE(error("actor_cutmix { probability: 2 }")
                .message()
                .find("config field trainer.actor_cutmix.probability = 2: must be in [0, 1]"),
            std::string::npos);
  EXPECT_NE(error("actor_cutmix { score_threshold: -1 }")
                .message()
                .find("config field trainer.actor_cutmix.score_threshold = -1"),
            std::string::npos);
  EXPECT_NE(error("actor_cutmix { views { strong_clips: 2 } }")
                .message()
                .find("config field trainer.actor_cutmix.views.strong_clips = 2: must be 1"),
            std::string::npos);
}

}  // namespace
}  // namespace tb
