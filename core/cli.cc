#include "core/cli.h"

#include <csignal>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/strings/str_format.h"

namespace tb {

bool FindUnknownFlag(int argc, char** argv, std::string* unknown) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.rfind("-", 0) != 0) continue;
    arg = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 1);
    arg = arg.substr(0, arg.find('='));
    gflags::CommandLineFlagInfo info;
    if (gflags::GetCommandLineFlagInfo(arg.c_str(), &info)) continue;
    if (arg.rfind("no", 0) == 0 && gflags::GetCommandLineFlagInfo(arg.c_str() + 2, &info) &&
        info.type == "bool") {
      continue;
    }
    *unknown = argv[i];
    return true;
  }
  return false;
}

int InitTool(const char* tool, const char* usage, int* argc, char*** argv,
             std::vector<std::string>* positional) {
  gflags::SetUsageMessage(usage);
  std::string unknown;
  if (FindUnknownFlag(*argc, *argv, &unknown)) {
    return ToolError(tool, kExitUsageError,
                     "unknown flag '" + unknown + "' (see --helpshort)");
  }
  gflags::ParseCommandLineFlags(argc, argv, true);
  // Under `bazel run`, relative paths are the caller's.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY")) {
    if (chdir(wd) != 0) std::perror("chdir BUILD_WORKING_DIRECTORY");
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging((*argv)[0]);
  if (positional != nullptr) {
    for (int i = 1; i < *argc; ++i) positional->push_back((*argv)[i]);
    return 0;
  }
  if (*argc > 1) {
    return ToolError(tool, kExitUsageError,
                     std::string("unexpected argument '") + (*argv)[1] + "' (see --helpshort)");
  }
  return 0;
}

int ExitCodeFor(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument ||
                 status.code() == absl::StatusCode::kNotFound
             ? kExitUsageError
             : kExitDataError;
}

int ToolError(const char* tool, int code, const std::string& message) {
  std::fprintf(stderr, "%s: error: %s\n", tool, message.c_str());
  return code;
}

int ToolError(const char* tool, int code, const absl::Status& status) {
  return ToolError(tool, code, std::string(status.message()));
}

namespace {
std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};
void OnStopSignal(int sig) {
  g_signal.store(sig);
  g_stop.store(true);
}
}  // namespace

const std::atomic<bool>* InstallStopSignalHandlers() {
  std::signal(SIGINT, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
  return &g_stop;
}

int InterruptSignal() { return g_signal.load(); }

}  // namespace tb
