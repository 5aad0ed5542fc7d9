// File: core/checkpoint.h
//
// Checkpoints: every module's parameters and buffers, every optimizer's state,
// and the training position (step, epoch, RNG seed) plus the fully resolved
// config text, in one LibTorch archive. Writes are atomic: the archive goes to
// a temporary file in the same folder, is flushed to disk, and is renamed over
// the final name, so a run killed mid-write leaves the previous checkpoint.
//
// Because data augmentation uses the counter-based tb::RngStream, the RNG
// state is the seed plus the (epoch, step) position: restoring those
// reproduces the random numbers of the interrupted run.
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
};

// What to save or restore. Names key the archive, so the same names must be
// used on load. Pointers are not owned.
struct CheckpointContents {
  std::vector<std::pair<std::string, torch::nn::Module*>> modules;
  std::vector<std::pair<std::string, torch::optim::Optimizer*>> optimizers;
  TrainingPosition position;
};

absl::Status SaveCheckpoint(const std::string& path, const CheckpointContents& contents);

// Restores into the given modules/optimizers (which must have the saved
// structure) and fills contents->position. Errors name the file and the part.
absl::Status LoadCheckpoint(const std::string& path, CheckpointContents* contents);

// Reads just the position (step, epoch, seed, config) of a checkpoint.
absl::StatusOr<TrainingPosition> ReadCheckpointPosition(const std::string& path);

// Name of the checkpoint for `step` in `dir`: ckpt_00001234.pt.
std::string CheckpointPath(const std::string& dir, int64_t step);

// The checkpoint with the highest step in `dir`, NotFound if there is none.
absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir);

// Deletes all but the newest `keep` checkpoints in `dir`.
absl::Status PruneCheckpoints(const std::string& dir, int keep);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_CHECKPOINT_H_
