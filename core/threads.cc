#include "core/threads.h"

#include <thread>

#include <ATen/Parallel.h>

namespace tb {

int ConfigureThreads(int num_threads) {
  int n = num_threads;
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return at::get_num_threads();
}

}  // namespace tb
