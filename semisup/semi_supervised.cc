#include "semisup/semi_supervised.h"

#include <torch/nn/functional/distance.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/functional/upsampling.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/checkpoint.h"
#include "core/config_check.h"
#include "datasets/views.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "glog/logging.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

// `x` in fp32 unless it is fp64 (reduced-precision outputs are upcast).
torch::Tensor Wide(const torch::Tensor& x) {
  return x.scalar_type() == torch::kDouble ? x : x.to(torch::kFloat);
}

// sum_i mask_i loss_i over N (ALL) or over sum_i mask_i (SELECTED).
torch::Tensor MaskedLossMean(const torch::Tensor& per_sample, const torch::Tensor& mask,
                             PseudoLabelOptions::Normalization normalization) {
  const torch::Tensor selected = (per_sample * mask).sum();
  if (normalization == PseudoLabelOptions::SELECTED) return selected / mask.sum().clamp_min(1.0);
  return selected / static_cast<double>(std::max<int64_t>(1, per_sample.size(0)));
}

}  // namespace

absl::Status ValidateSemiSupervised(const google::protobuf::Message& options,
                                    const TrainerScope& scope) {
  FieldChecker c(scope.path);
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  options.GetReflection()->ListFields(options, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->message_type() == nullptr || f->is_repeated()) continue;
    const google::protobuf::Message& m = options.GetReflection()->GetMessage(options, f);
    const std::string name = f->name();
    if (const auto* s = dynamic_cast<const UnlabeledSchedule*>(&m)) {
      c.Require(!s->has_weight() || s->weight() >= 0, name + ".weight", s->weight(),
                "must be >= 0");
      c.Require(s->warmup_steps() >= 0, name + ".warmup_steps", s->warmup_steps(),
                "must be >= 0");
      c.Require(s->rampup_steps() >= 0, name + ".rampup_steps", s->rampup_steps(),
                "must be >= 0");
    } else if (const auto* p = dynamic_cast<const PseudoLabelOptions*>(&m)) {
      c.Require(!p->has_threshold() || (p->threshold() >= 0 && p->threshold() <= 1),
                name + ".threshold", p->threshold(), "must be in [0, 1]");
    } else if (const auto* w = dynamic_cast<const WeakStrongSamplerOptions*>(&m)) {
      SamplerConfig sampler;
      *sampler.mutable_weak_strong() = *w;
      c.Merge(ValidateSamplerOptions(sampler, c.Path(name)));
    } else if (const auto* t = dynamic_cast<const TwoSpeedSamplerOptions*>(&m)) {
      SamplerConfig sampler;
      *sampler.mutable_two_speed() = *t;
      c.Merge(ValidateSamplerOptions(sampler, c.Path(name)));
    }
  }
  const DatasetConfig& d = scope.dataset;
  c.Fail(d.labeled_fraction() >= 1 && d.labeled_list().empty() &&
             d.unlabeled_set() == DatasetConfig::TRAIN_MINUS_LABELED,
         "",
         "this method trains on unlabeled videos, but dataset.labeled_fraction = 1 leaves none "
         "(lower dataset.labeled_fraction or set dataset.unlabeled_set: ALL_TRAIN)");
  return c.status();
}

absl::Status ValidateSelfDistillationOptions(const SelfDistillationOptions& o,
                                             const std::string& path) {
  FieldChecker c(path);
  c.RequireSet(!o.teacher().empty(), "teacher",
               "the checkpoint of the teacher trained on the labeled videos");
  c.Require(o.labeled_weight() >= 0, "labeled_weight", o.labeled_weight(), "must be >= 0");
  c.Require(o.unlabeled_weight() >= 0, "unlabeled_weight", o.unlabeled_weight(), "must be >= 0");
  if (o.has_teacher_backbone()) {
    c.Merge(ValidateBackbone(o.teacher_backbone(), c.Path("teacher_backbone")));
  }
  return c.status();
}

double UnlabeledWeight(const UnlabeledSchedule& schedule, double reference_weight, int64_t step) {
  const double weight = schedule.has_weight() ? schedule.weight() : reference_weight;
  if (step < schedule.warmup_steps()) return 0.0;
  if (schedule.rampup_steps() <= 0) return weight;
  const double t =
      std::min(1.0, static_cast<double>(step - schedule.warmup_steps()) / schedule.rampup_steps());
  return weight * std::exp(-5.0 * (1.0 - t) * (1.0 - t));
}

bool RampUpDone(const UnlabeledSchedule& schedule, int64_t step) {
  return step >= schedule.warmup_steps() + schedule.rampup_steps();
}

PseudoLabels MakePseudoLabels(const torch::Tensor& probabilities, float threshold) {
  torch::NoGradGuard no_grad;
  auto [max_probability, labels] = probabilities.detach().to(torch::kFloat).max(1);
  return {labels, max_probability.ge(threshold).to(torch::kFloat)};
}

PseudoLabels RepeatPseudoLabels(const PseudoLabels& labels, int64_t k) {
  return {labels.labels.repeat({k}), labels.mask.repeat({k})};
}

torch::Tensor PseudoLabelLoss(const torch::Tensor& logits, const PseudoLabels& labels,
                              PseudoLabelOptions::Normalization normalization) {
  namespace F = torch::nn::functional;
  const torch::Tensor per_sample =
      F::cross_entropy(Wide(logits), labels.labels,
                       F::CrossEntropyFuncOptions().reduction(torch::kNone));
  return MaskedLossMean(per_sample, labels.mask, normalization);
}

torch::Tensor SoftPseudoLabelLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                                  const torch::Tensor& mask,
                                  PseudoLabelOptions::Normalization normalization) {
  const torch::Tensor per_sample =
      -(targets.detach().to(Wide(logits).scalar_type()) * torch::log_softmax(Wide(logits), 1))
           .sum(1);
  return MaskedLossMean(per_sample, mask, normalization);
}

float ThresholdOr(const PseudoLabelOptions& options, float reference) {
  return options.has_threshold() ? options.threshold() : reference;
}

void AddPseudoLabelMetrics(const PseudoLabels& labels, const torch::Tensor& hidden_labels,
                           const std::string& prefix, std::map<std::string, double>* metrics) {
  const torch::Tensor correct =
      labels.labels.eq(hidden_labels.to(labels.labels.device())).to(torch::kFloat);
  const double selected = labels.mask.sum().item<double>();
  (*metrics)[prefix + "mask_rate"] = selected / std::max<int64_t>(1, labels.mask.size(0));
  (*metrics)[prefix + "pl_acc_all"] = correct.mean().item<double>();
  if (selected > 0) {
    (*metrics)[prefix + "pl_acc_selected"] =
        (correct * labels.mask).sum().item<double>() / selected;
  }
}

StepResult PseudoLabelStep(const torch::Tensor& ce, const torch::Tensor& loss_u, double weight,
                           const torch::Tensor& labeled_logits, const torch::Tensor& labels,
                           const PseudoLabels& pseudo_labels, const torch::Tensor& hidden_labels) {
  StepResult result;
  result.loss = ce + weight * loss_u;
  result.metrics["loss_ce"] = ce.item<double>();
  result.metrics["loss_u"] = loss_u.item<double>();
  result.metrics["weight_u"] = weight;
  result.metrics["train_top1"] = Top1(labeled_logits, labels);
  AddPseudoLabelMetrics(pseudo_labels, hidden_labels, "", &result.metrics);
  return result;
}

double Top1(const torch::Tensor& scores, const torch::Tensor& labels) {
  return scores.argmax(1).eq(labels.to(scores.device())).to(torch::kFloat).mean().item<double>();
}

torch::Tensor TemporalGradient(const torch::Tensor& clips) {
  const int64_t t_dim = clips.dim() - 3;
  const int64_t t = clips.size(t_dim);
  return clips.narrow(t_dim, 1, t - 1) - clips.narrow(t_dim, 0, t - 1);
}

namespace {

// 1 - the mean cosine over dim 1 of L2-normalised `a` and `b`.
torch::Tensor CosineDistance(const torch::Tensor& a, const torch::Tensor& b) {
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().dim(1);
  return 1 - F::cosine_similarity(F::normalize(a, unit), F::normalize(b, unit),
                                  F::CosineSimilarityFuncOptions().dim(1))
                 .mean();
}

}  // namespace

MultiViewLoss ComputeMultiViewLoss(const std::vector<MultiViewOutputs>& views,
                                   const torch::Tensor& labels, int64_t nl, int64_t nu,
                                   const MultiViewLossOptions& o) {
  namespace F = torch::nn::functional;
  CHECK(views.size() == 2 || views.size() == 3) << views.size() << " views";
  const int num_views = static_cast<int>(views.size());
  MultiViewLoss out;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor sum;  // of the weak rows' logits or probabilities over the views
    for (const MultiViewOutputs& view : views) {
      const torch::Tensor weak = Wide(view.logits).slice(0, nl, nl + nu);
      const torch::Tensor term =
          o.source == MultiViewFixMatchOptions::AVERAGED_LOGITS ? weak : torch::softmax(weak, 1);
      sum = sum.defined() ? sum + term : term;
    }
    const torch::Tensor p = o.source == MultiViewFixMatchOptions::AVERAGED_LOGITS
                                ? torch::softmax(sum / num_views, 1)
                                : sum / num_views;
    out.pseudo_labels = MakePseudoLabels(p, o.threshold);
  }
  const PseudoLabels strong_labels = RepeatPseudoLabels(out.pseudo_labels, o.strong_clips);
  torch::Tensor total;
  for (int v = 0; v < num_views; ++v) {
    const torch::Tensor z = Wide(views[v].logits);
    out.ce.push_back(F::cross_entropy(z.slice(0, 0, nl), labels));
    out.unlabeled.push_back(PseudoLabelLoss(z.slice(0, nl + nu), strong_labels, o.normalization));
    const torch::Tensor term = o.view_weight * (out.ce[v] + o.unlabeled_weight * out.unlabeled[v]);
    total = v == 0 ? term : total + term;
  }
  if (o.alignment_weight > 0) {
    const auto tg = [&](const torch::Tensor& t) { return o.detach_tg ? t.detach() : t; };
    if (o.alignment_features == MultiViewFixMatchOptions::POOLED_WEAK) {
      out.alignment_stages.push_back(
          CosineDistance(Wide(views[0].pooled).slice(0, nl, nl + nu),
                         tg(Wide(views[1].pooled).slice(0, nl, nl + nu))));
    } else {
      for (size_t s = 0; s < views[0].stages.size() && s < views[1].stages.size(); ++s) {
        const torch::Tensor a = Wide(views[0].stages[s]).slice(0, 0, nl + nu);
        torch::Tensor b = tg(Wide(views[1].stages[s]).slice(0, 0, nl + nu));
        if (b.sizes() != a.sizes()) {
          // The TG clip has T - 1 frames: its map is resampled in time (and,
          // should they differ, in space) to the RGB map's.
          const std::vector<int64_t> size(a.sizes().begin() + 2, a.sizes().end());
          b = F::interpolate(b, F::InterpolateFuncOptions()
                                    .size(size)
                                    .mode(torch::kTrilinear)
                                    .align_corners(false));
        }
        out.alignment_stages.push_back(CosineDistance(a, b));
      }
    }
    out.alignment = torch::stack(out.alignment_stages).sum();
    total = total + o.alignment_weight * out.alignment;
  }
  if (o.contrast_weight > 0) {
    CHECK(views[0].contrast_embedding.defined() && views[1].contrast_embedding.defined())
        << "contrast_weight > 0 needs both views' contrast_embedding";
    out.contrast = CrossViewContrastLoss(Wide(views[0].contrast_embedding),
                                         Wide(views[1].contrast_embedding),
                                         o.contrast_temperature);
    total = total + o.contrast_weight * out.contrast;
  }
  out.total = total;
  return out;
}

torch::Tensor CrossViewContrastLoss(const torch::Tensor& rgb, const torch::Tensor& tg,
                                    double temperature) {
  namespace F = torch::nn::functional;
  CHECK_EQ(rgb.dim(), 2);
  CHECK(rgb.sizes() == tg.sizes()) << rgb.sizes() << " vs " << tg.sizes();
  const auto unit = [](const torch::Tensor& x) {
    return F::normalize(x, F::NormalizeFuncOptions().dim(1));
  };
  const torch::Tensor r = unit(rgb), t = unit(tg);
  const torch::Tensor target = torch::arange(rgb.size(0), rgb.options().dtype(torch::kLong));
  const torch::Tensor rt = torch::matmul(r, t.t()) / temperature;
  // t r^T is the transpose of r t^T.
  return F::cross_entropy(rt, target) + F::cross_entropy(rt.t(), target);
}

absl::StatusOr<torch::Tensor> BatchView(const ClipBatch& batch, const std::string& name,
                                        int64_t clips) {
  ASSIGN_OR_RETURN(torch::Tensor view, GetView(batch.views, name, clips));
  return ClipMajor(view);
}

absl::StatusOr<torch::Tensor> LabeledClips(const ClipBatch& batch) {
  if (batch.clips.defined()) return batch.clips;
  return BatchView(batch, "weak", 1);
}

LabeledWeakStrongLogits ForwardLabeledWeakStrong(VideoBackbone& model, const torch::Tensor& xl,
                                                 const torch::Tensor& weak,
                                                 const torch::Tensor& strong, bool shared_bn,
                                                 torch::Device device) {
  if (!shared_bn) {
    return {model.forward(xl.to(device)), model.forward(weak.to(device)),
            model.forward(strong.to(device))};
  }
  const int64_t nl = xl.size(0), nu = weak.size(0);
  const torch::Tensor logits = model.forward(torch::cat({xl, weak, strong}).to(device));
  return {logits.slice(0, 0, nl), logits.slice(0, nl, nl + nu), logits.slice(0, nl + nu)};
}

torch::Tensor DistillationDistance(const torch::Tensor& p_student, const torch::Tensor& p_teacher,
                                   TimeBalanceOptions::Distance distance) {
  const torch::Tensor target = p_teacher.detach();
  if (distance == TimeBalanceOptions::KL || distance == TimeBalanceOptions::KL_BATCHMEAN) {
    // target * log(target) is 0 where target is 0, as in KLDivLoss.
    const torch::Tensor log_ratio =
        torch::log(target.clamp_min(1e-12)) - torch::log(p_student.clamp_min(1e-12));
    const torch::Tensor pointwise = target * log_ratio;  // [B, C]
    return distance == TimeBalanceOptions::KL ? pointwise.mean() : pointwise.sum(1).mean();
  }
  return (p_student - target).pow(2).mean();
}

StepResult DistillationStep(const torch::Tensor& logits, const torch::Tensor& p_teacher,
                            const torch::Tensor& labels, const torch::Tensor& hidden_labels,
                            double labeled_weight, double unlabeled_weight,
                            TimeBalanceOptions::Distance distance) {
  const int64_t nl = labels.size(0);
  // Reduced-precision (autocast) logits are upcast to fp32; fp64 stays fp64.
  const torch::Tensor wide = Wide(logits);
  const torch::Tensor p_s = torch::softmax(wide, 1);
  const torch::Tensor ce = torch::nn::functional::cross_entropy(wide.slice(0, 0, nl), labels);
  const torch::Tensor d_l = DistillationDistance(p_s.slice(0, 0, nl), p_teacher.slice(0, 0, nl),
                                                 distance);
  const torch::Tensor d_u = DistillationDistance(p_s.slice(0, nl), p_teacher.slice(0, nl),
                                                 distance);
  StepResult result;
  result.loss = ce + labeled_weight * d_l + unlabeled_weight * d_u;
  result.metrics["loss_ce"] = ce.item<double>();
  result.metrics["loss_distill_l"] = d_l.item<double>();
  result.metrics["loss_distill_u"] = d_u.item<double>();
  result.metrics["train_top1"] = Top1(p_s.slice(0, 0, nl), labels);
  result.metrics["pl_acc_all"] = Top1(p_teacher.slice(0, nl), hidden_labels);
  return result;
}

absl::StatusOr<BackboneConfig> ScaleBackboneWidth(const BackboneConfig& config, float factor) {
  BackboneConfig scaled = config;
  const google::protobuf::OneofDescriptor* kind =
      BackboneConfig::descriptor()->FindOneofByName("kind");
  const google::protobuf::Reflection* reflection = scaled.GetReflection();
  const google::protobuf::FieldDescriptor* set = reflection->GetOneofFieldDescriptor(scaled, kind);
  if (set == nullptr) return absl::InvalidArgumentError("backbone: no architecture set");
  google::protobuf::Message* options = reflection->MutableMessage(&scaled, set);
  const google::protobuf::FieldDescriptor* width =
      options->GetDescriptor()->FindFieldByName("width_multiplier");
  if (width == nullptr || width->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_FLOAT) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.", set->name(), " has no width_multiplier to scale"));
  }
  const google::protobuf::Reflection* r = options->GetReflection();
  r->SetFloat(options, width, r->GetFloat(*options, width) * factor);
  return scaled;
}

absl::StatusOr<std::shared_ptr<VideoBackbone>> LoadFrozenModel(
    const TrainerContext& context, const BackboneConfig* config, const std::string& path,
    const std::string& field) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field ", field, " is required (a checkpoint path)"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model,
                   config != nullptr ? context.CreateModel(*config) : context.CreateModel());
  CheckpointContents contents;
  contents.modules = {{"model", model.get()}};
  absl::Status loaded = LoadCheckpoint(path, &contents);
  if (!loaded.ok()) {
    return absl::Status(loaded.code(), absl::StrCat(field, ": ", loaded.message()));
  }
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  return model;
}

InferencePrecision TeacherInferencePrecision(TimeBalanceOptions::TeacherPrecision precision,
                                             InferencePrecision unset) {
  switch (precision) {
    case TimeBalanceOptions::TEACHER_FP32:
      return InferencePrecision::kFp32;
    case TimeBalanceOptions::TEACHER_BF16_AUTOCAST:
      return InferencePrecision::kBf16Autocast;
    case TimeBalanceOptions::TEACHER_BF16_WEIGHTS:
      return InferencePrecision::kBf16Weights;
    default:
      return unset;
  }
}

absl::StatusOr<InferenceModel> LoadSelfDistillationTeacher(const TrainerContext& context,
                                                           const SelfDistillationOptions& o,
                                                           const std::string& field) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> teacher,
                   LoadFrozenModel(context, o.has_teacher_backbone() ? &o.teacher_backbone() : nullptr,
                                   o.teacher(), field + ".teacher"));
  InferenceOptions inference;
  inference.fold_batch_norm = o.fold_teacher();
  inference.channels_last = o.teacher_channels_last();
  inference.precision = TeacherInferencePrecision(o.teacher_precision(),
                                                  InferencePrecisionFor(context.precision));
  RETURN_IF_ERROR(CallTorch("moving the teacher", [&] { teacher->to(context.device); }));
  absl::StatusOr<InferenceModel> prepared = InferenceModel::Adopt(std::move(teacher), inference);
  if (!prepared.ok()) {
    return absl::Status(prepared.status().code(), absl::StrCat(field, ": preparing the teacher: ",
                                                               prepared.status().message()));
  }
  return prepared;
}

absl::StatusOr<std::shared_ptr<VideoBackbone>> MakeEmaCopy(const TrainerContext& context,
                                                           VideoBackbone& online) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> copy, context.CreateModel());
  for (auto& p : copy->parameters()) p.set_requires_grad(false);
  ssl::EmaUpdate(*copy, online, 0.0);
  return copy;
}

absl::StatusOr<const ClipBatch*> SemiSupervisedTrainer::Unlabeled(const StepBatches& batches,
                                                                  const std::string& method) const {
  if (batches.unlabeled == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(method,
                     " needs unlabeled videos, but the labeled subset is the whole training set "
                     "(lower dataset.labeled_fraction or set dataset.unlabeled_set: ALL_TRAIN)"));
  }
  return batches.unlabeled;
}

}  // namespace tb
