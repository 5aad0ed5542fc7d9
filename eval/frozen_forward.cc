#include "eval/frozen_forward.h"

#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

FrozenForward::FrozenForward(VideoBackbone& model, const torch::Device& device,
                             Precision precision)
    : backbone_(&model), device_(device), precision_(precision) {
  model.eval();
}

FrozenForward::FrozenForward(InferenceModel& model) : inference_(&model) {}

absl::StatusOr<torch::Tensor> FrozenForward::Features(const torch::Tensor& clips) const {
  if (inference_ != nullptr) {
    ASSIGN_OR_RETURN(torch::Tensor f, inference_->Features(clips));
    return f.to(torch::kCPU);
  }
  return CallTorch("feature extraction", [&] {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(device_, precision_);
    return backbone_->Features(clips.to(device_)).to(torch::kFloat).to(torch::kCPU);
  });
}

absl::StatusOr<torch::Tensor> FrozenForward::Probabilities(const torch::Tensor& clips) const {
  if (inference_ != nullptr) {
    ASSIGN_OR_RETURN(torch::Tensor p, inference_->Probabilities(clips));
    return p.to(torch::kCPU);
  }
  return CallTorch("evaluation forward", [&] {
    torch::NoGradGuard no_grad;
    AutocastScope autocast(device_, precision_);
    return torch::softmax(backbone_->forward(clips.to(device_)).to(torch::kFloat), 1)
        .to(torch::kCPU);
  });
}

int64_t FrozenForward::feature_dim() const {
  return inference_ != nullptr ? inference_->feature_dim() : backbone_->feature_dim();
}

}  // namespace tb
