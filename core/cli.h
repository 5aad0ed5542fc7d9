// File: core/cli.h
//
// What every command-line tool here does the same way: flag parsing where an
// unknown flag or a stray argument is a one-line usage error with exit code
// 2 (gflags alone would exit 1), relative paths resolved against the
// caller's folder under `bazel run`, one-line error messages, and JSON
// output lines.
#ifndef TIMEBALANCE_CORE_CLI_H_
#define TIMEBALANCE_CORE_CLI_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/records.h"  // JsonString, for the tools' JSON output lines

namespace tb {

// Exit codes shared by the tools.
constexpr int kExitDataError = 1;   // unreadable input, missing files, I/O
constexpr int kExitUsageError = 2;  // bad flags or config

// Sets the usage message, parses the flags and initialises logging. Returns
// 0 when the tool should run, or kExitUsageError after printing
// "<tool>: error: ..." for an unknown flag or a positional argument. With
// `positional`, the arguments that are not flags are stored there instead
// (tools taking a list of folders, e.g. //tools:report).
int InitTool(const char* tool, const char* usage, int* argc, char*** argv,
             std::vector<std::string>* positional = nullptr);

// True when `argv[i]` names no flag gflags knows (for "--name" / "-name",
// "--noname" of a bool flag included); stops at "--".
bool FindUnknownFlag(int argc, char** argv, std::string* unknown);

// The exit code of a failed status: kExitUsageError for InvalidArgument and
// NotFound (a bad flag, config or path given by the user), else
// kExitDataError.
int ExitCodeFor(const absl::Status& status);

// Prints "<tool>: error: <message>" to stderr and returns `code`.
int ToolError(const char* tool, int code, const std::string& message);
int ToolError(const char* tool, int code, const absl::Status& status);

// Installs SIGINT/SIGTERM handlers that set the returned flag (polled by
// training loops, which checkpoint and stop); InterruptSignal() is the
// signal received (0 = none), for the exit code 128 + signal.
const std::atomic<bool>* InstallStopSignalHandlers();
int InterruptSignal();


}  // namespace tb

#endif  // TIMEBALANCE_CORE_CLI_H_
