// File: datasets/clip_loader.h
//
// A multi-threaded loader of training batches. Batches form an endless
// sequence: batch g belongs to epoch g / batches_per_epoch; each epoch visits
// the videos in a permutation drawn from (seed, epoch), and every clip's
// random start and crop come from RngStream(seed, epoch, position, view).
// Worker threads build whole batches ahead of the trainer, at most
// `prefetch_batches` beyond the one being consumed (the bounded queue), and
// batches are handed out strictly in order. The content of batch g is thus
// independent of the number of workers and of scheduling, and a resumed run
// that starts at batch g sees exactly the batches of the interrupted one.
//
// An unreadable video (or, for flow views, a missing, damaged or stale
// flow file) either fails the batch (FAIL: the error names the file
// and the reason) or is replaced by the next readable video of the epoch's
// order (SUBSTITUTE), counted in ClipBatch::substitutions; a batch is never
// silently shrunk.
//
// A video whose decode takes far longer than its peers' (by default more
// than 10x the running median and more than 1 s; SlowVideoOptions) is logged
// with LOG(WARNING) naming the file and the time, and counted in
// slow_video_count() for the training log.
#ifndef TIMEBALANCE_DATASETS_CLIP_LOADER_H_
#define TIMEBALANCE_DATASETS_CLIP_LOADER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "core/ordered_prefetcher.h"
#include "datasets/datasets.pb.h"
#include "datasets/slow_video_monitor.h"
#include "datasets/video_clips.h"
#include "datasets/views.h"

namespace tb {

struct LabeledVideo {
  std::string path;
  int label = 0;
};

struct ClipBatch {
  // Every view of the sampler by name: [B, K, 3, T, S, S] float (K clips of
  // the view per sample; see datasets/views.h); flow views ("<view>_flow")
  // are [B, K, 2, T, S, S].
  std::map<std::string, torch::Tensor> views;
  // The "clip" view as [B, 3, T, S, S] when the sampler has one (single-clip
  // sampling); undefined otherwise.
  torch::Tensor clips;
  torch::Tensor labels;  // [B] int64
  std::vector<int64_t> videos;  // indices into the loader's video list
  std::vector<std::string> paths;  // the videos' paths, in batch order
  int64_t index = 0;     // global batch index
  int64_t epoch = 0;
  int substitutions = 0;
};

// Which part of each global batch this loader builds: shard `index` of
// `count` takes samples [index * B / count, (index + 1) * B / count) of the
// batch of size B, each exactly as the unsharded loader builds it (its
// video, clip start, crop and augmentation depend on its position in the
// global batch), so `count` sharded loaders together see the batches of
// one. B must be a multiple of `count`.
struct LoaderShard {
  int index = 0;
  int count = 1;
};

class ClipLoader {
 public:
  // `config` must be resolved (defaults filled). Starts the workers at batch
  // `first_batch` (0 for a fresh run, the step count when resuming).
  // `planner` says which views a sample has; nullptr = one clip per sample
  // with the config's clip geometry and augmentation.
  // `slow_video` says which decodes count as slow.
  ClipLoader(std::vector<LabeledVideo> videos, const DatasetConfig& config, int batch_size,
             uint64_t seed, int64_t first_batch,
             std::shared_ptr<const SamplePlanner> planner = nullptr,
             SlowVideoOptions slow_video = {}, LoaderShard shard = {});

  // Blocks until the next batch is ready.
  absl::StatusOr<ClipBatch> Next() { return prefetcher_->Next(); }

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // Seconds Next() spent waiting for workers, summed since construction.
  double wait_seconds() const { return prefetcher_->wait_seconds(); }
  // Seconds the workers spent decoding videos (opening, decoding the needed
  // frames) and augmenting clips (crop, resize, photometric operations,
  // normalisation), each summed over workers and samples since construction
  // (substitution attempts and batches built ahead included); with W
  // workers they can grow up to W times as fast as the wall clock.
  double decode_seconds() const { return decode_nanos_.load() * 1e-9; }
  double augment_seconds() const { return augment_nanos_.load() * 1e-9; }
  // Decodes (of one sample, substitution attempts included) that took far
  // longer than the running median, each also logged as a warning naming
  // the file; summed since construction.
  int64_t slow_video_count() const { return slow_videos_.slow_count(); }

  // The batch with global index `index` (what the workers run).
  absl::StatusOr<ClipBatch> Build(int64_t index) const;

 private:

  const std::vector<LabeledVideo> videos_;
  const DatasetConfig config_;
  const ClipGeometry geometry_;
  const std::shared_ptr<const SamplePlanner> planner_;
  const int batch_size_;  // global
  const LoaderShard shard_;
  const uint64_t seed_;
  const int64_t batches_per_epoch_;
  mutable std::atomic<int64_t> decode_nanos_{0};
  mutable std::atomic<int64_t> augment_nanos_{0};
  mutable SlowVideoMonitor slow_videos_;
  // Last member: its workers call Build() and must stop before the rest goes.
  std::unique_ptr<OrderedPrefetcher<absl::StatusOr<ClipBatch>>> prefetcher_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_CLIP_LOADER_H_
