// File: backbones/r2plus1d.h
//
// R(2+1)D-18 and R(2+1)D-34, torchvision's `r2plus1d_18` video ResNet (and
// the same VideoResNet with [3, 4, 6, 3] blocks for depth 34), registered as
// the "r2plus1d" backbone. Every 3x3x3 convolution is factorised into a 1x3x3
// spatial convolution to `midplanes` channels, BatchNorm, ReLU and a 3x1x1
// temporal convolution (torchvision's Conv2Plus1D). Parameter and buffer names
// equal torchvision's (stem.3.weight, layer1.0.conv1.0.1.running_var,
// layer2.0.downsample.0.weight, fc.bias, ...) so a converted torchvision
// state dict loads with LoadStateDict. The modules live in r2plus1d.cc; build
// one through CreateBackbone and use it as a tb::VideoBackbone.
//
// Example config:
//   backbone { r2plus1d { depth: 34 } }
#ifndef TIMEBALANCE_BACKBONES_R2PLUS1D_H_
#define TIMEBALANCE_BACKBONES_R2PLUS1D_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"

namespace tb {

// Channel widths at `width_multiplier`, each round(base * w) and at least 1:
// the stem's intermediate width (base 45), and the four stages (base 64, 128,
// 256, 512; the stem outputs the first).
struct R2plus1dWidths {
  int64_t stem_mid = 0;
  std::array<int64_t, 4> stages{};
};
R2plus1dWidths R2plus1dChannelWidths(float width_multiplier);

// torchvision's BasicBlock rule for the intermediate channels of both
// Conv2Plus1D of a block going from `in` to `out` channels:
// (in * out * 3 * 3 * 3) // (in * 3 * 3 + 3 * out), which keeps the parameter
// count of the full 3x3x3 convolution. At least 1.
int64_t R2plus1dMidplanes(int64_t in, int64_t out);

// Blocks per stage: {2, 2, 2, 2} for depth 18, {3, 4, 6, 3} for depth 34.
// Only meaningful for a supported depth (18 or 34).
std::array<int, 4> R2plus1dBlocksPerStage(int depth);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_R2PLUS1D_H_
