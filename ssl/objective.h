// File: ssl/objective.h
//
// The interface of every self-supervised objective and its registry, keyed
// by the SslObjectiveConfig.kind field name (ssl/ssl.proto). An objective
// owns everything it adds to the backbone: projection/prediction heads,
// prototypes, EMA key encoders and queues. All of that is a submodule of the
// objective, so a checkpoint of the objective restores it (EMA weights and
// queues are buffers or frozen parameters). The objective names the sampler
// it needs; the pretraining trainer (ssl/pretrain_trainer.h) feeds it batches
// of those views and calls AfterOptimizerStep after each update.
//
// Adding an objective: one .cc (and a test), one options message and oneof
// field in ssl.proto, one BUILD target added to //ssl:all_objectives, and a
// line in docs (docs/EXTENDING.md walks through it).
#ifndef TIMEBALANCE_SSL_OBJECTIVE_H_
#define TIMEBALANCE_SSL_OBJECTIVE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/heads.h"
#include "core/collectives.h"
#include "core/config_check.h"
#include "core/registry.h"
#include "datasets/datasets.pb.h"
#include "ssl/ssl.pb.h"

namespace tb {

struct SslLoss {
  torch::Tensor loss;  // scalar, differentiable w.r.t. backbone and heads
  std::map<std::string, double> metrics;  // each loss term, separately
};

// Batch views on the training device, [B, K, 3, T, S, S] by view name.
using ViewTensors = std::map<std::string, torch::Tensor>;

// In a data-parallel run the training loop hands every objective the run's
// collectives (core/collectives.h): objectives whose loss couples the
// samples of a batch (in-batch negatives, Sinkhorn codes) compute it over
// the global batch with GlobalBatch(), so N ranks x B/N train as 1 x B.
class SslObjective : public torch::nn::Module, public CollectiveUser {
 public:
  ~SslObjective() override = default;
  void SetCollectives(std::shared_ptr<Collectives> collectives) override {
    collectives_ = std::move(collectives);
  }
  virtual SamplerConfig Sampler() const = 0;
  virtual absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) = 0;
  // After each optimizer step: EMA encoders, prototype normalisation. `step`
  // is the number of steps done.
  virtual void AfterOptimizerStep(VideoBackbone& backbone, int64_t step) {}

 protected:
  // Null in a single process.
  Collectives* collectives() const { return collectives_.get(); }

 private:
  std::shared_ptr<Collectives> collectives_;
};

// What an objective is built from besides its options.
struct SslContext {
  BackboneConfig backbone;  // resolved (num_classes set); to build key encoders
  int64_t feature_dim = 0;
  int64_t total_steps = 1;  // for momentum schedules
  int64_t steps_per_epoch = 0;  // 0 = unknown
  torch::Device device = torch::kCPU;
};

// Objectives are validated on their own options (scope path e.g.
// "trainer.ssl.objective") and built with an SslContext.
using SslObjectiveRegistryType = ComponentRegistry<SslObjective, ConfigScope, SslContext>;
SslObjectiveRegistryType& SslObjectiveRegistry();

// Checks the objective selected in `config`, which sits at `path`.
absl::Status ValidateSslObjective(const SslObjectiveConfig& config, const std::string& path);

// Builds the objective selected in `config` (validated first, at path
// "objective").
absl::StatusOr<std::unique_ptr<SslObjective>> CreateSslObjective(const SslObjectiveConfig& config,
                                                                 const SslContext& context);

// --- Helpers shared by the objectives. ---

// An objective's defaults for the ProjectionOptions fields left unset, and
// what is not configurable.
struct ProjectionDefaults {
  constexpr ProjectionDefaults() = default;
  constexpr explicit ProjectionDefaults(int layers) : num_layers(layers) {}
  int num_layers = 2;
  bool final_batch_norm = false;
  bool normalize = true;  // L2-normalise the output
};

// A projection MLP from `in` features (hidden 0 = in).
ProjectionHead MakeProjection(const ProjectionOptions& options, int64_t in,
                              const ProjectionDefaults& defaults = {});

// An EMA copy of an online backbone + projection (MoCo key encoder, BYOL
// target): built with random weights (so a checkpoint can be loaded into
// it), set to the online weights on the first Update(), then
// target = m * target + (1 - m) * online. No parameter requires grad; the
// `initialized` buffer records whether the first copy happened, so a
// resumed run does not copy again.
class EmaEncoderImpl : public torch::nn::Module {
 public:
  EmaEncoderImpl(std::shared_ptr<VideoBackbone> backbone, ProjectionHead projection);
  void Update(VideoBackbone& online_backbone, ProjectionHead online_projection, double momentum);
  // Pooled, projected, L2-normalised embeddings without gradient.
  torch::Tensor Embed(const torch::Tensor& clips);
  bool initialized() const { return initialized_.item<int64_t>() != 0; }

 private:
  std::shared_ptr<VideoBackbone> backbone_;
  ProjectionHead projection_{nullptr};
  torch::Tensor initialized_;
};
TORCH_MODULE(EmaEncoder);

absl::StatusOr<EmaEncoder> MakeEmaEncoder(const SslContext& context,
                                          const ProjectionOptions& projection,
                                          const ProjectionDefaults& defaults);

// The view `name`, checked to be [B, K, 3, T, S, S] with K == clips.
absl::StatusOr<torch::Tensor> GetView(const ViewTensors& views, const std::string& name,
                                      int64_t clips);

// MoCo's shuffled BatchNorm across ranks: the keys of `clips` ([K * b, ...]
// clip-major, this rank's b videos) computed by `embed` ([K * b', ...] ->
// [K * b', D]) on b videos drawn from all ranks by a permutation of the
// global batch that is the same on every rank (seeded by `step`), then
// returned to their videos: without synchronised BatchNorm a key's batch
// statistics then come from other videos than its query's, which removes
// the shortcut MoCo guards against. No gradient.
torch::Tensor ShuffledBatchNormEmbed(const std::function<torch::Tensor(const torch::Tensor&)>& embed,
                                     const torch::Tensor& clips, int64_t clips_per_video,
                                     int64_t step, Collectives& collectives);

// [B, K, ...] -> [K * B, ...] in clip-major order (clip k of all videos, then
// clip k + 1), so per-clip blocks of B rows follow each other.
torch::Tensor ClipMajor(const torch::Tensor& view);

}  // namespace tb

#endif  // TIMEBALANCE_SSL_OBJECTIVE_H_
