// File: configs/pipeline_config.h
//
// The stage configs of the TimeBalance pipeline (TimeBalancePipelineConfig in
// configs/experiment.proto): which stages a config has, and each stage's
// experiment: the base config (the file's other fields) with the stage's
// fragment merged over it (proto MergeFrom: set scalars replace, messages
// merge, a set oneof field replaces the base's), named "<name>/<stage>" and
// run in <run_dir>/stages/<stage>. The pipeline driver (train/pipeline.h)
// fills in the inputs a stage takes from earlier stages (checkpoints,
// scores); everything else is fixed here, so every stage can be validated
// when the config is loaded, before any compute. Errors name the stage's
// fragment: "config field timebalance.finetune.optimizer.adam.lr = -1: ...".
#ifndef TIMEBALANCE_CONFIGS_PIPELINE_CONFIG_H_
#define TIMEBALANCE_CONFIGS_PIPELINE_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"

namespace tb {

inline constexpr char kPretrainInvariant[] = "pretrain_invariant";
inline constexpr char kPretrainDistinctive[] = "pretrain_distinctive";
inline constexpr char kPretrainCombined[] = "pretrain_combined";
inline constexpr char kScore[] = "score";
inline constexpr char kFinetuneInvariant[] = "finetune_invariant";
inline constexpr char kFinetuneDistinctive[] = "finetune_distinctive";
inline constexpr char kDistill[] = "distill";
inline constexpr char kSupervised[] = "supervised";

// The stage names of `config` in execution order:
//   pretrain_invariant, pretrain_distinctive, [pretrain_combined], score,
//   finetune_invariant, finetune_distinctive, distill, [supervised].
std::vector<std::string> PipelineStages(const ExperimentConfig& config);

// The config path of the fragment `stage` is built from
// ("timebalance.finetune" for both fine-tuning stages,
// "timebalance.supervised_baseline" for "supervised").
std::string StageConfigPath(const std::string& stage);

// The validated config of training stage `stage` before its inputs are
// filled in, with the planned thread count (PlannedStageThreads, hardware
// threads from std::thread) unless its fragment sets num_threads.
// InvalidArgument names the fragment's field path.
absl::StatusOr<ExperimentConfig> PipelineStageConfig(const ExperimentConfig& config,
                                                     const std::string& stage);

// The stages whose outputs `stage` reads: score <- both pretraining stages;
// finetune_X <- pretrain_X; distill <- score, both fine-tuned teachers and
// the student's init stage (student_init); the others none.
std::vector<std::string> PipelineStageInputs(const ExperimentConfig& config,
                                             const std::string& stage);

// The LibTorch thread count the plan gives `stage` (parallel_stages J > 1):
// T for a final stage (one no other stage reads: distill, supervised), which
// then runs alone; max(1, T / J) for the others; T = the run's num_threads
// (0: `hardware_threads`). 0 when stages run one after another with the
// run's own count, or for an unknown stage.
// `hardware_threads` stands for num_threads = 0.
int PlannedStageThreads(const ExperimentConfig& config, const std::string& stage,
                        int hardware_threads);

// Validates the score rule and every training stage of `config` (which has
// a `timebalance` field).
absl::Status ValidatePipelineConfig(const ExperimentConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_CONFIGS_PIPELINE_CONFIG_H_
