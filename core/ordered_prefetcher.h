// File: core/ordered_prefetcher.h
//
// Runs `produce(i)` for i = first, first + 1, ... (up to `end`, or endlessly)
// on worker threads, at most `max_ahead` items beyond the one being consumed,
// and hands the results out strictly in index order. Because each result
// depends only on its index, what a consumer sees does not depend on the
// number of workers or on scheduling. Used by the training loader and the
// evaluators to keep decoding ahead of the model.
#ifndef TIMEBALANCE_CORE_ORDERED_PREFETCHER_H_
#define TIMEBALANCE_CORE_ORDERED_PREFETCHER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <glog/logging.h>

namespace tb {

template <typename T>
class OrderedPrefetcher {
 public:
  static constexpr int64_t kEndless = std::numeric_limits<int64_t>::max();

  OrderedPrefetcher(std::function<T(int64_t)> produce, int num_workers, int64_t max_ahead,
                    int64_t first = 0, int64_t end = kEndless)
      : produce_(std::move(produce)),
        max_ahead_(max_ahead),
        end_(end),
        next_to_build_(first),
        next_to_consume_(first) {
    CHECK_GE(num_workers, 1);
    CHECK_GE(max_ahead, 1);
    for (int i = 0; i < num_workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  }

  ~OrderedPrefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  OrderedPrefetcher(const OrderedPrefetcher&) = delete;
  OrderedPrefetcher& operator=(const OrderedPrefetcher&) = delete;

  // The next item in index order; blocks until it is ready. Must not be
  // called past `end`.
  T Next() {
    const auto start = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    CHECK_LT(next_to_consume_, end_) << "OrderedPrefetcher consumed past its end";
    cv_.wait(lock, [&] { return ready_.count(next_to_consume_) > 0; });
    auto node = ready_.extract(next_to_consume_);
    ++next_to_consume_;
    wait_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.unlock();
    cv_.notify_all();
    return std::move(node.mapped());
  }

  // Total seconds Next() has blocked waiting for workers.
  double wait_seconds() const {
    std::lock_guard<std::mutex> lock(mu_);
    return wait_seconds_;
  }

 private:
  void WorkerLoop() {
    while (true) {
      int64_t index;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return stopping_ ||
                 (next_to_build_ < end_ && next_to_build_ < next_to_consume_ + max_ahead_);
        });
        if (stopping_) return;
        index = next_to_build_++;
      }
      T item = produce_(index);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.emplace(index, std::move(item));
      }
      cv_.notify_all();
    }
  }

  const std::function<T(int64_t)> produce_;
  const int64_t max_ahead_;
  const int64_t end_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t next_to_build_;
  int64_t next_to_consume_;
  std::map<int64_t, T> ready_;
  bool stopping_ = false;
  double wait_seconds_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_ORDERED_PREFETCHER_H_
