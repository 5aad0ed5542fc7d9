// File: backbones/r3d.h
//
// R3D-18, torchvision's `r3d_18` video ResNet, registered as the "r3d18"
// backbone. R3dOptions.depth = 34 selects the 34-layer variant (torchvision's
// VideoResNet(BasicBlock, [Conv3DSimple] * 4, [3, 4, 6, 3], BasicStem)) under
// the same "r3d18" name, and R3dOptions.tclr_temporal_layer4 the TCLR layer4
// (no temporal stride, temporally dilated layer4[0].conv1). Parameter and buffer names equal torchvision's (stem.0.weight,
// layer2.0.downsample.1.running_var, fc.bias, ...) so a converted torchvision
// state dict loads with LoadStateDict. The modules themselves live in r3d.cc
// to keep <torch/nn/modules/...> out of this header; build it through
// CreateBackbone (or MakeR3d18) and use it as a tb::VideoBackbone.
#ifndef TIMEBALANCE_BACKBONES_R3D_H_
#define TIMEBALANCE_BACKBONES_R3D_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"

namespace tb {

// Channels of the four stages at `width_multiplier`: round(64w), round(128w),
// round(256w), round(512w), each at least 1. The stem uses the first.
std::array<int64_t, 4> R3dStageWidths(float width_multiplier);

// Residual blocks per stage for `depth`: {2, 2, 2, 2} for 18, {3, 4, 6, 3}
// for 34; InvalidArgument naming backbone.r3d18.depth otherwise.
absl::StatusOr<std::array<int, 4>> R3dBlocksPerStage(int depth);

// Builds R3D-18/34 from `config.r3d18()`. InvalidArgument for a width
// multiplier outside (0, 8], a depth other than 18 or 34, a dropout outside
// [0, 1) or num_classes <= 0.
absl::StatusOr<std::unique_ptr<VideoBackbone>> MakeR3d18(const BackboneConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_R3D_H_
