// VTDL (Wang et al. 2020), temporal triplets from the vtdl sampler: views
// "anchor" (with the intra-video mixup), "positive" (same segment, other
// augmentation), "negative" (another segment of the same video), each
// [B, 1, 3, T, S, S].
// With q = online(anchor), k = key(positive) and n the temporal negative:
//   L = InfoNCE(q, k, queue + n as a per-query negative, tau)
//       + triplet_weight * TripletMargin(q, k, n, margin)     (if > 0)
// as the official train_temporal_dis.py (train_moco) with MemoryMoCo and
// NCESoftmaxLoss computes it. temporal_negative_encoder ONLINE (default, the
// official code): n = online(negative) in its own forward pass (its own
// BatchNorm batch), with gradient; KEY: n comes from the key encoder with the
// positive, without gradient. Keys of the positives are enqueued. Key
// encoder: EMA with constant momentum, updated at the start of each Loss()
// from the previous step's online weights (first call copies them); in a
// data-parallel run without SyncBN it embeds through MoCo's shuffled BN.
#include "absl/strings/str_cat.h"
#include "backbones/sync_batch_norm.h"
#include "core/collectives.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

// The official id_head: one linear layer to 128-d, then L2 normalisation.
constexpr ProjectionDefaults kProjection(1);

class VtdlObjective : public SslObjective {
 public:
  VtdlObjective(const VtdlOptions& o, const SslContext& c, EmaEncoder key) : options_(o) {
    projection_ = register_module(
        "projection", MakeProjection(o.projection(), c.feature_dim, kProjection));
    key_ = register_module("key_encoder", std::move(key));
    queue_ = register_module("queue", ssl::FeatureQueue(o.queue_size(), o.projection().out()));
    queue_->to(c.device);
    step_ = register_buffer("step", torch::zeros({}, torch::kInt64));
  }
  SamplerConfig Sampler() const override {
    SamplerConfig s;
    *s.mutable_vtdl() = options_.sampler();
    return s;
  }
  void AfterOptimizerStep(VideoBackbone&, int64_t step) override { step_.fill_(step); }

  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor anchor, GetView(views, "anchor", 1));
    ASSIGN_OR_RETURN(torch::Tensor positive, GetView(views, "positive", 1));
    ASSIGN_OR_RETURN(torch::Tensor negative, GetView(views, "negative", 1));
    return CallTorch("vtdl loss", [&] {
      key_->Update(backbone, projection_, options_.momentum());
      const int64_t b = anchor.size(0);
      const bool online_negative =
          options_.temporal_negative_encoder() == VtdlOptions::ONLINE;
      const torch::Tensor q = Online(backbone, anchor.squeeze(1));
      torch::Tensor k, n;
      if (online_negative) {
        k = Keys(positive.squeeze(1), 1);
        n = Online(backbone, negative.squeeze(1));
      } else {
        const torch::Tensor keys = Keys(torch::cat({positive.squeeze(1), negative.squeeze(1)}), 2);
        k = keys.slice(0, 0, b);
        n = keys.slice(0, b);
      }
      SslLoss out;
      const torch::Tensor negatives = queue_->Keys().clone();
      const torch::Tensor nce =
          ssl::InfoNce(q, k, negatives, options_.temperature(), n.unsqueeze(1));
      out.metrics["loss_infonce"] = nce.item<double>();
      out.loss = nce;
      if (options_.triplet_weight() > 0) {
        const torch::Tensor t = ssl::TripletMarginLoss(q, k, n, options_.triplet_margin());
        out.metrics["loss_triplet"] = t.item<double>();
        out.loss = out.loss + options_.triplet_weight() * t;
      }
      queue_->Enqueue(k);
      return out;
    });
  }

 private:
  torch::Tensor Online(VideoBackbone& backbone, const torch::Tensor& clips) {
    return projection_->forward(backbone.Features(clips));
  }
  // Key embeddings of clip-major clips ([clips_per_video * B, ...]).
  torch::Tensor Keys(const torch::Tensor& clips, int64_t clips_per_video) {
    if (IsDistributed(collectives()) && !HasSynchronizedBatchNorm(*key_)) {
      return ShuffledBatchNormEmbed([&](const torch::Tensor& x) { return key_->Embed(x); },
                                    clips, clips_per_video, step_.item<int64_t>(),
                                    *collectives());
    }
    return key_->Embed(clips);
  }

  VtdlOptions options_;
  ProjectionHead projection_{nullptr};
  EmaEncoder key_{nullptr};
  ssl::FeatureQueue queue_{nullptr};
  torch::Tensor step_;
};

absl::Status ValidateVtdl(const VtdlOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.queue_size() >= 1, "queue_size", o.queue_size(), "must be >= 1");
  c.Require(o.momentum() >= 0 && o.momentum() < 1, "momentum", o.momentum(), "must be in [0, 1)");
  c.Require(o.triplet_weight() >= 0, "triplet_weight", o.triplet_weight(), "must be >= 0");
  SamplerConfig sampler;
  *sampler.mutable_vtdl() = o.sampler();
  c.Merge(ValidateSamplerOptions(sampler, c.Path("sampler")));
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateVtdl(const VtdlOptions& o,
                                                         const SslContext& context) {
  ASSIGN_OR_RETURN(EmaEncoder key, MakeEmaEncoder(context, o.projection(), kProjection));
  return std::unique_ptr<SslObjective>(new VtdlObjective(o, context, std::move(key)));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), vtdl, ValidateVtdl, CreateVtdl,
                      "queue_size: 32 projection { out: 16 }");

}  // namespace tb
