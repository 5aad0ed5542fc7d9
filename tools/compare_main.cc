// compare: runs a comparison matrix (methods x labeled fractions x seeds,
// train/compare.proto) and writes the paper-style table.
//
//   bazel run //tools:compare -- --config=configs/compare/X.pbtxt --out=runs/compare_x
//       [--methods=Supervised,FixMatch] [--fractions=0.1] [--seeds=0] [--num_threads=T]
//       [--jobs=J] [--shard=i/N | --collect]
//
// --jobs=J > 1 runs the selected cells on the pipeline's stage scheduler
// (train/stage_launcher.h): each cell to run in a child process of this
// binary (its output in <out>/logs/<cell>.log, e.g. logs/sd_f10_s0.log) as
// soon as the cell its teacher_from names has finished, at most J at a time
// within T threads (T = --num_threads or the base config's; 0 = all cores),
// each with max(1, T / J) threads (passed on its command line as
// --num_threads, so its resolved config records it; the cell fingerprint
// leaves num_threads out, so such a cell is reused by a run with another
// thread count and vice versa). Finished cells are reused and locked ones
// skipped as without --jobs; the tables and the summary line are the same.
// A cell at 1 thread rounds differently from one at 2 (a different,
// reproducible run): a --jobs=2 --num_threads=2 run gives the models of a
// one-after-another --num_threads=1 run bit for bit
// (tests/compare_jobs_test.sh), in general not those of a --num_threads=2
// one. On a 2-vCPU machine two 1-thread cells give about the throughput of
// one 2-thread cell (docs/PERFORMANCE.md).
//
// On a cluster: N invocations with --shard=0/N ... --shard=N-1/N (a Slurm
// job array, N machines) sharing --out each run a deterministic part of the
// cells (a lock per cell: a cell is never run twice), then one --collect
// builds the tables from every finished cell and lists the missing ones.
//
// Finished cells are reused (rerunning the command after a change runs only
// the cells whose config changed); an interrupted run continues where it
// stopped. Outputs: <out>/comparison.md, comparison.csv, cells.csv.
// Exit codes: 0 done, 1 runtime error (with --jobs: a cell's child failed;
// the error names the cell and shows the end of its log) or (--collect)
// cells not finished, 2 bad flags or config, 128 + signal when interrupted
// (with --jobs the signal reaches the children, which checkpoint).
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
#include "train/stage_launcher.h"

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
DEFINE_int32(jobs, 1,
             "Cells at once: J > 1 runs each selected cell that is not finished in a child "
             "process (log <out>/logs/<cell>.log) once its teacher_from cell has finished, J at "
             "a time within the --num_threads budget T, each with max(1, T/J) threads (recorded "
             "in its resolved config); then writes the tables. 1 = one after another in this "
             "process. Refused with --collect.");
DEFINE_string(internal_compare_cell, "",
              "Internal (--jobs): run this one cell for a parent process that writes the "
              "tables.");

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
                          !options.fractions.empty() || !options.seeds.empty() ||
                          FLAGS_jobs != 1)) {
    return tb::ToolError("compare", tb::kExitUsageError,
                         "--collect runs nothing; it takes no --shard, --methods, --fractions, "
                         "--seeds or --jobs");
  }
  if (FLAGS_jobs < 1) {
    return tb::ToolError("compare", tb::kExitUsageError,
                         "--jobs=" + std::to_string(FLAGS_jobs) + ": must be >= 1");
  }
  options.stop = tb::InstallStopSignalHandlers();
  options.jobs = FLAGS_jobs;
  options.thread_budget = threads;
  if (!FLAGS_internal_compare_cell.empty()) {
    options.child_cell = FLAGS_internal_compare_cell;
  } else {
    tb::StageLauncherOptions launcher;
    // Each child's thread count on its command line (the last --num_threads
    // wins), so its cells' configs resolve to it.
    launcher.argv = gflags::GetArgvs();
    launcher.argv.push_back("--num_threads=" +
                            std::to_string(tb::CellThreads(threads, FLAGS_jobs)));
    launcher.task_flag = tb::kCompareCellFlag;
    launcher.task_noun = "cell";
    launcher.run_dir = FLAGS_out;
    launcher.stop = options.stop;
    options.launch_cells = [launcher](const std::vector<tb::StageTask>& tasks, int jobs,
                                      int thread_budget, const tb::StageHooks& hooks) {
      return tb::LaunchStages(launcher, tasks, jobs, thread_budget, hooks);
    };
  }
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
  if (!options.child_cell.empty()) return 0;  // The parent writes the tables.
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
