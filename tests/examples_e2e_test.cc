// Trains every config in configs/examples/ (the worked examples of
// docs/EXTENDING.md), and the CI twins of methods that have no other
// end-to-end test of their own config (kMethodTwins), for its few steps on a
// tiny SynthActions and evaluates it, as //tools:timebalance would: so the
// components stay registered, configurable by a pbtxt and trainable. A new
// example config is picked up without editing this file.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "configs/config_loader.h"
#include "core/records.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "train/experiment_runner.h"

namespace tb {
namespace {
namespace fs = std::filesystem;

std::string TmpDir() { return std::getenv("TEST_TMPDIR"); }

// CI twins outside configs/examples/ (each listed in this test's data).
const char* const kMethodTwins[] = {"configs/tcl_r3d18tiny_8x4_synth_ci.pbtxt",
                                    "configs/actor_cutmix_r3d18tiny_8x4_synth_ci.pbtxt",
                                    "configs/tacl_r3d18tiny_8x4_synth_ci.pbtxt",
                                    "configs/video_semi_r3d18tiny_8x4_synth_ci.pbtxt",
                                    "configs/ssl_memdpc_r3d18tiny_synth_ci.pbtxt"};

std::vector<fs::path> ConfigsToTrain() {
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator("configs/examples")) {
    if (entry.path().extension() == ".pbtxt") paths.push_back(entry.path());
  }
  for (const char* twin : kMethodTwins) paths.emplace_back(twin);
  return paths;
}

TEST(Examples, EveryExampleConfigTrainsAndEvaluates) {
  ConfigureThreads(2);
  ASSERT_TRUE(WriteSynthActions(TmpDir() + "/synth", SmokeTestOptions(2, 3, 1, 5), 2).ok());
  int trained = 0;
  for (const fs::path& path : ConfigsToTrain()) {
    const std::string name = path.stem().string();
    SCOPED_TRACE(name);
    auto config = LoadExperimentConfig(
        path.string(),
        {"dataset { ucf101 { root: \"" + TmpDir() + "/synth\" } clip { decode_short_side: 40 "
         "crop_size: 32 } }",
         "run_dir: \"" + TmpDir() + "/" + name + "\""});
    ASSERT_TRUE(config.ok()) << config.status();
    auto data = LoadExperimentData(config->dataset());
    ASSERT_TRUE(data.ok()) << data.status();
    ASSERT_TRUE(ResolveNumClasses(&*config, static_cast<int>(data->class_names.size())).ok());
    RunOptions options;
    options.quiet = true;
    auto run = RunExperiment(*config, *data, torch::kCPU, options);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->training.steps_done, config->schedule().steps());
    ASSERT_FALSE(run->training.last_metrics.empty());
    for (const auto& [term, value] : run->training.last_metrics) {
      EXPECT_TRUE(std::isfinite(value)) << term;
    }
    ExperimentResults written;
    ASSERT_TRUE(ReadJsonRecord(config->run_dir() + "/results.json", &written).ok());
    EXPECT_EQ(written.steps(), config->schedule().steps());
    EXPECT_TRUE(written.has_test() || written.has_representation());
    ++trained;
  }
  EXPECT_GE(trained, 4);
}

}  // namespace
}  // namespace tb
