// File: backbones/flop_counter.h
//
// Counts the floating-point operations of a forward pass analytically from
// the shapes of the convolutions and linear layers it runs (multiply and add
// counted as 2 FLOPs), by observing LibTorch's operator calls
// (at::RecordFunction) on the calling thread. Element-wise work (BN, ReLU,
// pooling) is not counted, as in the FLOP figures papers report. Convolutions
// and 2-D linear layers (aten::addmm / mm / bmm) are counted; products that
// LibTorch records without their inputs (matmul on >2-D inputs) are not.
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
  // Convolutions seen without their inputs (not counted). LibTorch 1.13
  // occasionally records a convolution's operator call without its
  // arguments (about one forward pass in ten in our tests); callers that
  // need an exact count repeat the pass when this is non-zero (see
  // CountForwardFlops).
  int64_t missed() const;

 private:
  uint64_t handle_;
};

// Runs `forward` under a FlopCounter until a pass has no missed convolution
// (at most `attempts` passes) and returns that pass's FLOPs and
// convolutions; -1 FLOPs if every pass missed some.
struct FlopCount {
  double flops = -1;
  int64_t convolutions = 0;
};
FlopCount CountForwardFlops(const std::function<void()>& forward, int attempts = 5);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_FLOP_COUNTER_H_
