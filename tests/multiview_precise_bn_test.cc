// Precise-BN with the multi-view trainers (semisup/ + eval/ + train/):
// training mixes RGB and temporal-gradient clips into a shared network's
// BatchNorm statistics and precise-BN on RGB clips replaces them with
// statistics that depend on the weights and the RGB batches only; end to end
// on a tiny SynthActions tree, the runner applies it by default for
// tg_fixmatch, records it, keeps it out of checkpoints (a resumed run equals
// an uninterrupted one, and model_sha256 is the trained model's), and an
// evaluation-only rerun reproduces the result.
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "eval/precise_bn.h"
#include "google/protobuf/text_format.h"
#include "train/api/trainer.h"
#include "train/experiment_runner.h"

namespace tb {
namespace {

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

std::unique_ptr<Trainer> MakeTrainer(const std::string& text, int seed) {
  TrainerContext context;
  context.backbone.mutable_r3d18()->set_width_multiplier(0.0625f);
  context.backbone.set_num_classes(4);
  context.backbone.set_dropout(0.0f);
  context.dataset.mutable_clip()->set_num_frames(4);
  context.dataset.set_labeled_fraction(0.5f);
  TrainerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
  torch::manual_seed(seed);
  auto trainer = CreateTrainer(config, context);
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return std::move(*trainer);
}

ClipBatch RandomBatch(int n, int seed) {
  torch::manual_seed(seed);
  ClipBatch b;
  b.clips = torch::randn({n, 3, 4, 16, 16});
  b.views["weak"] = b.clips.unsqueeze(1);
  b.views["strong"] = (b.clips + 0.5 * torch::randn_like(b.clips)).unsqueeze(1);
  b.labels = torch::randint(0, 4, {n}, torch::kInt64);
  return b;
}

std::vector<torch::Tensor> RunningStatistics(VideoBackbone& m) {
  std::vector<torch::Tensor> out;
  for (const auto& b : m.named_buffers()) {
    if (b.key().find("running_") != std::string::npos) out.push_back(b.value().clone());
  }
  return out;
}

double MaxDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  }
  return worst;
}

TEST(MultiViewPreciseBn, GivesTheSharedNetworkRgbOnlyStatistics) {
  auto trained = MakeTrainer("mvpl { flow_view: false }", 5);
  // The same weights, statistics untouched.
  auto fresh = MakeTrainer("mvpl { flow_view: false }", 5);
  trained->SetTraining(true);
  for (int step = 0; step < 3; ++step) {
    const ClipBatch lb = RandomBatch(2, 10 + step), ub = RandomBatch(3, 20 + step);
    ASSERT_TRUE(trained->Step({&lb, &ub, step}).ok());
  }
  const std::vector<torch::Tensor> mixed = RunningStatistics(trained->EvaluationModel());
  EXPECT_GT(MaxDifference(mixed, RunningStatistics(fresh->EvaluationModel())), 1e-3);
  torch::manual_seed(99);
  std::vector<torch::Tensor> rgb;
  for (int b = 0; b < 3; ++b) rgb.push_back(torch::randn({4, 3, 4, 16, 16}));
  for (Trainer* t : {trained.get(), fresh.get()}) {
    size_t i = 0;
    auto next = [&]() -> absl::StatusOr<torch::Tensor> { return rgb[i++]; };
    auto report = RecomputeBatchNormStatistics(t->EvaluationModel(), 3, next, torch::kCPU);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_GT(report->layers, 10);
  }
  // The same statistics whatever the training history, and not the mixed
  // RGB + TG ones.
  EXPECT_LT(MaxDifference(RunningStatistics(trained->EvaluationModel()),
                          RunningStatistics(fresh->EvaluationModel())),
            1e-6);
  EXPECT_GT(MaxDifference(RunningStatistics(trained->EvaluationModel()), mixed), 1e-3);
}

class MultiViewPreciseBnE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(WriteSynthActions(TmpDir() + "/synth", SmokeTestOptions(4, 4, 2, 3), 2).ok());
  }

  ExperimentConfig Config(const std::string& run, int steps) {
    auto config = ParseExperimentText(R"pb(
      name: "multiview_precise_bn"
      dataset {
        clip { num_frames: 4 stride: 2 decode_short_side: 40 crop_size: 24 }
        augmentation { min_crop_scale: 0.8 }
        labeled_fraction: 0.5
        loader { num_workers: 1 prefetch_batches: 2 }
      }
      backbone { r3d18 { width_multiplier: 0.0625 } }
      trainer { tg_fixmatch {} labeled_batch_size: 4 unlabeled_batch_size: 4 }
      optimizer { adam { lr: 0.003 } }
      schedule { constant {} checkpoint_every: 2 log_every: 2 warmup_steps: 0 }
      evaluation { num_clips: 2 batch_size: 8 }
    )pb", "multiview_precise_bn");
    EXPECT_TRUE(config.ok()) << config.status();
    config->mutable_dataset()->mutable_ucf101()->set_root(TmpDir() + "/synth");
    config->mutable_schedule()->set_steps(steps);
    config->set_run_dir(TmpDir() + "/" + run);
    ResolveDefaults(&*config);
    const absl::Status valid = ValidateExperimentConfig(*config);
    EXPECT_TRUE(valid.ok()) << valid;
    config->mutable_backbone()->set_num_classes(4);
    return *config;
  }
};

TEST_F(MultiViewPreciseBnE2e, OnByDefaultDeterministicAndOutOfCheckpoints) {
  ConfigureThreads(1);
  const torch::Device cpu(torch::kCPU);
  ExperimentConfig config = Config("straight", 4);
  auto data = LoadExperimentData(config.dataset());
  ASSERT_TRUE(data.ok()) << data.status();
  RunOptions quiet;
  quiet.quiet = true;
  auto straight = RunExperiment(config, *data, cpu, quiet);
  ASSERT_TRUE(straight.ok()) << straight.status();
  const ExperimentResults& r = straight->results;
  // 16 training videos / 4 per batch: one epoch caps the default 200.
  EXPECT_EQ(r.precise_bn_batches(), 4);
  EXPECT_EQ(r.precise_bn_batch_size(), 4);
  EXPECT_NE(r.protocol().find("precise-BN on 4 x 4 training clips"), std::string::npos)
      << r.protocol();
  // model_sha256 is the trained model's, i.e. the final checkpoint's.
  {
    auto model = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
    ASSERT_TRUE(model.ok());
    CheckpointContents contents;
    contents.modules = (*model)->CheckpointModules();
    ASSERT_TRUE(LoadCheckpoint(straight->final_checkpoint, &contents).ok());
    EXPECT_EQ(ModuleSha256((*model)->EvaluationModel()), r.model_sha256());
  }
  // Evaluating the checkpoint again gives the same numbers.
  RunOptions eval_only = quiet;
  eval_only.eval_only = true;
  auto again = RunExperiment(config, *data, cpu, eval_only);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->results.test().top1(), r.test().top1());
  EXPECT_EQ(again->results.test().top5(), r.test().top5());
  // 2 steps (evaluated with precise-BN) + 2 resumed steps = 4 straight.
  ExperimentConfig split = Config("split", 2);
  ASSERT_TRUE(RunExperiment(split, *data, cpu, quiet).ok());
  split.mutable_schedule()->set_steps(4);
  RunOptions resume = quiet;
  resume.resume = true;
  auto resumed = RunExperiment(split, *data, cpu, resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->results.model_sha256(), r.model_sha256());
  EXPECT_EQ(resumed->results.test().top1(), r.test().top1());
  // Switched off: no recomputation, and (here) other numbers are possible.
  ExperimentConfig off = Config("off", 4);
  off.mutable_evaluation()->mutable_precise_bn()->set_num_batches(0);
  RunOptions eval_off = eval_only;
  off.set_run_dir(config.run_dir());
  auto plain = RunExperiment(off, *data, cpu, eval_off);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->results.precise_bn_batches(), 0);
  EXPECT_EQ(plain->results.protocol().find("precise-BN"), std::string::npos);
}

TEST_F(MultiViewPreciseBnE2e, BadPreciseBnFieldsAreConfigErrors) {
  ExperimentConfig config = Config("bad", 1);
  config.mutable_evaluation()->mutable_precise_bn()->set_num_batches(-1);
  absl::Status status = ValidateExperimentConfig(config);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("evaluation.precise_bn.num_batches"), std::string::npos)
      << status;
  config.mutable_evaluation()->mutable_precise_bn()->set_num_batches(5);
  config.mutable_evaluation()->mutable_precise_bn()->mutable_sampler()->mutable_spread()
      ->set_num_clips(0);
  status = ValidateExperimentConfig(config);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("evaluation.precise_bn.sampler.spread.num_clips"),
            std::string::npos)
      << status;
}

}  // namespace
}  // namespace tb
