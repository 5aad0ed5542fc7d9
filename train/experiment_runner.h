// File: train/experiment_runner.h
//
// One experiment (one ExperimentConfig) from start to results: create the
// run directory and write the resolved config, build the trainer from its
// narrow context, load `init_checkpoint` into the model (fresh runs only),
// train (or resume), and evaluate: multi-clip top-1/top-5 for trainers with a
// trained classifier, the representation evaluation (kNN, retrieval, linear
// probe, temporal similarity) for self-supervised ones. results.json (an
// ExperimentResults, core/results.proto) is written atomically. The main
// binary runs one of these; the TimeBalance pipeline runs one per stage
// (train/pipeline.h) and the comparison runner one per cell.
#ifndef TIMEBALANCE_TRAIN_EXPERIMENT_RUNNER_H_
#define TIMEBALANCE_TRAIN_EXPERIMENT_RUNNER_H_

#include <atomic>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "core/results.pb.h"
#include "datasets/formats/experiment_data.h"
#include "train/api/trainer.h"
#include "train/distributed.h"
#include "train/training_loop.h"

namespace tb {

struct RunOptions {
  bool resume = false;
  bool eval_only = false;                   // evaluate the latest checkpoint, no training
  const std::atomic<bool>* stop = nullptr;  // SIGINT/SIGTERM flag
  // No lines on stdout: neither the runner's summary lines nor the training
  // loop's progress lines (metrics.jsonl and results.json are still
  // written). For tests and for callers that print their own progress.
  bool quiet = false;
  // Data-parallel ranks (train/distributed.h); null or one rank: a single
  // process. Every rank calls RunExperiment with the same config; rank 0
  // owns the run directory (lock, config, checkpoints, metrics, results).
  std::shared_ptr<ProcessGroupCollectives> distributed;
};

struct RunResult {
  TrainingOutcome training;  // interrupted = true: nothing was evaluated
  bool evaluated = false;
  // What results.json holds (set when evaluated).
  ExperimentResults results;
  std::string final_checkpoint;  // latest checkpoint after training
};

// The context the experiment's trainer is built from; `train_videos`, the
// experiment's training videos (0 = unknown), gives steps_per_epoch.
TrainerContext MakeTrainerContext(const ExperimentConfig& config, const torch::Device& device,
                                  int64_t train_videos = 0);

// `config` must be validated and resolved, with backbone.num_classes set to
// the dataset's class count. InvalidArgument errors are config errors (the
// binary exits 2); others are runtime errors (exit 1).
absl::StatusOr<RunResult> RunExperiment(const ExperimentConfig& config, const ExperimentData& data,
                                        const torch::Device& device, const RunOptions& options);

// Parses "cpu", "cuda", "cuda:N"; FailedPrecondition when CUDA is asked for
// but unavailable.
absl::StatusOr<torch::Device> ParseDevice(const std::string& name);

// Sets backbone.num_classes from the dataset (or checks it); InvalidArgument
// on a mismatch.
absl::Status ResolveNumClasses(ExperimentConfig* config, int num_classes);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_EXPERIMENT_RUNNER_H_
