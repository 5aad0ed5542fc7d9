#include "configs/config_loader.h"
#include "configs/pipeline_config.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace tb {
namespace {
namespace fs = std::filesystem;

constexpr char kValid[] = R"pb(
  name: "t"
  dataset { ucf101 { root: "/data/synth" } labeled_fraction: 0.1 }
  backbone { r3d18 { width_multiplier: 0.125 } }
  trainer { supervised {} labeled_batch_size: 4 }
  optimizer { adam { lr: 0.001 } }
  schedule { steps: 100 warmup_steps: 10 cosine {} }
  run_dir: "/tmp/run"
)pb";

std::string WriteTemp(const std::string& name, const std::string& text) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigLoader, LoadsValidConfigAndResolvesDefaults) {
  auto config = LoadExperimentConfig(WriteTemp("ok.pbtxt", kValid), {});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FLOAT_EQ(config->dataset().labeled_fraction(), 0.1f);
  EXPECT_EQ(config->dataset().clip().num_frames(), 8);  // proto default
  ASSERT_EQ(config->dataset().clip().mean_size(), 3);   // resolved default
  EXPECT_FLOAT_EQ(config->dataset().clip().mean(0), 0.43216f);
  // The resolved text parses back to the same config.
  auto again = ParseExperimentText(ExperimentToText(*config), "resolved");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->SerializeAsString(), config->SerializeAsString());
}

TEST(ConfigLoader, OverridesMergeInOrder) {
  auto config = LoadExperimentConfig(
      WriteTemp("ov.pbtxt", kValid),
      {"optimizer { adam { lr: 0.01 } }", "schedule { steps: 7 warmup_steps: 0 }",
       "optimizer { sgd { lr: 0.2 } }"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->schedule().steps(), 7);
  EXPECT_TRUE(config->schedule().has_cosine());  // untouched parts stay
  ASSERT_TRUE(config->optimizer().has_sgd());     // oneof switched by the last fragment
  EXPECT_FLOAT_EQ(config->optimizer().sgd().lr(), 0.2f);
}

void ExpectError(const std::string& text, const std::vector<std::string>& overrides,
                 const std::string& needle) {
  auto config = LoadExperimentConfig(WriteTemp("bad.pbtxt", text), overrides);
  ASSERT_FALSE(config.ok()) << "expected an error mentioning " << needle;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find(needle), std::string::npos)
      << config.status().message();
  EXPECT_EQ(config.status().message().find('\n'), std::string::npos) << "one line";
}

TEST(ConfigLoader, UnknownFieldNamesFieldAndLine) {
  ExpectError(std::string(kValid) + "\nlearning_rate: 3\n", {}, "learning_rate");
  ExpectError(std::string(kValid) + "\nlearning_rate: 3\n", {}, "bad.pbtxt:10:");
  ExpectError(kValid, {"optimizer { adam { momentum: 0.9 } }"}, "--override #1");
  ExpectError(kValid, {"optimizer { adam { momentum: 0.9 } }"}, "momentum");
}

TEST(ConfigLoader, OutOfRangeValuesNameTheField) {
  ExpectError(kValid, {"dataset { labeled_fraction: 1.5 }"}, "dataset.labeled_fraction = 1.5");
  ExpectError(kValid, {"optimizer { adam { lr: -1 } }"}, "optimizer.adam.lr");
  ExpectError(kValid, {"schedule { steps: 0 }"}, "schedule.steps");
  ExpectError(kValid, {"schedule { warmup_steps: 1000 }"}, "schedule.warmup_steps");
  ExpectError(kValid, {"dataset { clip { crop_size: 512 } }"}, "dataset.clip.crop_size");
  ExpectError(kValid, {"device: \"tpu\""}, "device");
  ExpectError(kValid, {"dataset { clip { mean: 0.5 } }"}, "dataset.clip.mean");
  ExpectError(kValid, {"precision: FP16"}, "precision");
}

TEST(ConfigLoader, MissingRequiredValuesNameTheField) {
  std::string no_root = kValid;
  no_root.replace(no_root.find("root: \"/data/synth\""), 19, "");
  ExpectError(no_root, {}, "dataset.ucf101.root");
  std::string no_backbone = kValid;
  no_backbone.replace(no_backbone.find("r3d18 { width_multiplier: 0.125 }"), 33, "");
  ExpectError(no_backbone, {},
              "config field backbone: no kind set; set one of: r3d18, slow_r50, r2plus1d, "
              "tsm_r18, slowfast_r50");
  std::string no_run_dir = kValid;
  no_run_dir.replace(no_run_dir.find("run_dir: \"/tmp/run\""), 19, "");
  ExpectError(no_run_dir, {}, "run_dir");
}

TEST(ConfigLoader, MissingFileIsNotFound) {
  auto config = LoadExperimentConfig("/nonexistent/x.pbtxt", {});
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(config.status().message().find("/nonexistent/x.pbtxt"), std::string::npos);
}

// Every experiment file shipped in configs/ parses and validates.
TEST(ConfigLoader, ShippedConfigsAreValid) {
  const std::string dir = std::string(std::getenv("TEST_SRCDIR")) + "/timebalance/configs";
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".pbtxt") continue;
    ++count;
    auto config = LoadExperimentConfig(entry.path().string(), {"run_dir: \"/tmp/x\""});
    EXPECT_TRUE(config.ok()) << entry.path() << ": " << config.status();
    if (!config.ok() || !config->has_timebalance()) continue;
    // Pipeline configs: every stage's merged config validates too.
    for (const std::string& stage : PipelineStages(*config)) {
      if (stage == "score") continue;
      auto stage_config = PipelineStageConfig(*config, stage);
      EXPECT_TRUE(stage_config.ok()) << entry.path() << " " << stage << ": "
                                     << stage_config.status();
    }
  }
  EXPECT_GT(count, 50);  // configs/*.pbtxt and configs/paper/*.pbtxt
}

// The parallel_stages plan: the run's threads split evenly between the J
// stages that may run at once, a fragment's own num_threads kept.
TEST(PipelineConfig, ParallelStagesPlan) {
  const std::string path = std::string(std::getenv("TEST_SRCDIR")) +
                           "/timebalance/configs/timebalance_r3d18tiny_synth_ci.pbtxt";
  auto config = LoadExperimentConfig(path, {"run_dir: \"/tmp/x\" num_threads: 4"});
  ASSERT_TRUE(config.ok()) << config.status();
  // Sequential (the default): no plan, the run's thread count.
  EXPECT_EQ(PlannedStageThreads(*config, "distill", 8), 0);
  EXPECT_EQ(PipelineStageConfig(*config, "distill")->num_threads(), 4);

  config->mutable_timebalance()->set_parallel_stages(2);
  EXPECT_EQ(PlannedStageThreads(*config, "pretrain_invariant", 8), 2);  // 4 / 2
  EXPECT_EQ(PlannedStageThreads(*config, "score", 8), 2);
  EXPECT_EQ(PlannedStageThreads(*config, "distill", 8), 4);     // final: all threads
  EXPECT_EQ(PlannedStageThreads(*config, "supervised", 8), 4);  // final too
  EXPECT_EQ(PlannedStageThreads(*config, "no_such_stage", 8), 0);
  EXPECT_EQ(PipelineStageConfig(*config, "finetune_distinctive")->num_threads(), 2);
  EXPECT_EQ(PipelineStageConfig(*config, "distill")->num_threads(), 4);
  config->mutable_timebalance()->mutable_distill()->set_num_threads(1);
  EXPECT_EQ(PipelineStageConfig(*config, "distill")->num_threads(), 1);
  config->mutable_timebalance()->set_parallel_stages(3);
  EXPECT_EQ(PlannedStageThreads(*config, "score", 8), 1);  // 4 / 3
  // num_threads 0 = the hardware threads; never fewer than 1 per stage.
  config->set_num_threads(0);
  config->mutable_timebalance()->set_parallel_stages(3);
  EXPECT_EQ(PlannedStageThreads(*config, "finetune_invariant", 2), 1);
  EXPECT_EQ(PlannedStageThreads(*config, "finetune_invariant", 6), 2);
  EXPECT_EQ(PlannedStageThreads(*config, "supervised", 6), 6);

  // StudentInit RANDOM: distill does not wait for a pretraining stage.
  config->mutable_timebalance()->set_student_init(TimeBalancePipelineConfig::RANDOM);
  EXPECT_EQ(PipelineStageInputs(*config, "distill"),
            (std::vector<std::string>{"score", "finetune_invariant", "finetune_distinctive"}));

  auto bad = LoadExperimentConfig(path, {"run_dir: \"/tmp/x\" timebalance { parallel_stages: 0 }"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "config field timebalance.parallel_stages = 0: must be >= 1");
}

}  // namespace
}  // namespace tb
