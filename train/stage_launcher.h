// File: train/stage_launcher.h
//
// Child processes for the pipeline's parallel stages
// (timebalance.parallel_stages, train/pipeline.h): each stage of a wave runs
// as this binary again (/proc/self/exe) with the parent's command line plus
// --internal_pipeline_stage=<stage>, its stdout and stderr appended to
// <run_dir>/logs/<stage>.log. A child dies with its parent (PR_SET_PDEATHSIG),
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

struct StageLauncherOptions {
  // The parent's command line as it was given (argv[0] is replaced by
  // /proc/self/exe); the stage flag is appended.
  std::vector<std::string> argv;
  std::string run_dir;
  const std::atomic<bool>* stop = nullptr;
};

// Runs `stages` as child processes, at most `jobs` at a time, until all have
// exited. Returns true when one was interrupted (exit 128 + SIGINT/SIGTERM)
// and none failed; an error naming the first failed stage, its exit status
// and the last lines of its log otherwise (the others are stopped).
// `on_start` (optional) is called with each stage as its child starts.
absl::StatusOr<bool> LaunchStages(const StageLauncherOptions& options,
                                  const std::vector<std::string>& stages, int jobs,
                                  const std::function<void(const std::string&)>& on_start = {});

// The flag a child gets; //tools:timebalance defines it.
inline constexpr char kPipelineStageFlag[] = "--internal_pipeline_stage=";

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_STAGE_LAUNCHER_H_
