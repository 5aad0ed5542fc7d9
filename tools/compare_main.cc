// compare: runs a comparison matrix (methods x labeled fractions x seeds,
// train/compare.proto) and writes the paper-style table.
//
//   bazel run //tools:compare -- --config=configs/compare/X.pbtxt --out=runs/compare_x
//       [--methods=Supervised,FixMatch] [--fractions=0.1] [--seeds=0] [--num_threads=N]
//
// Finished cells are reused (rerunning the command after a change runs only
// the cells whose config changed); an interrupted run continues where it
// stopped. Outputs: <out>/comparison.md, comparison.csv, cells.csv.
// Exit codes: 0 done, 1 runtime error, 2 bad flags or config, 128 + signal
// when interrupted.
#include <gflags/gflags.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/threads.h"
#include "core/cli.h"
#include "train/compare.h"

DEFINE_string(config, "", "Comparison config (text proto tb.CompareConfig). Required.");
DEFINE_string(out, "", "Output folder (cells, tables). Required.");
DEFINE_string(methods, "", "Comma-separated method names to run (default: all).");
DEFINE_string(fractions, "", "Comma-separated labeled fractions to run (default: all).");
DEFINE_string(seeds, "", "Comma-separated seeds to run (default: all).");
DEFINE_int32(num_threads, -1, "LibTorch intra-op threads (default: the base config's).");

namespace {

int Run() {
  if (FLAGS_config.empty() || FLAGS_out.empty()) {
    return tb::ToolError("compare", tb::kExitUsageError, "--config and --out are required");
  }
  absl::StatusOr<tb::CompareConfig> config = tb::LoadCompareConfig(FLAGS_config);
  if (!config.ok()) {
    return tb::ToolError("compare", tb::kExitUsageError, config.status());
  }
  if (FLAGS_num_threads >= 0) config->mutable_base()->set_num_threads(FLAGS_num_threads);
  absl::Status valid = tb::ValidateCompareConfig(*config);
  if (!valid.ok()) return tb::ToolError("compare", tb::kExitUsageError, valid);
  const int threads = tb::ConfigureThreads(config->base().num_threads());
  std::printf("%d threads\n", threads);
  tb::CompareOptions options;
  options.out_dir = FLAGS_out;
  if (!FLAGS_methods.empty()) {
    options.methods = absl::StrSplit(FLAGS_methods, ',', absl::SkipEmpty());
  }
  for (absl::string_view f : absl::StrSplit(FLAGS_fractions, ',', absl::SkipEmpty())) {
    float v;
    if (!absl::SimpleAtof(f, &v)) {
      return tb::ToolError("compare", tb::kExitUsageError,
                           "--fractions: \"" + std::string(f) + "\" is not a number");
    }
    options.fractions.push_back(v);
  }
  for (absl::string_view s : absl::StrSplit(FLAGS_seeds, ',', absl::SkipEmpty())) {
    uint64_t v;
    if (!absl::SimpleAtoi(s, &v)) {
      return tb::ToolError("compare", tb::kExitUsageError,
                           "--seeds: \"" + std::string(s) + "\" is not a seed");
    }
    options.seeds.push_back(v);
  }
  options.stop = tb::InstallStopSignalHandlers();
  absl::StatusOr<tb::CompareResult> result = tb::RunComparison(*config, options);
  if (!result.ok()) {
    const int code = result.status().code() == absl::StatusCode::kInvalidArgument
                         ? tb::kExitUsageError
                         : tb::kExitDataError;
    return tb::ToolError("compare", code, result.status());
  }
  if (result->interrupted) {
    std::fprintf(stderr, "compare: interrupted; rerun the same command to continue\n");
    return 128 + tb::InterruptSignal();
  }
  std::printf("%s\ncompare: %d cells run, %d reused; tables in %s/comparison.{md,csv}\n",
              result->markdown.c_str(), result->ran, result->reused, FLAGS_out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      "compare",
      "Runs methods x labeled fractions x seeds from one comparison config and writes the "
      "table.\n  compare --config=configs/compare/X.pbtxt --out=runs/compare_x "
      "[--methods=A,B]\nThe config is a text-proto tb.CompareConfig (train/compare.proto).",
      &argc, &argv);
  if (init != 0) return init;
  return Run();
}
