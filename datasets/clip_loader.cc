#include "datasets/clip_loader.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "core/rng.h"

namespace tb {
namespace {
constexpr uint32_t kOrderPurpose = 1;
constexpr uint32_t kClipPurpose = 2;
}  // namespace

namespace {
std::shared_ptr<const SamplePlanner> DefaultPlanner(const DatasetConfig& config) {
  auto planner = CreateSamplePlanner(SamplerConfig(), config);
  CHECK(planner.ok()) << planner.status();
  return std::move(*planner);
}
}  // namespace

ClipLoader::ClipLoader(std::vector<LabeledVideo> videos, const DatasetConfig& config,
                       int batch_size, uint64_t seed, int64_t first_batch,
                       std::shared_ptr<const SamplePlanner> planner,
                       SlowVideoOptions slow_video, LoaderShard shard)
    : videos_(std::move(videos)),
      config_(config),
      geometry_(ClipGeometryFromConfig(config)),
      planner_(planner != nullptr ? std::move(planner) : DefaultPlanner(config)),
      batch_size_(batch_size),
      shard_(shard),
      seed_(seed),
      batches_per_epoch_(std::max<int64_t>(1, static_cast<int64_t>(videos_.size()) / batch_size)),
      slow_videos_(slow_video) {
  CHECK(!videos_.empty()) << "ClipLoader needs at least one video";
  CHECK_GT(batch_size, 0);
  CHECK(shard.count > 0 && shard.index >= 0 && shard.index < shard.count)
      << "shard " << shard.index << " of " << shard.count;
  CHECK_EQ(batch_size % shard.count, 0) << "batch size " << batch_size << " over "
                                        << shard.count << " shards";
  prefetcher_ = std::make_unique<OrderedPrefetcher<absl::StatusOr<ClipBatch>>>(
      [this](int64_t index) { return Build(index); }, config_.loader().num_workers(),
      config_.loader().prefetch_batches(), first_batch);
}

absl::StatusOr<ClipBatch> ClipLoader::Build(int64_t index) const {
  const int64_t n = static_cast<int64_t>(videos_.size());
  const int64_t epoch = index / batches_per_epoch_;
  const int64_t in_epoch = index % batches_per_epoch_;
  const std::vector<int64_t> order = RngStream(seed_, epoch, 0, 0, kOrderPurpose).Permutation(n);
  ClipBatch batch;
  batch.index = index;
  batch.epoch = epoch;
  const std::vector<ViewShape>& shapes = planner_->views();
  const int64_t s = geometry_.crop_size;
  std::vector<float*> base;
  std::vector<int64_t> sample_floats;
  // This shard's samples: global slots [first, first + size).
  const int size = batch_size_ / shard_.count;
  const int first = shard_.index * size;
  for (const ViewShape& v : shapes) {
    torch::Tensor t = torch::empty({size, v.clips, v.channels, v.frames, s, s});
    base.push_back(t.data_ptr<float>());
    sample_floats.push_back(static_cast<int64_t>(v.clips) * v.channels * v.frames * s * s);
    batch.views[v.name] = t;
  }
  batch.labels = torch::empty({size}, torch::kInt64);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  std::vector<float*> outputs(shapes.size());
  for (int j = 0; j < size; ++j) {
    const int64_t position = (in_epoch * batch_size_ + first + j) % n;
    absl::Status status;
    for (int64_t attempt = 0; attempt < n; ++attempt) {
      const int64_t video = order[(position + attempt) % n];
      // The stream depends on the slot (position) and the attempt, not on
      // which worker runs it.
      RngStream rng(seed_, epoch, position, static_cast<uint32_t>(attempt), kClipPurpose);
      for (size_t v = 0; v < shapes.size(); ++v) outputs[v] = base[v] + j * sample_floats[v];
      SampleTimings timings;
      status = DecodeSample(videos_[video].path, *planner_, geometry_, &rng, outputs, &timings);
      decode_nanos_ += static_cast<int64_t>(timings.decode_seconds * 1e9);
      augment_nanos_ += static_cast<int64_t>(timings.augment_seconds * 1e9);
      slow_videos_.Observe(videos_[video].path, timings.decode_seconds);
      if (status.ok()) {
        labels[j] = videos_[video].label;
        batch.videos.push_back(video);
        batch.paths.push_back(videos_[video].path);
        break;
      }
      if (config_.loader().on_error() == LoaderOptions::FAIL) return status;
      LOG(WARNING) << "substituting unreadable video: " << status.message();
      ++batch.substitutions;
    }
    if (!status.ok()) {
      return absl::DataLossError(absl::StrCat("no readable video left to substitute; last: ",
                                              status.message()));
    }
  }
  auto clip = batch.views.find("clip");
  if (clip != batch.views.end()) batch.clips = clip->second.squeeze(1);
  return batch;
}

}  // namespace tb
