// File: core/checkpoint.h
//
// Checkpoints: every module's parameters and buffers, every optimizer's state,
// the training position (step, epoch, seed), the state of LibTorch's global
// random generators, and the fully resolved config text, in one LibTorch
// archive. Writes are atomic: the archive goes to a temporary file in the
// same folder, is flushed to disk, and is renamed over the final name, so a
// run killed mid-write (even by SIGKILL) leaves the previous checkpoint.
// Every checkpoint carries its SHA-256 in a sidecar `<name>.sha256` (the
// `sha256sum` format, written before the checkpoint is renamed into place);
// loading verifies it, and LatestCheckpoint skips a checkpoint that does not
// verify.
//
// Randomness and exact resume: data order and augmentation come from the
// counter-based tb::RngStream (a function of seed and position); everything
// drawn from LibTorch's global generators (initialisation, dropout masks,
// random choices inside objectives) continues from the generator state the
// checkpoint stored. Restoring both reproduces the random numbers of the
// interrupted run exactly.
#ifndef TIMEBALANCE_CORE_CHECKPOINT_H_
#define TIMEBALANCE_CORE_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace torch {
namespace nn {
class Module;
}  // namespace nn
namespace optim {
class Optimizer;
}  // namespace optim
}  // namespace torch

namespace tb {

struct TrainingPosition {
  int64_t step = 0;   // optimizer steps taken
  int64_t epoch = 0;  // epoch the next step belongs to
  uint64_t seed = 0;  // RNG seed of the run
  std::string config_text;  // resolved experiment config (text proto)
  // The states of LibTorch's default generators as CaptureGlobalRngState
  // returns them, one entry per rank of a data-parallel run (one for a
  // single process); empty = not recorded.
  std::vector<std::string> rng_states;
};

// The states of this process's LibTorch default generators (the CPU one,
// then one per CUDA device), packed into one byte string.
std::string CaptureGlobalRngState();
// Restores states packed by CaptureGlobalRngState; InvalidArgument when they
// do not fit this machine's generators (another number of CUDA devices).
absl::Status RestoreGlobalRngState(const std::string& packed);

// What to save or restore. Names key the archive, so the same names must be
// used on load. Pointers are not owned.
struct CheckpointContents {
  std::vector<std::pair<std::string, torch::nn::Module*>> modules;
  std::vector<std::pair<std::string, torch::optim::Optimizer*>> optimizers;
  TrainingPosition position;
};

// Writes the checkpoint atomically with its SHA-256 sidecar.
absl::Status SaveCheckpoint(const std::string& path, const CheckpointContents& contents);

// Verifies the checksum (DataLoss naming the file when it does not match;
// a checkpoint without a sidecar, written before checksums existed, loads
// with a warning), restores into the given modules/optimizers (which must
// have the saved structure) and fills contents->position. Errors name the
// file and the part.
absl::Status LoadCheckpoint(const std::string& path, CheckpointContents* contents);

// The sidecar holding `path`'s SHA-256.
std::string ChecksumPath(const std::string& path);

// OK when `path` matches its recorded SHA-256 (or has none recorded);
// DataLoss naming the file and both digests otherwise.
absl::Status VerifyCheckpoint(const std::string& path);

// SHA-256 (hex) of every parameter and buffer of `module`: names in
// registration order, dtypes, shapes and bytes. Equal for two modules with
// bit-identical state; recorded in results.json as model_sha256.
std::string ModuleSha256(const torch::nn::Module& module);

// Reads just the position (step, epoch, seed, config) of a checkpoint.
absl::StatusOr<TrainingPosition> ReadCheckpointPosition(const std::string& path);

// Name of the checkpoint for `step` in `dir`: ckpt_00001234.pt.
std::string CheckpointPath(const std::string& dir, int64_t step);

// The checkpoint with the highest step in `dir` that verifies, NotFound if
// there is none. A checkpoint that fails verification is skipped with a
// warning naming it (the one before it is used).
absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir);

// Deletes all but the newest `keep` checkpoints in `dir` (with their
// sidecars), and temporary files left by writers that were killed.
absl::Status PruneCheckpoints(const std::string& dir, int keep);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_CHECKPOINT_H_
