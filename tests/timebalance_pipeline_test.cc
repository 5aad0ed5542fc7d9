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
#include "core/records.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "reweighting/scorer.h"
#include "train/experiment_runner.h"
#include "train/pipeline.h"

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
  // results.json is the PipelineResults the call returned.
  PipelineResults written;
  ASSERT_TRUE(ReadJsonRecord(run + "/results.json", &written).ok());
  EXPECT_EQ(written.SerializeAsString(), first->results.SerializeAsString());
  EXPECT_EQ(written.student().videos(), static_cast<int>(data->test.size()));
  EXPECT_EQ(written.student().per_class_size(), 2);
  EXPECT_TRUE(written.has_invariant_teacher() && written.has_distinctive_teacher() &&
              written.has_supervised());
  EXPECT_EQ(written.labeled_list_sha256(), data->labeled_sha256);
  EXPECT_EQ(written.labeled_list_sha256().size(), 64u);
  EXPECT_EQ(written.stages_size(), 7);
  EXPECT_EQ(written.ssl_invariant().per_class_size(), 2);
  // Every training video got a weight in [0, 1]; min-max makes 0 and 1 appear.
  auto scores = ReadScores(run + "/stages/score/scores.pbtxt");
  ASSERT_TRUE(scores.ok()) << scores.status();
  ASSERT_EQ(scores->videos_size(), 6);
  float lo = 1, hi = 0;
  for (const VideoWeight& v : scores->videos()) {
    lo = std::min(lo, v.weight());
    hi = std::max(hi, v.weight());
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
  // distill is out of date and not selected: it stays pending, and the
  // earlier results.json (which no longer describes the run) is removed.
  ASSERT_TRUE(only_score.ok()) << only_score.status();
  EXPECT_EQ(only_score->ran, (std::vector<std::string>{"score"}));
  EXPECT_EQ(only_score->pending, (std::vector<std::string>{"distill"}));
  EXPECT_FALSE(std::filesystem::exists(run + "/results.json"));
  // A selected stage whose input is pending is an error naming the input.
  ExperimentConfig restarted = Config(TmpDir() + "/fresh", "");
  ASSERT_TRUE(ResolveNumClasses(&restarted, 2).ok());
  options.stages = {"distill"};
  auto missing = RunPipeline(restarted, *data, torch::kCPU, options);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(
                "stage distill needs stage score, which has not finished"),
            std::string::npos)
      << missing.status();
  options.stages = {};
  auto fourth = RunPipeline(rescored, *data, torch::kCPU, options);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ(fourth->ran, (std::vector<std::string>{"distill"}));  // score already redone
}

// A bad option in any stage is an error when the config is loaded, before
// any stage runs, naming the stage's full field path.
TEST(TimeBalancePipeline, BadStageConfigFailsWhenLoaded) {
  auto load = [](const std::string& fragment) {
    return LoadExperimentConfig("configs/timebalance_r3d18tiny_synth_ci.pbtxt",
                                {"run_dir: \"" + TmpDir() + "/bad\"", fragment});
  };
  auto wrong_trainer = load("timebalance { distill { trainer { supervised {} } } }");
  ASSERT_FALSE(wrong_trainer.ok());
  EXPECT_EQ(wrong_trainer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_trainer.status().message().find("stage distill needs trainer { timebalance"),
            std::string::npos)
      << wrong_trainer.status();
  auto temperature = load(
      "timebalance { pretrain_distinctive { trainer { ssl { objective { tclr { temperature: -1 "
      "} } } } } }");
  ASSERT_FALSE(temperature.ok());
  EXPECT_EQ(temperature.status().message(),
            "config field timebalance.pretrain_distinctive.trainer.ssl.objective.tclr."
            "temperature = -1: must be > 0");
  auto teacher_width =
      load("timebalance { distill { trainer { timebalance { teacher_backbone { r3d18 { "
           "width_multiplier: 9 } } } } } }");
  ASSERT_FALSE(teacher_width.ok());
  EXPECT_EQ(teacher_width.status().message(),
            "config field timebalance.distill.trainer.timebalance.teacher_backbone.r3d18."
            "width_multiplier = 9: must be in (0, 8]");
  auto score = load("timebalance { score { temporal_similarity { num_clips: 1 } } }");
  ASSERT_FALSE(score.ok());
  EXPECT_EQ(score.status().message(),
            "config field timebalance.score.temporal_similarity.num_clips = 1: must be >= 2");
  EXPECT_FALSE(std::filesystem::exists(TmpDir() + "/bad"));
}

}  // namespace
}  // namespace tb
