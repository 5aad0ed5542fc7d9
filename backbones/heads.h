// File: backbones/heads.h
//
// Heads that sit on a backbone's output, shared by the trainers and the
// self-supervised objectives:
// - TemporalSlicePool: feature map [B, D, T', H', W'] -> [B, D, S], S equal
//   temporal slices averaged over space (TCLR / TimeBalance use S = 4 for
//   the local-local and global-local losses).
// - ProjectionHead: MLP d -> hidden -> ... -> out with BatchNorm and ReLU
//   between layers (optionally BatchNorm after the last) and an
//   L2-normalised output, applied to [B, D] or, slice by slice with shared
//   weights, to [B, D, S] (output [B, out, S]).
// - ClassifierHead: dropout + linear, for backbones used without their own fc.
#ifndef TIMEBALANCE_BACKBONES_HEADS_H_
#define TIMEBALANCE_BACKBONES_HEADS_H_

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace tb {

// Adaptive average pooling to (S, 1, 1): slice s averages the temporal range
// [floor(s*T'/S), ceil((s+1)*T'/S)) over all spatial positions.
torch::Tensor TemporalSlicePool(const torch::Tensor& feature_map, int64_t num_slices);

struct ProjectionHeadOptions {
  ProjectionHeadOptions(int64_t in, int64_t out) : in_features(in), out_features(out) {}
  int64_t in_features;
  int64_t out_features;
  int64_t hidden_features = -1;  // -1: same as in_features
  int num_layers = 2;            // linear layers (>= 1)
  // BatchNorm after the last linear layer (which then has no bias), as
  // TCLR's and TimeBalance's heads (models/mlp.py) have.
  bool final_batch_norm = false;
  // Whether that BatchNorm has a scale and shift (LTG's ContrastHead has
  // none: BatchNorm1d(affine=False)).
  bool final_batch_norm_affine = true;
  bool normalize = true;  // L2-normalise the output
};

class ProjectionHeadImpl : public torch::nn::Module {
 public:
  explicit ProjectionHeadImpl(const ProjectionHeadOptions& options);
  // [B, D] -> [B, out] or [B, D, S] -> [B, out, S].
  torch::Tensor forward(const torch::Tensor& x);

 private:
  ProjectionHeadOptions options_;
  torch::nn::Sequential mlp_{nullptr};
};
TORCH_MODULE(ProjectionHead);

class ClassifierHeadImpl : public torch::nn::Module {
 public:
  ClassifierHeadImpl(int64_t in_features, int64_t num_classes, double dropout);
  torch::Tensor forward(const torch::Tensor& features);

 private:
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ClassifierHead);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_HEADS_H_
