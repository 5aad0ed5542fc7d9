// The worked example trainer (docs/EXTENDING.md): its loss against a
// computation by hand, and the unlabeled term's value for a model that
// predicts the uniform distribution.
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "google/protobuf/text_format.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

constexpr int kClasses = 5;

TrainerContext Context() {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(kClasses);
  context.dataset.set_labeled_fraction(0.5f);
  return context;
}

std::unique_ptr<Trainer> Make(const std::string& text) {
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
  TrainerScope scope{"trainer", Context().backbone, Context().dataset};
  EXPECT_TRUE(ValidateTrainer(config, scope).ok());
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config, Context());
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return std::move(*trainer);
}

ClipBatch Batch(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.clips = torch::randn({n, 3, 4, 16, 16});
  b.labels = torch::randint(0, kClasses, {n}, torch::kInt64);
  return b;
}

TEST(EntropyMinimization, LossIsCrossEntropyPlusWeightedMeanEntropy) {
  auto t = Make("entropy_minimization { schedule { weight: 0.3 } }");
  t->SetTraining(false);  // BatchNorm in eval mode: the batch split does not matter
  const ClipBatch lb = Batch(2, 2), ub = Batch(3, 3);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = t->EvaluationModel().forward(torch::cat({lb.clips, ub.clips}));
  const torch::Tensor p = torch::softmax(logits.slice(0, 2), 1);
  double entropy = 0;
  for (int i = 0; i < 3; ++i) {
    for (int c = 0; c < kClasses; ++c) {
      const double pc = p[i][c].item<double>();
      entropy -= pc * std::log(pc);
    }
  }
  entropy /= 3;
  const double ce =
      torch::nn::functional::cross_entropy(logits.slice(0, 0, 2), lb.labels).item<double>();
  EXPECT_NEAR(r->metrics.at("loss_entropy"), entropy, 1e-5);
  EXPECT_NEAR(r->metrics.at("loss_ce"), ce, 1e-5);
  EXPECT_NEAR(r->loss.item<double>(), ce + 0.3 * entropy, 1e-5);
}

TEST(EntropyMinimization, UniformPredictionsHaveEntropyLogC) {
  auto t = Make("entropy_minimization {}");
  {
    torch::NoGradGuard no_grad;
    // A zero classifier predicts the uniform distribution for every clip.
    for (auto& p : t->EvaluationModel().named_parameters()) {
      if (p.key().rfind("fc.", 0) == 0) p.value().zero_();
    }
  }
  const ClipBatch lb = Batch(2, 4), ub = Batch(2, 5);
  auto r = t->Step({&lb, &ub, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->metrics.at("loss_entropy"), std::log(kClasses), 1e-6);
  EXPECT_EQ(r->metrics.at("weight_u"), 1.0);
}

TEST(EntropyMinimization, NeedsUnlabeledVideos) {
  TrainerConfig config;
  config.mutable_entropy_minimization();
  TrainerContext context = Context();
  context.dataset.set_labeled_fraction(1.0f);
  const absl::Status s = ValidateTrainer(config, {"trainer", context.backbone, context.dataset});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("config field trainer.entropy_minimization: this method trains on "
                             "unlabeled videos"),
            std::string::npos)
      << s;
}

}  // namespace
}  // namespace tb
