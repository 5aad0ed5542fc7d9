// File: backbones/slowfast.h
//
// SlowFast ResNet-50 (Feichtenhofer et al., "SlowFast Networks for Video
// Recognition", ICCV 2019), registered as the "slowfast_r50" backbone:
// PySlowFast's SLOWFAST_4x16_R50 / pytorchvideo's create_slowfast (depth 50)
// with SlowFastOptions' defaults alpha = 8, beta = 1/8, fusion channel ratio
// 2 and fusion kernel 7x1x1.
//
// Input and sampling. The clip [B, 3, T, H, W] is the Fast pathway's input;
// the Slow pathway takes every alpha-th frame of it (frames 0, alpha,
// 2 alpha, ...), so T must be divisible by alpha (forward throws a
// c10::Error naming the clip length otherwise). PySlowFast's PackPathway and
// pytorchvideo's hub transform pick the slow frames with
// linspace(0, T - 1, T / alpha) instead, which also keeps the last frame;
// for a pretrained checkpoint the difference is a one-frame shift at most.
//
// Pathways. Slow: SlowOnly-R50 (1x7x7 stem to 64w, 1x3x3 max pool, bottleneck
// stages [3, 4, 6, 3] with inner widths 64w, 128w, 256w, 512w, conv1
// temporal kernel 1 in layer1/layer2 and 3 in layer3/layer4, conv2 1x3x3,
// expansion 4, spatial stride 2 in the first block of layer2..layer4). Fast:
// the same with every width divided by beta_inv (integer division, at least
// 1 channel), a 5x7x7 stem, and conv1 temporal kernel 3 in every stage. Time
// is never strided inside a pathway.
//
// Lateral connections. After the stem and after layer1..layer3 (pytorchvideo
// and PySlowFast have no fusion after the last stage) the Fast features
// (C_f channels, T frames) go through Conv3d(C_f, ratio * C_f, fusion_kernel
// x 1 x 1, temporal stride alpha, temporal padding fusion_kernel / 2, no
// bias) + BN + ReLU, which yields T / alpha frames, and are concatenated to
// the Slow features along channels. So the Slow stages take 64w + 2 * 8w,
// 256w + 2 * 32w, 512w + 2 * 64w and 1024w + 2 * 128w input channels (80,
// 320, 640, 1280 at width 1), enlarging conv1 and the projection shortcut
// of each stage's first block.
//
// Feature map (what FeatureMap returns, D = feature_dim()): the Slow
// pathway's final map [B, 2048w, T / alpha, H / 32, W / 32] concatenated
// along channels with the Fast pathway's final map [B, 256w, T, H/32, W/32]
// average-pooled over non-overlapping windows of alpha frames to T / alpha
// frames: [B, 2304, T / alpha, H / 32, W / 32] at width 1. Its global
// average (Features) is exactly the concatenation of the two pathways'
// global averages, which is what the SlowFast head pools, so Logits(Features)
// is the reference head: dropout + Linear(2304, num_classes).
//
// Module names: slow_stem.{conv,bn}, fast_stem.{conv,bn},
// {slow,fast}_layer{1..4}.{i}.{conv1,bn1,conv2,bn2,conv3,bn3},
// {slow,fast}_layer{1..4}.0.downsample.{0,1}, fuse_{stem,layer1,layer2,
// layer3}.{conv,bn}, fc. At width 1 with 400 classes the model has
// 34,566,488 parameters (see slowfast_test.cc for the formula).
#ifndef TIMEBALANCE_BACKBONES_SLOWFAST_H_
#define TIMEBALANCE_BACKBONES_SLOWFAST_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"

namespace tb {

// Channel plan of a SlowFast-R50 at the given options.
struct SlowFastWidths {
  // Stem output channels of the Slow / Fast pathway (64w, 64w / beta_inv).
  int64_t slow_stem = 0;
  int64_t fast_stem = 0;
  // Bottleneck inner widths per stage; stage outputs are 4x these.
  std::array<int64_t, 4> slow_inner{};
  std::array<int64_t, 4> fast_inner{};
  // feature_dim(): 4 * slow_inner[3] + 4 * fast_inner[3].
  int64_t feature_dim = 0;
};

// The channel plan of `options` (no validation; call on validated options).
SlowFastWidths SlowFastR50Widths(const SlowFastOptions& options);


}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_SLOWFAST_H_
