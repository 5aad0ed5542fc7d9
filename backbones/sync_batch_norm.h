// File: backbones/sync_batch_norm.h
//
// The BatchNorm layer of every backbone and head: LibTorch's BatchNorm{1,2,3}d
// (the same parameters, buffers, state-dict names, initialisation and, in a
// single process, the same operator call and results) that can be switched
// to cross-rank batch statistics for data-parallel training (`distributed {
// sync_batchnorm: true }`). Synchronised, a training-mode forward normalises
// with the mean and biased variance of the whole global batch (every rank's
// samples), updates the running statistics with them (unbiased variance, as
// PyTorch's SyncBatchNorm does) and back-propagates through the cross-rank
// sums, so that N ranks x B/N samples compute what one process computes on
// B. The statistics are summed in float64: one all-reduce of [sum, sum of
// squares, count] per layer in the forward pass and one in the backward
// pass. In eval mode, or with no Collectives set (or one rank), it is
// exactly LibTorch's BatchNorm.
//
// (A subclass of torch::nn::BatchNorm3dImpl cannot be linked against
// Debian's LibTorch, which does not export BatchNormImplBase's
// pretty_print, hence a module of its own.)
//
//   SyncBatchNorm bn = SyncBatchNorm3d(torch::nn::BatchNormOptions(64));
//   SetBatchNormCollectives(*model, collectives);  // every SyncBatchNorm below
#ifndef TIMEBALANCE_BACKBONES_SYNC_BATCH_NORM_H_
#define TIMEBALANCE_BACKBONES_SYNC_BATCH_NORM_H_

#include <memory>
#include <ostream>

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

#include "core/collectives.h"

namespace tb {

// Cross-rank batch normalisation of `input` ([N, C, ...]) in training mode:
// updates `running_mean` / `running_var` (when defined) with `momentum`.
torch::Tensor SyncBatchNormForward(const torch::Tensor& input, const torch::Tensor& weight,
                                   const torch::Tensor& bias, torch::Tensor running_mean,
                                   torch::Tensor running_var, double momentum, double eps,
                                   Collectives& collectives);

class SyncBatchNormImpl : public torch::nn::Cloneable<SyncBatchNormImpl> {
 public:
  // `dims` 1, 2 or 3: the inputs of BatchNorm1d ([N, C] or [N, C, L]),
  // BatchNorm2d ([N, C, H, W]) or BatchNorm3d ([N, C, T, H, W]).
  SyncBatchNormImpl(int dims, const torch::nn::BatchNormOptions& options);

  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& input);
  void pretty_print(std::ostream& stream) const override;

  // Null (or one rank): LibTorch's per-process statistics.
  void set_collectives(std::shared_ptr<Collectives> collectives) {
    collectives_ = std::move(collectives);
  }
  // Whether the statistics span several ranks.
  bool synchronized() const { return IsDistributed(collectives_.get()); }

  int dims;
  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  std::shared_ptr<Collectives> collectives_;
};
TORCH_MODULE(SyncBatchNorm);

SyncBatchNorm SyncBatchNorm1d(const torch::nn::BatchNormOptions& options);
SyncBatchNorm SyncBatchNorm2d(const torch::nn::BatchNormOptions& options);
SyncBatchNorm SyncBatchNorm3d(const torch::nn::BatchNormOptions& options);

// Sets `collectives` on every SyncBatchNorm in `root` (itself included);
// null switches them back to per-process statistics. Returns how many.
int SetBatchNormCollectives(torch::nn::Module& root, std::shared_ptr<Collectives> collectives);

// Whether some SyncBatchNorm in `root` computes its statistics over several
// ranks (distributed.sync_batchnorm in a data-parallel run).
bool HasSynchronizedBatchNorm(const torch::nn::Module& root);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_SYNC_BATCH_NORM_H_
