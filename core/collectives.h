// File: core/collectives.h
//
// The collective operations data-parallel training needs, as an interface
// that models and trainers can use without depending on a communication
// library: train/distributed.h implements it on c10d's ProcessGroupGloo (and
// ProcessGroupNCCL where LibTorch has CUDA). A null Collectives* (or
// world_size() == 1) means a single process, and code using it must then
// behave exactly as it did without it.
//
// Like LibTorch's operators, the operations throw on failure (a lost rank, a
// timeout): std::runtime_error with a message that names the operation and,
// where it can be told, the rank that was lost. Callers at library
// boundaries convert them with CallTorch (core/torch_status.h).
//
// Every rank must call the same operations in the same order with tensors of
// the same shapes and dtypes.
//
//   torch::Tensor stats = torch::stack({sum, count});
//   collectives->AllReduceSum({stats});      // in place, on every rank
#ifndef TIMEBALANCE_CORE_COLLECTIVES_H_
#define TIMEBALANCE_CORE_COLLECTIVES_H_

#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace tb {

class Collectives {
 public:
  virtual ~Collectives() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Sums each tensor over the ranks, in place. Tensors must be contiguous.
  virtual void AllReduceSum(const std::vector<torch::Tensor>& tensors) = 0;

  // Overwrites each tensor with rank `root`'s, in place.
  virtual void Broadcast(const std::vector<torch::Tensor>& tensors, int root) = 0;

  // Every rank's `input` (the same shape on every rank), concatenated along
  // dimension 0 in rank order: [world_size * input.size(0), ...].
  virtual torch::Tensor AllGather(const torch::Tensor& input) = 0;

  // Returns when every rank has called it.
  virtual void Barrier() = 0;
};

// Whether `c` spans more than one process.
inline bool IsDistributed(const Collectives* c) { return c != nullptr && c->world_size() > 1; }

// A module whose state must stay equal on every rank and so needs the
// collectives (a queue that all ranks fill with the global batch's keys,
// ...). The training loop hands the run's collectives to every such module
// of the trainer (SetModuleCollectives) before the first step; null or one
// rank means a single process. (BatchNorm layers are switched separately, by
// distributed.sync_batchnorm.)
class CollectiveUser {
 public:
  virtual ~CollectiveUser() = default;
  virtual void SetCollectives(std::shared_ptr<Collectives> collectives) = 0;
};

// Calls SetCollectives on every CollectiveUser module in `root` (itself
// included); returns how many.
int SetModuleCollectives(torch::nn::Module& root, std::shared_ptr<Collectives> collectives);

// Every rank's `local` (the same shape on every rank) concatenated along
// dimension `dim` in rank order. When rank r holds samples [r * B / N,
// (r + 1) * B / N) of a global batch along `dim`, the result is what one
// process holding the whole batch would have. Not differentiable.
torch::Tensor AllGatherAlong(const torch::Tensor& local, int64_t dim, Collectives& collectives);

// Differentiable sum over ranks: every rank gets sum_r x_r; the gradient of
// x on each rank is the sum over ranks of the output's gradient (each rank's
// loss depends on every rank's x through the sum).
torch::Tensor AllReduceSumWithGradient(const torch::Tensor& x, Collectives& collectives);

// Differentiable all-gather along dimension 0: [world_size * N, ...]; the
// gradient of a rank's input is its slice of the gradient summed over ranks.
torch::Tensor AllGatherWithGradient(const torch::Tensor& x, Collectives& collectives);

// The global batch from every rank's slice along `dim`, differentiably
// (AllGatherWithGradient): what one process holding the whole batch would
// compute. `local` itself when `collectives` is null or one rank. A loss
// over the result is the same on every rank; its gradient reaches each
// rank's slice summed over the ranks, so after the usual averaging of
// parameter gradients over N ranks the update equals one process's.
torch::Tensor GlobalBatch(const torch::Tensor& local, int64_t dim, Collectives* collectives);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_COLLECTIVES_H_
