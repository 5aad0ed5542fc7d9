// The rho-methods of Feichtenhofer et al. (CVPR 2021): rho clips of one
// video at random times are positives of each other (rho sampler, view
// "clips" [B, rho, 3, T, S, S]; all rho * B clips go through the online
// backbone in one pass).
//   rho_simclr: mean over the clip pairs (i < j) of NT-Xent(z_i, z_j), the
//               negatives drawn from the global batch in data-parallel runs.
//   rho_moco:   mean over ordered pairs (i != j) of InfoNCE(q_i, k_j, queue);
//               keys from the EMA encoder (cosine momentum schedule from
//               base_momentum to 1); every clip's key is enqueued afterwards.
//               In a data-parallel run without synchronised BatchNorm the
//               keys use MoCo's shuffled BN across ranks
//               (ShuffledBatchNormEmbed); one process needs none.
//   rho_byol:   mean over ordered pairs (i != j) of 2 - 2 cos(p_i, z'_j) with
//               p = predictor(projection(online)), the projection not
//               L2-normalised before the predictor (BYOL's reference; only
//               the loss normalises), z' = EMA target projection; cosine
//               momentum schedule.
//   rho_swav:   swapped prediction between the rho clips of codes computed by
//               Sinkhorn-Knopp over L2-normalised prototypes (normalised
//               again after every step; frozen for freeze_prototypes_steps,
//               by default the first epoch),
//               Sinkhorn over the global batch in data-parallel runs.
// The EMA encoders are updated at the start of each Loss() from the online
// weights of the previous step (MoCo's order); the first call copies them.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "backbones/sync_batch_norm.h"
#include "core/collectives.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/clip_ops.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

// The checks every rho-method shares: rho clips and their augmentation.
template <typename Options>
void CheckRhoOptions(const Options& o, FieldChecker* c) {
  c->Require(o.rho() >= 2 && o.rho() <= 16, "rho", o.rho(), "must be in [2, 16]");
  if (o.has_augmentation()) {
    c->Merge(ValidateAugmentation(o.augmentation(), c->Path("augmentation")));
  }
}

SamplerConfig RhoSampler(int rho, bool has_augmentation, const Augmentation& augmentation) {
  SamplerConfig s;
  s.mutable_rho()->set_rho(rho);
  if (has_augmentation) *s.mutable_rho()->mutable_augmentation() = augmentation;
  return s;
}

// Common part: projected online embeddings of the rho clips, [rho, B, d].
class RhoBase : public SslObjective {
 protected:
  RhoBase(int rho, const ProjectionOptions& projection, int64_t feature_dim,
          const ProjectionDefaults& defaults)
      : rho_(rho) {
    projection_ =
        register_module("projection", MakeProjection(projection, feature_dim, defaults));
    step_ = register_buffer("step", torch::zeros({}, torch::kInt64));
  }
  absl::StatusOr<torch::Tensor> Clips(const ViewTensors& views) {
    ASSIGN_OR_RETURN(torch::Tensor v, GetView(views, "clips", rho_));
    return ClipMajor(v);
  }
  torch::Tensor Online(VideoBackbone& backbone, const torch::Tensor& clips, int64_t b) {
    const torch::Tensor z = projection_->forward(backbone.Features(clips));
    return z.view({rho_, b, z.size(1)});
  }
  // Online() over the global batch of a data-parallel run, [rho, B, d].
  torch::Tensor GlobalOnline(VideoBackbone& backbone, const torch::Tensor& clips, int64_t b) {
    return GlobalBatch(Online(backbone, clips, b), 1, collectives());
  }
  void AfterOptimizerStep(VideoBackbone&, int64_t step) override { step_.fill_(step); }

  const int rho_;
  ProjectionHead projection_{nullptr};
  torch::Tensor step_;
};

class RhoSimclr : public RhoBase {
 public:
  RhoSimclr(const RhoSimclrOptions& o, int64_t feature_dim)
      : RhoBase(o.rho(), o.projection(), feature_dim, ProjectionDefaults(3)), options_(o) {}
  SamplerConfig Sampler() const override {
    return RhoSampler(options_.rho(), options_.has_augmentation(), options_.augmentation());
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clips, Clips(views));
    return CallTorch("rho_simclr loss", [&] {
      const int64_t b = clips.size(0) / rho_;
      const torch::Tensor z = GlobalOnline(backbone, clips, b);
      torch::Tensor total = torch::zeros({}, z.options());
      int pairs = 0;
      for (int i = 0; i < rho_; ++i) {
        for (int j = i + 1; j < rho_; ++j, ++pairs) {
          total = total + ssl::NtXent(z[i], z[j], options_.temperature());
        }
      }
      SslLoss out;
      out.loss = total / pairs;
      out.metrics["loss_ntxent"] = out.loss.item<double>();
      return out;
    });
  }

 private:
  RhoSimclrOptions options_;
};

class RhoMoco : public RhoBase {
 public:
  RhoMoco(const RhoMocoOptions& o, const SslContext& c, EmaEncoder key)
      : RhoBase(o.rho(), o.projection(), c.feature_dim, {}), options_(o), total_(c.total_steps) {
    key_ = register_module("key_encoder", std::move(key));
    queue_ = register_module("queue", ssl::FeatureQueue(o.queue_size(), o.projection().out()));
    queue_->to(c.device);
  }
  SamplerConfig Sampler() const override {
    return RhoSampler(options_.rho(), options_.has_augmentation(), options_.augmentation());
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clips, Clips(views));
    return CallTorch("rho_moco loss", [&] {
      const double m =
          ssl::CosineMomentum(options_.base_momentum(), step_.item<int64_t>(), total_);
      key_->Update(backbone, projection_, m);
      const int64_t b = clips.size(0) / rho_;
      const torch::Tensor q = Online(backbone, clips, b);
      torch::Tensor k;
      if (IsDistributed(collectives()) && !HasSynchronizedBatchNorm(*key_)) {
        k = ShuffledBatchNormEmbed([&](const torch::Tensor& x) { return key_->Embed(x); }, clips,
                                   rho_, step_.item<int64_t>(), *collectives())
                .view({rho_, b, -1});
      } else {
        k = key_->Embed(clips).view({rho_, b, -1});
      }
      const torch::Tensor negatives = queue_->Keys().clone();
      torch::Tensor total = torch::zeros({}, q.options());
      int pairs = 0;
      for (int i = 0; i < rho_; ++i) {
        for (int j = 0; j < rho_; ++j) {
          if (i == j) continue;
          total = total + ssl::InfoNce(q[i], k[j], negatives, options_.temperature());
          ++pairs;
        }
      }
      queue_->Enqueue(k, /*sample_dim=*/1);  // [rho, B, D]: rows clip-major
      SslLoss out;
      out.loss = total / pairs;
      out.metrics["loss_infonce"] = out.loss.item<double>();
      out.metrics["momentum"] = m;
      return out;
    });
  }

 private:
  RhoMocoOptions options_;
  int64_t total_;
  EmaEncoder key_{nullptr};
  ssl::FeatureQueue queue_{nullptr};
};

ProjectionDefaults Unnormalized() {
  ProjectionDefaults d;
  d.normalize = false;
  return d;
}

class RhoByol : public RhoBase {
 public:
  RhoByol(const RhoByolOptions& o, const SslContext& c, EmaEncoder target)
      // The predictor reads the projection as it is; only the loss
      // normalises (BYOL's reference).
      : RhoBase(o.rho(), o.projection(), c.feature_dim, Unnormalized()),
        options_(o),
        total_(c.total_steps) {
    target_ = register_module("target_encoder", std::move(target));
    predictor_ = register_module(
        "predictor", MakeProjection(o.predictor(), o.projection().out()));
  }
  SamplerConfig Sampler() const override {
    return RhoSampler(options_.rho(), options_.has_augmentation(), options_.augmentation());
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clips, Clips(views));
    return CallTorch("rho_byol loss", [&] {
      const double m =
          ssl::CosineMomentum(options_.base_momentum(), step_.item<int64_t>(), total_);
      target_->Update(backbone, projection_, m);
      const int64_t b = clips.size(0) / rho_;
      const torch::Tensor z = projection_->forward(backbone.Features(clips));
      const torch::Tensor p = predictor_->forward(z).view({rho_, b, -1});
      const torch::Tensor t = target_->Embed(clips).view({rho_, b, -1});
      torch::Tensor total = torch::zeros({}, p.options());
      int pairs = 0;
      for (int i = 0; i < rho_; ++i) {
        for (int j = 0; j < rho_; ++j) {
          if (i == j) continue;
          total = total + ssl::ByolLoss(p[i], t[j]);
          ++pairs;
        }
      }
      SslLoss out;
      out.loss = total / pairs;
      out.metrics["loss_byol"] = out.loss.item<double>();
      out.metrics["momentum"] = m;
      return out;
    });
  }

 private:
  RhoByolOptions options_;
  int64_t total_;
  EmaEncoder target_{nullptr};
  ProjectionHead predictor_{nullptr};
};

class RhoSwav : public RhoBase {
 public:
  RhoSwav(const RhoSwavOptions& o, const SslContext& c)
      : RhoBase(o.rho(), o.projection(), c.feature_dim, {}),
        options_(o),
        freeze_steps_(o.has_freeze_prototypes_steps() ? o.freeze_prototypes_steps()
                                                      : c.steps_per_epoch) {
    const torch::Tensor init = torch::randn({o.num_prototypes(), o.projection().out()});
    prototypes_ = register_parameter("prototypes", init / init.norm(2, 1, true));
  }
  SamplerConfig Sampler() const override {
    return RhoSampler(options_.rho(), options_.has_augmentation(), options_.augmentation());
  }
  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    ASSIGN_OR_RETURN(torch::Tensor clips, Clips(views));
    return CallTorch("rho_swav loss", [&] {
      const int64_t b = clips.size(0) / rho_;
      const torch::Tensor z = GlobalOnline(backbone, clips, b);
      const bool frozen = step_.item<int64_t>() < freeze_steps_;
      const torch::Tensor c = frozen ? prototypes_.detach() : prototypes_;
      std::vector<torch::Tensor> scores;
      for (int i = 0; i < rho_; ++i) scores.push_back(torch::matmul(z[i], c.t()));
      SslLoss out;
      out.loss = ssl::SwavLoss(scores, options_.temperature(), options_.epsilon(),
                          options_.sinkhorn_iterations());
      out.metrics["loss_swav"] = out.loss.item<double>();
      return out;
    });
  }
  void AfterOptimizerStep(VideoBackbone& backbone, int64_t step) override {
    RhoBase::AfterOptimizerStep(backbone, step);
    torch::NoGradGuard no_grad;
    prototypes_.div_(prototypes_.norm(2, 1, true).clamp_min(1e-12));
  }

 private:
  RhoSwavOptions options_;
  int64_t freeze_steps_;
  torch::Tensor prototypes_;
};

absl::Status ValidateRhoSimclr(const RhoSimclrOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckRhoOptions(o, &c);
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateRhoSimclr(const RhoSimclrOptions& o,
                                                              const SslContext& context) {
  return std::unique_ptr<SslObjective>(new RhoSimclr(o, context.feature_dim));
}

absl::Status ValidateRhoMoco(const RhoMocoOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckRhoOptions(o, &c);
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.queue_size() >= 1, "queue_size", o.queue_size(), "must be >= 1");
  c.Require(o.base_momentum() >= 0 && o.base_momentum() < 1, "base_momentum",
            o.base_momentum(), "must be in [0, 1)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateRhoMoco(const RhoMocoOptions& o,
                                                            const SslContext& context) {
  ASSIGN_OR_RETURN(EmaEncoder key, MakeEmaEncoder(context, o.projection(), {}));
  return std::unique_ptr<SslObjective>(new RhoMoco(o, context, std::move(key)));
}

absl::Status ValidateRhoByol(const RhoByolOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckRhoOptions(o, &c);
  c.Require(o.base_momentum() >= 0 && o.base_momentum() < 1, "base_momentum",
            o.base_momentum(), "must be in [0, 1)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateRhoByol(const RhoByolOptions& o,
                                                            const SslContext& context) {
  ASSIGN_OR_RETURN(EmaEncoder target, MakeEmaEncoder(context, o.projection(), {}));
  return std::unique_ptr<SslObjective>(new RhoByol(o, context, std::move(target)));
}

absl::Status ValidateRhoSwav(const RhoSwavOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  CheckRhoOptions(o, &c);
  c.Require(o.num_prototypes() >= 2, "num_prototypes", o.num_prototypes(), "must be >= 2");
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.epsilon() > 0, "epsilon", o.epsilon(), "must be > 0");
  c.Require(o.sinkhorn_iterations() >= 1, "sinkhorn_iterations", o.sinkhorn_iterations(),
            "must be >= 1");
  c.Require(o.freeze_prototypes_steps() >= 0, "freeze_prototypes_steps",
            o.freeze_prototypes_steps(), "must be >= 0");
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateRhoSwav(const RhoSwavOptions& o,
                                                            const SslContext& context) {
  return std::unique_ptr<SslObjective>(new RhoSwav(o, context));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), rho_simclr, ValidateRhoSimclr, CreateRhoSimclr,
                      "projection { out: 16 }");
TB_REGISTER_COMPONENT(SslObjectiveRegistry(), rho_moco, ValidateRhoMoco, CreateRhoMoco,
                      "queue_size: 32 projection { out: 16 }");
TB_REGISTER_COMPONENT(SslObjectiveRegistry(), rho_byol, ValidateRhoByol, CreateRhoByol,
                      "projection { out: 16 } predictor { out: 16 }");
TB_REGISTER_COMPONENT(SslObjectiveRegistry(), rho_swav, ValidateRhoSwav, CreateRhoSwav,
                      "num_prototypes: 8 projection { out: 16 }");

}  // namespace tb
