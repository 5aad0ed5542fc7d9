// compare: runs a comparison matrix (methods x labeled fractions x seeds,
// train/compare.proto) and writes the paper-style table.
//
//   bazel run //tools:compare -- --config=configs/compare/X.pbtxt --out=runs/compare_x
//       [--methods=Supervised,FixMatch] [--fractions=0.1] [--seeds=0] [--num_threads=N]
//       [--shard=i/N | --collect]
//
// On a cluster: N invocations with --shard=0/N ... --shard=N-1/N (a Slurm
// job array, N machines) sharing --out each run a deterministic part of the
// cells (a lock per cell: a cell is never run twice), then one --collect
// builds the tables from every finished cell and lists the missing ones.
//
// Finished cells are reused (rerunning the command after a change runs only
// the cells whose config changed); an interrupted run continues where it
// stopped. Outputs: <out>/comparison.md, comparison.csv, cells.csv.
// Exit codes: 0 done, 1 runtime error or (--collect) cells not finished,
// 2 bad flags or config, 128 + signal when interrupted.
#include <gflags/gflags.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
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
DEFINE_string(shard, "",
              "i/N: run only shard i of N of the selected cells (0 <= i < N); the shards of one "
              "matrix share --out.");
DEFINE_bool(collect, false,
            "Run nothing: write the tables from the finished cells in --out and list the cells "
            "that have not finished (exit 1 if any).");

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
  if (!FLAGS_shard.empty()) {
    std::vector<std::string> parts = absl::StrSplit(FLAGS_shard, '/');
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &options.shard_index) ||
        !absl::SimpleAtoi(parts[1], &options.shard_count) || options.shard_count < 1 ||
        options.shard_index < 0 || options.shard_index >= options.shard_count) {
      return tb::ToolError("compare", tb::kExitUsageError,
                           "--shard: \"" + FLAGS_shard + "\" is not i/N with 0 <= i < N");
    }
  }
  options.collect = FLAGS_collect;
  if (options.collect && (!FLAGS_shard.empty() || !options.methods.empty() ||
                          !options.fractions.empty() || !options.seeds.empty())) {
    return tb::ToolError("compare", tb::kExitUsageError,
                         "--collect runs nothing; it takes no --shard, --methods, --fractions "
                         "or --seeds");
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
  if (options.collect) {
    std::printf("%s\ncompare: %d cells finished; tables in %s/comparison.{md,csv}\n",
                result->markdown.c_str(), static_cast<int>(result->cells.size()),
                FLAGS_out.c_str());
    if (!result->missing.empty()) {
      std::fprintf(stderr, "compare: %d cells not finished: %s\n",
                   static_cast<int>(result->missing.size()),
                   absl::StrJoin(result->missing, "; ").c_str());
      return tb::kExitDataError;
    }
    return 0;
  }
  std::printf("%s\ncompare: %d cells run, %d reused, %d running elsewhere; tables in "
              "%s/comparison.{md,csv}\n",
              result->markdown.c_str(), result->ran, result->reused, result->elsewhere,
              FLAGS_out.c_str());
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
