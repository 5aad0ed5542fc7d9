// File: train/compare.h
//
// The controlled comparison run by //tools:compare (CompareConfig in
// train/compare.proto): every cell (method x labeled fraction x seed) is the
// base experiment with its method's override, the cell's fraction and seed;
// each runs in <out>/cells/<method>/f<fraction>_s<seed>_<fingerprint>/ and
// leaves cell_done.pbtxt when finished. A finished cell whose fingerprint
// (its resolved config, and its teacher's fingerprint) is unchanged is
// reused; an interrupted one resumes from its latest checkpoint; a changed
// config gets a new folder. The table (mean +- sample std of video top-1
// over seeds, one row per method, one column per fraction) is written as
// <out>/comparison.md and <out>/comparison.csv, with every cell in
// <out>/cells.csv, stamped with the backbone, clip geometry, evaluation
// protocol and the labeled lists' hashes.
#ifndef TIMEBALANCE_TRAIN_COMPARE_H_
#define TIMEBALANCE_TRAIN_COMPARE_H_

#include <torch/types.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/results.pb.h"
#include "train/compare.pb.h"

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
  const std::atomic<bool>* stop = nullptr;
  bool quiet = false;
};

struct CompareResult {
  std::vector<CellRecord> cells;  // finished cells, in run order
  int reused = 0, ran = 0;
  bool interrupted = false;
  std::string markdown, csv;  // the table, as written
};

absl::StatusOr<CompareResult> RunComparison(const CompareConfig& config,
                                            const CompareOptions& options);

// The table from finished cells (exposed for tests): rows in config order,
// "mean ± std (n)" per fraction, "-" where no cell finished.
std::string ComparisonMarkdown(const CompareConfig& config, const std::vector<CellRecord>& cells);
std::string ComparisonCsv(const CompareConfig& config, const std::vector<CellRecord>& cells);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_COMPARE_H_
