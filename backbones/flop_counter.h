// File: backbones/flop_counter.h
//
// Counts the floating-point operations of a forward pass analytically from
// the shapes of the convolutions and linear layers it runs (multiply and add
// counted as 2 FLOPs), by observing LibTorch's operator calls
// (at::RecordFunction) on the calling thread. Element-wise work (BN, ReLU,
// pooling) is not counted, as in the FLOP figures papers report. Convolutions
// and linear layers (aten::addmm / mm / bmm / matmul) are counted.
//
//   FlopCounter counter;            // observes this thread while alive
//   model->forward(clip);
//   double gflops = counter.flops() / 1e9;
#ifndef TIMEBALANCE_BACKBONES_FLOP_COUNTER_H_
#define TIMEBALANCE_BACKBONES_FLOP_COUNTER_H_

#include <functional>

#include <cstdint>

namespace tb {

class FlopCounter {
 public:
  FlopCounter();
  ~FlopCounter();
  FlopCounter(const FlopCounter&) = delete;
  FlopCounter& operator=(const FlopCounter&) = delete;

  double flops() const;
  int64_t convolutions() const;

 private:
  uint64_t handle_;
};

// Runs `forward` once under a FlopCounter and returns its FLOPs and
// convolutions.
struct FlopCount {
  double flops = 0;
  int64_t convolutions = 0;
};
FlopCount CountForwardFlops(const std::function<void()>& forward);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_FLOP_COUNTER_H_
