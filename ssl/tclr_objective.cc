// TimeBalance's temporally-invariant instance contrastive loss L_IC and
// TCLR's temporally-distinctive local-local (L_LL) and global-local (L_GL)
// losses, on the TCLR sampler's views:
//   "sparse" [B, A, 3, T, S, S]: one clip at stride num_slices covering the
//            window, A augmentations;
//   "dense"  [B, A * num_slices, ...]: the window's consecutive clips,
//            ordered (augmentation, timestep).
// batch_norm_groups PER_CLIP_GROUP (default, the official code): each clip
// group of B clips (one augmentation's sparse clips, one (augmentation,
// timestep)'s dense clips) is a forward pass of its own, so BatchNorm
// normalises each group with its own statistics; ONE_BATCH sends all
// A * (1 + num_slices) groups through one pass. Pooled features are
// projected by one MLP (by default with TCLR's final BatchNorm); the sparse
// clip's feature map is also pooled into num_slices temporal slices,
// projected by the same MLP (shared weights) for L_GL, slice by slice
// under PER_CLIP_GROUP as models/mlp.py does.
//
// L = ic_weight * L_IC + ll_weight * L_LL + gl_weight * L_GL (ssl/losses.h
// documents each term; in a data-parallel run L_IC's negatives come from
// the global batch). `instance_contrastive` defaults to L_IC only;
// `tclr` to all three. `loss_reduction` (default REFERENCE) reduces L_LL and
// L_GL as the official TCLR / TimeBalance code does: L_LL summed over the
// videos of the batch, L_GL's row + column cross-entropies summed over
// timesteps and halved. MEAN averages L_LL over videos and L_GL's row and
// column terms over timesteps. That is not "only a rescaling": it changes
// the balance between the terms (L_LL shrinks by the batch size against
// L_IC) and their strength against the optimiser's learning rate and weight
// decay, so the reference weights (1, 1, 1) mean something else under it.
// The invariant teacher (`instance_contrastive`, L_IC only) does not
// depend on the reduction.
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/collectives.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

class TclrObjective : public SslObjective {
 public:
  TclrObjective(const TclrObjectiveOptions& o, float ic, float ll, float gl, int64_t feature_dim)
      : options_(o), ic_(ic), ll_(ll), gl_(gl) {
    ProjectionDefaults head;
    head.final_batch_norm = true;  // TCLR's / TimeBalance's models/mlp.py
    projection_ = register_module("projection", MakeProjection(o.projection(), feature_dim, head));
  }

  SamplerConfig Sampler() const override {
    SamplerConfig s;
    *s.mutable_tclr() = options_.sampler();
    s.mutable_tclr()->set_num_dense(options_.num_slices());
    return s;
  }

  absl::StatusOr<SslLoss> Loss(VideoBackbone& backbone, const ViewTensors& views) override {
    const int64_t a = options_.sampler().augmentations();
    const int64_t slices = options_.num_slices();
    ASSIGN_OR_RETURN(torch::Tensor sparse_view, GetView(views, "sparse", a));
    ASSIGN_OR_RETURN(torch::Tensor dense_view, GetView(views, "dense", a * slices));
    return CallTorch("tclr loss", [&] {
      const int64_t b = sparse_view.size(0);
      const torch::Tensor clips = torch::cat({ClipMajor(sparse_view), ClipMajor(dense_view)});
      const torch::Tensor map =
          InGroups(clips, b, [&](const torch::Tensor& x) { return backbone.FeatureMap(x); });
      const torch::Tensor pooled = map.mean({2, 3, 4});
      const torch::Tensor local_z =  // [(A + A*S) * b, D]
          InGroups(pooled, b, [&](const torch::Tensor& x) { return projection_->forward(x); });
      const int64_t d = local_z.size(1);
      // L_IC's negatives come from the global batch in a data-parallel run,
      // and so does L_LL (per video, but a sum over videos under REFERENCE:
      // computed over the gathered batch it is the one-process value on every
      // rank). L_GL is a mean over videos in both reductions, so its local
      // means average to the global one.
      const torch::Tensor z = GlobalBatch(local_z.view({a + a * slices, b, d}), 1, collectives());
      const int64_t global_b = z.size(1);
      const torch::Tensor sparse = z.slice(0, 0, a);
      const torch::Tensor dense = z.slice(0, a).reshape({a, slices, global_b, d});
      SslLoss out;
      torch::Tensor total = torch::zeros({}, z.options());
      if (ic_ != 0) {
        const torch::Tensor l = ssl::InstanceContrastiveLoss(sparse, dense, options_.temperature());
        total = total + ic_ * l;
        out.metrics["loss_ic"] = l.item<double>();
      }
      if (ll_ != 0) {
        const torch::Tensor l = ssl::LocalLocalLoss(dense, options_.temperature(), Reduction());
        total = total + ll_ * l;
        out.metrics["loss_ll"] = l.item<double>();
      }
      if (gl_ != 0) {
        // [A*B, C, T', H', W'] -> slices [A*B, C, S] -> projected [A, S, B, d].
        const torch::Tensor slice_features = TemporalSlicePool(map.slice(0, 0, a * b), slices);
        torch::Tensor sparse_slices;
        if (Grouped()) {
          std::vector<torch::Tensor> rows;  // (augmentation, slice) order
          for (int64_t i = 0; i < a; ++i) {
            for (int64_t s = 0; s < slices; ++s) {
              rows.push_back(projection_->forward(slice_features.slice(0, i * b, (i + 1) * b)
                                                      .select(2, s)));
            }
          }
          sparse_slices = torch::stack(rows).view({a, slices, b, d});
        } else {
          sparse_slices = projection_->forward(slice_features)
                              .view({a, b, d, slices})
                              .permute({0, 3, 1, 2});
        }
        const torch::Tensor local_dense = local_z.slice(0, a * b).view({a, slices, b, d});
        const torch::Tensor l = ssl::GlobalLocalLoss(sparse_slices, local_dense,
                                                     options_.temperature(), Reduction());
        total = total + gl_ * l;
        out.metrics["loss_gl"] = l.item<double>();
      }
      out.loss = total;
      return out;
    });
  }

 private:
  bool Grouped() const {
    return options_.batch_norm_groups() == TclrObjectiveOptions::PER_CLIP_GROUP;
  }
  // fn on all rows at once (ONE_BATCH) or on each consecutive block of
  // `group` rows, the outputs concatenated (PER_CLIP_GROUP).
  torch::Tensor InGroups(const torch::Tensor& rows, int64_t group,
                         const std::function<torch::Tensor(const torch::Tensor&)>& fn) const {
    if (!Grouped()) return fn(rows);
    std::vector<torch::Tensor> out;
    for (const torch::Tensor& block : rows.split(group)) out.push_back(fn(block));
    return torch::cat(out);
  }

  ssl::TclrReduction Reduction() const {
    return options_.loss_reduction() == TclrObjectiveOptions::MEAN ? ssl::TclrReduction::kMean
                                                                   : ssl::TclrReduction::kReference;
  }

  TclrObjectiveOptions options_;
  float ic_, ll_, gl_;
  ProjectionHead projection_{nullptr};
};

absl::Status ValidateTclr(const TclrObjectiveOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.num_slices() >= 1 && o.num_slices() <= 16, "num_slices", o.num_slices(),
            "must be in [1, 16]");
  c.Require(o.temperature() > 0, "temperature", o.temperature(), "must be > 0");
  c.Require(o.sampler().augmentations() >= 2, "sampler.augmentations",
            o.sampler().augmentations(), "the contrastive terms need at least 2");
  SamplerConfig sampler;
  *sampler.mutable_tclr() = o.sampler();
  c.Merge(ValidateSamplerOptions(sampler, c.Path("sampler")));
  return c.status();
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateInstanceContrastive(
    const TclrObjectiveOptions& o, const SslContext& context) {
  return std::unique_ptr<SslObjective>(new TclrObjective(
      o, o.ic_weight(), o.has_ll_weight() ? o.ll_weight() : 0.0f,
      o.has_gl_weight() ? o.gl_weight() : 0.0f, context.feature_dim));
}

absl::StatusOr<std::unique_ptr<SslObjective>> CreateTclr(const TclrObjectiveOptions& o,
                                                         const SslContext& context) {
  return std::unique_ptr<SslObjective>(
      new TclrObjective(o, o.ic_weight(), o.ll_weight(), o.gl_weight(), context.feature_dim));
}

}  // namespace

TB_REGISTER_COMPONENT(SslObjectiveRegistry(), instance_contrastive, ValidateTclr,
                      CreateInstanceContrastive, "projection { out: 16 }");
TB_REGISTER_COMPONENT(SslObjectiveRegistry(), tclr, ValidateTclr, CreateTclr,
                      "projection { out: 16 }");

}  // namespace tb
