// File: backbones/r3d.h
//
// R3D, torchvision's `r3d_18` video ResNet, registered as the "r3d18"
// backbone. The name is the config field's; it covers two depths:
//   r3d18 { }            R3D-18 (blocks [2, 2, 2, 2], torchvision's r3d_18)
//   r3d18 { depth: 34 }  R3D-34 (blocks [3, 4, 6, 3], torchvision's
//                        VideoResNet(BasicBlock, [Conv3DSimple] * 4,
//                        [3, 4, 6, 3], BasicStem))
// and R3dOptions.tclr_temporal_layer4 selects the TCLR layer4 (no temporal
// stride, temporally dilated layer4[0].conv1). Parameter and buffer names
// equal torchvision's (stem.0.weight, layer2.0.downsample.1.running_var,
// fc.bias, ...) so a converted torchvision state dict loads with
// LoadStateDict. The modules live in r3d.cc to keep <torch/nn/modules/...>
// out of this header; build one through CreateBackbone and use it as a
// tb::VideoBackbone.
//
// Example config:
//   backbone { r3d18 { width_multiplier: 0.125 tclr_temporal_layer4: true } }
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

// Residual blocks per stage for a validated `depth`: {2, 2, 2, 2} for 18,
// {3, 4, 6, 3} for 34.
std::array<int, 4> R3dBlocksPerStage(int depth);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_R3D_H_
