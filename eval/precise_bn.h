// File: eval/precise_bn.h
//
// Precise BatchNorm statistics (PySlowFast's BN.USE_PRECISE_STATS, fvcore's
// update_bn_stats, the PreciseBNHook of LTG's code): during training the
// running mean / variance of a BatchNorm layer is an exponential average
// over batches seen under changing weights, and for some methods over inputs
// unlike the test clips (TG-FixMatch and MvPL put RGB and temporal-gradient
// clips through the same layers). Before an evaluation, the statistics are
// recomputed with the weights fixed:
//   running_mean = (1/N) sum_b mean_b,  running_var = (1/N) sum_b var_b
// over N batches, where mean_b and var_b are what the layer stores for batch
// b alone (momentum 1): the batch mean and the unbiased batch variance. The
// model runs without gradients, with its BatchNorm layers in training mode
// and every other module in eval mode (no dropout, so no random draws; this
// equals fvcore's model.train() whenever no dropout feeds a BatchNorm layer,
// as in every backbone here). Momenta, num_batches_tracked and the modules'
// train/eval flags are restored afterwards.
//
// Data-parallel (collectives with several ranks): every SyncBatchNorm layer
// is synchronised for the recomputation (whatever distributed.sync_batchnorm
// says, and put back afterwards), each rank forwards its slice of every
// global batch, and every batch's statistics are those of the global batch,
// so every rank ends with the same statistics: those of one process
// forwarding the global batches. Plain LibTorch BatchNorm layers (none of
// this project's models has one) cannot be synchronised: their per-rank
// results are averaged over the ranks.
//
//   BatchNormStatisticsGuard keep(model);          // restored when it goes
//   ASSIGN_OR_RETURN(PreciseBnReport report,
//                    RecomputeBatchNormStatistics(model, 200, next_batch, device));
#ifndef TIMEBALANCE_EVAL_PRECISE_BN_H_
#define TIMEBALANCE_EVAL_PRECISE_BN_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "core/autocast.h"
#include "core/collectives.h"
#include "datasets/clip_loader.h"
#include "datasets/datasets.pb.h"
#include "eval/eval.pb.h"

namespace tb {

struct PreciseBnReport {
  int batches = 0;     // batches forwarded
  int64_t clips = 0;   // clips forwarded by this process
  int layers = 0;      // BatchNorm layers whose statistics were replaced
  double seconds = 0;
};

// Yields the next input batch [B, 3, T, S, S] (on any device).
using PreciseBnBatches = std::function<absl::StatusOr<torch::Tensor>()>;

// The recomputation of the file comment on `num_batches` batches of `next`,
// each moved to `device` and passed to `forward` (which runs `model`) under
// `precision`. With `collectives` (several ranks) every rank must call it
// with the same num_batches and its slice of each global batch. A model
// without BatchNorm layers is left alone (layers = 0, nothing forwarded).
absl::StatusOr<PreciseBnReport> RecomputeBatchNormStatistics(
    torch::nn::Module& model, const std::function<void(const torch::Tensor&)>& forward,
    int num_batches, const PreciseBnBatches& next, const torch::Device& device,
    Precision precision = Precision::kFp32,
    const std::shared_ptr<Collectives>& collectives = nullptr);

// The same through a backbone's forward (pooled features and logits).
absl::StatusOr<PreciseBnReport> RecomputeBatchNormStatistics(
    VideoBackbone& model, int num_batches, const PreciseBnBatches& next,
    const torch::Device& device, Precision precision = Precision::kFp32,
    const std::shared_ptr<Collectives>& collectives = nullptr);

// What an evaluation's precise-BN runs on, resolved from a PreciseBnConfig
// and the experiment: the videos (evaluation.precise_bn.videos), the
// loader's global batch size and seed, and the number of batches (at most
// one epoch of the videos, as PySlowFast's min(NUM_BATCHES_PRECISE,
// len(loader))).
struct PreciseBnPlan {
  int num_batches = 0;  // 0 = off
  int batch_size = 0;   // global clips per batch
  uint64_t seed = 0;
};

// The plan of `config` for an experiment with `num_videos` videos in the
// chosen set, `default_batches` (the trainer's reference default, used when
// config.num_batches is unset), `labeled_batch_size` (config.batch_size 0)
// and run seed `seed`. The batch's loader seed is derived from `seed`, so
// the statistics are a pure function of the model and the seed.
PreciseBnPlan PlanPreciseBn(const PreciseBnConfig& config, int64_t num_videos,
                            int default_batches, int labeled_batch_size, uint64_t seed);

// Precise-BN of `model` per `plan`: a ClipLoader over `videos` with
// `config.sampler` (unset = one clip with the dataset's clip geometry and
// augmentation: the labeled loader's sampler), every RGB view's clips
// forwarded as one batch (flow views are not model inputs here). With
// `collectives` rank r loads its shard of each global batch (batch_size must
// be a multiple of the ranks: InvalidArgument naming
// evaluation.precise_bn.batch_size otherwise).
absl::StatusOr<PreciseBnReport> PreciseBatchNorm(
    VideoBackbone& model, const PreciseBnConfig& config, const PreciseBnPlan& plan,
    const std::vector<LabeledVideo>& videos, const DatasetConfig& dataset,
    const torch::Device& device, Precision precision = Precision::kFp32,
    const std::shared_ptr<Collectives>& collectives = nullptr);

// Copies of every BatchNorm layer's running statistics (running_mean,
// running_var, num_batches_tracked) in `model`, written back when the guard
// is destroyed: an evaluation with precise statistics leaves the trained
// model (and so its checkpoints and a resumed run) as it was.
class BatchNormStatisticsGuard {
 public:
  explicit BatchNormStatisticsGuard(torch::nn::Module& model);
  ~BatchNormStatisticsGuard();
  BatchNormStatisticsGuard(const BatchNormStatisticsGuard&) = delete;
  BatchNormStatisticsGuard& operator=(const BatchNormStatisticsGuard&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> saved_;  // (buffer, copy)
};

// Number of BatchNorm layers (SyncBatchNorm and LibTorch's BatchNorm1/2/3d)
// in `model`.
int CountBatchNormLayers(torch::nn::Module& model);

}  // namespace tb

#endif  // TIMEBALANCE_EVAL_PRECISE_BN_H_
