#include "datasets/slow_video_monitor.h"

#include <gtest/gtest.h>

namespace tb {
namespace {

SlowVideoOptions Options(double factor, double min_seconds, int min_samples, int window) {
  SlowVideoOptions o;
  o.factor = factor;
  o.min_seconds = min_seconds;
  o.min_samples = min_samples;
  o.window = window;
  return o;
}

TEST(SlowVideoMonitorTest, FlagsOnlyDecodesFarAboveTheMedianAndTheFloor) {
  SlowVideoMonitor monitor(Options(10, 1.0, 5, 100));
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(monitor.Observe("peer.avi", 0.2));
  EXPECT_DOUBLE_EQ(monitor.median_seconds(), 0.2);
  EXPECT_FALSE(monitor.Observe("a.avi", 1.9));   // 9.5x the median
  EXPECT_TRUE(monitor.Observe("b.avi", 2.1));    // 10.5x, above the floor
  EXPECT_EQ(monitor.slow_count(), 1);
  // Far above a tiny median but under the absolute floor.
  SlowVideoMonitor fast(Options(10, 1.0, 5, 100));
  for (int i = 0; i < 5; ++i) fast.Observe("peer.avi", 0.001);
  EXPECT_FALSE(fast.Observe("c.avi", 0.9));
  EXPECT_TRUE(fast.Observe("d.avi", 1.5));
  EXPECT_EQ(fast.slow_count(), 1);
}

TEST(SlowVideoMonitorTest, NeedsEnoughEarlierDecodes) {
  SlowVideoMonitor monitor(Options(10, 1.0, 3, 100));
  monitor.Observe("a.avi", 0.1);
  monitor.Observe("b.avi", 0.1);
  EXPECT_FALSE(monitor.Observe("slow.avi", 50));  // only 2 decodes before it
  EXPECT_EQ(monitor.slow_count(), 0);
  // 3 earlier decodes {0.1, 0.1, 50}: median 0.1.
  EXPECT_TRUE(monitor.Observe("slow2.avi", 50));
  EXPECT_EQ(monitor.slow_count(), 1);
}

TEST(SlowVideoMonitorTest, MedianFollowsTheWindow) {
  SlowVideoMonitor monitor(Options(10, 0.5, 1, 4));
  for (int i = 0; i < 4; ++i) monitor.Observe("early.avi", 0.1);
  EXPECT_DOUBLE_EQ(monitor.median_seconds(), 0.1);
  // The (upper) median stays 0.1 s while three 0.1 s decodes are in the
  // window, so the first two 3 s decodes are slow, the next two are not.
  for (int i = 0; i < 4; ++i) monitor.Observe("later.avi", 3.0);
  EXPECT_EQ(monitor.slow_count(), 2);
  EXPECT_DOUBLE_EQ(monitor.median_seconds(), 3.0);  // the 0.1 s decodes left the window
  EXPECT_FALSE(monitor.Observe("normal_now.avi", 5.0));
  EXPECT_EQ(monitor.slow_count(), 2);
}

}  // namespace
}  // namespace tb
