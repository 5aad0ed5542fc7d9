// File: train/regress.h
//
// Regression suites (RegressionSuite in train/regress.proto), run by
// //tools:regress: every entry names what to run, which number to read,
// the expected number, its band and the number's provenance. RunRegression
// validates the whole suite first (an entry whose config no longer exists,
// or does not validate, is an error naming it, before anything runs),
// generates the suite's SynthActions data, runs experiment and comparison
// entries as comparison cells (train/compare.h: finished cells are reused,
// so a rerun at the same code only reads numbers), measures performance
// entries afresh, alone, after everything else, then prints one line per
// entry (name, kind, expected, measured, band, verdict) and a closing
// "N passed, N failed". An improvement beyond the band fails like a
// regression: the suite must then be updated on purpose. `update` rewrites
// the expected values and provenance in the suite file in place (nothing
// else in the file changes) and refuses to widen a band unless asked.
// Every measurement is appended to <out>/history.jsonl
// (RegressionHistoryRecord), which //tools:report plots against the band.
#ifndef TIMEBALANCE_TRAIN_REGRESS_H_
#define TIMEBALANCE_TRAIN_REGRESS_H_

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "train/regress.pb.h"

namespace tb {

// Parses the suite at `path`: NotFound when missing, InvalidArgument naming
// the file and line of a syntax error.
absl::StatusOr<RegressionSuite> LoadRegressionSuite(const std::string& path);

// The workspace root of a suite: the nearest folder above it holding a
// WORKSPACE file; "" when there is none.
std::string FindWorkspaceRoot(const std::string& suite_path);

// Structure (kinds, sources, seeds, metric paths, tolerances, data names)
// and every entry's config, loaded and validated from `root` (InvalidArgument
// naming the entry and field; an entry whose config file is gone says so).
// `tools_dir`: where "{tool:NAME}" binaries are looked up ("" = only
// <root>/bazel-bin/tools).
absl::Status ValidateRegressionSuite(const RegressionSuite& suite, const std::string& root,
                                     const std::string& tools_dir = "");

// A measured number: one value per seed (one for DETERMINISTIC and
// PERFORMANCE entries), or text.
struct Measured {
  bool is_text = false;
  std::string text;
  std::vector<double> per_seed;
  double mean = 0, std = 0;  // sample std (n - 1); 0 for one value
};

// Fills mean and std from per_seed.
void Summarize(Measured* measured);

// Half-width of the entry's band around `expected` (kind rules in
// train/regress.proto).
double BandHalfWidth(const RegressionEntry& entry, const Expected& expected);

enum class Verdict { kPass, kRegression, kImprovement, kChanged };
const char* VerdictName(Verdict verdict);

// Compares `measured` with the entry's recorded expected value.
Verdict Judge(const RegressionEntry& entry, const Measured& measured);

// The expected value `--update` records for `measured`, with `provenance`.
// FailedPrecondition naming the entry when that would widen the band (a
// STATISTICAL entry whose new std times std_multiplier exceeds the old band)
// and `allow_wider_band` is false. A published value is kept; DETERMINISTIC
// and PERFORMANCE entries keep the values of other machine kinds.
absl::StatusOr<Expected> UpdatedExpected(const RegressionEntry& entry, const Measured& measured,
                                         const Provenance& provenance, bool allow_wider_band);

// `suite_text` with the `expected` block of entry i replaced (or added when
// absent) by updates[i]; everything else byte for byte as it was. The result
// is parsed back and checked to hold exactly the updated suite.
absl::StatusOr<std::string> RewriteExpected(const std::string& suite_text,
                                            const std::string& source,
                                            const std::map<int, Expected>& updates);

// Where and when: git HEAD of `root` (+dirty), UTC date, CPU model name and
// core count, LibTorch version, machine kind.
Provenance CurrentProvenance(const std::string& root);

// What exact values depend on: "x86_64 AVX2, LibTorch 1.13.0" (the widest
// vector ISA of /proc/cpuinfo's flags decides LibTorch's kernels).
std::string CurrentMachineKind();

// The record a DETERMINISTIC or PERFORMANCE entry is compared with on
// `machine_kind`: its expected value when recorded on that kind (or without
// a kind), else the matching one of other_machines, else nullptr (the entry
// is skipped there). STATISTICAL entries: &entry.expected().
const Expected* ExpectedFor(const RegressionEntry& entry, const std::string& machine_kind);

// A digest of the tracked code under the git work tree `root`: HEAD's tree
// and the uncommitted diff, without benchmarks/, docs/ and *.md (so
// committing a rewritten suite or documentation keeps finished runs
// reusable, and any code change does not). Empty when git cannot tell.
std::string CodeFingerprint(const std::string& root);

struct RegressOptions {
  std::string suite_path;
  // Workspace root; "" = FindWorkspaceRoot(suite_path).
  std::string root;
  // Output folder (data, cells, history.jsonl); "" = runs/regress/<suite
  // file name without extension>, relative to the current folder.
  std::string out_dir;
  // Rewrite expected values and provenance of the selected entries.
  bool update = false;
  // With `update`: accept a wider band (STATISTICAL entries whose recorded
  // std grew).
  bool allow_wider_bands = false;
  // Groups of experiment/comparison entries, and shards of a comparison
  // group's cells, run concurrently (each with its entries' thread count);
  // performance entries always run alone.
  int jobs = 1;
  // Subset of entry names to run (empty = all).
  std::vector<std::string> entries;
  // Only validate the suite (no data, no runs).
  bool check_only = false;
  // "{tool:NAME}" lookup folder (the regress binary's runfiles tools/).
  std::string tools_dir;
  // The regress binary. With jobs > 1 each group runs in a child process
  // (`self_exe --internal_group=N ...`): LibTorch's default random generator
  // is process-wide, so two runs in one process would draw from it in turn
  // and deterministic entries would not be. Empty: groups run one after the
  // other in this process whatever `jobs` says.
  std::string self_exe;
  // Child mode: run only group N (in suite order) and return; no judging.
  int internal_group = -1;
  // Child mode: of that group's cells only shard internal_shard of
  // internal_shards (CompareOptions' sharding: a cell and the cells taking
  // their teacher from it stay together). With jobs > 1 a comparison group
  // of several cells is split into up to 3 x jobs shards, so one suite-wide
  // comparison (the nightly tier) also runs `jobs` cells at a time.
  int internal_shard = 0;
  int internal_shards = 1;
  // The runners' own progress lines (training steps, cells) on stdout.
  bool verbose = false;
  const std::atomic<bool>* stop = nullptr;
};

struct EntryOutcome {
  std::string name;
  std::string line;  // as printed
  bool passed = false;
  // A deterministic entry with no value for this machine kind.
  bool skipped = false;
  // 0 pass/fail by value; 2 the entry's metric could not be read (missing
  // file or path: the suite must change); 1 a runtime error.
  int error_exit = 0;
};

struct RegressResult {
  std::vector<EntryOutcome> entries;
  int passed = 0, failed = 0, skipped = 0;
  bool interrupted = false;
  bool rewrote_suite = false;
  std::string out_dir;
  // 0 all passed; 1 a failure or runtime error; 2 a missing metric path.
  int exit_code = 0;
};

// Runs the suite (see the file comment) and prints to stdout. Errors before
// anything runs: InvalidArgument for a bad suite, flag or an expected value
// not yet recorded (the binary exits 2); NotFound for a missing suite file.
absl::StatusOr<RegressResult> RunRegression(const RegressOptions& options);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_REGRESS_H_
