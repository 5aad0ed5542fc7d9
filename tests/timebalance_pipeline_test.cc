// The CI-sized TimeBalance pipeline end to end on a tiny SynthActions: every
// stage runs and writes its record; a second run skips all of them; changing
// the distillation config reruns only that stage; --stages restricted runs
// need their inputs; the results record names student and teachers.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "configs/config_loader.h"
#include "core/threads.h"
#include "datasets/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "reweighting/scorer.h"
#include "tools/experiment_runner.h"
#include "tools/pipeline.h"

namespace tb {
namespace {

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

ExperimentConfig Config(const std::string& run_dir, const std::string& extra) {
  auto config = LoadExperimentConfig(
      "configs/timebalance_r3d18tiny_synth_ci.pbtxt",
      {"dataset { ucf101 { root: \"" + TmpDir() + "/synth\" } labeled_fraction: 0.34 "
       "clip { decode_short_side: 40 crop_size: 32 } }",
       "run_dir: \"" + run_dir + "\"", extra});
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

TEST(TimeBalancePipeline, RunsSkipsAndRerunsChangedStages) {
  ConfigureThreads(2);
  ASSERT_TRUE(WriteSynthActions(TmpDir() + "/synth", SmokeTestOptions(2, 3, 1, 7), 2).ok());
  const std::string run = TmpDir() + "/tb";
  ExperimentConfig config = Config(run, "");
  auto data = LoadExperimentData(config.dataset());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_TRUE(ResolveNumClasses(&config, 2).ok());
  ASSERT_EQ(data->labeled.size(), 2u);
  ASSERT_EQ(data->unlabeled.size(), 4u);
  PipelineOptions options;
  options.quiet = true;
  auto first = RunPipeline(config, *data, torch::kCPU, options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->ran, (std::vector<std::string>{"pretrain_invariant", "pretrain_distinctive",
                                                  "score", "finetune_invariant",
                                                  "finetune_distinctive", "distill",
                                                  "supervised"}));
  EXPECT_TRUE(first->skipped.empty());
  for (const char* key : {"\"student\"", "\"invariant_teacher\"", "\"distinctive_teacher\"",
                          "\"supervised\"", "\"labeled_list_hash\"", "\"stages\""}) {
    EXPECT_NE(first->results_json.find(key), std::string::npos) << key;
  }
  // Every training video got a weight in [0, 1]; min-max makes 0 and 1 appear.
  auto scores = ReadScores(run + "/stages/score/scores.tsv");
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->size(), 6u);
  float lo = 1, hi = 0;
  for (const auto& [video, s] : *scores) {
    lo = std::min(lo, s);
    hi = std::max(hi, s);
  }
  EXPECT_EQ(lo, 0.0f);
  EXPECT_EQ(hi, 1.0f);

  // Unchanged: everything is skipped.
  auto second = RunPipeline(config, *data, torch::kCPU, options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->ran.empty());
  EXPECT_EQ(second->skipped.size(), 7u);

  // A changed distillation config reruns only the distillation.
  ExperimentConfig changed = Config(run, "timebalance { distill { schedule { steps: 2 } } }");
  ASSERT_TRUE(ResolveNumClasses(&changed, 2).ok());
  auto third = RunPipeline(changed, *data, torch::kCPU, options);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->ran, (std::vector<std::string>{"distill"}));

  // A changed score rule reruns the score stage and the distillation after it.
  ExperimentConfig rescored =
      Config(run, "timebalance { score { fixed_weight { weight: 0.5 } } }");
  ASSERT_TRUE(ResolveNumClasses(&rescored, 2).ok());
  options.stages = {"score"};
  auto only_score = RunPipeline(rescored, *data, torch::kCPU, options);
  // distill is out of date and not selected: a clear error, after the score stage ran.
  ASSERT_FALSE(only_score.ok());
  EXPECT_NE(only_score.status().message().find("stage distill is out of date"),
            std::string::npos)
      << only_score.status();
  options.stages = {};
  auto fourth = RunPipeline(rescored, *data, torch::kCPU, options);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ(fourth->ran, (std::vector<std::string>{"distill"}));  // score already redone
}

TEST(TimeBalancePipeline, BadStageConfigFailsBeforeAnyCompute) {
  ExperimentConfig config =
      Config(TmpDir() + "/bad", "timebalance { distill { trainer { supervised {} } } }");
  auto data = ExperimentData();
  auto result = RunPipeline(config, data, torch::kCPU, PipelineOptions());
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("stage distill needs trainer { timebalance"),
            std::string::npos)
      << result.status();
  EXPECT_FALSE(std::filesystem::exists(TmpDir() + "/bad/stages"));
}

}  // namespace
}  // namespace tb
