// timebalance: the main binary. Trains and evaluates the experiment a config
// file describes; later stages of the TimeBalance pipeline (SSL pretraining,
// scoring, distillation) plug in here as further stages.
//
//   bazel run //tools:timebalance -- --config=configs/X.pbtxt --run_dir=runs/x
//       [--override='optimizer { adam { lr: 0.01 } }'] [--resume]
//
// Exit codes: 0 done, 1 runtime error (missing data, unreadable video, I/O),
// 2 bad flags or config, 130 interrupted (a checkpoint was written first;
// rerun with --resume to continue).
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "absl/strings/str_format.h"
#include "backbones/backbone.h"
#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/threads.h"
#include "datasets/experiment_data.h"
#include "eval/multi_clip_evaluator.h"
#include "semisup/trainer.h"
#include "semisup/training_loop.h"
#include "tools/cli_util.h"

DEFINE_string(config, "", "Experiment config (text proto ExperimentConfig). Required.");
DEFINE_string(override, "",
              "Text-proto fragment merged into the config after loading, e.g. "
              "'schedule { steps: 50 } dataset { labeled_fraction: 0.1 }'.");
DEFINE_string(run_dir, "", "Run directory (overrides the config's run_dir).");
DEFINE_bool(resume, false, "Continue from the latest checkpoint in the run directory.");
DEFINE_int32(num_threads, -1,
             "LibTorch intra-op threads (overrides the config's num_threads; 0 = all cores).");
DEFINE_bool(eval_only, false, "Skip training; evaluate the latest checkpoint of --run_dir.");

namespace {

std::atomic<bool> g_stop{false};
int g_signal = 0;

void OnSignal(int sig) {
  g_signal = sig;
  g_stop.store(true);
}

int Fail(int code, const absl::Status& status) {
  std::fprintf(stderr, "timebalance: error: %s\n", std::string(status.message()).c_str());
  return code;
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  if (name.rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError("config field device = \"" + name +
                                         "\": this LibTorch build has no usable CUDA device "
                                         "(set LIBTORCH to a CUDA LibTorch and rebuild)");
  }
  return torch::Device(name);
}

int Run() {
  if (FLAGS_config.empty()) {
    return Fail(2, absl::InvalidArgumentError("--config is required (see --help)"));
  }
  std::vector<std::string> overrides;
  if (!FLAGS_override.empty()) overrides.push_back(FLAGS_override);
  if (!FLAGS_run_dir.empty()) overrides.push_back("run_dir: \"" + FLAGS_run_dir + "\"");
  if (FLAGS_num_threads >= 0) {
    overrides.push_back("num_threads: " + std::to_string(FLAGS_num_threads));
  }
  absl::StatusOr<tb::ExperimentConfig> loaded = tb::LoadExperimentConfig(FLAGS_config, overrides);
  if (!loaded.ok()) return Fail(2, loaded.status());
  tb::ExperimentConfig config = *loaded;
  absl::StatusOr<torch::Device> device = ParseDevice(config.device());
  if (!device.ok()) return Fail(2, device.status());
  const int threads = tb::ConfigureThreads(config.num_threads());

  absl::StatusOr<tb::ExperimentData> data = tb::LoadExperimentData(config.dataset());
  if (!data.ok()) return Fail(1, data.status());
  const int num_classes = static_cast<int>(data->class_names.size());
  if (config.backbone().num_classes() == 0) {
    config.mutable_backbone()->set_num_classes(num_classes);
  } else if (config.backbone().num_classes() != num_classes) {
    return Fail(2, absl::InvalidArgumentError(absl::StrFormat(
                       "config field backbone.num_classes = %d but the dataset has %d classes",
                       config.backbone().num_classes(), num_classes)));
  }
  std::error_code ec;
  std::filesystem::create_directories(config.run_dir(), ec);
  if (ec) {
    return Fail(1, absl::InternalError("cannot create run_dir " + config.run_dir() + ": " +
                                       ec.message()));
  }
  const std::string run_dir = config.run_dir();
  absl::Status written = tb::WriteFileAtomically(run_dir + "/config.pbtxt",
                                                 tb::ExperimentToText(config));
  if (!written.ok()) return Fail(1, written);

  // Initialisation and dropout draw from LibTorch's global generator.
  torch::manual_seed(config.seed());
  absl::StatusOr<std::unique_ptr<tb::Trainer>> trainer = tb::CreateTrainer(config, *device);
  if (!trainer.ok()) return Fail(2, trainer.status());
  std::printf("experiment %s: %zu classes, %zu labeled / %lld train videos (labeled list %s), "
              "%zu test videos, %lld parameters, %d threads, device %s\n",
              config.name().c_str(), data->class_names.size(), data->labeled.size(),
              static_cast<long long>(data->num_train), data->labeled_hash.c_str(),
              data->test.size(),
              static_cast<long long>(tb::CountParameters((*trainer)->EvaluationModel())),
              threads, config.device().c_str());
  std::fflush(stdout);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  tb::TrainingOutcome outcome;
  if (FLAGS_eval_only) {
    absl::StatusOr<std::string> latest = tb::LatestCheckpoint(tb::CheckpointDir(config));
    if (!latest.ok()) return Fail(1, latest.status());
    tb::CheckpointContents contents;
    contents.modules = (*trainer)->CheckpointModules();
    absl::Status loaded_ckpt = tb::LoadCheckpoint(*latest, &contents);
    if (!loaded_ckpt.ok()) return Fail(1, loaded_ckpt);
    outcome.steps_done = contents.position.step;
  } else {
    absl::StatusOr<tb::TrainingOutcome> trained =
        tb::RunTraining(config, *data, trainer->get(), *device, FLAGS_resume, &g_stop);
    if (!trained.ok()) return Fail(1, trained.status());
    outcome = *trained;
    if (outcome.interrupted) {
      std::fprintf(stderr,
                   "timebalance: interrupted at step %lld; checkpoint written, rerun with "
                   "--resume to continue\n",
                   static_cast<long long>(outcome.steps_done));
      return 128 + g_signal;
    }
    std::printf("trained steps %lld..%lld in %.1f s (%.2f clips/s, data wait %.1f s)\n",
                static_cast<long long>(outcome.first_step),
                static_cast<long long>(outcome.steps_done), outcome.seconds,
                outcome.clips_per_second, outcome.data_wait_seconds);
  }
  if (!config.evaluation().after_training() && !FLAGS_eval_only) return 0;

  absl::StatusOr<tb::VideoAccuracy> acc =
      tb::EvaluateMultiClip((*trainer)->EvaluationModel(), data->test, num_classes,
                            config.dataset(), config.evaluation(), *device,
                            tb::ExperimentPrecision(config));
  if (!acc.ok()) return Fail(1, acc.status());
  const std::string results = absl::StrFormat(
      "{\"experiment\": \"%s\", \"split\": \"%s\", \"labeled_videos\": %d, "
      "\"train_videos\": %d, \"labeled_fraction\": %.4f, \"labeled_list_hash\": \"%s\", "
      "\"steps\": %d, \"train_seconds\": %.3f, \"train_clips_per_s\": %.3f, "
      "\"protocol\": \"%d clips x 1 centre crop (%.2f of short side), softmax averaged\", "
      "\"checkpoint\": \"final\", \"test\": %s}\n",
      config.name(), data->split_name, data->labeled.size(), data->num_train,
      config.dataset().labeled_fraction(), data->labeled_hash, outcome.steps_done,
      outcome.seconds, outcome.clips_per_second, config.evaluation().num_clips(),
      config.evaluation().crop_fraction(), tb::VideoAccuracyToJson(*acc, data->class_names));
  absl::Status saved = tb::WriteFileAtomically(run_dir + "/results.json", results);
  if (!saved.ok()) return Fail(1, saved);
  std::printf("test: %lld videos x %d clips: top1 %.2f%% top5 %.2f%% (%.1f s); results in %s\n",
              static_cast<long long>(acc->num_videos), acc->num_clips, 100 * acc->top1,
              100 * acc->top5, acc->seconds, (run_dir + "/results.json").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "Trains and evaluates a video action recognition experiment.\n"
      "  timebalance --config=configs/X.pbtxt --run_dir=runs/x [--override='...'] [--resume]\n"
      "The config is a text-proto tb.ExperimentConfig (configs/experiment.proto documents "
      "every field).\nExit codes: 0 ok, 1 runtime error, 2 bad flags/config, 128+signal "
      "interrupted (checkpoint written).");
  std::string unknown;
  if (tb::FindUnknownFlag(argc, argv, &unknown)) {
    std::fprintf(stderr, "timebalance: error: unknown flag '%s' (see --helpshort)\n",
                 unknown.c_str());
    return 2;
  }
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  // Under `bazel run`, resolve relative paths against the caller's folder.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY")) {
    if (chdir(wd) != 0) std::perror("chdir BUILD_WORKING_DIRECTORY");
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc > 1) {
    std::fprintf(stderr, "timebalance: error: unexpected argument '%s' (see --help)\n", argv[1]);
    return 2;
  }
  return Run();
}
