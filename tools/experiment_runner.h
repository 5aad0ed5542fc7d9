// File: tools/experiment_runner.h
//
// One experiment (one ExperimentConfig) from start to results: create the
// run directory and write the resolved config, build the trainer, load
// `init_checkpoint` into the model (fresh runs only), train (or resume), and
// evaluate: multi-clip top-1/top-5 for trainers with a trained classifier,
// the representation evaluation (kNN, retrieval, linear probe, temporal
// similarity) for self-supervised ones. results.json is written atomically.
// The main binary runs one of these, or the TimeBalance pipeline runs one
// per stage (tools/pipeline.h).
#ifndef TIMEBALANCE_TOOLS_EXPERIMENT_RUNNER_H_
#define TIMEBALANCE_TOOLS_EXPERIMENT_RUNNER_H_

#include <atomic>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "datasets/experiment_data.h"
#include "semisup/training_loop.h"

namespace tb {

struct RunOptions {
  bool resume = false;
  bool eval_only = false;             // evaluate the latest checkpoint, no training
  const std::atomic<bool>* stop = nullptr;  // SIGINT/SIGTERM flag
  bool quiet = false;                 // no stdout lines (tests)
};

struct RunResult {
  TrainingOutcome training;  // interrupted = true: nothing was evaluated
  bool evaluated = false;
  // Classifier runs: video top-1 / top-5 and per-class top-1 on the test split.
  double top1 = -1, top5 = -1;
  std::vector<double> per_class_top1;
  // Representation runs: kNN top-1 and temporal similarity.
  double knn_top1 = -1, temporal_similarity = 0;
  std::vector<double> per_class_knn_top1, per_class_temporal_similarity;
  std::string results_json;  // what results.json holds
  std::string final_checkpoint;  // latest checkpoint after training
};

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

#endif  // TIMEBALANCE_TOOLS_EXPERIMENT_RUNNER_H_
