// File: ssl/memdpc_objective.h
//
// The parts of MemDPC (Han, Xie & Zisserman, "Memory-augmented Dense
// Predictive Coding for Video Representation Learning", ECCV 2020) that
// ssl/memdpc_objective.cc builds its registered `memdpc` objective from,
// exposed for ssl/memdpc_objective_test.cc: the dense contrastive loss and
// the prediction head (ConvGRU aggregators, prediction network, memory bank)
// that works on per-block feature maps.
//
// Shape letters: B videos, N blocks per video, K predicted blocks
// (pred_step), C feature channels, H x W the feature map's spatial size,
// M memory slots.
#ifndef TIMEBALANCE_SSL_MEMDPC_OBJECTIVE_H_
#define TIMEBALANCE_SSL_MEMDPC_OBJECTIVE_H_

#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "core/collectives.h"

namespace tb {
namespace ssl {

// MemDPC's dense contrastive loss. pred, target: [B, K, C, H, W]. Every
// (video b, block k, location h, w) is one row; its logits are the dot
// products (no normalisation, no temperature) of its predicted feature with
// the target features of all B * K * H * W rows, and its only positive is its
// own target:
//   L = (1 / R) sum_r -log softmax_r'(<pred_r, target_r'>)[r],  R = B K H W.
// Gradients reach both inputs (the official code does not detach the
// targets). With `collectives`, the rows of every rank are gathered first
// (GlobalBatch along B). `top1`, if given, receives the fraction of rows
// whose highest logit is their own target.
torch::Tensor DenseContrastiveLoss(const torch::Tensor& pred, const torch::Tensor& target,
                                   Collectives* collectives = nullptr, double* top1 = nullptr);

}  // namespace ssl

// A one-layer convolutional GRU with 1x1 kernels (a GRU per location,
// weights shared over locations), as the official ConvGRU with kernel 1:
//   z = sigmoid(W_z [x, h]),  r = sigmoid(W_r [x, h]),
//   o = tanh(W_o [x, r * h]),  h' = (1 - z) * h + z * o,
// each W a Conv2d(2C -> C, 1x1) with bias; [., .] concatenates channels.
class ConvGru1x1Impl : public torch::nn::Module {
 public:
  explicit ConvGru1x1Impl(int64_t channels);
  // x, h: [B, C, H, W]; returns h'.
  torch::Tensor Step(const torch::Tensor& x, const torch::Tensor& h);

 private:
  torch::nn::Conv2d reset_gate_{nullptr}, update_gate_{nullptr}, out_gate_{nullptr};
};
TORCH_MODULE(ConvGru1x1);

// MemDPC's head on block feature maps [B, N, C, H, W]. Parameters (names as
// registered): "aggregate_forward" and "aggregate_backward" (ConvGru1x1),
// "predictor" (Conv2d C->C 1x1, ReLU, Conv2d C->M 1x1) and "memory" [M, C].
// Initialised as the official model: every weight of the aggregators and the
// predictor orthogonal with gain 0.1, biases 0, the memory N(0, 1).
class MemDpcHeadImpl : public torch::nn::Module {
 public:
  MemDpcHeadImpl(int64_t channels, int64_t memory_size, double gru_dropout, bool bidirectional);

  // The predictions of the last K blocks of `features` from the first N - K
  // (with `reversed`, of the sequence reversed in time, by the backward
  // aggregator): the aggregator reads relu(block) for each context block
  // from a zero state, then K times predicts softmax(predictor(h)) over the
  // memory slots, reads the memory with those weights (the prediction,
  // [B, C, H, W]) and, before the next prediction, steps on relu(prediction).
  // In training the state gets dropout (gru_dropout) after every step.
  // Returns [B, K, C, H, W].
  torch::Tensor Predict(const torch::Tensor& features, int64_t pred_step, bool reversed);

  struct Terms {
    torch::Tensor loss;      // forward (+ backward)
    torch::Tensor forward;   // DenseContrastiveLoss of the forward direction
    torch::Tensor backward;  // of the reversed sequence; undefined if not bidirectional
    double forward_top1 = 0, backward_top1 = 0;
  };
  // Both directions' dense contrastive losses against the blocks' own
  // feature maps (targets: the last K blocks, of the reversed sequence for
  // the backward direction).
  Terms Loss(const torch::Tensor& features, int64_t pred_step, Collectives* collectives = nullptr);

 private:
  double gru_dropout_;
  bool bidirectional_;
  ConvGru1x1 forward_{nullptr}, backward_{nullptr};
  torch::nn::Sequential predictor_{nullptr};
  torch::Tensor memory_;
};
TORCH_MODULE(MemDpcHead);

}  // namespace tb

#endif  // TIMEBALANCE_SSL_MEMDPC_OBJECTIVE_H_
