// File: tools/pipeline.h
//
// The TimeBalance pipeline (TimeBalancePipelineConfig in
// configs/experiment.proto), run by //tools:timebalance when the config has
// a `timebalance` field. Stages, in order:
//   pretrain_invariant, pretrain_distinctive, [pretrain_combined],
//   score, finetune_invariant, finetune_distinctive, distill
// Each writes under <run_dir>/stages/<stage>/ (config.pbtxt, checkpoints/,
// results.json, stage_done.pbtxt). A stage is skipped when its
// stage_done.pbtxt carries the fingerprint of its current config and inputs;
// a changed config (or a changed upstream stage) reruns it from scratch.
// `stages` restricts the run to a subset; the stages they depend on must
// then be finished and current. An interrupted stage continues with
// `resume`. At the end <run_dir>/results.json holds the student's and each
// fine-tuned teacher's test accuracy (overall and per class), the labeled
// list and its hash, the evaluation protocol and the wall time per stage.
#ifndef TIMEBALANCE_TOOLS_PIPELINE_H_
#define TIMEBALANCE_TOOLS_PIPELINE_H_

#include <atomic>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "datasets/experiment_data.h"

namespace tb {

struct PipelineOptions {
  bool resume = false;
  std::vector<std::string> stages;  // empty = all
  const std::atomic<bool>* stop = nullptr;
  bool quiet = false;
};

struct PipelineResult {
  bool interrupted = false;
  std::vector<std::string> ran, skipped;  // stage names
  std::string results_json;
  // The student's test accuracy and the summed wall time of every stage
  // (including stages finished by earlier invocations).
  double student_top1 = -1, student_top5 = -1;
  double stage_seconds = 0;
};

// FNV-1a 64 of `text` as 16 hex digits: the fingerprint of a config text.
std::string Fnv1a(const std::string& text);

// The stage names of `config` in execution order.
std::vector<std::string> PipelineStages(const ExperimentConfig& config);

// The resolved config of one training stage before its inputs are filled in
// (for validation and tests). InvalidArgument names the stage.
absl::StatusOr<ExperimentConfig> PipelineStageConfig(const ExperimentConfig& config,
                                                     const std::string& stage);

// `config`: resolved base config with `timebalance` set and
// backbone.num_classes resolved.
absl::StatusOr<PipelineResult> RunPipeline(const ExperimentConfig& config,
                                           const ExperimentData& data,
                                           const torch::Device& device,
                                           const PipelineOptions& options);

}  // namespace tb

#endif  // TIMEBALANCE_TOOLS_PIPELINE_H_
