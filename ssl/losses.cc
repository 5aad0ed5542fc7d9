#include "ssl/losses.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <torch/torch.h>

namespace tb {
namespace ssl {
namespace {

namespace F = torch::nn::functional;

torch::Tensor L2Normalize(const torch::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().dim(-1));
}

// NT-Xent of P independent problems at once. a, b: [P, N, D], already
// normalised -> [P], each the mean over its 2N anchors. Every loss in the
// NT-Xent family (SimCLR, L_IC's clip pairs, L_LL's per-video problems) is a
// batch of these, so they share one implementation.
torch::Tensor BatchedNtXent(const torch::Tensor& a, const torch::Tensor& b,
                            double temperature) {
  const int64_t n = a.size(1);
  const torch::Tensor z = torch::cat({a, b}, 1);                      // [P, 2N, D]
  torch::Tensor logits = torch::bmm(z, z.transpose(1, 2)) / temperature;  // [P, 2N, 2N]
  const torch::Tensor self =
      torch::eye(2 * n, torch::TensorOptions().dtype(torch::kBool).device(z.device()));
  logits = logits.masked_fill(self, -std::numeric_limits<double>::infinity());
  // Anchor i's positive is i + N (mod 2N).
  const torch::Tensor positive =
      torch::arange(2 * n, torch::TensorOptions().dtype(torch::kLong).device(z.device()))
          .add(n)
          .remainder(2 * n);
  const torch::Tensor log_prob = torch::log_softmax(logits, -1);
  const torch::Tensor picked =
      log_prob.gather(2, positive.view({1, 2 * n, 1}).expand({log_prob.size(0), 2 * n, 1}));
  return -picked.squeeze(2).mean(1);
}

// Sum over all unordered pairs {i, j}, i < j, of NT-Xent(clips[i], clips[j]).
// clips: [M, N, D], normalised.
torch::Tensor SumOfPairwiseNtXent(const torch::Tensor& clips, double temperature) {
  const torch::Tensor pairs = torch::triu_indices(clips.size(0), clips.size(0), 1,
                                                  torch::TensorOptions().device(clips.device()));
  return BatchedNtXent(clips.index_select(0, pairs[0]), clips.index_select(0, pairs[1]),
                       temperature)
      .sum();
}

void CheckEmbeddings(const torch::Tensor& x, int64_t dim, const char* what) {
  TORCH_CHECK(x.defined() && x.dim() == dim, what, ": expected a ", dim,
              "-d tensor, got ", x.defined() ? x.sizes() : torch::IntArrayRef{});
}

}  // namespace

torch::Tensor NtXent(const torch::Tensor& a, const torch::Tensor& b, double temperature) {
  CheckEmbeddings(a, 2, "NtXent a [N, D]");
  TORCH_CHECK(a.sizes() == b.sizes(), "NtXent: a ", a.sizes(), " and b ", b.sizes(),
              " differ");
  return BatchedNtXent(L2Normalize(a).unsqueeze(0), L2Normalize(b).unsqueeze(0), temperature)
      .squeeze(0);
}

torch::Tensor InstanceContrastiveLoss(const torch::Tensor& sparse, const torch::Tensor& dense,
                                      double temperature) {
  CheckEmbeddings(sparse, 3, "InstanceContrastiveLoss sparse [A, B, D]");
  const int64_t num_augs = sparse.size(0);
  TORCH_CHECK(num_augs >= 2, "InstanceContrastiveLoss: sparse needs A >= 2 augmentations, got ",
              num_augs);
  const torch::Tensor sparse_n = L2Normalize(sparse);
  // Mean over augmentation pairs: for A = 2 exactly NtXent(sparse[0], sparse[1]).
  torch::Tensor loss = SumOfPairwiseNtXent(sparse_n, temperature) /
                       static_cast<double>(num_augs * (num_augs - 1) / 2);
  if (!dense.defined() || dense.numel() == 0) return loss;
  CheckEmbeddings(dense, 4, "InstanceContrastiveLoss dense [A, S, B, D]");
  TORCH_CHECK(dense.size(2) == sparse.size(1) && dense.size(3) == sparse.size(2),
              "InstanceContrastiveLoss: dense ", dense.sizes(), " does not match sparse ",
              sparse.sizes(), " in [B, D]");
  const int64_t num_steps = dense.size(1);
  const int64_t num_clips = dense.size(0) * num_steps;
  if (num_clips < 2) return loss;  // a single dense clip has no partner
  const torch::Tensor clips = L2Normalize(dense).reshape({num_clips, dense.size(2), -1});
  // NT-Xent is symmetric in its two arguments, so the sum over ordered pairs
  // is twice the sum over unordered ones.
  return loss + 2.0 * SumOfPairwiseNtXent(clips, temperature) / static_cast<double>(num_steps);
}

torch::Tensor LocalLocalLoss(const torch::Tensor& dense, double temperature,
                             TclrReduction reduction) {
  CheckEmbeddings(dense, 4, "LocalLocalLoss dense [2, S, B, D]");
  TORCH_CHECK(dense.size(0) == 2, "LocalLocalLoss: expected A = 2 augmentations, got ",
              dense.size(0));
  // One NT-Xent problem per video: [B, S, D] for each augmentation.
  const torch::Tensor per_video = L2Normalize(dense).transpose(1, 2);  // [2, B, S, D]
  const torch::Tensor per_video_loss = BatchedNtXent(per_video[0], per_video[1], temperature);
  return reduction == TclrReduction::kReference ? per_video_loss.sum() : per_video_loss.mean();
}

torch::Tensor GlobalLocalLoss(const torch::Tensor& sparse_slices, const torch::Tensor& dense,
                              double temperature, TclrReduction reduction) {
  CheckEmbeddings(sparse_slices, 4, "GlobalLocalLoss sparse_slices [A, S, B, D]");
  CheckEmbeddings(dense, 4, "GlobalLocalLoss dense [A, S, B, D]");
  TORCH_CHECK(sparse_slices.sizes().slice(1) == dense.sizes().slice(1),
              "GlobalLocalLoss: sparse_slices ", sparse_slices.sizes(), " and dense ",
              dense.sizes(), " differ in [S, B, D]");
  const int64_t num_steps = dense.size(1);
  // [A, 1, B, S, D] x [1, A', B, D, S] -> M: [A, A', B, S (slice t), S (clip t')].
  const torch::Tensor g = L2Normalize(sparse_slices).transpose(1, 2).unsqueeze(1);
  const torch::Tensor l = L2Normalize(dense).transpose(1, 2).unsqueeze(0);
  const torch::Tensor m = torch::matmul(g, l.transpose(-1, -2)) / temperature;
  // The targets are the diagonal: slice t matches clip t.
  const torch::Tensor rows = torch::log_softmax(m, -1).diagonal(0, -2, -1);  // [A, A', B, S]
  const torch::Tensor cols = torch::log_softmax(m, -2).diagonal(0, -2, -1);
  // The reference halves the row + column sum; kMean averages each over S.
  const double divisor =
      reduction == TclrReduction::kReference ? 2.0 : static_cast<double>(num_steps);
  const torch::Tensor per_pair = -(rows + cols).sum(-1) / divisor;
  return per_pair.sum(std::vector<int64_t>{0, 1}).mean();
}

torch::Tensor InfoNce(const torch::Tensor& query, const torch::Tensor& key,
                      const torch::Tensor& queue, double temperature,
                      const torch::Tensor& extra_negatives) {
  CheckEmbeddings(query, 2, "InfoNce query [B, D]");
  TORCH_CHECK(key.sizes() == query.sizes(), "InfoNce: key ", key.sizes(), " and query ",
              query.sizes(), " differ");
  const torch::Tensor q = L2Normalize(query);
  const torch::Tensor k = L2Normalize(key.detach());
  std::vector<torch::Tensor> logits = {(q * k).sum(-1, /*keepdim=*/true)};
  if (queue.defined() && queue.numel() > 0) {
    CheckEmbeddings(queue, 2, "InfoNce queue [K, D]");
    TORCH_CHECK(queue.size(1) == query.size(1), "InfoNce: queue ", queue.sizes(),
                " does not match query ", query.sizes());
    logits.push_back(torch::mm(q, L2Normalize(queue.detach()).t()));
  }
  if (extra_negatives.defined() && extra_negatives.numel() > 0) {
    CheckEmbeddings(extra_negatives, 3, "InfoNce extra_negatives [B, M, D]");
    TORCH_CHECK(extra_negatives.size(0) == query.size(0) &&
                    extra_negatives.size(2) == query.size(1),
                "InfoNce: extra_negatives ", extra_negatives.sizes(),
                " does not match query ", query.sizes());
    logits.push_back(torch::bmm(L2Normalize(extra_negatives), q.unsqueeze(2)).squeeze(2));
  }
  const torch::Tensor all = torch::cat(logits, 1) / temperature;
  const torch::Tensor target =
      torch::zeros({query.size(0)}, torch::TensorOptions().dtype(torch::kLong).device(q.device()));
  return F::cross_entropy(all, target);
}

torch::Tensor TripletMarginLoss(const torch::Tensor& anchor, const torch::Tensor& positive,
                                const torch::Tensor& negative, double margin) {
  CheckEmbeddings(anchor, 2, "TripletMarginLoss anchor [B, D]");
  TORCH_CHECK(positive.sizes() == anchor.sizes() && negative.sizes() == anchor.sizes(),
              "TripletMarginLoss: anchor ", anchor.sizes(), ", positive ", positive.sizes(),
              ", negative ", negative.sizes(), " differ");
  const torch::Tensor a = L2Normalize(anchor);
  const torch::Tensor d_pos = torch::pairwise_distance(a, L2Normalize(positive), 2.0, 1e-6);
  const torch::Tensor d_neg = torch::pairwise_distance(a, L2Normalize(negative), 2.0, 1e-6);
  return torch::clamp_min(d_pos - d_neg + margin, 0.0).mean();
}

torch::Tensor ByolLoss(const torch::Tensor& prediction, const torch::Tensor& target) {
  CheckEmbeddings(prediction, 2, "ByolLoss prediction [B, D]");
  TORCH_CHECK(target.sizes() == prediction.sizes(), "ByolLoss: prediction ",
              prediction.sizes(), " and target ", target.sizes(), " differ");
  const torch::Tensor cos = (L2Normalize(prediction) * L2Normalize(target.detach())).sum(-1);
  return (2.0 - 2.0 * cos).mean();
}

torch::Tensor SinkhornKnopp(const torch::Tensor& scores, double epsilon, int iterations) {
  CheckEmbeddings(scores, 2, "SinkhornKnopp scores [B, K]");
  TORCH_CHECK(iterations >= 1, "SinkhornKnopp: iterations must be >= 1, got ", iterations);
  TORCH_CHECK(epsilon > 0, "SinkhornKnopp: epsilon must be > 0, got ", epsilon);
  torch::NoGradGuard no_grad;
  const double num_samples = static_cast<double>(scores.size(0));
  const double num_prototypes = static_cast<double>(scores.size(1));
  // log Q, [K, B]. Subtracting logsumexp is dividing by the sum, stably.
  torch::Tensor log_q = scores.detach().t() / epsilon;
  log_q = log_q - torch::logsumexp(log_q.flatten(), 0);
  for (int i = 0; i < iterations; ++i) {
    log_q = log_q - torch::logsumexp(log_q, 1, /*keepdim=*/true) - std::log(num_prototypes);
    log_q = log_q - torch::logsumexp(log_q, 0, /*keepdim=*/true) - std::log(num_samples);
  }
  return (torch::exp(log_q) * num_samples).t().contiguous();
}

torch::Tensor SwavLoss(const std::vector<torch::Tensor>& scores, double temperature,
                       double epsilon, int iterations) {
  TORCH_CHECK(scores.size() >= 2, "SwavLoss: needs >= 2 views, got ", scores.size());
  std::vector<torch::Tensor> codes;
  std::vector<torch::Tensor> log_probs;
  for (const torch::Tensor& s : scores) {
    CheckEmbeddings(s, 2, "SwavLoss scores [B, K]");
    TORCH_CHECK(s.sizes() == scores[0].sizes(), "SwavLoss: views have shapes ", s.sizes(),
                " and ", scores[0].sizes());
    codes.push_back(SinkhornKnopp(s, epsilon, iterations));
    log_probs.push_back(torch::log_softmax(s / temperature, 1));
  }
  torch::Tensor total = torch::zeros({}, scores[0].options());
  int64_t num_pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    for (size_t j = 0; j < scores.size(); ++j) {
      if (i == j) continue;
      total = total - (codes[i] * log_probs[j]).sum(1).mean();
      ++num_pairs;
    }
  }
  return total / static_cast<double>(num_pairs);
}

namespace {

// Pairs every target tensor with the online tensor of the same name and
// shape (`kind` names them in errors) and applies `update(target, online)`.
template <typename Update>
void ForEachMatchingTensor(torch::OrderedDict<std::string, torch::Tensor> target,
                           const torch::OrderedDict<std::string, torch::Tensor>& online,
                           const char* kind, Update update) {
  TORCH_CHECK(target.size() == online.size(), "EmaUpdate: target has ", target.size(), " ",
              kind, "s, online ", online.size());
  for (auto& item : target) {
    const torch::Tensor* source = online.find(item.key());
    TORCH_CHECK(source != nullptr, "EmaUpdate: online has no ", kind, " '", item.key(), "'");
    TORCH_CHECK(source->sizes() == item.value().sizes(), "EmaUpdate: ", kind, " '", item.key(),
                "' is ", item.value().sizes(), " in target, ", source->sizes(), " in online");
    update(item.value(), *source);
  }
}

}  // namespace

void EmaUpdate(torch::nn::Module& target, const torch::nn::Module& online, double momentum,
               EmaBuffers buffers) {
  torch::NoGradGuard no_grad;
  ForEachMatchingTensor(target.named_parameters(), online.named_parameters(), "parameter",
                        [momentum](torch::Tensor& t, const torch::Tensor& o) {
                          t.mul_(momentum).add_(o, 1.0 - momentum);
                        });
  // Matched either way, so a mismatch is found in both modes.
  ForEachMatchingTensor(target.named_buffers(), online.named_buffers(), "buffer",
                        [buffers](torch::Tensor& t, const torch::Tensor& o) {
                          if (buffers == EmaBuffers::kCopy) t.copy_(o);
                        });
}

double CosineMomentum(double base, int64_t step, int64_t total_steps) {
  TORCH_CHECK(total_steps > 0, "CosineMomentum: total_steps must be > 0, got ", total_steps);
  const double progress =
      static_cast<double>(std::clamp<int64_t>(step, 0, total_steps)) / total_steps;
  return 1.0 - (1.0 - base) * (std::cos(M_PI * progress) + 1.0) / 2.0;
}

FeatureQueueImpl::FeatureQueueImpl(int64_t size, int64_t dim) : size_(size), dim_(dim) {
  TORCH_CHECK(size > 0 && dim > 0, "FeatureQueue: size and dim must be > 0, got ", size,
              " and ", dim);
  keys_ = register_buffer("keys", L2Normalize(torch::randn({size, dim})));
  pointer_ = register_buffer("pointer", torch::zeros({}, torch::kLong));
  filled_ = register_buffer("filled", torch::zeros({}, torch::kLong));
}

int64_t FeatureQueueImpl::pointer() const { return pointer_.item<int64_t>(); }
int64_t FeatureQueueImpl::filled() const { return filled_.item<int64_t>(); }

void FeatureQueueImpl::Enqueue(const torch::Tensor& local_keys, int64_t sample_dim) {
  TORCH_CHECK(local_keys.dim() >= 2 && sample_dim >= 0 && sample_dim < local_keys.dim() - 1,
              "FeatureQueue::Enqueue: keys ", local_keys.sizes(), " with sample_dim ",
              sample_dim);
  torch::Tensor keys = local_keys.detach();
  if (IsDistributed(collectives_.get())) keys = AllGatherAlong(keys, sample_dim, *collectives_);
  keys = keys.reshape({-1, keys.size(-1)});
  CheckEmbeddings(keys, 2, "FeatureQueue::Enqueue keys [N, dim]");
  TORCH_CHECK(keys.size(1) == dim_, "FeatureQueue::Enqueue: keys ", keys.sizes(),
              " do not match dim ", dim_);
  torch::NoGradGuard no_grad;
  const int64_t count = keys.size(0);
  if (count == 0) return;
  // Of a batch larger than the queue only the last `size` keys survive; they
  // land where writing the whole batch one key at a time would put them.
  const int64_t kept = std::min(count, size_);
  const torch::Tensor fresh =
      L2Normalize(keys.detach().slice(0, count - kept)).to(keys_.options());
  const int64_t start = (pointer() + count - kept) % size_;
  const int64_t first = std::min(kept, size_ - start);
  keys_.slice(0, start, start + first).copy_(fresh.slice(0, 0, first));
  if (first < kept) keys_.slice(0, 0, kept - first).copy_(fresh.slice(0, first));
  pointer_.fill_((pointer() + count) % size_);
  filled_.fill_(std::min(filled() + count, size_));
}

torch::Tensor TemporalSimilarity(const torch::Tensor& clip_features) {
  CheckEmbeddings(clip_features, 3, "TemporalSimilarity clip_features [B, n, D]");
  const int64_t n = clip_features.size(1);
  TORCH_CHECK(n >= 2, "TemporalSimilarity: needs n >= 2 clips per video, got ", n);
  const torch::Tensor z = L2Normalize(clip_features);
  const torch::Tensor c = torch::bmm(z, z.transpose(1, 2));  // [B, n, n]
  const torch::Tensor off_diagonal = c.sum(std::vector<int64_t>{1, 2}) - c.diagonal(0, 1, 2).sum(1);
  return off_diagonal / static_cast<double>(n * (n - 1));
}

torch::Tensor RotateClips(const torch::Tensor& clips, const torch::Tensor& rotations) {
  TORCH_CHECK(clips.defined() && clips.dim() == 5, "RotateClips: expected clips [B, C, T, H, W]");
  TORCH_CHECK(clips.size(3) == clips.size(4), "RotateClips: needs square frames, got ",
              clips.sizes());
  TORCH_CHECK(rotations.defined() && rotations.dim() == 1 &&
                  rotations.size(0) == clips.size(0) && rotations.scalar_type() == torch::kLong,
              "RotateClips: rotations must be int64 [B] with B = ", clips.size(0));
  const torch::Tensor k = rotations.to(clips.device());
  TORCH_CHECK(k.numel() == 0 || (k.min().item<int64_t>() >= 0 && k.max().item<int64_t>() <= 3),
              "RotateClips: rotations must be in {0, 1, 2, 3}");
  // One rot90 per distinct angle over the samples that use it.
  torch::Tensor out = torch::empty_like(clips);
  for (int64_t quarter_turns = 0; quarter_turns < 4; ++quarter_turns) {
    const torch::Tensor index = torch::nonzero(k == quarter_turns).squeeze(1);
    if (index.numel() == 0) continue;
    out = out.index_copy(0, index,
                         torch::rot90(clips.index_select(0, index), quarter_turns, {3, 4}));
  }
  return out;
}

}  // namespace ssl
}  // namespace tb
