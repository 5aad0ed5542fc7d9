// File: train/compare.h
//
// The controlled comparison run by //tools:compare (CompareConfig in
// train/compare.proto): every cell (method x labeled fraction x seed) is the
// base experiment with its method's override, the cell's fraction and seed;
// each runs in <out>/cells/<method>/f<fraction>_s<seed>_<fingerprint>/ and
// leaves cell_done.pbtxt when finished. A finished cell whose fingerprint
// (its resolved config, its teacher's fingerprint and its pretraining run's
// config) is unchanged is
// reused; an interrupted one resumes from its latest checkpoint; a changed
// config gets a new folder. A method with `pretrain` first runs that
// pretraining experiment in <cell>/pretrain/ (reused once it has left
// pretrain_done.pbtxt) and initialises the cell's model from its final
// checkpoint. The table (mean +- sample std of video top-1
// over seeds, one row per method, one column per fraction) is written as
// <out>/comparison.md and <out>/comparison.csv, with every cell in
// <out>/cells.csv, stamped with the backbone, clip geometry, evaluation
// protocol and the labeled lists' hashes. With CompareOptions::jobs > 1 the
// cells to run run in child processes on the pipeline's stage scheduler
// (train/stage_launcher.h), a cell after its teacher_from cell.
#ifndef TIMEBALANCE_TRAIN_COMPARE_H_
#define TIMEBALANCE_TRAIN_COMPARE_H_

#include <torch/types.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/results.pb.h"
#include "train/compare.pb.h"
#include "train/stage_launcher.h"

namespace tb {

// Parses the text proto at `path`; errors name the file and the field.
absl::StatusOr<CompareConfig> LoadCompareConfig(const std::string& path);

// Structural checks (non-empty methods, unique names, fractions in (0, 1],
// teacher_from naming an earlier non-pipeline method, ...) and every cell's
// config validated; InvalidArgument names the method and field.
absl::Status ValidateCompareConfig(const CompareConfig& config);

struct CompareOptions {
  std::string out_dir;
  // Subsets of the matrix to run now (empty = all); the tables still list
  // every row and column, "-" where no cell has finished.
  std::vector<std::string> methods;
  std::vector<float> fractions;
  std::vector<uint64_t> seeds;
  // A deterministic part of the selection, for N invocations (a Slurm job
  // array, N machines) sharing the output folder: the selected cells are
  // grouped so that a cell and the cells whose teacher_from leads to it stay
  // together; the groups, in matrix order (fraction, seed, method), go to
  // shards 0, 1, ..., N-1, 0, ... Each cell also takes a lock
  // (<cell folder>.lock) while it runs: a cell held by another invocation is
  // skipped here ("running elsewhere"), never run twice.
  int shard_index = 0;
  int shard_count = 1;
  // Run nothing: build the tables from the finished cells in out_dir and
  // list the cells that have not finished (CompareResult::missing).
  bool collect = false;
  const std::atomic<bool>* stop = nullptr;
  bool quiet = false;
  // Cells at once. With jobs > 1 and launch_cells set, the selected cells
  // (PlanCells) go to launch_cells (LaunchStages, which //tools:compare binds
  // to its command line): a cell that is finished (same fingerprint) is
  // reused and one locked by another invocation skipped ("running
  // elsewhere"), as one after another; any other runs in a child process
  // once its input has finished, with CellThreads(thread_budget, jobs)
  // threads, at most `jobs` at a time within `thread_budget`. Then the
  // tables are built here from every finished cell, as a run of one cell
  // after another builds them (also after a failure or an interruption).
  // jobs = 1 (or launch_cells unset): every cell in this process, one
  // after another. Ignored with `collect` and in a child.
  int jobs = 1;
  int thread_budget = 1;  // this process's LibTorch threads
  std::function<absl::StatusOr<bool>(const std::vector<StageTask>& tasks, int jobs,
                                     int thread_budget, const StageHooks& hooks)>
      launch_cells;
  // Set in such a child: run only the selected cell of this name (a
  // PlanCells task), for a parent that writes compare_config.pbtxt and the
  // tables (none written here); an error when it is not one this
  // invocation runs or its teacher has not finished.
  std::string child_cell;
};

struct CompareResult {
  std::vector<CellRecord> cells;  // finished cells, in run order
  int reused = 0, ran = 0;
  // Selected cells held by another invocation's lock (skipped).
  int elsewhere = 0;
  // With `collect`: the cells of the matrix without a finished record, as
  // "method, 10% labels, seed 0".
  std::vector<std::string> missing;
  bool interrupted = false;
  std::string markdown, csv;  // the table, as written
};

absl::StatusOr<CompareResult> RunComparison(const CompareConfig& config,
                                            const CompareOptions& options);

// The flag a cell's child process gets (CompareOptions::child_cell);
// //tools:compare defines it.
inline constexpr char kCompareCellFlag[] = "--internal_compare_cell=";

// The threads of each cell's child with `jobs` cells at once within
// `thread_budget` threads: max(1, thread_budget / jobs).
int CellThreads(int thread_budget, int jobs);

// The cells an invocation with `options` runs (its --methods, --fractions,
// --seeds and --shard; none with `collect`), in matrix order, as a graph for
// LaunchStages: one task per cell, named "<method slug>_f<percent>_s<seed>"
// (e.g. "mt_sd_f10_s0", a plain file name), whose input is the nearest cell
// up its teacher_from chain (same fraction and seed) that is also in the
// plan; threads = 1 (the caller sets them). Checks the config and the
// selection as RunComparison does.
absl::StatusOr<std::vector<StageTask>> PlanCells(const CompareConfig& config,
                                                 const CompareOptions& options);

// The key of the cell of method `m` at `fraction` and `seed` (its folder
// name's suffix; a finished cell with the same key is reused): SHA-256 of
// its resolved experiment without run_dir, num_threads and its teacher's
// checkpoint path, then `teacher_fingerprint` (teacher_from's cell key, ""
// without one), then, for a method with `pretrain`, the pretraining run's
// resolved config. Exposed for tests.
absl::StatusOr<std::string> CellFingerprint(const CompareConfig& config, const CompareMethod& m,
                                            float fraction, uint64_t seed,
                                            const std::string& teacher_fingerprint);

// The table from finished cells (exposed for tests): rows in config order,
// "mean ± std (n)" per fraction, "-" where no cell finished.
std::string ComparisonMarkdown(const CompareConfig& config, const std::vector<CellRecord>& cells);
std::string ComparisonCsv(const CompareConfig& config, const std::vector<CellRecord>& cells);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_COMPARE_H_
