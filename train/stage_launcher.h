// File: train/stage_launcher.h
//
// Child processes for the pipeline's parallel stages
// (timebalance.parallel_stages, train/pipeline.h) and the comparison
// runner's cells (//tools:compare --jobs, train/compare.h): each task runs
// as this binary again (/proc/self/exe) with the parent's command line plus
// a flag naming the task (--internal_pipeline_stage=<stage> by default), its
// stdout and stderr appended to <run_dir>/logs/<task>.log. A child dies with
// its parent (PR_SET_PDEATHSIG),
// so a SIGKILLed pipeline leaves no orphan training; a stop request of the
// parent (SIGINT / SIGTERM) is forwarded to the children as SIGTERM, and
// each writes its checkpoint and exits as interrupted.
#ifndef TIMEBALANCE_TRAIN_STAGE_LAUNCHER_H_
#define TIMEBALANCE_TRAIN_STAGE_LAUNCHER_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

// The flag a pipeline stage's child gets; //tools:timebalance defines it.
inline constexpr char kPipelineStageFlag[] = "--internal_pipeline_stage=";

struct StageLauncherOptions {
  // The parent's command line as it was given (argv[0] is replaced by
  // /proc/self/exe); task_flag + the task's name is appended.
  std::vector<std::string> argv;
  // The flag by which the binary runs one task (it must define it).
  std::string task_flag = kPipelineStageFlag;
  // What a task is called in errors: "stage distill (child process ...)".
  std::string task_noun = "stage";
  std::string run_dir;
  const std::atomic<bool>* stop = nullptr;
};

// A stage of the graph: it may start once every input has finished.
struct StageTask {
  // Also its log's file name (<run_dir>/logs/<name>.log), so a plain file
  // name: not empty, no '/', not "." or ".." (LaunchStages refuses others).
  std::string name;
  std::vector<std::string> inputs;  // names of earlier tasks
  int threads = 1;                  // of the thread budget, while it runs
};

// What the caller decides, called on this thread between child events.
struct StageHooks {
  // Called once per stage when its inputs have finished: true to run it in
  // a child, false when there is nothing to run (up to date, or left
  // pending); an error stops the run.
  std::function<absl::StatusOr<bool>(const std::string& stage)> prepare;
  // Called as a stage's child starts (with its task: name, threads).
  std::function<void(const StageTask& task)> on_start;
  // Called after a stage's child exited 0; an error stops the run.
  std::function<absl::Status(const std::string& stage)> on_done;
};

// Runs the graph `tasks` (listed after their inputs): a stage starts in a
// child process as soon as its inputs have finished, fewer than `jobs`
// children run and its threads fit in `thread_budget` beside the running
// children's (a stage that asks for more than the budget runs alone), in the
// order of `tasks`. Returns when every stage has
// finished, or, after a stop request or a failure, when the running children
// have exited (the others are not started): true when one was interrupted
// (exit 128 + SIGINT/SIGTERM) and none failed; an error naming the first
// failed stage, its exit status and the last lines of its log, or a hook's
// error, otherwise.
absl::StatusOr<bool> LaunchStages(const StageLauncherOptions& options,
                                  const std::vector<StageTask>& tasks, int jobs,
                                  int thread_budget, const StageHooks& hooks);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_STAGE_LAUNCHER_H_
