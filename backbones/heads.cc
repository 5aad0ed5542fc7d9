#include "backbones/heads.h"

#include <glog/logging.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>

#include "backbones/sync_batch_norm.h"

namespace tb {

torch::Tensor TemporalSlicePool(const torch::Tensor& feature_map, int64_t num_slices) {
  CHECK_EQ(feature_map.dim(), 5) << "expected [B, D, T, H, W]";
  namespace F = torch::nn::functional;
  return F::adaptive_avg_pool3d(feature_map,
                                F::AdaptiveAvgPool3dFuncOptions({num_slices, 1, 1}))
      .flatten(2);
}

ProjectionHeadImpl::ProjectionHeadImpl(const ProjectionHeadOptions& options)
    : options_(options) {
  CHECK_GE(options.num_layers, 1);
  const int64_t hidden =
      options.hidden_features > 0 ? options.hidden_features : options.in_features;
  mlp_ = torch::nn::Sequential();
  int64_t width = options.in_features;
  for (int i = 0; i + 1 < options.num_layers; ++i) {
    mlp_->push_back(torch::nn::Linear(torch::nn::LinearOptions(width, hidden).bias(false)));
    mlp_->push_back(SyncBatchNorm1d(torch::nn::BatchNormOptions(hidden)));
    mlp_->push_back(torch::nn::ReLU(torch::nn::ReLUOptions(true)));
    width = hidden;
  }
  mlp_->push_back(torch::nn::Linear(
      torch::nn::LinearOptions(width, options.out_features).bias(!options.final_batch_norm)));
  if (options.final_batch_norm) {
    mlp_->push_back(SyncBatchNorm1d(torch::nn::BatchNormOptions(options.out_features)
                                        .affine(options.final_batch_norm_affine)));
  }
  register_module("mlp", mlp_);
}

torch::Tensor ProjectionHeadImpl::forward(const torch::Tensor& x) {
  torch::Tensor flat = x;
  int64_t slices = 0;
  if (x.dim() == 3) {  // [B, D, S] -> [B*S, D], shared weights over slices
    slices = x.size(2);
    flat = x.permute({0, 2, 1}).reshape({-1, x.size(1)});
  }
  CHECK_EQ(flat.dim(), 2) << "ProjectionHead expects [B, D] or [B, D, S]";
  torch::Tensor z = mlp_->forward(flat);
  if (options_.normalize) {
    namespace F = torch::nn::functional;
    z = F::normalize(z, F::NormalizeFuncOptions().dim(1));
  }
  if (slices > 0) z = z.reshape({x.size(0), slices, -1}).permute({0, 2, 1});
  return z;
}

ClassifierHeadImpl::ClassifierHeadImpl(int64_t in_features, int64_t num_classes,
                                       double dropout) {
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
  fc_ = register_module("fc", torch::nn::Linear(in_features, num_classes));
}

torch::Tensor ClassifierHeadImpl::forward(const torch::Tensor& features) {
  return fc_->forward(dropout_->forward(features));
}

}  // namespace tb
