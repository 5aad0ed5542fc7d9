// File: backbones/slow_r50.h
//
// SlowOnly ResNet-50, registered as the "slow_r50" backbone: pytorchvideo's
// slow_r50 (create_slow / create_resnet with a 1x7x7 stem) and mmaction2's
// ResNet3dSlowOnly (depth 50, inflate (0, 0, 1, 1)). Bottleneck blocks
// [3, 4, 6, 3]; conv1 has temporal kernel 1 in layer1/layer2 and 3 (padding
// 1) in layer3/layer4; conv2 is 1x3x3 and carries the spatial stride of the
// first block of layer2..layer4; conv3 is 1x1x1 with expansion 4; the first
// block of every stage has a projection shortcut. Time is never strided.
//
// Module names follow torchvision's 2D ResNet: stem.conv, stem.bn,
// layer{1..4}.{i}.{conv1,bn1,conv2,bn2,conv3,bn3}, layer{1..4}.0.downsample.{0,1},
// fc. (pytorchvideo's names differ: blocks.0.conv / blocks.1.res_blocks.0.
// branch2.conv_a / blocks.5.proj; a converter has to map them.) At width 1
// with 400 classes it has 32,454,096 parameters, exactly pytorchvideo's
// slow_r50. Build it through CreateBackbone.
#ifndef TIMEBALANCE_BACKBONES_SLOW_R50_H_
#define TIMEBALANCE_BACKBONES_SLOW_R50_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"

namespace tb {

// Bottleneck (inner) widths of the four stages at `width_multiplier`:
// round(64w), round(128w), round(256w), round(512w), each at least 1. The
// stem has the first; stage s outputs 4x its inner width.
std::array<int64_t, 4> SlowR50InnerWidths(float width_multiplier);


}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_SLOW_R50_H_
