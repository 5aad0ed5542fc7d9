#include "datasets/decoded_cache.h"

#include <sys/stat.h>

#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tb {

DecodedVideoCache* DecodedVideoCache::Shared(int64_t budget_mb) {
  static std::mutex mu;
  static DecodedVideoCache* cache = nullptr;  // never destroyed: loader threads may outlive main
  std::lock_guard<std::mutex> lock(mu);
  if (budget_mb <= 0) return nullptr;
  if (cache == nullptr) {
    cache = new DecodedVideoCache(budget_mb << 20);
  } else {
    cache->RaiseBudget(budget_mb << 20);
  }
  return cache;
}

void DecodedVideoCache::RaiseBudget(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  budget_bytes_ = std::max(budget_bytes_, bytes);
}

std::shared_ptr<const DecodedVideoCache::Video> DecodedVideoCache::Get(const std::string& path,
                                                                       int short_side) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return nullptr;  // the ordinary path reports it
  const std::string key = absl::StrCat(path, "|", short_side, "|", st.st_size, "|",
                                       st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = videos_.find(key);
    if (it != videos_.end()) {
      ++stats_.hits;
      return it->second;
    }
    ++stats_.misses;
    if (uncacheable_.count(key) > 0) return nullptr;
  }
  // Decoded outside the lock: other threads go on meanwhile (two threads may
  // decode the same video at once; the second insert is dropped).
  absl::StatusOr<std::unique_ptr<VideoReader>> reader = VideoReader::Open(path);
  if (!reader.ok()) return nullptr;
  const VideoInfo& info = (*reader)->info();
  int w = 0, h = 0;
  ScaledSize(info.width, info.height, short_side, &w, &h);
  const int64_t estimate = static_cast<int64_t>(w) * h * 3 * info.frame_count;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stats_.bytes + estimate > budget_bytes_) return nullptr;  // does not fit
  }
  std::vector<int64_t> all(static_cast<size_t>(info.frame_count));
  std::iota(all.begin(), all.end(), 0);
  absl::StatusOr<Frames> frames =
      info.frame_count > 0 && !(*reader)->damage().damaged()
          ? (*reader)->ReadFrames(all, short_side)
          : absl::StatusOr<Frames>(absl::DataLossError("damaged"));
  std::lock_guard<std::mutex> lock(mu_);
  if (!frames.ok() || (*reader)->damage().damaged()) {
    uncacheable_[key] = true;
    ++stats_.uncacheable;
    return nullptr;
  }
  auto video = std::make_shared<Video>();
  video->frame_count = info.frame_count;
  video->frames = *std::move(frames);
  const int64_t bytes = static_cast<int64_t>(video->frames.rgb.size());
  auto [it, inserted] = videos_.emplace(key, video);
  if (!inserted) return it->second;
  if (stats_.bytes + bytes > budget_bytes_) {
    videos_.erase(it);
    return video;  // served this once, not kept
  }
  stats_.bytes += bytes;
  ++stats_.videos;
  return video;
}

DecodedVideoCache::Stats DecodedVideoCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace tb
