#include "semisup/timebalance_trainer.h"

#include "semisup/semi_supervised.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/strings/match.h"
#include "core/testing/batch_norm_stats.h"
#include "core/testing/reference_tensors.h"

namespace tb {
namespace {

TEST(TimeBalanceTrainer, MixingAndDistancesByHand) {
  const torch::Tensor p_i = torch::tensor({{1.0f, 0.0f}, {0.2f, 0.8f}});
  const torch::Tensor p_d = torch::tensor({{0.0f, 1.0f}, {0.6f, 0.4f}});
  const torch::Tensor mixed = MixTeachers(p_i, p_d, torch::tensor({0.25f, 1.0f}));
  EXPECT_TRUE(torch::allclose(mixed, torch::tensor({{0.25f, 0.75f}, {0.2f, 0.8f}})));
  const torch::Tensor p_s = torch::tensor({{0.5f, 0.5f}});
  EXPECT_NEAR(DistillationDistance(p_s, torch::tensor({{1.0f, 0.0f}}), TimeBalanceOptions::MSE)
                  .item<float>(),
              0.25f, 1e-7);
  // KL([.5, .5] || [.25, .75]) = .5 ln 2 + .5 ln(2/3): KL_BATCHMEAN per clip;
  // KL (the official KLDivLoss 'mean') also divides by the C = 2 classes.
  const double kl = 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0);
  const torch::Tensor q = torch::tensor({{0.25f, 0.75f}}), t = torch::tensor({{0.5f, 0.5f}});
  EXPECT_NEAR(DistillationDistance(q, t, TimeBalanceOptions::KL_BATCHMEAN).item<float>(), kl,
              1e-6);
  EXPECT_NEAR(DistillationDistance(q, t, TimeBalanceOptions::KL).item<float>(), kl / 2, 1e-6);
  // The default distance is MSE, the official teacher_supervision 'l2'.
  EXPECT_EQ(TimeBalanceOptions().distance(), TimeBalanceOptions::MSE);
}

// Mirrors TimeBalance's train_semisup.py, train_epoch: the teacher mixture
// (1 - fd_score) * softmax(dist) + fd_score * softmax(inv), CrossEntropyLoss
// on the labeled clips, and the teacher loss of teacher_supervision 'l2'
// (nn.MSELoss(reduction='mean') on softmax(student)) or 'kld'
// (nn.KLDivLoss(reduction='mean') on log_softmax(student)), weighted
// 1 / 50 / 100 (configs/conf_semisup.py). Values and gradients with respect
// to the student's logits from semisup/testdata/timebalance_reference.py.
TEST(TimeBalanceTrainer, MatchesTheOfficialStudentLoss) {
  const auto refs = ::tb::testing::RunReferenceTensors(
      "semisup/testdata/timebalance_reference.py", "timebalance_reference.txt");
  ASSERT_TRUE(refs.ok()) << refs.status();
  const auto ref = [&](const std::string& name) { return refs->at(name); };
  const auto expect_close = [](const torch::Tensor& actual, const torch::Tensor& expected,
                               const std::string& what) {
    ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
    EXPECT_LT((actual - expected).abs().max().item<double>(), 1e-5) << what;
  };
  std::vector<torch::Tensor> mixed;
  for (const char* part : {"_l", "_u"}) {
    const std::string p(part);
    mixed.push_back(MixTeachers(torch::softmax(ref("inv" + p), 1),
                                torch::softmax(ref("dist" + p), 1), ref("s" + p)));
    expect_close(mixed.back(), ref("teacher" + p), "p_T" + p);
  }
  const torch::Tensor p_t = torch::cat(mixed);
  const torch::Tensor labels = ref("label").to(torch::kLong);
  const torch::Tensor hidden = torch::zeros({ref("logits_u").size(0)}, torch::kLong);
  for (const auto& [name, distance] :
       std::vector<std::pair<std::string, TimeBalanceOptions::Distance>>{
           {"mse", TimeBalanceOptions::MSE},
           {"kl", TimeBalanceOptions::KL},
           {"kl_batchmean", TimeBalanceOptions::KL_BATCHMEAN}}) {
    const torch::Tensor logits =
        torch::cat({ref("logits_l"), ref("logits_u")}).requires_grad_(true);
    const StepResult result = DistillationStep(logits, p_t, labels, hidden, 50, 100, distance);
    expect_close(result.loss, ref(name + "_loss"), name + " loss");
    EXPECT_NEAR(result.metrics.at("loss_ce"), ref("ce").item<double>(), 1e-5);
    EXPECT_NEAR(result.metrics.at("loss_distill_l"), ref(name + "_d_l").item<double>(), 1e-5)
        << name;
    EXPECT_NEAR(result.metrics.at("loss_distill_u"), ref(name + "_d_u").item<double>(), 1e-5)
        << name;
    result.loss.backward();
    expect_close(logits.grad(), ref(name + "_grad_logits"), name + " gradient");
  }
}

std::shared_ptr<VideoBackbone> Tiny(int seed) {
  torch::manual_seed(seed);
  BackboneConfig config;
  config.mutable_r3d18()->set_width_multiplier(0.0625f);
  config.set_num_classes(3);
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok());
  return *model;
}

ClipBatch Batch(int n, const std::string& prefix) {
  ClipBatch b;
  b.clips = torch::randn({n, 3, 4, 16, 16});
  b.labels = torch::randint(0, 3, {n}, torch::kInt64);
  for (int i = 0; i < n; ++i) b.paths.push_back(prefix + std::to_string(i));
  return b;
}

// Tiny(seed) with BatchNorm running statistics drawn at random, as a trained
// teacher has them (folding identity statistics would test little).
std::shared_ptr<VideoBackbone> TrainedLooking(int seed) {
  auto model = Tiny(seed);
  testing::RandomizeBatchNormStatistics(*model);
  return model;
}

std::unique_ptr<TimeBalanceTrainer> MakeTrainer(std::shared_ptr<VideoBackbone> student,
                                                std::shared_ptr<VideoBackbone> invariant,
                                                std::shared_ptr<VideoBackbone> distinctive,
                                                std::map<std::string, float> scores,
                                                const TimeBalanceOptions& options) {
  auto trainer = TimeBalanceTrainer::Create(std::move(student), std::move(invariant),
                                            std::move(distinctive), std::move(scores), options,
                                            torch::kCPU);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? *std::move(trainer) : nullptr;
}

TEST(TimeBalanceTrainer, LossMatchesHandComputationAndTeachersStayFrozen) {
  // The trainer folds its own teachers; the reference uses identical copies.
  auto student = Tiny(1), invariant = TrainedLooking(2), distinctive = TrainedLooking(3);
  std::map<std::string, float> scores = {{"l0", 0.0f}, {"l1", 1.0f}, {"u0", 0.5f},
                                         {"u1", 0.25f}, {"u2", 0.9f}};
  TimeBalanceOptions options;  // MSE, weights 50 / 100
  options.set_scores("scores.tsv");
  auto trainer_ptr = MakeTrainer(student, TrainedLooking(2), TrainedLooking(3), scores, options);
  ASSERT_NE(trainer_ptr, nullptr);
  TimeBalanceTrainer& trainer = *trainer_ptr;
  invariant->eval();
  distinctive->eval();
  trainer.SetTraining(true);
  torch::manual_seed(4);
  const ClipBatch lb = Batch(2, "l"), ub = Batch(3, "u");
  const auto folded_before = trainer.invariant_teacher().module().parameters();
  std::vector<torch::Tensor> teacher_before;
  for (const auto& p : folded_before) teacher_before.push_back(p.clone());
  const auto student_before = student->named_parameters()["stem.0.weight"].clone();

  // Independent computation of the expected loss.
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::cat({lb.clips, ub.clips});
    const torch::Tensor pi = torch::softmax(invariant->forward(x), 1);
    const torch::Tensor pd = torch::softmax(distinctive->forward(x), 1);
    const torch::Tensor s = torch::tensor({0.0f, 1.0f, 0.5f, 0.25f, 0.9f}).unsqueeze(1);
    const torch::Tensor pt = s * pi + (1 - s) * pd;
    // The student in train mode: BN statistics of this batch. Copy it so the
    // reference forward does not touch the trained model's running stats.
    auto copy = Tiny(1);
    copy->train();
    const torch::Tensor logits = copy->forward(x);
    const torch::Tensor ps = torch::softmax(logits, 1);
    const torch::Tensor ce = torch::nn::functional::cross_entropy(logits.slice(0, 0, 2), lb.labels);
    expected = ce + 50 * (ps.slice(0, 0, 2) - pt.slice(0, 0, 2)).pow(2).mean() +
               100 * (ps.slice(0, 2) - pt.slice(0, 2)).pow(2).mean();
  }
  auto result = trainer.Step({&lb, &ub});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->loss.item<float>(), expected.item<float>(), 1e-4);
  EXPECT_NEAR(result->metrics.at("mean_s"), (0.0 + 1.0 + 0.5 + 0.25 + 0.9) / 5, 1e-6);

  torch::optim::SGD sgd(trainer.TrainableParameters(), torch::optim::SGDOptions(0.1));
  sgd.zero_grad();
  result->loss.backward();
  sgd.step();
  for (const InferenceModel* teacher :
       {&trainer.invariant_teacher(), &trainer.distinctive_teacher()}) {
    EXPECT_FALSE(teacher->module().is_training());
    EXPECT_GT(teacher->fold_report().folded.size(), 0u);
    for (const auto& p : teacher->module().parameters()) {
      EXPECT_FALSE(p.requires_grad());
      EXPECT_FALSE(p.grad().defined());
    }
  }
  const auto folded_after = trainer.invariant_teacher().module().parameters();
  ASSERT_EQ(folded_after.size(), teacher_before.size());
  for (size_t i = 0; i < folded_after.size(); ++i) {
    EXPECT_TRUE(torch::equal(folded_after[i], teacher_before[i])) << i;
  }
  EXPECT_FALSE(torch::equal(student->named_parameters()["stem.0.weight"], student_before));
}

// The bound: folded teachers give the unfolded teachers'
// probabilities within 1e-5 in fp32, channels-last or not.
TEST(TimeBalanceTrainer, FoldedTeachersMatchUnfoldedOnes) {
  TimeBalanceOptions unfolded;
  unfolded.set_fold_teachers(false);
  auto reference = MakeTrainer(Tiny(1), TrainedLooking(2), TrainedLooking(3), {}, unfolded);
  ASSERT_NE(reference, nullptr);
  EXPECT_TRUE(reference->invariant_teacher().fold_report().folded.empty());
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({4, 3, 4, 16, 16});
  auto expected = reference->TeacherProbabilities(x);
  ASSERT_TRUE(expected.ok()) << expected.status();
  for (bool channels_last : {false, true}) {
    TimeBalanceOptions folded;
    folded.set_teacher_channels_last(channels_last);
    auto trainer = MakeTrainer(Tiny(1), TrainedLooking(2), TrainedLooking(3), {}, folded);
    ASSERT_NE(trainer, nullptr);
    auto actual = trainer->TeacherProbabilities(x);
    ASSERT_TRUE(actual.ok()) << actual.status();
    EXPECT_LT((actual->first - expected->first).abs().max().item<double>(), 1e-5);
    EXPECT_LT((actual->second - expected->second).abs().max().item<double>(), 1e-5);
    EXPECT_EQ(trainer->invariant_teacher().fold_report().batch_norms_after, 0)
        << trainer->invariant_teacher().fold_report().ToString();
  }
}

TEST(TimeBalanceTrainer, SharedTeacherIsRejected) {
  auto shared = Tiny(2);
  auto keep = shared;  // someone else still uses it: folding in place would change theirs
  auto created = TimeBalanceTrainer::Create(Tiny(1), shared, Tiny(3), {}, TimeBalanceOptions(),
                                            torch::kCPU);
  ASSERT_FALSE(created.ok());
  EXPECT_NE(created.status().message().find("invariant teacher"), std::string::npos)
      << created.status();
}

TEST(TimeBalanceTrainer, MissingScoreNamesTheVideo) {
  TimeBalanceOptions options;
  options.set_scores("s.tsv");
  auto trainer_ptr = MakeTrainer(Tiny(1), Tiny(2), Tiny(3), {{"l0", 0.5f}}, options);
  ASSERT_NE(trainer_ptr, nullptr);
  TimeBalanceTrainer& trainer = *trainer_ptr;
  const ClipBatch lb = Batch(1, "l"), ub = Batch(1, "u");
  auto result = trainer.Step({&lb, &ub});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("no weight for video u0"), std::string::npos);
}

}  // namespace
}  // namespace tb
