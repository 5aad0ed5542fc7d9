// File: datasets/slow_video_monitor.h
//
// Spots videos that take far longer to decode than their peers (a damaged or
// pathological file, a slow disk) so that the training log can show them
// instead of the loader waiting on them silently. A decode is slow when it
// takes more than `factor` times the median of the recent decodes and more
// than an absolute floor; each slow decode is logged (LOG(WARNING) naming the
// file, its time and the median) and counted. Thread-safe.
#ifndef TIMEBALANCE_DATASETS_SLOW_VIDEO_MONITOR_H_
#define TIMEBALANCE_DATASETS_SLOW_VIDEO_MONITOR_H_

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

namespace tb {

struct SlowVideoOptions {
  double factor = 10;        // slower than factor x the running median ...
  double min_seconds = 1.0;  // ... and than this many seconds
  int min_samples = 20;      // earlier decodes needed before anything is judged
  int window = 512;          // the median is over the last `window` decodes
};

class SlowVideoMonitor {
 public:
  explicit SlowVideoMonitor(SlowVideoOptions options = {});

  // Records one decode of `path` that took `seconds`. Returns true, after
  // logging a warning, when it was slow compared with the decodes before it.
  bool Observe(const std::string& path, double seconds);

  // Slow decodes so far.
  int64_t slow_count() const;
  // Median of the decodes in the window (the upper one of an even count; 0
  // before the first).
  double median_seconds() const;

 private:
  double MedianLocked() const;

  const SlowVideoOptions options_;
  mutable std::mutex mutex_;
  std::deque<double> recent_;
  int64_t slow_ = 0;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_SLOW_VIDEO_MONITOR_H_
