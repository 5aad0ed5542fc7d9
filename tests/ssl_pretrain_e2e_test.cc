// Self-supervised pretraining end to end on a tiny SynthActions dataset: the
// TCLR objective (all three terms) and rho-MoCo (EMA key encoder + queue)
// train for a few steps through the real loader and loop, every term is
// logged, labels are not used (all training videos are read), and a resumed
// run restores the objective's state (EMA encoder, queue) exactly as saved.
#include <cmath>
#include <cstdlib>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "configs/config_loader.h"
#include "google/protobuf/text_format.h"
#include "core/checkpoint.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "eval/representation.h"
#include "train/api/trainer.h"
#include "train/experiment_runner.h"
#include "train/training_loop.h"

namespace tb {
namespace {

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

class SslPretrainE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(WriteSynthActions(TmpDir() + "/synth", SmokeTestOptions(4, 3, 1, 5), 2).ok());
  }

  ExperimentConfig Config(const std::string& run, const std::string& objective, int steps) {
    auto config = ParseExperimentText(R"pb(
      name: "ssl_e2e"
      dataset {
        labeled_fraction: 0.25
        clip { num_frames: 4 stride: 1 decode_short_side: 40 crop_size: 24 }
        loader { num_workers: 2 prefetch_batches: 2 }
      }
      backbone { r3d18 { width_multiplier: 0.125 tclr_temporal_layer4: true } }
      trainer { labeled_batch_size: 4 }
      optimizer { adam { lr: 0.002 } }
      schedule { cosine {} checkpoint_every: 2 log_every: 1 warmup_steps: 0 }
    )pb", "ssl_e2e");
    EXPECT_TRUE(config.ok()) << config.status();
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
        objective, config->mutable_trainer()->mutable_ssl()->mutable_objective()));
    config->mutable_dataset()->mutable_ucf101()->set_root(TmpDir() + "/synth");
    config->mutable_schedule()->set_steps(steps);
    config->set_run_dir(TmpDir() + "/" + run);
    ResolveDefaults(&*config);
    EXPECT_TRUE(ValidateExperimentConfig(*config).ok());
    config->mutable_backbone()->set_num_classes(4);
    return *config;
  }
};

// An epoch of a self-supervised run: every training video once at
// labeled_batch_size (4 here), the last batch counted; 0 when unknown.
TEST_F(SslPretrainE2e, StepsPerEpochFromTheTrainingVideos) {
  const ExperimentConfig config = Config("epoch", "rho_swav {}", 3);
  const torch::Device cpu(torch::kCPU);
  EXPECT_EQ(MakeTrainerContext(config, cpu, 12).steps_per_epoch, 3);
  EXPECT_EQ(MakeTrainerContext(config, cpu, 13).steps_per_epoch, 4);
  EXPECT_EQ(MakeTrainerContext(config, cpu).steps_per_epoch, 0);
}

TEST_F(SslPretrainE2e, TclrTrainsOnAllVideosAndLogsEveryTerm) {
  ConfigureThreads(2);
  torch::manual_seed(0);
  const torch::Device cpu(torch::kCPU);
  ExperimentConfig config =
      Config("tclr", "tclr { num_slices: 2 projection { out: 16 } }", 3);
  auto data = LoadExperimentData(config.dataset());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->labeled.size(), 4u);  // 25% labeled; SSL must read all 12
  auto trainer = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  EXPECT_FALSE((*trainer)->UsesLabels());
  auto outcome = RunTraining(config, *data, trainer->get(), cpu, false, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->steps_done, 3);
  for (const char* term : {"loss", "loss_ic", "loss_ll", "loss_gl"}) {
    ASSERT_EQ(outcome->last_metrics.count(term), 1u) << term;
    EXPECT_TRUE(std::isfinite(outcome->last_metrics.at(term))) << term;
  }
  // The representation evaluation runs on the pretrained backbone.
  std::vector<LabeledVideo> train = data->labeled;
  train.insert(train.end(), data->unlabeled.begin(), data->unlabeled.end());
  EXPECT_EQ(train.size(), 12u);
  RepresentationEvalConfig eval;
  eval.set_num_clips(2);
  eval.set_knn_k(3);
  eval.set_probe_steps(5);
  auto report = EvaluateRepresentation((*trainer)->EvaluationModel(), train, data->test, 4,
                                       config.dataset(), eval, cpu, Precision::kFp32);
  ASSERT_TRUE(report.ok()) << report.status();
  // The overall kNN top-1 is the per-class accuracies weighted by the
  // classes' test videos.
  ASSERT_EQ(report->knn.per_class.size(), 4u);
  double correct = 0, videos = 0;
  for (size_t c = 0; c < 4; ++c) {
    correct += report->knn.per_class[c] * report->knn.per_class_count[c];
    videos += report->knn.per_class_count[c];
  }
  EXPECT_EQ(videos, static_cast<double>(data->test.size()));
  EXPECT_NEAR(report->knn.top1, correct / videos, 1e-9);
}

TEST_F(SslPretrainE2e, MocoStateSurvivesResume) {
  ConfigureThreads(2);
  const torch::Device cpu(torch::kCPU);
  const std::string objective = "rho_moco { rho: 2 queue_size: 32 projection { out: 16 } }";
  ExperimentConfig config = Config("moco", objective, 4);
  auto data = LoadExperimentData(config.dataset());
  ASSERT_TRUE(data.ok());
  torch::manual_seed(1);
  auto trainer = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  ExperimentConfig first = config;
  first.mutable_schedule()->set_steps(2);
  ASSERT_TRUE(RunTraining(first, *data, trainer->get(), cpu, false, nullptr).ok());
  std::map<std::string, torch::Tensor> saved;
  for (const auto& [name, module] : (*trainer)->CheckpointModules()) {
    for (const auto& b : module->named_buffers()) saved[name + "." + b.key()] = b.value().clone();
    for (const auto& p : module->named_parameters()) {
      saved[name + "." + p.key()] = p.value().clone();
    }
  }
  EXPECT_EQ(saved.at("objective.queue.pointer").item<int64_t>(), 16);  // 2 steps x 4 x 2 keys
  // A fresh trainer (different init) restored from the step-2 checkpoint
  // holds exactly the saved state, EMA encoder and queue included.
  torch::manual_seed(99);
  auto resumed = CreateTrainer(config.trainer(), MakeTrainerContext(config, cpu));
  ASSERT_TRUE(resumed.ok());
  CheckpointContents contents;
  contents.modules = (*resumed)->CheckpointModules();
  auto latest = LatestCheckpoint(CheckpointDir(config));
  ASSERT_TRUE(latest.ok()) << latest.status();
  ASSERT_TRUE(LoadCheckpoint(*latest, &contents).ok());
  for (const auto& [name, module] : (*resumed)->CheckpointModules()) {
    for (const auto& b : module->named_buffers()) {
      EXPECT_TRUE(torch::equal(b.value(), saved.at(name + "." + b.key()))) << b.key();
    }
    for (const auto& p : module->named_parameters()) {
      EXPECT_TRUE(torch::equal(p.value(), saved.at(name + "." + p.key()))) << p.key();
    }
  }
  // And training continues from step 2 to 4.
  auto rest = RunTraining(config, *data, resumed->get(), cpu, true, nullptr);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->first_step, 2);
  EXPECT_EQ(rest->steps_done, 4);
}

}  // namespace
}  // namespace tb
