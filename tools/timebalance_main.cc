// timebalance: the main binary. Runs the experiment a config file describes:
// a single training run (supervised, self-supervised pretraining, or a
// distillation trainer) with its evaluation, or, when the config has a
// `timebalance` field, the whole staged TimeBalance pipeline
// (train/pipeline.h).
//
//   bazel run //tools:timebalance -- --config=configs/X.pbtxt --run_dir=runs/x
//       [--override='optimizer { adam { lr: 0.01 } }'] [--resume] [--stages=a,b]
//
// Launched by torchrun (or srun) as several processes, it trains data-parallel
// (docs/DISTRIBUTED.md):
//   torchrun --no_python --nproc_per_node=2 --redirects=1 --tee=1 --log_dir=DIR
//       bazel-bin/tools/timebalance --config=configs/X.pbtxt --run_dir=runs/x
//
// Exit codes: 0 done, 1 runtime error (missing data, unreadable video, I/O,
// a lost rank), 2 bad flags, config or launch environment, 128 + signal when
// interrupted (a checkpoint was written first; rerun with --resume to
// continue).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/str_split.h"
#include "configs/config_loader.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "core/cli.h"
#include "train/distributed.h"
#include "train/experiment_runner.h"
#include "train/pipeline.h"
#include "train/stage_launcher.h"

DEFINE_string(config, "", "Experiment config (text proto ExperimentConfig). Required.");
DEFINE_string(override, "",
              "Text-proto fragment merged into the config after loading, e.g. "
              "'schedule { steps: 50 } dataset { labeled_fraction: 0.1 }'.");
DEFINE_string(run_dir, "", "Run directory (overrides the config's run_dir).");
DEFINE_bool(resume, false, "Continue from the latest checkpoint (of the interrupted stage).");
DEFINE_int32(num_threads, -1,
             "LibTorch intra-op threads (overrides the config's num_threads; 0 = all cores).");
DEFINE_bool(eval_only, false, "Skip training; evaluate the latest checkpoint of --run_dir.");
DEFINE_string(stages, "",
              "Pipeline configs only: comma-separated stages to run (default all); the stages "
              "they depend on must be finished; the others, when not up to date, stay "
              "pending and no results.json is written.");

DEFINE_string(internal_pipeline_stage, "",
              "Internal (timebalance.parallel_stages): run this one stage for a parent "
              "process that holds the run directory.");

namespace {

int Fail(const absl::Status& status) {
  const int code = status.code() == absl::StatusCode::kInvalidArgument ? tb::kExitUsageError
                                                                        : tb::kExitDataError;
  return tb::ToolError("timebalance", code, status);
}

// A data-parallel run that failed (e.g. a lost peer): the error is printed
// and every file the run keeps is written (checkpoints are atomic), but its
// process group may be broken, and destroying LibTorch's Gloo objects in
// that state can abort the process (seen once: exit 134 right after the
// error naming the lost rank). So it leaves without running destructors,
// with the documented exit code.
int FailDistributed(const absl::Status& status) {
  const int code = Fail(status);
  std::fflush(nullptr);
  google::FlushLogFiles(google::GLOG_INFO);
  _exit(code);
}

int Interrupted() {
  std::fprintf(stderr, "timebalance: interrupted; checkpoint written, rerun with --resume to "
                       "continue\n");
  return 128 + tb::InterruptSignal();
}

int Run() {
  if (FLAGS_config.empty()) {
    return tb::ToolError("timebalance", tb::kExitUsageError, "--config is required (see --help)");
  }
  std::vector<std::string> overrides;
  if (!FLAGS_override.empty()) overrides.push_back(FLAGS_override);
  if (!FLAGS_run_dir.empty()) overrides.push_back("run_dir: \"" + FLAGS_run_dir + "\"");
  if (FLAGS_num_threads >= 0) {
    overrides.push_back("num_threads: " + std::to_string(FLAGS_num_threads));
  }
  absl::StatusOr<tb::ExperimentConfig> loaded = tb::LoadExperimentConfig(FLAGS_config, overrides);
  if (!loaded.ok()) return tb::ToolError("timebalance", tb::kExitUsageError, loaded.status());
  tb::ExperimentConfig config = *loaded;
  absl::StatusOr<torch::Device> device = tb::ParseDevice(config.device());
  if (!device.ok()) return tb::ToolError("timebalance", tb::kExitUsageError, device.status());
  const int threads = tb::ConfigureThreads(config.num_threads());
  if (!FLAGS_stages.empty() && !config.has_timebalance()) {
    return tb::ToolError("timebalance", tb::kExitUsageError,
                         "--stages needs a pipeline config (with a timebalance field)");
  }

  absl::StatusOr<tb::ExperimentData> data = tb::LoadExperimentData(config.dataset());
  if (!data.ok()) return tb::ToolError("timebalance", tb::kExitDataError, data.status());
  absl::Status classes =
      tb::ResolveNumClasses(&config, static_cast<int>(data->class_names.size()));
  if (!classes.ok()) return tb::ToolError("timebalance", tb::kExitUsageError, classes);
  absl::StatusOr<tb::DistributedEnv> env = tb::DistributedEnvFromEnvironment();
  if (!env.ok()) return tb::ToolError("timebalance", tb::kExitUsageError, env.status());
  std::shared_ptr<tb::ProcessGroupCollectives> group;
  if (env->world_size > 1) {
    absl::StatusOr<std::shared_ptr<tb::ProcessGroupCollectives>> connected =
        tb::ConnectProcessGroup(*env, config.distributed());
    if (!connected.ok()) return Fail(connected.status());
    group = *connected;
    if (config.distributed().backend() == tb::DistributedConfig::NCCL) {
      device = group->device();
    }
  }
  if (env->rank == 0) {
    std::printf("%d threads", threads);
    if (group) {
      std::printf(", rank 0 of %d (%s, %s at %s:%d)", env->world_size, env->launcher.c_str(),
                  tb::BackendName(config.distributed().backend()).c_str(),
                  env->master_addr.c_str(), env->master_port);
    }
    std::printf("\n");
  }

  const std::atomic<bool>* stop = tb::InstallStopSignalHandlers();
  if (config.has_timebalance()) {
    tb::PipelineOptions options;
    options.distributed = group;
    options.resume = FLAGS_resume;
    options.stop = stop;
    if (!FLAGS_stages.empty()) {
      options.stages = absl::StrSplit(FLAGS_stages, ',', absl::SkipEmpty());
    }
    if (!FLAGS_internal_pipeline_stage.empty()) {
      options.child_stage = FLAGS_internal_pipeline_stage;
    } else {
      tb::StageLauncherOptions launcher;
      launcher.argv = gflags::GetArgvs();
      launcher.run_dir = config.run_dir();
      launcher.stop = stop;
      options.launch_stages = [launcher](const std::vector<tb::StageTask>& tasks, int jobs,
                                         int thread_budget, const tb::StageHooks& hooks) {
        return tb::LaunchStages(launcher, tasks, jobs, thread_budget, hooks);
      };
    }
    absl::StatusOr<tb::PipelineResult> result =
        tb::RunPipeline(config, *data, *device, options);
    if (!result.ok()) return group ? FailDistributed(result.status()) : Fail(result.status());
    return result->interrupted ? Interrupted() : 0;
  }
  tb::RunOptions options;
  options.resume = FLAGS_resume;
  options.eval_only = FLAGS_eval_only;
  options.stop = stop;
  options.distributed = group;
  absl::StatusOr<tb::RunResult> result = tb::RunExperiment(config, *data, *device, options);
  if (!result.ok()) return group ? FailDistributed(result.status()) : Fail(result.status());
  return result->training.interrupted ? Interrupted() : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      "timebalance",
      "Trains and evaluates a video action recognition experiment or the TimeBalance "
      "pipeline.\n"
      "  timebalance --config=configs/X.pbtxt --run_dir=runs/x [--override='...'] [--resume]\n"
      "The config is a text-proto tb.ExperimentConfig (configs/experiment.proto documents "
      "every field).\nExit codes: 0 ok, 1 runtime error, 2 bad flags/config, 128+signal "
      "interrupted (checkpoint written).",
      &argc, &argv);
  if (init != 0) return init;
  return Run();
}
