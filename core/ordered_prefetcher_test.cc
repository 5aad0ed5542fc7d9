#include "core/ordered_prefetcher.h"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

namespace tb {
namespace {

TEST(OrderedPrefetcher, YieldsInOrderWhateverTheWorkerCount) {
  for (int workers : {1, 2, 5}) {
    // Later indices finish first: a real reorder has to happen.
    OrderedPrefetcher<int64_t> p(
        [](int64_t i) {
          std::this_thread::sleep_for(std::chrono::microseconds((20 - i % 20) * 50));
          return i * i;
        },
        workers, 4, /*first=*/3, /*end=*/43);
    for (int64_t i = 3; i < 43; ++i) EXPECT_EQ(p.Next(), i * i);
  }
}

TEST(OrderedPrefetcher, NeverRunsMoreThanMaxAheadOfTheConsumer) {
  std::atomic<int64_t> highest{-1};
  OrderedPrefetcher<int64_t> p(
      [&](int64_t i) {
        int64_t prev = highest.load();
        while (i > prev && !highest.compare_exchange_weak(prev, i)) {
        }
        return i;
      },
      3, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(highest.load(), 1);  // items 0 and 1 only
  EXPECT_EQ(p.Next(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_LE(highest.load(), 2);
}

}  // namespace
}  // namespace tb
