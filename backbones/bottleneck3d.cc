#include "backbones/bottleneck3d.h"

#include "backbones/backbone.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

namespace tb::resnet3d {

torch::nn::Conv3d Conv(int64_t in, int64_t out, Triple kernel, Triple stride, Triple padding) {
  return torch::nn::Conv3d(
      torch::nn::Conv3dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

SyncBatchNorm Bn(int64_t channels) {
  return SyncBatchNorm3d(torch::nn::BatchNorm3dOptions(channels).eps(1e-5).momentum(0.1));
}

StemImpl::StemImpl(int64_t out, int64_t temporal_kernel, int64_t in_channels) {
  conv = register_module(
      "conv", Conv(in_channels, out, {temporal_kernel, 7, 7}, {1, 2, 2}, {temporal_kernel / 2, 3, 3}));
  bn = register_module("bn", Bn(out));
}

torch::Tensor StemImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = bn->forward(conv->forward(x));
  y.relu_();
  return torch::nn::functional::max_pool3d(
      y, torch::nn::functional::MaxPool3dFuncOptions({1, 3, 3}).stride({1, 2, 2}).padding(
             {0, 1, 1}));
}

BottleneckImpl::BottleneckImpl(int64_t in, int64_t inner, int64_t temporal_kernel,
                               int64_t spatial_stride) {
  const int64_t out = inner * kExpansion;
  conv1 = register_module(
      "conv1", Conv(in, inner, {temporal_kernel, 1, 1}, 1, {temporal_kernel / 2, 0, 0}));
  bn1 = register_module("bn1", Bn(inner));
  conv2 = register_module(
      "conv2", Conv(inner, inner, {1, 3, 3}, {1, spatial_stride, spatial_stride}, {0, 1, 1}));
  bn2 = register_module("bn2", Bn(inner));
  conv3 = register_module("conv3", Conv(inner, out, 1, 1, 0));
  bn3 = register_module("bn3", Bn(out));
  if (spatial_stride != 1 || in != out) {
    downsample = register_module(
        "downsample",
        torch::nn::Sequential(Conv(in, out, 1, {1, spatial_stride, spatial_stride}, 0), Bn(out)));
  }
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = bn1->forward(conv1->forward(x));
  y.relu_();
  y = bn2->forward(conv2->forward(y));
  y.relu_();
  y = bn3->forward(conv3->forward(y));
  y += downsample ? downsample->forward(x) : x;
  return torch::relu_(y);
}

void InitBottleneckResNetWeights(torch::nn::Module& root) {
  InitVideoResNetWeights(root);
  torch::NoGradGuard no_grad;
  // Each residual branch starts as the identity (zero-initialised last BN).
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* block = m->as<BottleneckImpl>()) torch::nn::init::zeros_(block->bn3->weight);
  }
}

}  // namespace tb::resnet3d
