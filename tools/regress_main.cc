// regress: runs a regression suite (train/regress.proto, benchmarks/*.pbtxt)
// and compares every entry with its expected value and band.
//
//   bazel run //tools:regress -- --suite=benchmarks/ci.pbtxt [--update]
//       [--allow_wider_bands] [--jobs=N] [--out=DIR] [--entries=a,b] [--check]
//
// Prints one line per entry (name, kind, expected, measured, band, verdict)
// and a closing "N passed, N failed". Finished runs under --out are reused
// at the same code (git HEAD and uncommitted changes); performance entries
// are always measured again. Exit codes: 0 every entry passed (or --update
// rewrote the suite); 1 a regression, an improvement beyond the band, or a
// runtime error; 2 a bad flag or suite, a missing config, a missing metric
// path, an expected value not yet recorded, or an --update that would widen
// a band; 128 + signal when interrupted (rerun to continue).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_split.h"
#include "core/cli.h"
#include "train/regress.h"

DEFINE_string(suite, "", "Regression suite (text proto tb.RegressionSuite). Required.");
DEFINE_bool(update, false,
            "Rewrite the expected values and provenance of the (selected) entries from this "
            "run; tolerances are never changed.");
DEFINE_bool(allow_wider_bands, false,
            "With --update: accept a band that gets wider (a statistical entry whose recorded "
            "std grew).");
DEFINE_int32(jobs, 1, "Experiment/comparison groups run concurrently.");
DEFINE_string(out, "", "Output folder (data, runs, history.jsonl). Default runs/regress/<suite>.");
DEFINE_string(entries, "", "Comma-separated entry names to run (default: all).");
DEFINE_string(root, "", "Workspace root (default: the folder of the WORKSPACE file above the suite).");
DEFINE_bool(check, false, "Only validate the suite and every config it names.");
DEFINE_bool(verbose, false, "Show the training loops' and the comparison runner's own lines.");
DEFINE_int32(internal_group, -1,
             "Internal (--jobs > 1): run only this group of the suite in this process.");
DEFINE_int32(internal_shard, 0, "Internal (child processes): the shard of the group to run.");
DEFINE_int32(internal_shards, 1, "Internal (child processes): the group's number of shards.");

namespace {

constexpr char kTool[] = "regress";

std::string SelfExe() {
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  return n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
}

// tools/ of this binary's runfiles, where its data dependencies (bench
// binaries) are.
std::string RunfilesTools() {
  namespace fs = std::filesystem;
  std::string runfiles;
  if (const char* env = std::getenv("RUNFILES_DIR")) runfiles = env;
  if (runfiles.empty() && !SelfExe().empty()) runfiles = SelfExe() + ".runfiles";
  const fs::path tools = fs::path(runfiles) / "timebalance" / "tools";
  std::error_code ec;
  return fs::is_directory(tools, ec) ? tools.string() : "";
}

int Run() {
  if (FLAGS_suite.empty()) return tb::ToolError(kTool, tb::kExitUsageError, "--suite is required");
  tb::RegressOptions options;
  options.suite_path = FLAGS_suite;
  options.root = FLAGS_root;
  options.out_dir = FLAGS_out;
  options.update = FLAGS_update;
  options.allow_wider_bands = FLAGS_allow_wider_bands;
  options.jobs = FLAGS_jobs;
  options.check_only = FLAGS_check;
  options.verbose = FLAGS_verbose;
  options.tools_dir = RunfilesTools();
  options.self_exe = SelfExe();
  options.internal_group = FLAGS_internal_group;
  options.internal_shard = FLAGS_internal_shard;
  options.internal_shards = FLAGS_internal_shards;
  if (!FLAGS_entries.empty()) options.entries = absl::StrSplit(FLAGS_entries, ',', absl::SkipEmpty());
  if (FLAGS_allow_wider_bands && !FLAGS_update) {
    return tb::ToolError(kTool, tb::kExitUsageError, "--allow_wider_bands needs --update");
  }
  options.stop = tb::InstallStopSignalHandlers();
  absl::StatusOr<tb::RegressResult> result = tb::RunRegression(options);
  if (!result.ok()) {
    return tb::ToolError(kTool, tb::ExitCodeFor(result.status()), result.status());
  }
  if (result->interrupted) {
    std::fprintf(stderr, "regress: interrupted; rerun the same command to continue\n");
    return 128 + tb::InterruptSignal();
  }
  return result->exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      kTool,
      "Runs a regression suite and compares every entry with its expected value.\n"
      "  regress --suite=benchmarks/ci.pbtxt [--update] [--jobs=N] [--out=DIR]\n"
      "The suite is a text-proto tb.RegressionSuite (train/regress.proto; docs/REGRESSION.md).",
      &argc, &argv);
  if (init != 0) return init;
  // The runners' INFO lines (e.g. "--resume: no checkpoint") only with --verbose.
  if (!FLAGS_verbose) FLAGS_minloglevel = 1;
  return Run();
}
