// File: train/fused_adam.h
//
// Adam (and AdamW) whose update of a parameter is one pass over its memory:
// torch::optim::Adam's step() runs about ten tensor operations per parameter
// (moments, square root, bias corrections, the update), each a full read and
// write of the tensor, so the step is memory-bound; FusedAdam reads the
// parameter, its gradient and both moments once, and writes the parameter
// and the moments once, per element, spread over LibTorch's intra-op
// threads.
//
// It is the same algorithm with the same state, computed with the same
// floating-point operations per element as torch::optim::Adam (LibTorch 1.13:
// L2 weight decay added to the gradient; bias-corrected moments; eps added
// to sqrt(v) / sqrt(1 - beta2^t)), including the fused multiply-adds of
// ATen's AVX2/AVX-512 kernels, so its results are bitwise torch::optim::Adam's
// (the test checks parameters and moments after 60 steps with torch::equal).
// AdamW (decoupled decay) is not covered. It is opt-in (AdamOptions.fused).
//
// The state is torch::optim::Adam's (AdamParamState: step, exp_avg,
// exp_avg_sq), saved and loaded by Adam's own serialisation, so a checkpoint
// written with one resumes with the other.
//
// What FusedAdam cannot take in one pass falls back to torch::optim::Adam's
// step for the whole call: parameters that are not float32, contiguous and
// on the CPU, sparse gradients, amsgrad, and a CPU without AVX2 and FMA (or
// ATEN_CPU_CAPABILITY=default), where ATen's kernels round differently.
//
//   auto opt = std::make_unique<FusedAdam>(params, torch::optim::AdamOptions(1e-3));
//   opt->zero_grad(); loss.backward(); opt->step();
#ifndef TIMEBALANCE_TRAIN_FUSED_ADAM_H_
#define TIMEBALANCE_TRAIN_FUSED_ADAM_H_

#include <torch/optim/adam.h>

#include <vector>

namespace tb {

class FusedAdam : public torch::optim::Adam {
 public:
  FusedAdam(std::vector<torch::Tensor> params, torch::optim::AdamOptions options)
      : torch::optim::Adam(std::move(params), options) {}

  torch::Tensor step(LossClosure closure = nullptr) override;

  // Whether the last step() ran fused (false: it fell back to
  // torch::optim::Adam, see the file comment).
  bool last_step_fused() const { return last_step_fused_; }

 private:
  bool last_step_fused_ = false;
};

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_FUSED_ADAM_H_
