// File: train/pipeline.h
//
// The TimeBalance pipeline (TimeBalancePipelineConfig in
// configs/experiment.proto, stage configs in configs/pipeline_config.h), run
// by //tools:timebalance when the config has a `timebalance` field. Stages,
// in order:
//   pretrain_invariant, pretrain_distinctive, [pretrain_combined],
//   score, finetune_invariant, finetune_distinctive, distill, [supervised]
// Each writes under <run_dir>/stages/<stage>/ (config.pbtxt, checkpoints/,
// results.json, stage_done.pbtxt). A stage is skipped when its
// stage_done.pbtxt (a StageRecord) carries the fingerprint (SHA-256) of its
// current config and its inputs' fingerprints; a changed config (or a
// changed upstream stage) reruns it from scratch. `stages` restricts the run
// to a subset; the stages they depend on must then be finished and current
// (else an error naming the missing one), and stages left out that are not up
// to date stay pending (PipelineResult::pending, no results.json).
// An interrupted stage continues with `resume`. Every stage's config is
// validated before the first one runs. At the end <run_dir>/results.json (a
// PipelineResults) holds the student's and each fine-tuned teacher's test
// accuracy (overall and per class), the SSL teachers' representation
// quality, the labeled list's SHA-256, the evaluation protocol and the wall
// time per stage.
#ifndef TIMEBALANCE_TRAIN_PIPELINE_H_
#define TIMEBALANCE_TRAIN_PIPELINE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "core/results.pb.h"
#include "datasets/formats/experiment_data.h"
#include "train/distributed.h"
#include "train/stage_launcher.h"

namespace tb {

struct PipelineOptions {
  bool resume = false;
  std::vector<std::string> stages;  // empty = all
  const std::atomic<bool>* stop = nullptr;
  bool quiet = false;  // no stdout lines (see RunOptions::quiet)
  // Data-parallel ranks (train/distributed.h): every stage trains on all of
  // them; rank 0 owns the run directory (lock, stage records, scores,
  // results), the others follow its decisions (a barrier after each step
  // that changes the directory). Null or one rank: a single process.
  std::shared_ptr<ProcessGroupCollectives> distributed;
  // Runs the stage graph in child processes, at most `jobs` at a time, each
  // stage as soon as its inputs have finished (LaunchStages in
  // train/stage_launcher.h, which //tools:timebalance binds to its command
  // line). Used when timebalance.parallel_stages > 1 on a single process;
  // unset (or data-parallel), stages run here one after another.
  std::function<absl::StatusOr<bool>(const std::vector<StageTask>& tasks, int jobs,
                                     int thread_budget, const StageHooks& hooks)>
      launch_stages;
  // Set in such a child: run only this stage, for a parent that holds the
  // run directory's lock (none taken here, no summary written).
  std::string child_stage;
};

struct PipelineResult {
  bool interrupted = false;
  std::vector<std::string> ran, skipped;  // stage names
  // Stages neither selected by `stages` nor up to date; when non-empty, no
  // results.json is written (and an earlier one is removed).
  std::vector<std::string> pending;
  PipelineResults results;                // what results.json holds
  // The summed wall time of every stage (including stages finished by
  // earlier invocations).
  double stage_seconds = 0;
};

// `config`: resolved base config with `timebalance` set and
// backbone.num_classes resolved.
absl::StatusOr<PipelineResult> RunPipeline(const ExperimentConfig& config,
                                           const ExperimentData& data,
                                           const torch::Device& device,
                                           const PipelineOptions& options);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_PIPELINE_H_
