// File: backbones/bottleneck3d.h
//
// Building blocks shared by the bottleneck 3D ResNets (SlowOnly-R50 and both
// SlowFast pathways), with pytorchvideo's layer semantics:
// - Stem: Conv(C, out, kt x 7 x 7, stride 1x2x2) + BN + ReLU, then
//   MaxPool3d(1x3x3, stride 1x2x2): H and W / 4, T kept.
// - Bottleneck: conv1 (kt x 1 x 1) -> conv2 (1 x 3 x 3, spatial stride) ->
//   conv3 (1 x 1 x 1, inner * 4), BN after each, ReLU after the first two and
//   after the residual sum; a strided 1x1x1 projection + BN shortcut when the
//   shape changes.
// - InitBottleneckResNetWeights: pytorchvideo's "resnet" init (convs kaiming
//   normal fan_out, BN 1/0 except every bottleneck's bn3 at 0, linear
//   N(0, 0.01) with zero bias).
#ifndef TIMEBALANCE_BACKBONES_BOTTLENECK3D_H_
#define TIMEBALANCE_BACKBONES_BOTTLENECK3D_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "backbones/sync_batch_norm.h"

namespace tb::resnet3d {

constexpr int64_t kExpansion = 4;
using Triple = torch::ExpandingArray<3>;

// Conv3d without bias (every conv here is followed by BN).
torch::nn::Conv3d Conv(int64_t in, int64_t out, Triple kernel, Triple stride, Triple padding);
// BatchNorm3d with PyTorch's defaults (eps 1e-5, momentum 0.1).
SyncBatchNorm Bn(int64_t channels);

struct StemImpl : torch::nn::Module {
  StemImpl(int64_t out, int64_t temporal_kernel, int64_t in_channels = 3);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv3d conv{nullptr};
  SyncBatchNorm bn{nullptr};
};
TORCH_MODULE(Stem);

struct BottleneckImpl : torch::nn::Module {
  BottleneckImpl(int64_t in, int64_t inner, int64_t temporal_kernel, int64_t spatial_stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  SyncBatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

// Initialises every submodule of `root` as described above.
void InitBottleneckResNetWeights(torch::nn::Module& root);

}  // namespace tb::resnet3d

#endif  // TIMEBALANCE_BACKBONES_BOTTLENECK3D_H_
