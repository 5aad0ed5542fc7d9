// VTDL (Wang et al. 2020), temporal triplets from the vtdl sampler: views
// "anchor" (with the intra-video mixup), "positive" (same segment, other
// augmentation), "negative" (another segment of the same video), each
// [B, 1, 3, T, S, S].
// Loss: InfoNCE(q = online(anchor), k = key(positive), queue, tau) with the
// key encoder's embedding of the negative appended as a per-query negative,
// plus triplet_weight * TripletMargin(online(anchor), online(positive),
// online(negative), margin) when triplet_weight > 0. Keys of the positives
// are enqueued. Key encoder: EMA with constant momentum, updated at the
// start of each Loss() (first call copies the online weights).
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

class VtdlObjective : public SslObjective {
 public:
  VtdlObjective(const VtdlOptions& o, const SslContext& c, EmaEncoder key) : options_(o) {
    projection_ = register_module("projection", MakeProjection(o.projection(), c.feature_dim));
    key_ = register_module("key_encoder", std::move(key));
    queue_ = register_module("queue", ssl::FeatureQueue(o.queue_size(), o.projection().out()));
  }
  SamplerConfig Sampler() const override {
    SamplerConfig s;
    *s.mutable_vtdl() = options_.sampler();
    return s;
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor anchor, GetView(views, "anchor", 1));
    ASSIGN_OR_RETURN(torch::Tensor positive, GetView(views, "positive", 1));
    ASSIGN_OR_RETURN(torch::Tensor negative, GetView(views, "negative", 1));
    return CallTorch("vtdl loss", [&] {
      key_->Update(backbone, projection_, options_.momentum());
      const int64_t b = anchor.size(0);
      const bool triplet = options_.triplet_weight() > 0;
      const torch::Tensor online_in =
          triplet ? torch::cat({anchor.squeeze(1), positive.squeeze(1), negative.squeeze(1)})
                  : anchor.squeeze(1);
      const torch::Tensor z = projection_->forward(backbone.Features(online_in));
      const torch::Tensor q = z.slice(0, 0, b);
      const torch::Tensor keys =
          key_->Embed(torch::cat({positive.squeeze(1), negative.squeeze(1)}));
      const torch::Tensor k = keys.slice(0, 0, b);
      const torch::Tensor temporal_negative = keys.slice(0, b).unsqueeze(1);  // [B, 1, d]
      const torch::Tensor negatives = queue_->Keys().clone();
      SslLoss out;
      const torch::Tensor nce = ssl::InfoNce(q, k, negatives, options_.temperature(), temporal_negative);
      out.metrics["loss_infonce"] = nce.item<double>();
      out.loss = nce;
      if (triplet) {
        const torch::Tensor t = ssl::TripletMarginLoss(q, z.slice(0, b, 2 * b), z.slice(0, 2 * b),
                                                  options_.triplet_margin());
        out.metrics["loss_triplet"] = t.item<double>();
        out.loss = out.loss + options_.triplet_weight() * t;
      }
      queue_->Enqueue(k);
      return out;
    });
  }

 private:
  VtdlOptions options_;
  ProjectionHead projection_{nullptr};
  EmaEncoder key_{nullptr};
  ssl::FeatureQueue queue_{nullptr};
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
  ASSIGN_OR_RETURN(EmaEncoder key, MakeEmaEncoder(context, o.projection(), 2));
  return std::unique_ptr<SslObjective>(new VtdlObjective(o, context, std::move(key)));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), vtdl, ValidateVtdl, CreateVtdl,
                      "queue_size: 32 projection { out: 16 }");

}  // namespace tb
