// File: train/training_loop.h
//
// Runs a Trainer for schedule.steps optimizer steps: builds the optimizer
// from the config, draws batches from ClipLoaders, sets the learning rate,
// calls backward, clips gradients, steps, writes checkpoints atomically
// every checkpoint_every steps and on interruption, and prints a progress
// line (step, loss, clips/s, data-wait share, ETA). With `resume` it restores
// the latest checkpoint of run_dir/checkpoints and continues at its step;
// batch g of the run is always the same batch (see ClipLoader), so a resumed
// run sees the data the uninterrupted run would have seen.
#ifndef TIMEBALANCE_TRAIN_TRAINING_LOOP_H_
#define TIMEBALANCE_TRAIN_TRAINING_LOOP_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "datasets/formats/experiment_data.h"
#include "train/api/trainer.h"
#include "train/distributed.h"

namespace tb {

struct TrainingOutcome {
  int64_t first_step = 0;  // step the run (re)started from
  int64_t steps_done = 0;  // completed optimizer steps (total, incl. resumed)
  bool interrupted = false;
  double seconds = 0;       // wall time of this invocation
  double data_wait_seconds = 0;
  double clips_per_second = 0;
  std::map<std::string, double> last_metrics;  // averaged over the last log window
};

// `stop` (may be null) is polled between steps; when it becomes true a
// checkpoint is written and the function returns with interrupted = true.
// `quiet` leaves out the progress lines on stdout (metrics.jsonl is still
// written).
//
// With `distributed` (several ranks; docs/DISTRIBUTED.md) every rank runs
// this with the same config: rank r trains on its slice of each global
// batch (trainer.labeled_batch_size / world_size samples; the batch sizes
// must divide), gradients are averaged over the ranks (GradientSynchronizer),
// BatchNorm layers use the global batch's statistics with
// distributed.sync_batchnorm, the model is broadcast from rank 0 at the start
// and after a resume, and only rank 0 writes checkpoints (with every rank's
// random generator state), metrics and events; the logged metrics are the
// ranks' means. `stop` on any rank stops every rank at the same step.
absl::StatusOr<TrainingOutcome> RunTraining(const ExperimentConfig& config,
                                            const ExperimentData& data, Trainer* trainer,
                                            const torch::Device& device, bool resume,
                                            const std::atomic<bool>* stop, bool quiet = false,
                                            std::shared_ptr<ProcessGroupCollectives> distributed =
                                                nullptr);

std::string CheckpointDir(const ExperimentConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_TRAINING_LOOP_H_
