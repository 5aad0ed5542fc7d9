// File: backbones/tsm.h
//
// TSM-ResNet18 (Lin et al., "TSM: Temporal Shift Module for Efficient Video
// Understanding", ICCV 2019), registered as the "tsm_r18" backbone: a 2D
// ResNet-18 in torchvision's `resnet18` layout applied to every frame, with the
// temporal shift module inserted into each BasicBlock's residual branch before
// conv1 ("residual shift", the official code's shift_place='blockres'); the
// identity/downsample path sees the unshifted input. Parameter and buffer
// names equal torchvision's resnet18 (conv1.weight, bn1.running_mean,
// layer2.0.downsample.1.weight, fc.bias, ...), so a torchvision (or TSM
// `base_model.`-stripped) state dict loads with LoadStateDict; the shift adds
// no parameters.
//
// A clip [B, 3, T, H, W] is folded to frames [B*T, 3, H, W]; FeatureMap
// returns layer4 unfolded to [B, 512w, T, H/32, W/32] (no temporal pooling), so
// Features (global average over T, H, W) followed by the linear head equals
// TSM's average consensus of the per-frame logits.
#ifndef TIMEBALANCE_BACKBONES_TSM_H_
#define TIMEBALANCE_BACKBONES_TSM_H_

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"

namespace tb {

// TSM's shift on frames `x` [N*num_frames, C, H, W] (frames of one clip
// consecutive, as produced by folding [N, C, T, H, W] -> [N*T, C, H, W] via
// [N, T, C, H, W]). With fold = C / shift_div (integer division):
// channels [0, fold) take their value from frame t+1 (shifted one step back in
// time), channels [fold, 2*fold) from frame t-1 (one step forward), both zero
// at the clip ends; channels [2*fold, C) are unchanged. Out of place and
// differentiable; fold == 0 returns `x` unchanged. Requires shift_div >= 2 and
// x.size(0) divisible by num_frames (checked with TORCH_CHECK).
torch::Tensor TemporalShift(const torch::Tensor& x, int64_t num_frames, int64_t shift_div);

// Channels of the four stages at `width_multiplier`: round(64w), round(128w),
// round(256w), round(512w), each at least 1. The stem uses the first.
std::array<int64_t, 4> TsmStageWidths(float width_multiplier);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_TSM_H_
