// File: semisup/semi_supervised.h
//
// Pieces shared by the semi-supervised trainers (pseudo_label, mean_teacher,
// fixmatch, tg_fixmatch, mvpl, cmpl, s4l, self_distillation, timebalance):
// the unlabeled-loss schedule, thresholded pseudo-labels and their loss,
// the temporal-gradient view and the multi-view (RGB + TG) loss, views of a
// batch, auxiliary-model widths,
// frozen teachers loaded from checkpoints, the distillation loss, and the
// option checks every semi-supervised trainer runs in its Validate.
#ifndef TIMEBALANCE_SEMISUP_SEMI_SUPERVISED_H_
#define TIMEBALANCE_SEMISUP_SEMI_SUPERVISED_H_

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "datasets/clip_loader.h"
#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {

// The checks every semi-supervised trainer's Validate runs: the
// UnlabeledSchedule and PseudoLabelOptions fields of `options` (found by
// type, so a new method gets them checked too), any WeakStrongSamplerOptions
// or TwoSpeedSamplerOptions field (sampler ranges), and that the experiment
// leaves unlabeled videos to read (a labeled_fraction of 1 without a
// labeled_list or unlabeled_set: ALL_TRAIN leaves none: a config error, not
// a run-time one).
absl::Status ValidateSemiSupervised(const google::protobuf::Message& options,
                                    const TrainerScope& scope);

// The checks of self-distillation options (SD, and MT+SD's
// `self_distillation`) at `path`: the teacher checkpoint is set, the weights
// are >= 0, and the teacher backbone, when given, is valid.
absl::Status ValidateSelfDistillationOptions(const SelfDistillationOptions& options,
                                             const std::string& path);

// The unlabeled-loss weight before optimizer step `step` (0-based): 0 during
// the warm-up, then weight * exp(-5 (1 - t)^2) with t the ramp-up progress
// in [0, 1] (1 at once when rampup_steps is 0). `reference_weight` is used
// when schedule.weight is unset.
double UnlabeledWeight(const UnlabeledSchedule& schedule, double reference_weight, int64_t step);

// Whether the ramp-up (and warm-up) of `schedule` is over before `step`.
bool RampUpDone(const UnlabeledSchedule& schedule, int64_t step);

struct PseudoLabels {
  torch::Tensor labels;  // [N] int64: argmax of the probabilities
  torch::Tensor mask;    // [N] float: 1 where max probability >= threshold
};

// Hard pseudo-labels of class probabilities [N, C] (no gradient flows).
PseudoLabels MakePseudoLabels(const torch::Tensor& probabilities, float threshold);

// Repeats the pseudo-labels of N samples for k clips each, clip-major (the
// order of ClipMajor(view)): row j * N + i is sample i.
PseudoLabels RepeatPseudoLabels(const PseudoLabels& labels, int64_t k);

// Cross-entropy of `logits` [N, C] against the pseudo-labels, masked:
// sum_i mask_i CE_i divided by N (ALL) or by sum_i mask_i (SELECTED; 0 when
// nothing is selected). In fp32 (reduced-precision logits are upcast) or,
// for fp64 logits, fp64.
torch::Tensor PseudoLabelLoss(const torch::Tensor& logits, const PseudoLabels& labels,
                              PseudoLabelOptions::Normalization normalization);

// PseudoLabelLoss with soft targets [N, C] (rows summing to 1, no
// gradient): sum_i mask_i (-sum_c targets_ic log softmax(logits_i)_c)
// divided by N (ALL) or by sum_i mask_i (SELECTED). ActorCutMix's mixed
// labels.
torch::Tensor SoftPseudoLabelLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                                  const torch::Tensor& mask,
                                  PseudoLabelOptions::Normalization normalization);

// The threshold of `options`, or `reference` when unset.
float ThresholdOr(const PseudoLabelOptions& options, float reference);

// Logs, under `prefix`: mask_rate (share of selected samples), and the
// pseudo-labels' accuracy against the hidden labels over the selected
// samples (pl_acc_selected, only when something is selected) and over all
// (pl_acc_all).
void AddPseudoLabelMetrics(const PseudoLabels& labels, const torch::Tensor& hidden_labels,
                           const std::string& prefix, std::map<std::string, double>* metrics);

// The step of a one-model pseudo-label method (pseudo_label, fixmatch):
// loss = ce + weight * loss_u, logging each term, the weight, the labeled
// top-1 and the pseudo-label metrics against the hidden labels.
StepResult PseudoLabelStep(const torch::Tensor& ce, const torch::Tensor& loss_u, double weight,
                           const torch::Tensor& labeled_logits, const torch::Tensor& labels,
                           const PseudoLabels& pseudo_labels, const torch::Tensor& hidden_labels);

// Top-1 accuracy of scores [N, C] (logits or probabilities) against labels.
double Top1(const torch::Tensor& scores, const torch::Tensor& labels);

// Temporal gradient of clips [..., T, H, W] along T: x[t + 1] - x[t], T - 1
// frames (TG-FixMatch, MvPL). Differences of the normalised clip (the
// normalisation is affine per channel, so this is the scaled difference of
// raw frames).
torch::Tensor TemporalGradient(const torch::Tensor& clips);

// One view's (RGB's, TG's or flow's) outputs on the rows [labeled (nl), weak (nu),
// strong (k * nu, clip-major)] of a multi-view step.
struct MultiViewOutputs {
  torch::Tensor logits;  // [N, C]
  // The feature map of every residual stage, first to last, [N, C_s, T_s,
  // H_s, W_s] (VideoBackbone::StageFeatureMaps); for STAGE_MAPS alignment.
  std::vector<torch::Tensor> stages;
  torch::Tensor pooled;  // [N, D]; for POOLED_WEAK alignment
  // The cross-view contrast's head outputs for the labeled + weak clips,
  // [M, D'] (not normalised; the global batch's in a data-parallel run);
  // used when MultiViewLossOptions::contrast_weight > 0.
  torch::Tensor contrast_embedding;
};

// What a multi-view step's loss depends on besides the outputs
// (MultiViewFixMatchOptions, resolved).
struct MultiViewLossOptions {
  float threshold = 0.3f;
  MultiViewFixMatchOptions::PseudoLabelSource source = MultiViewFixMatchOptions::AVERAGED_LOGITS;
  PseudoLabelOptions::Normalization normalization = PseudoLabelOptions::ALL;
  double view_weight = 0.5;
  double unlabeled_weight = 1.0;  // w(t)
  double alignment_weight = 0.0;
  MultiViewFixMatchOptions::AlignmentFeatures alignment_features =
      MultiViewFixMatchOptions::STAGE_MAPS;
  bool detach_tg = true;
  int64_t strong_clips = 1;
  double contrast_weight = 0.0;
  double contrast_temperature = 0.5;
};

struct MultiViewLoss {
  torch::Tensor total;
  std::vector<torch::Tensor> ce, unlabeled;  // per view: RGB, TG(, flow)
  torch::Tensor alignment;            // summed over stages; undefined when off
  std::vector<torch::Tensor> alignment_stages;
  torch::Tensor contrast;      // CrossViewContrastLoss; undefined when off
  PseudoLabels pseudo_labels;  // of the nu weak clips
};

// LTG's cross-view contrast (CrossViewContrastOptions in semisup.proto) of
// the head outputs rgb, tg [M, D] of the same M clips: with r, t their rows
// L2-normalised,
//   CE(r t^T / temperature, i) + CE(t r^T / temperature, i),
// each cross entropy a mean over the M rows with row i's target its own
// clip in the other view. Unweighted.
torch::Tensor CrossViewContrastLoss(const torch::Tensor& rgb, const torch::Tensor& tg,
                                    double temperature);

// The loss of TG-FixMatch / MvPL (MultiViewFixMatchOptions' comment) from
// the RGB (views[0]), TG (views[1]) and, for MvPL's third view, flow
// (views[2]) outputs of nl labeled and nu unlabeled videos with labels
// `labels` [nl]. The pseudo-labels come from the mean over all V views of
// the weak logits (or probabilities, `source`);
//   total = view_weight * sum_v [CE(z_v(x_l), y) + w * PseudoLabelLoss(
//           z_v(strong))] + alignment_weight * sum_s A_s
//           + contrast_weight * CrossViewContrastLoss(e_RGB, e_TG),
// A_s = 1 - mean over rows and positions of the cosine over channels
// between the RGB and TG maps of stage s on the labeled + weak rows (TG
// detached with detach_tg, resampled to the RGB map's size when they
// differ), or for POOLED_WEAK one term 1 - mean cos of the weak rows'
// pooled features, and e_v the views' contrast_embedding (alignment and
// contrast are between RGB and TG only). Logits are used in their own dtype
// (fp64 stays fp64). `views` has 2 or 3 entries.
MultiViewLoss ComputeMultiViewLoss(const std::vector<MultiViewOutputs>& views,
                                   const torch::Tensor& labels, int64_t nl, int64_t nu,
                                   const MultiViewLossOptions& options);

// View `name` of a batch as [K * B, 3, T, S, S], clip-major, checked to
// have K == clips (K = 1 gives [B, ...]). Errors name the view.
absl::StatusOr<torch::Tensor> BatchView(const ClipBatch& batch, const std::string& name,
                                        int64_t clips);

// The labeled clip of a single-clip labeled batch (`clips`, or view
// "weak"), [B, 3, T, S, S].
absl::StatusOr<torch::Tensor> LabeledClips(const ClipBatch& batch);

// The logits of a FixMatch-style step's labeled, weak and strong clips
// (each [N, C] in the model's dtype), from one forward pass over their
// concatenation (`shared_bn`: the three share BatchNorm statistics) or one
// pass each.
struct LabeledWeakStrongLogits {
  torch::Tensor labeled, weak, strong;
};
LabeledWeakStrongLogits ForwardLabeledWeakStrong(VideoBackbone& model, const torch::Tensor& xl,
                                                 const torch::Tensor& weak,
                                                 const torch::Tensor& strong, bool shared_bn,
                                                 torch::Device device);

// D(p_student, p_teacher), [B, C] each: MSE (mean over all B * C elements),
// KL (p_T * (log p_T - log p_S), mean over all B * C elements, as the
// official nn.KLDivLoss(reduction='mean')) or KL_BATCHMEAN (KL(p_T || p_S)
// summed over classes, mean over rows). p_teacher is treated as a constant.
torch::Tensor DistillationDistance(const torch::Tensor& p_student, const torch::Tensor& p_teacher,
                                   TimeBalanceOptions::Distance distance);

// The distillation step of TimeBalance and self-distillation on a batch of
// labeled rows (the first labels.size(0)) followed by unlabeled rows:
//   CE(logits_l, y) + labeled_weight * D(p_S(x_l), p_T(x_l))
//                   + unlabeled_weight * D(p_S(x_u), p_T(x_u)),
// p_S = softmax of the student's `logits` in fp32 (fp64 logits stay fp64).
// Logs loss_ce, loss_distill_l, loss_distill_u, train_top1, and pl_acc_all:
// the teacher's top-1 on the unlabeled rows against their hidden labels.
StepResult DistillationStep(const torch::Tensor& logits, const torch::Tensor& p_teacher,
                            const torch::Tensor& labels, const torch::Tensor& hidden_labels,
                            double labeled_weight, double unlabeled_weight,
                            TimeBalanceOptions::Distance distance);

// `config` with its backbone's width_multiplier multiplied by `factor`
// (CMPL's auxiliary model). InvalidArgument when the set backbone has no
// width_multiplier.
absl::StatusOr<BackboneConfig> ScaleBackboneWidth(const BackboneConfig& config, float factor);

// Builds the backbone `config` through the context's model factory (unset =
// the experiment's), loads module "model" of the checkpoint at `path` into
// it, and freezes it (eval mode, no parameter requires grad). `field` (e.g.
// "trainer.self_distillation.teacher") names the config field in errors.
absl::StatusOr<std::shared_ptr<VideoBackbone>> LoadFrozenModel(
    const TrainerContext& context, const BackboneConfig* config, const std::string& path,
    const std::string& field);

// The InferencePrecision of a teacher_precision option; `unset` for
// TEACHER_PRECISION_UNSPECIFIED.
InferencePrecision TeacherInferencePrecision(TimeBalanceOptions::TeacherPrecision precision,
                                             InferencePrecision unset);

// The frozen teacher of self-distillation (SD, and MT+SD's):
// LoadFrozenModel(options.teacher_backbone or the experiment's,
// options.teacher) prepared as an InferenceModel on the context's device per
// fold_teacher, teacher_channels_last and teacher_precision (unset: the
// context's precision). `field` names the options in errors.
absl::StatusOr<InferenceModel> LoadSelfDistillationTeacher(const TrainerContext& context,
                                                           const SelfDistillationOptions& options,
                                                           const std::string& field);

// An EMA copy target of the experiment's model: the same architecture with
// the online model's weights and buffers, no parameter requiring grad.
absl::StatusOr<std::shared_ptr<VideoBackbone>> MakeEmaCopy(const TrainerContext& context,
                                                           VideoBackbone& online);

// Base of the semi-supervised trainers with one trained model ("model" in
// checkpoints, evaluated at the end): owns it, its device and the common
// Trainer plumbing. Subclasses implement Step (and may add modules).
class SemiSupervisedTrainer : public Trainer {
 public:
  SemiSupervisedTrainer(std::shared_ptr<VideoBackbone> model, torch::Device device)
      : model_(std::move(model)), device_(device) {
    model_->to(device_);
  }
  std::vector<torch::Tensor> TrainableParameters() override { return model_->parameters(); }
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override {
    return {{"model", model_.get()}};
  }
  VideoBackbone& EvaluationModel() override { return *model_; }
  bool NeedsUnlabeled() const override { return true; }
  void SetTraining(bool training) override { model_->train(training); }

  VideoBackbone& model() { return *model_; }

 protected:
  // The unlabeled batch, or FailedPrecondition naming `method` when the
  // labeled subset is the whole training set.
  absl::StatusOr<const ClipBatch*> Unlabeled(const StepBatches& batches,
                                             const std::string& method) const;

  std::shared_ptr<VideoBackbone> model_;
  torch::Device device_;
};

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_SEMI_SUPERVISED_H_
