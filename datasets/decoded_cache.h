// File: datasets/decoded_cache.h
//
// A process-wide cache of whole decoded videos (every frame, RGB at one
// decode short side), for the loaders' many reads of few videos: fine-tuning
// on 30 labeled videos reads each of them hundreds of times, and every read
// would decode the clip's span again. A cached video is served from memory;
// the decoded pixels are the same either way (the test checks clips are
// identical), so the cache changes speed, not results.
//
// Filled first come, first served up to its byte budget (no eviction: the
// contents never change, and a full cache keeps serving what it holds). A
// video is cached only when decoding all of it succeeds with nothing wrong
// found (VideoReader::damage() clean); a damaged video is always read the
// ordinary way, so the loader's error policy sees exactly what it saw
// before. Keys carry the file's size and modification time, so a rewritten
// file is not served stale. Thread-safe.
//
// LoaderOptions.decoded_cache_mb sets the budget (0 = off, the default);
// all loaders of the process share one cache, whose budget is the largest
// asked for.
#ifndef TIMEBALANCE_DATASETS_DECODED_CACHE_H_
#define TIMEBALANCE_DATASETS_DECODED_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "datasets/video_reader.h"

namespace tb {

class DecodedVideoCache {
 public:
  struct Video {
    Frames frames;  // every frame, 0 .. frame_count - 1
    int64_t frame_count = 0;
  };

  // The process's cache, its budget raised to `budget_mb` if that is more;
  // null (no cache for this caller) when budget_mb <= 0.
  static DecodedVideoCache* Shared(int64_t budget_mb);

  explicit DecodedVideoCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  // The video at `path` decoded at `short_side`: from the cache, or decoded
  // whole now and cached if it fits. Null (not an error) when the video
  // cannot be decoded whole and clean, or does not fit: the caller then
  // reads it the ordinary way.
  std::shared_ptr<const Video> Get(const std::string& path, int short_side);

  struct Stats {
    int64_t hits = 0, misses = 0, videos = 0, bytes = 0, uncacheable = 0;
  };
  Stats stats() const;

 private:
  void RaiseBudget(int64_t bytes);

  mutable std::mutex mu_;
  int64_t budget_bytes_;
  std::map<std::string, std::shared_ptr<const Video>> videos_;
  std::map<std::string, bool> uncacheable_;  // decoded whole once and found unfit
  Stats stats_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_DECODED_CACHE_H_
