// File: configs/config_loader.h
//
// Loads an experiment: parses a text-proto ExperimentConfig, merges
// command-line override fragments into it, fills derived defaults and
// validates every value before any compute starts: the experiment's own
// fields, and every component it names (backbone, trainer, SSL objective,
// teacher backbones, samplers, score rule) through the components'
// registered Validate functions; for a TimeBalance pipeline config, every
// stage (configs/pipeline_config.h). Errors are InvalidArgument (NotFound for
// a missing file) with a one-line message that names the file and line, or
// the field's full path and the offending value, e.g.
//   config field timebalance.pretrain_distinctive.trainer.ssl.objective.tclr.
//   temperature = -1: must be > 0
//
// The binary must link the components it runs (//backbones:all,
// //ssl:all_objectives, //semisup:all_trainers); an unlinked one is a
// NotFound error listing what is registered.
//
//   ASSIGN_OR_RETURN(ExperimentConfig config,
//                    LoadExperimentConfig("configs/x.pbtxt",
//                                         {"optimizer { adam { lr: 0.01 } }"}));
#ifndef TIMEBALANCE_CONFIGS_CONFIG_LOADER_H_
#define TIMEBALANCE_CONFIGS_CONFIG_LOADER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "core/autocast.h"

namespace tb {

// Parses `text` (named `source` in error messages) as an ExperimentConfig.
absl::StatusOr<ExperimentConfig> ParseExperimentText(const std::string& text,
                                                     const std::string& source);

// Reads `path`, merges each override fragment in order (proto MergeFrom
// semantics: scalars replace, messages merge, repeated fields append), then
// resolves defaults and validates the experiment and, for a pipeline config,
// every stage.
absl::StatusOr<ExperimentConfig> LoadExperimentConfig(
    const std::string& path, const std::vector<std::string>& overrides);

// Fills values derived from others (e.g. normalisation constants) so that the
// resolved config written to the run directory says everything.
void ResolveDefaults(ExperimentConfig* config);

// Checks required fields, ranges and every component of one experiment
// (not its pipeline stages); `path` prefixes every field path in messages
// ("" for a top-level experiment, "timebalance.distill" for a stage).
absl::Status ValidateExperimentConfig(const ExperimentConfig& config,
                                      const std::string& path = "");

// The autocast precision the config asks for.
Precision ExperimentPrecision(const ExperimentConfig& config);

// Text-proto form of a config (what is written to run_dir/config.pbtxt).
std::string ExperimentToText(const ExperimentConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_CONFIGS_CONFIG_LOADER_H_
