// Precise-BN: the recomputed statistics against an independent computation
// over the same batches (each layer's input rebuilt by hand with batch
// statistics, then the mean of the batch means and of the unbiased batch
// variances, as fvcore's update_bn_stats), the restored momenta, counters
// and train/eval flags, non-BatchNorm modules in eval mode during the
// passes, the guard, the plan's epoch cap, and the loader path on a tiny
// SynthActions tree (deterministic, RGB views only).
#include "eval/precise_bn.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/sync_batch_norm.h"
#include "core/testing/test_util.h"
#include "datasets/clip_ops.h"
#include "datasets/ucf101.h"
#include "datasets/synthetic/synth_actions.h"

namespace tb {
namespace {

// Records whether it ran in training mode.
struct ModeProbeImpl : torch::nn::Module {
  torch::Tensor forward(const torch::Tensor& x) {
    saw_training = saw_training || is_training();
    return x;
  }
  bool saw_training = false;
};
TORCH_MODULE(ModeProbe);

// conv1 -> bn1 -> relu -> conv2 -> bn2 -> relu, pooled; dropout + linear.
class TinyBn : public VideoBackbone {
 public:
  TinyBn() {
    namespace nn = torch::nn;
    conv1 = register_module("conv1", nn::Conv3d(nn::Conv3dOptions(3, 4, 1).bias(false)));
    bn1 = register_module("bn1", SyncBatchNorm3d(nn::BatchNorm3dOptions(4)));
    conv2 = register_module(
        "conv2", nn::Conv3d(nn::Conv3dOptions(4, 5, {1, 3, 3}).padding({0, 1, 1})));
    bn2 = register_module("bn2", SyncBatchNorm3d(nn::BatchNorm3dOptions(5).momentum(0.3)));
    probe = register_module("probe", ModeProbe());
    dropout = register_module("dropout", nn::Dropout(0.5));
    fc = register_module("fc", nn::Linear(5, 3));
    torch::NoGradGuard no_grad;
    for (SyncBatchNorm bn : {bn1, bn2}) {
      bn->weight.uniform_(0.5, 2.0);
      bn->bias.normal_();
      bn->running_mean.fill_(7.0);
      bn->running_var.fill_(9.0);
    }
  }
  torch::Tensor FeatureMap(const torch::Tensor& x) override {
    return torch::relu(bn2(conv2(torch::relu(bn1(conv1(x))))));
  }
  torch::Tensor Logits(const torch::Tensor& f) override { return fc(dropout(probe(f))); }
  int64_t feature_dim() const override { return 5; }
  int64_t num_classes() const override { return 3; }

  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr};
  SyncBatchNorm bn1{nullptr}, bn2{nullptr};
  ModeProbe probe{nullptr};
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear fc{nullptr};
};

// Per-channel mean and unbiased variance of [N, C, T, H, W].
std::pair<torch::Tensor, torch::Tensor> Stats(const torch::Tensor& y) {
  return {y.mean({0, 2, 3, 4}), y.var({0, 2, 3, 4}, /*unbiased=*/true)};
}

// Batch normalisation with the batch's own statistics (biased variance).
torch::Tensor Normalise(const torch::Tensor& y, const SyncBatchNorm& bn) {
  const torch::Tensor mean = y.mean({0, 2, 3, 4}, true);
  const torch::Tensor var = y.var({0, 2, 3, 4}, /*unbiased=*/false, true);
  const auto shape = std::vector<int64_t>{1, -1, 1, 1, 1};
  return (y - mean) / torch::sqrt(var + bn->options.eps()) * bn->weight.view(shape) +
         bn->bias.view(shape);
}

std::vector<torch::Tensor> Batches() {
  torch::manual_seed(11);
  // Different sizes and offsets: the average is over batches, not clips.
  return {torch::randn({3, 3, 2, 6, 6}) + 1.0, torch::randn({5, 3, 2, 6, 6}) * 2.0,
          torch::randn({2, 3, 2, 6, 6}) - 0.5};
}

PreciseBnBatches Feed(const std::vector<torch::Tensor>& batches) {
  auto i = std::make_shared<size_t>(0);
  return [batches, i]() -> absl::StatusOr<torch::Tensor> { return batches[(*i)++]; };
}

TEST(PreciseBn, EqualsTheAverageOfBatchStatistics) {
  torch::manual_seed(3);
  TinyBn model;
  model.train();
  const std::vector<torch::Tensor> batches = Batches();
  torch::Tensor m1 = torch::zeros({4}), v1 = torch::zeros({4}), m2 = torch::zeros({5}),
                v2 = torch::zeros({5});
  {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& x : batches) {
      const torch::Tensor y1 = model.conv1(x);
      auto [a, b] = Stats(y1);
      m1 += a / 3;
      v1 += b / 3;
      const torch::Tensor y2 = model.conv2(torch::relu(Normalise(y1, model.bn1)));
      auto [c, d] = Stats(y2);
      m2 += c / 3;
      v2 += d / 3;
    }
  }
  auto report = RecomputeBatchNormStatistics(model, 3, Feed(batches), torch::kCPU);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->batches, 3);
  EXPECT_EQ(report->clips, 10);
  EXPECT_EQ(report->layers, 2);
  EXPECT_LT((model.bn1->running_mean - m1).abs().max().item<double>(), 1e-5);
  EXPECT_LT((model.bn1->running_var - v1).abs().max().item<double>(), 1e-5);
  EXPECT_LT((model.bn2->running_mean - m2).abs().max().item<double>(), 1e-5);
  EXPECT_LT((model.bn2->running_var - v2).abs().max().item<double>(), 1e-5);
  // Momenta, counters and modes are as before; the head ran in eval mode.
  EXPECT_DOUBLE_EQ(*model.bn1->options.momentum(), 0.1);
  EXPECT_DOUBLE_EQ(*model.bn2->options.momentum(), 0.3);
  EXPECT_EQ(model.bn1->num_batches_tracked.item<int64_t>(), 0);
  EXPECT_FALSE(model.probe->saw_training);
  EXPECT_TRUE(model.is_training());
  for (const auto& m : model.modules(false)) EXPECT_TRUE(m->is_training());
  // A model in eval mode stays in eval mode.
  model.eval();
  ASSERT_TRUE(RecomputeBatchNormStatistics(model, 1, Feed(batches), torch::kCPU).ok());
  EXPECT_FALSE(model.is_training());
  for (const auto& m : model.modules(false)) EXPECT_FALSE(m->is_training());
}

TEST(PreciseBn, TheGuardRestoresTheTrainedStatistics) {
  TinyBn model;
  const torch::Tensor before = model.bn2->running_var.clone();
  {
    BatchNormStatisticsGuard keep(model);
    ASSERT_TRUE(RecomputeBatchNormStatistics(model, 2, Feed(Batches()), torch::kCPU).ok());
    EXPECT_FALSE(torch::equal(model.bn2->running_var, before));
  }
  EXPECT_TRUE(torch::equal(model.bn2->running_var, before));
  EXPECT_EQ(CountBatchNormLayers(model), 2);
}

TEST(PreciseBn, PlanCapsAtOneEpochAndFollowsTheTrainerDefault) {
  PreciseBnConfig c;
  PreciseBnPlan p = PlanPreciseBn(c, 10, 200, 4, 1);  // unset: the default
  EXPECT_EQ(p.num_batches, 2);                         // 10 videos / 4 = 2 batches
  EXPECT_EQ(p.batch_size, 4);
  EXPECT_EQ(PlanPreciseBn(c, 10, 0, 4, 1).num_batches, 0);  // default off
  c.set_num_batches(0);
  EXPECT_EQ(PlanPreciseBn(c, 10, 200, 4, 1).num_batches, 0);  // switched off
  c.set_num_batches(3);
  c.set_batch_size(2);
  EXPECT_EQ(PlanPreciseBn(c, 10, 0, 4, 1).num_batches, 3);  // on for any trainer
  EXPECT_EQ(PlanPreciseBn(c, 1, 0, 4, 1).num_batches, 1);   // fewer videos than a batch
  EXPECT_NE(PlanPreciseBn(c, 10, 0, 4, 1).seed, PlanPreciseBn(c, 10, 0, 4, 2).seed);
}

TEST(PreciseBn, OnTrainingClipsIsDeterministic) {
  const std::string root = testing::TmpPath("synth_precise_bn");
  ASSERT_TRUE(WriteSynthActions(root, SmokeTestOptions(2, 3, 1, 0), 2).ok());
  auto split = ReadUcf101Split(root, "", 1, true);
  ASSERT_TRUE(split.ok()) << split.status();
  std::vector<LabeledVideo> train;
  for (const auto& v : split->train) train.push_back({v.path, v.label});
  DatasetConfig d;
  ResolveDatasetDefaults(&d);
  d.mutable_clip()->set_num_frames(2);
  d.mutable_clip()->set_decode_short_side(12);
  d.mutable_clip()->set_crop_size(6);
  d.mutable_loader()->set_num_workers(1);
  TinyBn model;
  PreciseBnConfig c;
  c.mutable_sampler()->mutable_spread()->set_num_clips(2);
  const PreciseBnPlan plan = PlanPreciseBn(c, static_cast<int64_t>(train.size()), 200, 2, 5);
  ASSERT_EQ(plan.num_batches, 3);
  torch::Tensor first;
  for (int run = 0; run < 2; ++run) {
    BatchNormStatisticsGuard keep(model);
    auto report = PreciseBatchNorm(model, c, plan, train, d, torch::kCPU);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->clips, 3 * 2 * 2);  // 3 batches x 2 videos x 2 clips
    if (run == 0) {
      first = model.bn2->running_mean.clone();
    } else {
      EXPECT_TRUE(torch::equal(model.bn2->running_mean, first));
    }
  }
  EXPECT_FALSE(torch::equal(model.bn2->running_mean, first));  // the guard restored it
}

}  // namespace
}  // namespace tb
