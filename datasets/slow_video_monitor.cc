#include "datasets/slow_video_monitor.h"

#include <algorithm>
#include <vector>

#include <glog/logging.h>

namespace tb {

SlowVideoMonitor::SlowVideoMonitor(SlowVideoOptions options) : options_(options) {
  CHECK_GE(options_.window, 1);
  CHECK_GE(options_.min_samples, 0);
}

double SlowVideoMonitor::MedianLocked() const {
  if (recent_.empty()) return 0;
  std::vector<double> sorted(recent_.begin(), recent_.end());
  auto middle = sorted.begin() + sorted.size() / 2;
  std::nth_element(sorted.begin(), middle, sorted.end());
  return *middle;
}

bool SlowVideoMonitor::Observe(const std::string& path, double seconds) {
  double median = 0;
  size_t samples = 0;
  bool slow = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    samples = recent_.size();
    if (static_cast<int64_t>(samples) >= options_.min_samples) {
      median = MedianLocked();
      slow = seconds > options_.factor * median && seconds > options_.min_seconds;
      if (slow) ++slow_;
    }
    recent_.push_back(seconds);
    if (static_cast<int>(recent_.size()) > options_.window) recent_.pop_front();
  }
  if (slow) {
    LOG(WARNING) << "slow video: " << path << " took " << seconds << " s to decode, "
                 << (median > 0 ? seconds / median : 0) << "x the median " << median
                 << " s of the last " << samples << " decodes";
  }
  return slow;
}

int64_t SlowVideoMonitor::slow_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return slow_;
}

double SlowVideoMonitor::median_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return MedianLocked();
}

}  // namespace tb
