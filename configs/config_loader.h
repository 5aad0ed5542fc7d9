// File: configs/config_loader.h
//
// Loads an experiment: parses a text-proto ExperimentConfig, merges
// command-line override fragments into it, fills derived defaults and
// validates every value before any compute starts. Errors are
// InvalidArgument (NotFound for a missing file) with a one-line message that
// names the file and line, or the field path and the offending value.
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
// resolves defaults and validates.
absl::StatusOr<ExperimentConfig> LoadExperimentConfig(
    const std::string& path, const std::vector<std::string>& overrides);

// Fills values derived from others (e.g. normalisation constants) so that the
// resolved config written to the run directory says everything.
void ResolveDefaults(ExperimentConfig* config);

// Checks required fields and ranges; the message names the field path.
absl::Status ValidateExperimentConfig(const ExperimentConfig& config);

// The autocast precision the config asks for.
Precision ExperimentPrecision(const ExperimentConfig& config);

// Text-proto form of a config (what is written to run_dir/config.pbtxt).
std::string ExperimentToText(const ExperimentConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_CONFIGS_CONFIG_LOADER_H_
