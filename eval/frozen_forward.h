// File: eval/frozen_forward.h
//
// The forward pass an evaluator runs, over either kind of frozen model:
//   - a trained VideoBackbone as it is: put in eval mode, run under no_grad
//     and the experiment's autocast (the evaluators' behaviour before
//     InferenceModel, and the path when evaluation.fold_batch_norm is false);
//   - an InferenceModel (backbones/inference_model.h): a folded copy under
//     InferenceMode, in the precision it was prepared with.
// Both return fp32 tensors on the CPU. Internal to eval/'s evaluators, which
// offer an overload for each kind.
#ifndef TIMEBALANCE_EVAL_FROZEN_FORWARD_H_
#define TIMEBALANCE_EVAL_FROZEN_FORWARD_H_

#include <torch/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "core/autocast.h"

namespace tb {

class FrozenForward {
 public:
  // `model` is put in eval mode now; its BatchNorm statistics are not touched.
  FrozenForward(VideoBackbone& model, const torch::Device& device, Precision precision);
  explicit FrozenForward(InferenceModel& model);

  // Pooled backbone features [B, D] / softmax probabilities [B, C] of the
  // clips [B, C, T, H, W] (moved to the model's device here).
  absl::StatusOr<torch::Tensor> Features(const torch::Tensor& clips) const;
  absl::StatusOr<torch::Tensor> Probabilities(const torch::Tensor& clips) const;
  int64_t feature_dim() const;

 private:
  VideoBackbone* backbone_ = nullptr;
  InferenceModel* inference_ = nullptr;
  torch::Device device_ = torch::kCPU;
  Precision precision_ = Precision::kFp32;
};

}  // namespace tb

#endif  // TIMEBALANCE_EVAL_FROZEN_FORWARD_H_
