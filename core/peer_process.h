// File: core/peer_process.h
//
// Runs a Python peer of a benchmark (tools/bench/*.py) and reads its
// machine-readable lines, so a C++ benchmark can print its ratio to the peer
// measured side by side in the same run. A peer prints lines like
//
//   PEER_STEP {"precision": "fp32", "clips_per_s": 1.28, ...}
//
// RunPeer returns the first such line's JSON, JsonNumberField its numbers.
#ifndef TIMEBALANCE_CORE_PEER_PROCESS_H_
#define TIMEBALANCE_CORE_PEER_PROCESS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tb {

// Runs `command` through /bin/sh, waits for it, and returns the rest of its
// first stdout line that starts with "<tag> " (the JSON object). Errors name
// the command: Internal when it cannot start or exits non-zero (with the end
// of its output), NotFound when no line has the tag.
absl::StatusOr<std::string> RunPeer(const std::string& command, absl::string_view tag);

// The number after "\"<field>\":" in a one-line JSON object (whitespace
// allowed); NotFound when absent or not a number.
absl::StatusOr<double> JsonNumberField(absl::string_view json, absl::string_view field);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_PEER_PROCESS_H_
