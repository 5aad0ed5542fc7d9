// File: backbones/inference_model.h
//
// Frozen models run as inference: the teachers of TimeBalance distillation
// and self-distillation, CMPL's frozen parts, the score stage, evaluation.
// An InferenceModel is a private copy of a trained VideoBackbone that
//   - has its BatchNorm layers folded into the convolutions that feed them
//     (w' = w * gamma / sqrt(var + eps), b' = beta + (b - mean) * gamma /
//     sqrt(var + eps)), the BatchNorm call itself removed;
//   - runs under c10::InferenceMode (no autograd bookkeeping, no version
//     counters), in eval mode;
//   - optionally stores its weights channels-last(-3d) and/or runs in bf16
//     (weights cast to bf16, or fp32 weights under bf16 autocast).
// The trained module is only read (its state dict is copied); its parameters
// are neither aliased nor modified, and it stays trainable.
//
// What is folded. A BatchNorm is folded when, in a probe forward pass
// observed at the operator level (at::RecordFunction, see FoldBatchNorms):
//   - it runs exactly once, in eval mode, with running statistics;
//   - its input is the output of a convolution (a plain Conv1d/2d/3d module,
//     not a transposed one) that runs exactly once, and nothing else reads
//     that output (no residual use, no in-place ReLU before the BN);
//   - it is an element of a torch::nn::Sequential (possibly nested, e.g.
//     Sequential(Conv2Plus1d, BN, ReLU) whose Conv2Plus1d ends with a conv),
//     where it is replaced by an Identity. A BatchNorm that is a named member
//     of its parent (called by name in the parent's forward(), such as
//     bottleneck3d's bn1..bn3, the SlowFast lateral "fuse_*.bn", TSM's
//     blocks and every stem written as a member) cannot be taken out of that
//     forward() without changing the backbone's code, so it stays an
//     eval-mode BatchNorm (unfolded: folding it would not remove its pass).
// Everything else stays an eval-mode BatchNorm; fold_report() lists every
// BatchNorm by name with the reason. For the registered backbones this folds
// every BatchNorm of r3d18 (20 at depth 18) and r2plus1d (37), and the
// projection-shortcut ("downsample") BatchNorms of slow_r50 (4 of 53),
// slowfast_r50 (8 of 110) and tsm_r18 (3 of 20); tests check these counts.
// After folding, the probe is run again and must reproduce the unfolded
// outputs (relative error < 1e-4), so a Sequential subclass that does not run
// its elements in order is caught as an error rather than served wrong.
//
//   ASSIGN_OR_RETURN(InferenceModel teacher,
//                    InferenceModel::Create(teacher_config, *trained, options));
//   ASSIGN_OR_RETURN(torch::Tensor p_t, teacher.Probabilities(clips));
//
// Results are fp32 and ordinary (non-inference) tensors, copied out of
// inference mode (a few KB), so they can enter autograd-recorded expressions
// such as a distillation loss. The options decide the precision: a caller's
// autocast scope does not reach inside Run().
#ifndef TIMEBALANCE_BACKBONES_INFERENCE_MODEL_H_
#define TIMEBALANCE_BACKBONES_INFERENCE_MODEL_H_

#include <torch/nn/module.h>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"
#include "core/autocast.h"

namespace tb {

// What FoldBatchNorms did, by module name (the dotted names of
// named_modules(), e.g. "layer1.0.conv1.1").
struct BatchNormFoldReport {
  struct Folded {
    std::string batch_norm;
    std::string conv;  // the convolution that absorbed it
  };
  struct Kept {
    std::string batch_norm;
    std::string reason;
  };
  std::vector<Folded> folded;
  std::vector<Kept> kept;  // still eval-mode BatchNorms
  int64_t batch_norms_before = 0;
  int64_t batch_norms_after = 0;  // == kept.size()

  // One line per BatchNorm, folded first.
  std::string ToString() const;
};

// Folds, in place, every BatchNorm of `model` that qualifies (see the file
// comment) into its convolution, and replaces it with an Identity in its
// Sequential. `forward` runs `model` on a fixed input and returns its
// outputs; it is called (on this thread, with autocast and autograd off) to
// observe which operator reads which tensor, and again afterwards to check
// that the outputs did not change. The CPU generator's state is restored
// afterwards (building a biased convolution draws initial weights); before
// 2026-12-07 it was not, so a trainer that prepared its teachers before
// drawing from the generator drew other numbers. `model` must be in eval mode with fp32
// weights. Errors: FailedPrecondition (training mode, non-fp32 weights),
// InvalidArgument (the forward pass fails: its message is included), Internal
// (the folded model's outputs differ from the original's; `model` is then
// left modified).
absl::StatusOr<BatchNormFoldReport> FoldBatchNorms(
    torch::nn::Module& model, const std::function<std::vector<torch::Tensor>()>& forward);

enum class InferencePrecision {
  kFp32,
  // Weights (and the clip) cast to bf16 once; outputs cast back to fp32.
  kBf16Weights,
  // fp32 weights, forward under CPU/CUDA bf16 autocast (casts the weights of
  // every convolution on every call, as today's teachers do).
  kBf16Autocast,
};

// The precision a frozen model runs in to match an experiment's `precision`:
// kBf16Autocast for Precision::kBf16 (as the model ran inside the step's
// autocast), kFp32 otherwise (an FP16 experiment's frozen models run fp32).
InferencePrecision InferencePrecisionFor(Precision precision);

struct InferenceOptions {
  // Fold BatchNorms (see the file comment). false keeps the eval-mode model
  // as it is: the InferenceMode-only variant, for reference and timing.
  bool fold_batch_norm = true;
  // Weights channels-last-3d (channels-last for 2-D convolutions, TSM), and
  // the clip converted to channels-last-3d before the forward pass.
  bool channels_last = false;
  InferencePrecision precision = InferencePrecision::kFp32;
  // [B, C, T, H, W] of the probe clip folding observes (a deterministic
  // pattern, no RNG use). It must be a valid input for the backbone (e.g.
  // SlowFast needs T divisible by alpha); small is enough. Create replaces C
  // with its config's input_channels.
  std::array<int64_t, 5> probe_clip_shape = {1, 3, 8, 32, 32};
};

// Features, logits and softmax probabilities of one forward pass, fp32.
struct InferenceOutputs {
  torch::Tensor features;       // [B, feature_dim]
  torch::Tensor logits;         // [B, num_classes]
  torch::Tensor probabilities;  // softmax(logits) over classes, computed in fp32
};

class InferenceModel {
 public:
  // Builds `config`'s backbone, copies `trained`'s parameters and buffers
  // into it (strictly by name), moves it to `trained`'s device and prepares
  // it per `options`. `trained` is only read; the torch RNG state is restored
  // afterwards (building a backbone draws initial weights). InvalidArgument
  // when `trained` does not fit `config` (the message lists the names) or
  // `options` are invalid; Unimplemented when the prepared model cannot run
  // the probe clip for lack of a kernel (kBf16Weights with slow_r50 or
  // slowfast_r50: LibTorch 1.13 has no bf16 max_pool3d on CPU); errors of
  // FoldBatchNorms otherwise.
  static absl::StatusOr<InferenceModel> Create(const BackboneConfig& config,
                                               const VideoBackbone& trained,
                                               const InferenceOptions& options = {});

  // As Create, but folds `model` itself instead of a copy: for a model that
  // nobody else uses, e.g. straight from a checkpoint, to avoid holding it
  // twice. FailedPrecondition when `model` is shared (use_count > 1).
  static absl::StatusOr<InferenceModel> Adopt(std::shared_ptr<VideoBackbone> model,
                                              const InferenceOptions& options = {});

  // One forward pass of `clip` [B, C, T, H, W] (any floating dtype, any
  // device; moved and cast as the options say). InvalidArgument for a clip
  // that is not a 5-D floating tensor or that the backbone rejects.
  absl::StatusOr<InferenceOutputs> Run(const torch::Tensor& clip);
  // The parts of Run(clip): each computes and copies out only its part
  // (Features() skips the classifier head).
  absl::StatusOr<torch::Tensor> Logits(const torch::Tensor& clip);
  absl::StatusOr<torch::Tensor> Features(const torch::Tensor& clip);
  absl::StatusOr<torch::Tensor> Probabilities(const torch::Tensor& clip);

  const BatchNormFoldReport& fold_report() const { return report_; }
  const InferenceOptions& options() const { return options_; }
  int64_t feature_dim() const { return model_->feature_dim(); }
  int64_t num_classes() const { return model_->num_classes(); }
  // The prepared module (folded, cast, frozen), e.g. to count parameters.
  const VideoBackbone& module() const { return *model_; }

 private:
  InferenceModel(std::shared_ptr<VideoBackbone> model, const InferenceOptions& options,
                 BatchNormFoldReport report, torch::Device device)
      : model_(std::move(model)), options_(options), report_(std::move(report)),
        device_(device) {}

  enum : int { kWantFeatures = 1, kWantLogits = 2, kWantProbabilities = 4 };
  // Run's body; the outputs not in `wanted` are left undefined.
  absl::StatusOr<InferenceOutputs> Forward(const torch::Tensor& clip, int wanted);

  std::shared_ptr<VideoBackbone> model_;
  InferenceOptions options_;
  BatchNormFoldReport report_;
  torch::Device device_;
};

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_INFERENCE_MODEL_H_
