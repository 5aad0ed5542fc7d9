// End to end on a tiny SynthActions dataset: generate videos, load the split,
// train a tiny R3D-18 for a few dozen steps, check the loss goes down,
// resume from a checkpoint, and evaluate with the multi-clip protocol.
#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "eval/multi_clip_evaluator.h"
#include "train/api/trainer.h"
#include "train/experiment_runner.h"
#include "train/training_loop.h"

namespace tb {
namespace {
namespace fs = std::filesystem;

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

class SupervisedE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const SynthOptions options = SmokeTestOptions(4, 4, 2, 3);
    ASSERT_TRUE(WriteSynthActions(TmpDir() + "/synth", options, 2).ok());
  }

  ExperimentConfig Config(const std::string& run, int steps) {
    auto config = ParseExperimentText(R"pb(
      name: "e2e"
      dataset {
        clip { num_frames: 4 stride: 2 decode_short_side: 48 crop_size: 32 }
        augmentation { min_crop_scale: 0.8 flip_probability: 0 }
        loader { num_workers: 2 prefetch_batches: 2 }
      }
      backbone { r3d18 { width_multiplier: 0.125 } }
      trainer { supervised {} labeled_batch_size: 8 }
      optimizer { adam { lr: 0.003 } }
      schedule { cosine {} checkpoint_every: 10 log_every: 10 warmup_steps: 0 }
      evaluation { num_clips: 3 batch_size: 6 }
    )pb", "e2e");
    EXPECT_TRUE(config.ok()) << config.status();
    config->mutable_dataset()->mutable_ucf101()->set_root(TmpDir() + "/synth");
    config->mutable_schedule()->set_steps(steps);
    config->set_run_dir(TmpDir() + "/" + run);
    ResolveDefaults(&*config);
    EXPECT_TRUE(ValidateExperimentConfig(*config).ok());
    config->mutable_backbone()->set_num_classes(4);
    return *config;
  }
};

TEST_F(SupervisedE2e, LossDecreasesAndResumeContinues) {
  ConfigureThreads(2);
  torch::manual_seed(0);
  const torch::Device cpu(torch::kCPU);
  ExperimentConfig config = Config("run", 20);
  auto data = LoadExperimentData(config.dataset());
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->class_names.size(), 4u);
  EXPECT_EQ(data->labeled.size(), 16u);
  EXPECT_EQ(data->test.size(), 8u);

  auto trainer = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  // First 10 steps: the loss of the first logged window...
  ExperimentConfig first = config;
  first.mutable_schedule()->set_steps(10);
  auto a = RunTraining(first, *data, trainer->get(), cpu, false, nullptr);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->steps_done, 10);
  const double early_loss = a->last_metrics.at("loss_ce");

  // ...then resume in a fresh trainer (random init) from the checkpoint.
  torch::manual_seed(123);
  auto resumed = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
  ASSERT_TRUE(resumed.ok());
  auto b = RunTraining(config, *data, resumed->get(), cpu, true, nullptr);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->first_step, 10);
  EXPECT_EQ(b->steps_done, 20);
  const double late_loss = b->last_metrics.at("loss_ce");
  EXPECT_LT(late_loss, early_loss) << "loss did not decrease";
  // Without --resume an existing run is refused, not overwritten.
  auto refused = RunTraining(config, *data, resumed->get(), cpu, false, nullptr);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);

  auto acc = EvaluateMultiClip((*resumed)->EvaluationModel(), data->test, 4, config.dataset(),
                               config.evaluation(), cpu);
  ASSERT_TRUE(acc.ok()) << acc.status();
  EXPECT_EQ(acc->num_videos, 8);
  EXPECT_LE(acc->top1, acc->top5);
  // top-1 is the confusion matrix's diagonal over its total.
  int64_t counted = 0, correct = 0;
  for (size_t y = 0; y < acc->confusion.size(); ++y) {
    for (int64_t v : acc->confusion[y]) counted += v;
    correct += acc->confusion[y][y];
  }
  EXPECT_EQ(counted, 8);
  EXPECT_DOUBLE_EQ(acc->top1, correct / 8.0);
}

TEST_F(SupervisedE2e, ResumedRunMatchesUninterruptedRun) {
  // 6 steps straight vs 3 steps + resume for 3 more, same seed: identical
  // weights, because data order and augmentation depend only on (seed,
  // batch index) and the checkpoint restores model, BN statistics and Adam
  // moments. A constant learning rate keeps the schedules of both legs equal.
  ConfigureThreads(1);
  const torch::Device cpu(torch::kCPU);
  auto run = [&](const std::string& name, std::vector<int> legs) {
    ExperimentConfig config = Config(name, 6);
    config.mutable_schedule()->mutable_constant();
    config.mutable_schedule()->set_checkpoint_every(3);
    auto data = LoadExperimentData(config.dataset());
    EXPECT_TRUE(data.ok());
    std::unique_ptr<Trainer> trainer;
    for (size_t i = 0; i < legs.size(); ++i) {
      torch::manual_seed(i == 0 ? 7 : 99);  // the resumed leg starts from other weights
      trainer = std::move(*CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu)));
      ExperimentConfig leg = config;
      leg.mutable_schedule()->set_steps(legs[i]);
      auto out = RunTraining(leg, *data, trainer.get(), cpu, i > 0, nullptr);
      EXPECT_TRUE(out.ok()) << out.status();
    }
    return trainer;
  };
  auto straight = run("straight", {6});
  auto split = run("split", {3, 6});
  auto pa = straight->EvaluationModel().named_parameters();
  auto pb = split->EvaluationModel().named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
}

}  // namespace
}  // namespace tb
