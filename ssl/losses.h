// File: ssl/losses.h
//
// Losses and helpers of the self-supervised objectives: the TimeBalance
// teachers (L_IC for the temporally-invariant teacher, TCLR's L_LL + L_GL for
// the temporally-distinctive one), VTDL (InfoNCE with an intra-video temporal
// negative, triplet margin), the rho-methods (SimCLR, MoCo, BYOL, SwAV with
// their EMA encoders, momentum schedule and key queue) and 3DRotNet's input
// rotation. The objectives (heads, encoders, clip samplers) live elsewhere and
// call these functions; formulas follow /work/shared/reference/ALGORITHMS.md.
//
// Conventions shared by every function below:
// - Embedding inputs are L2-normalised along their last dimension inside the
//   function (F.normalize, eps 1e-12), so callers may pass raw projections;
//   cos(x, y) below is the dot product of the normalised vectors.
// - A temperature tau divides the cosine similarities: logit = cos / tau.
// - Losses are scalar tensors, differentiable with respect to every input
//   that is not documented as detached, in the inputs' dtype and device.
// - "CE" is cross-entropy with log-softmax over the listed logits.
// - Shape errors are programmer errors: they throw c10::Error (TORCH_CHECK),
//   which tb::CallTorch turns into an absl::Status at a component boundary.
//
// Shape letters: B videos (or samples) in the batch, D embedding width,
// A augmentations of a clip, S clips / temporal slices per video, K queue
// length or number of prototypes.
#ifndef TIMEBALANCE_SSL_LOSSES_H_
#define TIMEBALANCE_SSL_LOSSES_H_

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "core/collectives.h"

namespace tb {
namespace ssl {

// SimCLR's NT-Xent. a, b: [N, D]; row i of a and row i of b are a positive
// pair. The 2N normalised rows z_1..z_2N each act as an anchor; with p(i) the
// index of i's pair and the self-similarity excluded:
//   l_i = -log( exp(cos(z_i, z_p(i))/tau) / sum_{k != i} exp(cos(z_i, z_k)/tau) )
//   NtXent = (1 / 2N) * sum_i l_i            (mean over the 2N anchors)
// so every anchor has 1 positive and 2N - 2 negatives. N = 1 gives 0.
torch::Tensor NtXent(const torch::Tensor& a, const torch::Tensor& b, double temperature);

// TimeBalance's temporally-invariant instance contrastive loss L_IC (a
// multi-clip SimCLR: clips of one video at different times are positives).
// sparse: [A, B, D], the sparse ("global") clip of each video under A >= 2
//   augmentations.
// dense: [A', S, B, D], S dense ("local") clips per video at different
//   timesteps under A' augmentations; may be undefined or have S = 0.
//   A' may differ from A (A' = 1 is fine when S >= 2).
//   L_IC = sparse_term + (1/S) * sum over ordered pairs of distinct clips
//          (a, t) != (a', t') of NtXent(dense[a][t], dense[a'][t'])
// sparse_term = NtXent(sparse[0], sparse[1]) for A = 2; for A > 2 (a choice:
// the reference uses A = 2) it is the mean of NtXent over the A(A-1)/2 pairs,
// so the sparse term keeps the scale of one NT-Xent. The dense term is a sum,
// as in the reference: with A' = 2, S = 4 it adds 56 NT-Xents / 4 (NT-Xent is
// symmetric, so each unordered pair counts twice). No dense clips (or a
// single one, which has no partner): the sparse term alone.
torch::Tensor InstanceContrastiveLoss(const torch::Tensor& sparse, const torch::Tensor& dense,
                                      double temperature);

// How L_LL and L_GL are reduced over videos and timesteps
// (TclrObjectiveOptions.loss_reduction selects it for the objectives).
enum class TclrReduction {
  // The official TCLR / TimeBalance training code (TCLR's
  // train_gen_all_step.py and TimeBalance's pretraining.py, train_epoch, with
  // global_local_temporal_contrastive.py): L_LL is the SUM over the B videos
  // of per-video NT-Xents; L_GL's row and column cross-entropies are summed
  // over the S timesteps and divided by 2. The loss weights were tuned at this
  // scale (at init with B = 40, S = 4 about L_IC 65, L_LL 78, L_GL 22).
  kReference,
  // Our earlier choice, independent of B and S: L_LL averaged over videos;
  // L_GL's row and column terms each averaged over the S timesteps (for
  // S = 4 half the reference's L_GL, for S = 2 equal to it).
  kMean,
};

// TCLR's local-local loss L_LL (clips of one video at different times are
// negatives). dense: [2, S, B, D], S >= 1. For each video b, the 2S vectors
// v(a, t) = dense[a][t][b] form an NT-Xent of their own: the positive of
// anchor (a, t) is (1 - a, t), the negatives are (a', t') for all t' != t
// (both augmentations, 2S - 2 of them); other videos are not involved:
//   L_LL(b) = NtXent(dense[0][:, b], dense[1][:, b])   (mean over 2S anchors)
//   kReference: L_LL = sum_b L_LL(b)            (the reference code's loop)
//   kMean:      L_LL = (1/B) * sum_b L_LL(b)
torch::Tensor LocalLocalLoss(const torch::Tensor& dense, double temperature,
                             TclrReduction reduction = TclrReduction::kReference);

// TCLR's global-local loss L_GL. sparse_slices: [A, S, B, D], temporal slice
// t of the sparse clip's feature map (projected) under augmentation a; dense:
// [A', S, B, D], the dense clip t under augmentation a' (normally A' = A = 2).
// For each video b and each augmentation pair (a, a') in A x A':
//   M[t, t'] = cos(sparse_slices[a][t][b], dense[a'][t'][b]) / tau    (S x S)
//   rows(b, a, a') = sum_t  CE(M[t, :], target t)
//   cols(b, a, a') = sum_t' CE(M[:, t'], target t')
//   kReference: l(b, a, a') = (rows + cols) / 2
//     (global_local_temporal_contrastive: CE summed over the 2 * B * S rows
//     of [M; M^T], divided by 2B)
//   kMean:      l(b, a, a') = (rows + cols) / S
//   L_GL = (1/B) * sum_b sum_{a, a'} l(b, a, a')
// i.e. summed over the A * A' augmentation pairs (the reference calls the
// function once per pair and adds) and averaged over videos in both modes.
torch::Tensor GlobalLocalLoss(const torch::Tensor& sparse_slices, const torch::Tensor& dense,
                              double temperature,
                              TclrReduction reduction = TclrReduction::kReference);

// MoCo's InfoNCE. query, key: [B, D] (key is detached here: it comes from the
// momentum encoder); queue: [K, D] negatives shared by all queries (K may be
// 0; detached); extra_negatives: optional [B, M, D] negatives of query b only
// (VTDL appends the other temporal segment of the same video: M = 1). Extra
// negatives are NOT detached, so a caller that encodes them online gets their
// gradient; detach them when they come from the key encoder.
//   logits_b = [cos(q_b, k_b), cos(q_b, queue_1..K), cos(q_b, extra_b1..bM)] / tau
//   InfoNce = (1/B) sum_b CE(logits_b, target 0)
torch::Tensor InfoNce(const torch::Tensor& query, const torch::Tensor& key,
                      const torch::Tensor& queue, double temperature,
                      const torch::Tensor& extra_negatives = {});

// VTDL's triplet margin loss on L2-normalised vectors. anchor, positive,
// negative: [B, D]. With d(x, y) the Euclidean distance as torch's
// pairwise_distance computes it (||x - y + 1e-6||, the eps keeps the gradient
// finite when x == y), this equals
// torch.nn.functional.triplet_margin_loss(n(a), n(p), n(n), margin):
//   (1/B) sum_b max(0, d(a_b, p_b) - d(a_b, n_b) + margin)
torch::Tensor TripletMarginLoss(const torch::Tensor& anchor, const torch::Tensor& positive,
                                const torch::Tensor& negative, double margin);

// BYOL's regression loss. prediction, target: [B, D]; target detached.
//   (1/B) sum_b (2 - 2 cos(p_b, z_b))       (in [0, 4])
// rho-BYOL averages this over its rho - 1 targets (done by the caller).
torch::Tensor ByolLoss(const torch::Tensor& prediction, const torch::Tensor& target);

// SwAV's Sinkhorn-Knopp equipartition. scores: [B, K] (samples x prototype
// scores, i.e. cosines with the prototypes). With Q = exp(scores / eps)^T
// ([K, B]) divided by its sum, each of the `iterations` (>= 1) rounds divides
// every row (prototype) so that it sums to 1/K, then every column (sample) so
// that it sums to 1/B. Returns (B * Q)^T: [B, K] soft codes, each row summing
// to 1 (exactly, up to rounding) and each column (prototype) summing to about
// B/K (exactly only in the limit of many iterations). No gradient flows
// (computed under NoGradGuard on detached scores). Computed in the log domain
// (logsumexp normalisation), which is the same algorithm as SwAV's exp-space
// loop but cannot overflow or underflow to 0/0 for large scores / small eps.
// Convergence is slow at small eps: with eps = 0.05 and cosine scores the
// prototype sums are still far from B/K after SwAV's 3 iterations (as in
// SwAV; the codes are then only roughly equipartitioned) and within 1e-3
// after ~1000 (ssl/losses_test.cc).
torch::Tensor SinkhornKnopp(const torch::Tensor& scores, double epsilon, int iterations);

// SwAV's swapped prediction, generalised to rho >= 2 views. scores: one
// [B, K] tensor per view, all computed with the same prototypes (not
// normalised here: they are already cosines). With codes
// q_i = SinkhornKnopp(scores_i, epsilon, iterations) (no gradient) and
// p_j = log_softmax(scores_j / temperature) along K:
//   SwavLoss = mean over ordered pairs (i, j), i != j, of
//              -(1/B) sum_b sum_k q_i[b, k] * p_j[b, k]
torch::Tensor SwavLoss(const std::vector<torch::Tensor>& scores, double temperature,
                       double epsilon, int iterations);

// What EmaUpdate does with buffers (BatchNorm running statistics,
// num_batches_tracked): copy them from online, or keep the target's own
// (a target that runs in train mode accumulates its own, as Mean Teacher's
// reference code does: it averages parameters only).
enum class EmaBuffers { kCopy, kKeep };

// Momentum (EMA) update of a target network from an online network, under
// NoGradGuard: for every parameter, matched by its full name,
//   target = momentum * target + (1 - momentum) * online
// and the buffers as `buffers` says. The two modules must have the same
// parameter and buffer names and shapes; otherwise this throws (TORCH_CHECK:
// a programmer error).
void EmaUpdate(torch::nn::Module& target, const torch::nn::Module& online, double momentum,
               EmaBuffers buffers = EmaBuffers::kCopy);

// BYOL / rho-MoCo momentum schedule: base at step 0, rising to 1 at
// total_steps along a half cosine:
//   1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2
// step is clamped to [0, total_steps]; total_steps must be > 0.
double CosineMomentum(double base, int64_t step, int64_t total_steps);

// MoCo's queue of keys (negatives), a module so that its state is saved and
// restored with the model's checkpoint. Buffers:
// - keys    [size, dim], initialised to random L2-normalised rows (drawn from
//           torch's global generator, so torch::manual_seed fixes them);
// - pointer int64 scalar, the row the next key is written to;
// - filled  int64 scalar, how many real keys were enqueued, capped at size
//           (the random rows stand in for the rest, as in MoCo).
//
// Data-parallel (SetCollectives with several ranks): every rank enqueues the
// keys of the whole global batch, gathered from all ranks in the order one
// process would have them, so the queues stay equal on every rank.
class FeatureQueueImpl : public torch::nn::Module, public CollectiveUser {
 public:
  FeatureQueueImpl(int64_t size, int64_t dim);

  // Writes the rows of `keys` ([N, dim]; detached and L2-normalised here, cast
  // to the queue's dtype/device) at rows pointer, pointer + 1, ... modulo size,
  // as if one at a time: when N > size only the last `size` keys remain.
  // pointer advances by N modulo size. `keys` may have more dimensions
  // ([..., dim]): the rows are then taken in row-major order, and
  // `sample_dim` says which dimension indexes the batch's samples (the one
  // the ranks' keys are concatenated along).
  void Enqueue(const torch::Tensor& keys, int64_t sample_dim = 0);

  void SetCollectives(std::shared_ptr<Collectives> collectives) override {
    collectives_ = std::move(collectives);
  }

  // The keys buffer itself, [size, dim] (not a copy): a later Enqueue
  // overwrites it in place. InfoNce normalises (so copies) its queue argument,
  // so passing Keys() and enqueueing before backward is safe.
  torch::Tensor Keys() const { return keys_; }

  int64_t size() const { return size_; }
  int64_t dim() const { return dim_; }
  int64_t pointer() const;
  int64_t filled() const;

 private:
  int64_t size_;
  int64_t dim_;
  torch::Tensor keys_;
  torch::Tensor pointer_;
  torch::Tensor filled_;
  std::shared_ptr<Collectives> collectives_;
};
TORCH_MODULE(FeatureQueue);

// Temporal self-similarity of each video. clip_features: [B, n, D], n >= 2
// clips of each video taken at different times. With C = the n x n matrix of
// cos(z_p, z_q), returns [B]: the mean of its n(n-1) off-diagonal entries, in
// [-1, 1]. Differentiable. TimeBalance's reweighting averages it over the two
// teachers and min-max normalises it over the training set (done elsewhere).
torch::Tensor TemporalSimilarity(const torch::Tensor& clip_features);

// 3DRotNet's pretext input: clips [B, C, T, H, W] with H == W; rotations [B]
// int64 in {0, 1, 2, 3}. Sample b is rotated by rotations[b] * 90 degrees
// counter-clockwise in the (H, W) plane, the same for all frames, exactly as
// torch.rot90(clip, k, dims=(3, 4)). Differentiable with respect to clips.
torch::Tensor RotateClips(const torch::Tensor& clips, const torch::Tensor& rotations);

}  // namespace ssl
}  // namespace tb

#endif  // TIMEBALANCE_SSL_LOSSES_H_
