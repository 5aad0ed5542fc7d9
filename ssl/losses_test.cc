#include "ssl/losses.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <utility>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "core/testing/reference_tensors.h"
#include "gtest/gtest.h"

namespace tb {
namespace ssl {
namespace {

constexpr double kTol = 1e-5;
constexpr double kTau = 0.1;

torch::Tensor Vec(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

// Unit vectors e_i as rows: Basis({0, 2}, 3) = [e0; e2], float64.
torch::Tensor Basis(const std::vector<int64_t>& index, int64_t dim) {
  return torch::eye(dim, torch::kDouble).index_select(0, torch::tensor(index, torch::kLong));
}

double Value(const torch::Tensor& t) { return t.item<double>(); }

bool AllFinite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tol = kTol) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double diff = (actual.to(torch::kDouble) - expected).abs().max().item<double>();
  EXPECT_LT(diff, tol) << what << ": max |diff| = " << diff;
}

// ---------------------------------------------------------------------------
// Closed forms for two or three vectors, computed by hand.

TEST(NtXent, TwoOrthogonalPairsClosedForm) {
  // a = b = [e0; e1]. Anchor e0 (from a): positive e0 (cos 1), negatives a1 = e1
  // and b1 = e1 (cos 0). Every anchor is alike:
  // l = -log(e^{1/t} / (e^{1/t} + 2)) = log(1 + 2 e^{-1/t}).
  const torch::Tensor a = Basis({0, 1}, 3);
  const double expected = std::log(1.0 + 2.0 * std::exp(-1.0 / kTau));
  EXPECT_NEAR(Value(NtXent(a, a, kTau)), expected, 1e-9);
  // Scaling the inputs changes nothing: they are normalised inside.
  EXPECT_NEAR(Value(NtXent(3.0 * a, 0.5 * a, kTau)), expected, 1e-9);
}

TEST(NtXent, SwappedPairClosedForm) {
  // a = [e0; e1], b = [e1; e0]: every anchor's positive is orthogonal to it and
  // one negative is identical: l = -log(1 / (1 + e^{1/t} + 1)) = log(2 + e^{1/t}).
  const torch::Tensor a = Basis({0, 1}, 2);
  const torch::Tensor b = Basis({1, 0}, 2);
  EXPECT_NEAR(Value(NtXent(a, b, kTau)), std::log(2.0 + std::exp(1.0 / kTau)), 1e-9);
}

TEST(NtXent, SinglePairHasNoNegatives) {
  // N = 1: each anchor's only candidate is its positive.
  EXPECT_NEAR(Value(NtXent(torch::randn({1, 4}), torch::randn({1, 4}), kTau)), 0.0, 1e-6);
}

TEST(NtXent, RejectsMismatchedShapes) {
  EXPECT_THROW(NtXent(torch::randn({2, 4}), torch::randn({3, 4}), kTau), c10::Error);
  EXPECT_THROW(NtXent(torch::randn({4}), torch::randn({4}), kTau), c10::Error);
}

TEST(InstanceContrastiveLoss, SparseOnlyAndEmptyDenseEqualNtXent) {
  const torch::Tensor sparse = torch::randn({2, 3, 4}, torch::kDouble);
  const double nt = Value(NtXent(sparse[0], sparse[1], kTau));
  EXPECT_NEAR(Value(InstanceContrastiveLoss(sparse, torch::Tensor(), kTau)), nt, 1e-12);
  EXPECT_NEAR(Value(InstanceContrastiveLoss(sparse, torch::zeros({2, 0, 3, 4}), kTau)), nt,
              1e-12);
}

TEST(InstanceContrastiveLoss, ThreeSparseAugmentationsAverageThePairs) {
  const torch::Tensor sparse = torch::randn({3, 2, 4}, torch::kDouble);
  const double mean = (Value(NtXent(sparse[0], sparse[1], kTau)) +
                       Value(NtXent(sparse[0], sparse[2], kTau)) +
                       Value(NtXent(sparse[1], sparse[2], kTau))) / 3.0;
  EXPECT_NEAR(Value(InstanceContrastiveLoss(sparse, torch::Tensor(), kTau)), mean, 1e-12);
  EXPECT_THROW(InstanceContrastiveLoss(sparse.slice(0, 0, 1), torch::Tensor(), kTau),
               c10::Error);
}

TEST(InstanceContrastiveLoss, DenseTermClosedForm) {
  // One video per batch would make every NT-Xent 0; take B = 2 videos with
  // features e0 and e1 in every clip. Each NT-Xent is then the first closed
  // form, log(1 + 2 e^{-1/t}); the dense term has (A S)(A S - 1) = 2 ordered
  // pairs for A = 2, S = 1, divided by S = 1.
  const torch::Tensor video = Basis({0, 1}, 2);  // [B, D]
  const torch::Tensor sparse = torch::stack({video, video});
  const torch::Tensor dense = sparse.unsqueeze(1);  // [2, 1, 2, 2]
  const double nt = std::log(1.0 + 2.0 * std::exp(-1.0 / kTau));
  EXPECT_NEAR(Value(InstanceContrastiveLoss(sparse, dense, kTau)), nt + 2.0 * nt, 1e-9);
}

TEST(LocalLocalLoss, OrthogonalTimestepsClosedForm) {
  // dense[a][t][b] = e_t: per anchor, positive cos 1, 2S - 2 negatives cos 0.
  const int64_t S = 4, B = 3;
  const torch::Tensor per_step = torch::eye(S, torch::kDouble);  // [S, D = S]
  const torch::Tensor dense = per_step.unsqueeze(1).expand({S, B, S}).unsqueeze(0).expand(
      {2, S, B, S});
  const double per_video = std::log(1.0 + (2 * S - 2) * std::exp(-1.0 / kTau));
  // REFERENCE (default) sums over the B videos, MEAN averages.
  EXPECT_NEAR(Value(LocalLocalLoss(dense, kTau)), B * per_video, 1e-9);
  EXPECT_NEAR(Value(LocalLocalLoss(dense, kTau, TclrReduction::kMean)), per_video, 1e-9);
  EXPECT_THROW(LocalLocalLoss(dense.slice(0, 0, 1), kTau), c10::Error);
}

TEST(GlobalLocalLoss, OrthogonalTimestepsClosedForm) {
  // M = I / t: each row and column CE is log(1 + (S - 1) e^{-1/t}), S rows and
  // S columns per augmentation pair, four pairs. REFERENCE (default) halves
  // the row + column sum: 4 * S CEs; MEAN divides it by S: 4 * 2 CEs.
  const int64_t S = 4, B = 2;
  const torch::Tensor x = torch::eye(S, torch::kDouble).unsqueeze(1).expand({S, B, S})
                              .unsqueeze(0).expand({2, S, B, S});
  const double ce = std::log(1.0 + (S - 1) * std::exp(-1.0 / kTau));
  EXPECT_NEAR(Value(GlobalLocalLoss(x, x, kTau)), 4.0 * S * ce, 1e-9);
  EXPECT_NEAR(Value(GlobalLocalLoss(x, x, kTau, TclrReduction::kMean)), 8.0 * ce, 1e-9);
  // With S = 2 the two reductions agree.
  const torch::Tensor x2 = x.slice(1, 0, 2).slice(3, 0, 2);
  EXPECT_NEAR(Value(GlobalLocalLoss(x2, x2, kTau)),
              Value(GlobalLocalLoss(x2, x2, kTau, TclrReduction::kMean)), 1e-12);
  EXPECT_THROW(GlobalLocalLoss(x, x.slice(1, 0, 3), kTau), c10::Error);
}

TEST(InfoNce, ClosedFormWithQueueAndTemporalNegative) {
  // q = e0, k = e0, queue = {e1, -e0}, extra negative e0 + e1 (cos 1/sqrt2):
  // l = -log(e^{1/t} / (e^{1/t} + e^0 + e^{-1/t} + e^{(1/sqrt2)/t})).
  const torch::Tensor q = Basis({0}, 2);
  const torch::Tensor queue = torch::stack({Vec({0, 1}), Vec({-1, 0})});
  const torch::Tensor extra = Vec({1, 1}).view({1, 1, 2});
  const double t = 0.07;
  const double pos = std::exp(1 / t);
  const double expected =
      -std::log(pos / (pos + 1.0 + std::exp(-1 / t) + std::exp(std::sqrt(0.5) / t)));
  EXPECT_NEAR(Value(InfoNce(q, q, queue, t, extra)), expected, 1e-9);
  // Empty queue and no extra negatives: one logit, loss 0.
  EXPECT_NEAR(Value(InfoNce(q, q, torch::zeros({0, 2}, torch::kDouble), t)), 0.0, 1e-12);
}

TEST(InfoNce, KeyAndQueueGetNoGradient) {
  const torch::Tensor q = torch::randn({3, 4}).requires_grad_(true);
  const torch::Tensor k = torch::randn({3, 4}).requires_grad_(true);
  const torch::Tensor queue = torch::randn({5, 4}).requires_grad_(true);
  InfoNce(q, k, queue, 0.07).backward();
  EXPECT_TRUE(q.grad().defined());
  EXPECT_FALSE(k.grad().defined());
  EXPECT_FALSE(queue.grad().defined());
}

TEST(TripletMarginLoss, ClosedForm) {
  // a = p = e0, n = e1 (after normalisation): d(a,p) ~ 1e-6 * sqrt(2), d(a,n) = sqrt 2.
  const torch::Tensor a = Basis({0}, 2), n = Basis({1}, 2) * 5.0;
  EXPECT_NEAR(Value(TripletMarginLoss(a, a * 2.0, n, 1.0)), 0.0, 1e-9);
  EXPECT_NEAR(Value(TripletMarginLoss(a, a, n, 2.0)), 2.0 - std::sqrt(2.0), 1e-5);
  // Swapped roles: d(a,p) = sqrt 2, d(a,n) ~ 0 -> sqrt2 + 1.
  EXPECT_NEAR(Value(TripletMarginLoss(a, n, a, 1.0)), std::sqrt(2.0) + 1.0, 1e-5);
}

TEST(ByolLoss, ClosedFormAndDetachedTarget) {
  // cos = 1, 0, -1 -> 0, 2, 4; mean 2.
  const torch::Tensor p = torch::stack({Vec({1, 0}), Vec({1, 0}), Vec({1, 0})})
                              .requires_grad_(true);
  const torch::Tensor z = torch::stack({Vec({2, 0}), Vec({0, 3}), Vec({-1, 0})})
                              .requires_grad_(true);
  const torch::Tensor loss = ByolLoss(p, z);
  EXPECT_NEAR(Value(loss), 2.0, 1e-12);
  loss.backward();
  EXPECT_TRUE(p.grad().defined());
  EXPECT_FALSE(z.grad().defined());
}

TEST(TemporalSimilarity, ClosedForm) {
  // Video 0: clips e0, e0, e1 -> off-diagonal cosines 1,1,0,0,0,0 -> 1/3.
  // Video 1: clips e0, -e0, 2e0 -> pairs (0,1) -1, (0,2) 1, (1,2) -1, each
  // counted twice -> -1/3.
  const torch::Tensor v0 = torch::stack({Vec({1, 0}), Vec({1, 0}), Vec({0, 1})});
  const torch::Tensor v1 = torch::stack({Vec({1, 0}), Vec({-1, 0}), Vec({2, 0})});
  ExpectClose(TemporalSimilarity(torch::stack({v0, v1})), Vec({1.0 / 3, -1.0 / 3}),
              "temporal similarity");
  EXPECT_THROW(TemporalSimilarity(torch::randn({2, 1, 3})), c10::Error);
}

// ---------------------------------------------------------------------------
// Properties.

// [2, S, B, D] with dense[a][t][b] = rows[a][t] for every video b.
torch::Tensor PerStep(const torch::Tensor& aug0, const torch::Tensor& aug1, int64_t videos) {
  const int64_t S = aug0.size(0), D = aug0.size(1);
  return torch::stack({aug0, aug1}).unsqueeze(2).expand({2, S, videos, D}).contiguous();
}

TEST(TclrLosses, OrthogonalTimestepsBeatRandomFeaturesAndEveryPermutation) {
  torch::manual_seed(1);
  const int64_t S = 4, B = 2, D = 6;
  const torch::Tensor own = torch::eye(S, D, torch::kDouble);  // timestep t -> e_t
  const torch::Tensor matched = PerStep(own, own, B);
  const double ll_best = Value(LocalLocalLoss(matched, kTau));
  const double gl_best = Value(GlobalLocalLoss(matched, matched, kTau));
  for (int trial = 0; trial < 5; ++trial) {
    const torch::Tensor a = torch::randn({2, S, B, D}, torch::kDouble);
    const torch::Tensor b = torch::randn({2, S, B, D}, torch::kDouble);
    EXPECT_LT(ll_best, Value(LocalLocalLoss(a, kTau)));
    EXPECT_LT(gl_best, Value(GlobalLocalLoss(a, b, kTau)));
  }
  // Every non-identity permutation of the timesteps in the second augmentation
  // (L_LL) or in the dense clips (L_GL) costs more.
  std::vector<int64_t> perm(S);
  std::iota(perm.begin(), perm.end(), 0);
  int tried = 0;
  while (std::next_permutation(perm.begin(), perm.end())) {
    const torch::Tensor shuffled = own.index_select(0, torch::tensor(perm, torch::kLong));
    EXPECT_LT(ll_best, Value(LocalLocalLoss(PerStep(own, shuffled, B), kTau)) - 1e-3);
    EXPECT_LT(gl_best,
              Value(GlobalLocalLoss(matched, PerStep(shuffled, shuffled, B), kTau)) - 1e-3);
    ++tried;
  }
  EXPECT_EQ(tried, 23);
}

TEST(TimeBalanceLosses, InvariantAndDistinctiveObjectivesPullOppositeWays) {
  const int64_t A = 2, S = 4, B = 3;
  // Shared: every clip of video b is e_b (one feature per video over time).
  const torch::Tensor video = torch::eye(B, torch::kDouble);  // [B, D = B]
  const torch::Tensor shared_sparse = video.unsqueeze(0).expand({A, B, B});
  const torch::Tensor shared_dense = video.view({1, 1, B, B}).expand({A, S, B, B});
  // Distinct: clip t of video b is e_{t*B + b}, the sparse clip a further vector.
  const int64_t D = (S + 1) * B;
  const torch::Tensor codes = torch::eye(D, torch::kDouble);
  const torch::Tensor distinct_sparse = codes.slice(0, S * B).unsqueeze(0).expand({A, B, D});
  const torch::Tensor distinct_dense =
      codes.slice(0, 0, S * B).view({1, S, B, D}).expand({A, S, B, D});

  const double ic_shared = Value(InstanceContrastiveLoss(shared_sparse, shared_dense, kTau));
  const double ic_distinct =
      Value(InstanceContrastiveLoss(distinct_sparse, distinct_dense, kTau));
  const double ll_shared = Value(LocalLocalLoss(shared_dense, kTau));
  const double ll_distinct = Value(LocalLocalLoss(distinct_dense, kTau));
  // L_IC: positives identical, negatives orthogonal -> near 0.
  EXPECT_LT(ic_shared, 0.01);
  EXPECT_GT(ic_distinct, 10 * ic_shared);
  // L_LL: all 2S vectors of a video identical -> uniform softmax, log(2S - 1)
  // per video, summed over the B videos.
  EXPECT_NEAR(ll_shared, B * std::log(2.0 * S - 1.0), 1e-9);
  EXPECT_LT(ll_distinct, 0.01);
}

TEST(Losses, GradientsAreFinite) {
  torch::manual_seed(2);
  auto leaf = [](std::vector<int64_t> shape) { return torch::randn(shape).requires_grad_(true); };
  const torch::Tensor sparse = leaf({2, 3, 8}), dense = leaf({2, 4, 3, 8});
  const torch::Tensor slices = leaf({2, 4, 3, 8}), q = leaf({3, 8}), extra = leaf({3, 1, 8});
  const torch::Tensor p = leaf({3, 8}), n = leaf({3, 8}), s0 = leaf({3, 5}), s1 = leaf({3, 5});
  const torch::Tensor loss =
      InstanceContrastiveLoss(sparse, dense, kTau) + LocalLocalLoss(dense, kTau) +
      GlobalLocalLoss(slices, dense, kTau) + NtXent(q, p, kTau) +
      InfoNce(q, p, torch::randn({7, 8}), 0.07, extra) + TripletMarginLoss(q, p, n, 1.0) +
      ByolLoss(q, p) + SwavLoss({s0, s1}, kTau, 0.05, 3) +
      TemporalSimilarity(dense.select(0, 0).transpose(0, 1)).sum();
  loss.backward();
  for (const torch::Tensor& t : {sparse, dense, slices, q, extra, p, n, s0, s1}) {
    ASSERT_TRUE(t.grad().defined());
    EXPECT_TRUE(AllFinite(t.grad()));
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0.0);
  }
  // A positive identical to its anchor must not produce NaN (norm at 0).
  const torch::Tensor same = leaf({2, 4});
  TripletMarginLoss(same, same, -same, 3.0).backward();
  EXPECT_TRUE(AllFinite(same.grad()));
}

// ---------------------------------------------------------------------------
// Sinkhorn-Knopp and SwAV.

TEST(SinkhornKnopp, MarginalsAfterEnoughIterations) {
  torch::manual_seed(3);
  const int64_t B = 12, K = 4;
  // Cosine-range scores as SwAV's prototypes give. At eps = 0.05 convergence is
  // slow (the column error is ~2 after SwAV's 3 iterations, ~0.03 after 100).
  const torch::Tensor scores = (torch::rand({B, K}) * 2 - 1).requires_grad_(true);
  const torch::Tensor q = SinkhornKnopp(scores, 0.05, 1000);
  EXPECT_FALSE(q.requires_grad());
  ExpectClose(q.sum(1).to(torch::kDouble), torch::ones({B}, torch::kDouble), "rows", 1e-3);
  ExpectClose(q.sum(0).to(torch::kDouble), torch::full({K}, double(B) / K, torch::kDouble),
              "columns", 1e-3);
  EXPECT_GE(q.min().item<double>(), 0.0);
  // Rows sum to 1 after any number of iterations (the last step normalises them).
  ExpectClose(SinkhornKnopp(scores, 0.05, 1).sum(1).to(torch::kDouble),
              torch::ones({B}, torch::kDouble), "rows after 1 iteration", 1e-5);
}

TEST(SinkhornKnopp, StableForLargeScores) {
  torch::manual_seed(4);
  const torch::Tensor q = SinkhornKnopp(torch::randn({8, 5}) * 1000.0, 0.05, 3);
  EXPECT_TRUE(AllFinite(q));
  ExpectClose(q.sum(1).to(torch::kDouble), torch::ones({8}, torch::kDouble), "rows", 1e-5);
}

TEST(SwavLoss, IdenticalViewsClosedFormWithUniformScores) {
  // Equal scores: codes are uniform (1/K) and log_softmax is -log K everywhere,
  // so every pair's cross-entropy is log K.
  const torch::Tensor s = torch::zeros({4, 5});
  EXPECT_NEAR(Value(SwavLoss({s, s, s}, kTau, 0.05, 3)), std::log(5.0), 1e-5);
  EXPECT_THROW(SwavLoss({s}, kTau, 0.05, 3), c10::Error);
}

// ---------------------------------------------------------------------------
// Momentum encoders.

TEST(CosineMomentum, EndpointsMidpointAndClamping) {
  EXPECT_DOUBLE_EQ(CosineMomentum(0.99, 0, 100), 0.99);
  EXPECT_NEAR(CosineMomentum(0.99, 50, 100), 0.995, 1e-12);
  EXPECT_DOUBLE_EQ(CosineMomentum(0.99, 100, 100), 1.0);
  EXPECT_DOUBLE_EQ(CosineMomentum(0.99, -5, 100), 0.99);
  EXPECT_DOUBLE_EQ(CosineMomentum(0.99, 500, 100), 1.0);
  EXPECT_LT(CosineMomentum(0.99, 25, 100), CosineMomentum(0.99, 75, 100));
}

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    fc = register_module("fc", torch::nn::Linear(2, 2));
    bn = register_module("bn", torch::nn::BatchNorm1d(2));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(TinyNet);

TEST(EmaUpdate, BlendsParametersAndCopiesBuffers) {
  TinyNet target, online;
  {
    torch::NoGradGuard no_grad;
    for (auto& p : target->parameters()) p.fill_(1.0);
    for (auto& p : online->parameters()) p.fill_(3.0);
    online->bn->running_mean.fill_(0.5);
    online->bn->num_batches_tracked.fill_(7);
  }
  EmaUpdate(*target, *online, 0.75);
  for (const auto& item : target->named_parameters()) {
    // 0.75 * 1 + 0.25 * 3 = 1.5
    EXPECT_TRUE(torch::allclose(item.value(), torch::full_like(item.value(), 1.5)))
        << item.key();
    EXPECT_TRUE(item.value().requires_grad()) << item.key();
  }
  EXPECT_TRUE(torch::equal(target->bn->running_mean, online->bn->running_mean));
  EXPECT_EQ(target->bn->num_batches_tracked.item<int64_t>(), 7);
  // Online is untouched.
  for (const auto& p : online->parameters()) EXPECT_EQ(p.min().item<double>(), 3.0);
  // Momentum 1 keeps the target, momentum 0 copies online.
  EmaUpdate(*target, *online, 1.0);
  EXPECT_EQ(target->fc->weight.min().item<double>(), 1.5);
  EmaUpdate(*target, *online, 0.0);
  EXPECT_EQ(target->fc->weight.min().item<double>(), 3.0);
}

TEST(EmaUpdate, RejectsDifferentStructures) {
  TinyNet target;
  torch::nn::Linear other(2, 2);
  EXPECT_THROW(EmaUpdate(*target, *other, 0.9), c10::Error);
  torch::nn::Linear wider(2, 3);
  EXPECT_THROW(EmaUpdate(*other, *wider, 0.9), c10::Error);
}

// ---------------------------------------------------------------------------
// Queue.

TEST(FeatureQueue, StartsWithNormalisedRandomKeys) {
  torch::manual_seed(5);
  FeatureQueue queue(6, 3);
  EXPECT_EQ(queue->Keys().sizes(), (std::vector<int64_t>{6, 3}));
  ExpectClose(queue->Keys().norm(2, 1).to(torch::kDouble), torch::ones({6}, torch::kDouble),
              "row norms");
  EXPECT_EQ(queue->pointer(), 0);
  EXPECT_EQ(queue->filled(), 0);
  EXPECT_EQ(queue->named_buffers().size(), 3u);
  EXPECT_TRUE(queue->parameters().empty());
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(FeatureQueue(6, 3)->Keys(), queue->Keys()));
}

TEST(FeatureQueue, EnqueueWrapsAround) {
  FeatureQueue queue(4, 2);
  // Key i is the unit vector at angle 0.3 i; batches scale it by 3, so the
  // stored rows also check the normalisation.
  auto key = [](int i) {
    const double angle = 0.3 * i;
    return torch::tensor({std::cos(angle), std::sin(angle)}, torch::kFloat);
  };
  auto batch = [&](int first, int count) {
    std::vector<torch::Tensor> rows;
    for (int i = first; i < first + count; ++i) rows.push_back(3.0 * key(i));
    return torch::stack(rows);
  };
  auto expect_rows = [&](std::vector<int> keys_at_rows, const std::string& what) {
    for (size_t row = 0; row < keys_at_rows.size(); ++row) {
      if (keys_at_rows[row] < 0) continue;
      EXPECT_TRUE(torch::allclose(queue->Keys()[row], key(keys_at_rows[row]), 1e-5, 1e-6))
          << what << ": row " << row << " should hold key " << keys_at_rows[row];
    }
  };
  const torch::Tensor grad_batch = batch(0, 3).requires_grad_(true);
  queue->Enqueue(grad_batch);
  EXPECT_FALSE(queue->Keys().requires_grad());
  expect_rows({0, 1, 2, -1}, "3 keys");
  EXPECT_EQ(queue->pointer(), 3);
  EXPECT_EQ(queue->filled(), 3);

  queue->Enqueue(batch(3, 2));  // rows 3, 0
  expect_rows({4, 1, 2, 3}, "wrap");
  EXPECT_EQ(queue->pointer(), 1);
  EXPECT_EQ(queue->filled(), 4);

  // 6 keys (5..10) into 4 rows from pointer 1: written one at a time, keys
  // 7..10 survive at rows 3, 0, 1, 2; the pointer moves to (1 + 6) % 4 = 3.
  queue->Enqueue(batch(5, 6));
  expect_rows({8, 9, 10, 7}, "oversized batch");
  EXPECT_EQ(queue->pointer(), 3);
  EXPECT_EQ(queue->filled(), 4);

  queue->Enqueue(torch::zeros({0, 2}));  // an empty batch changes nothing
  EXPECT_EQ(queue->pointer(), 3);
  EXPECT_THROW(queue->Enqueue(torch::randn({2, 3})), c10::Error);
}

TEST(FeatureQueue, StateRoundTripsThroughTorchSave) {
  torch::manual_seed(6);
  FeatureQueue saved(5, 3);
  saved->Enqueue(torch::randn({7, 3}));
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/queue.pt");
  torch::save(saved, path);

  torch::manual_seed(7);  // different initial keys
  FeatureQueue loaded(5, 3);
  ASSERT_FALSE(torch::equal(loaded->Keys(), saved->Keys()));
  torch::load(loaded, path);
  EXPECT_TRUE(torch::equal(loaded->Keys(), saved->Keys()));
  EXPECT_EQ(loaded->pointer(), 2);
  EXPECT_EQ(loaded->filled(), 5);
  // The loaded queue continues exactly where the saved one stopped.
  const torch::Tensor next = torch::randn({2, 3});
  saved->Enqueue(next);
  loaded->Enqueue(next);
  EXPECT_TRUE(torch::equal(loaded->Keys(), saved->Keys()));
  EXPECT_EQ(loaded->pointer(), 4);
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------
// Rotation.

TEST(RotateClips, QuarterTurnByHandAndFourTurnsAreIdentity) {
  // One 2x2 frame [[1, 2], [3, 4]] turned 90 degrees counter-clockwise:
  // [[2, 4], [1, 3]].
  const torch::Tensor frame = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 1, 2, 2});
  const torch::Tensor turned = RotateClips(frame, torch::tensor({1}, torch::kLong));
  EXPECT_TRUE(torch::equal(turned.flatten(), torch::tensor({2.f, 4.f, 1.f, 3.f})));

  torch::manual_seed(8);
  const torch::Tensor clips = torch::randn({4, 2, 3, 5, 5});
  const torch::Tensor k = torch::tensor({0, 1, 2, 3}, torch::kLong);
  torch::Tensor x = clips;
  for (int i = 0; i < 4; ++i) x = RotateClips(x, k);
  EXPECT_TRUE(torch::equal(x, clips));
  // Zero turns is the identity; two half-turns too.
  EXPECT_TRUE(torch::equal(RotateClips(clips, torch::zeros({4}, torch::kLong)), clips));
  const torch::Tensor half = torch::full({4}, 2, torch::kLong);
  EXPECT_TRUE(torch::equal(RotateClips(RotateClips(clips, half), half), clips));

  EXPECT_THROW(RotateClips(clips, torch::tensor({0, 1, 4, 0}, torch::kLong)), c10::Error);
  EXPECT_THROW(RotateClips(torch::randn({1, 1, 1, 2, 3}), torch::tensor({1}, torch::kLong)),
               c10::Error);
}

TEST(RotateClips, GradientFlowsToTheInput) {
  const torch::Tensor clips = torch::randn({2, 1, 2, 3, 3}).requires_grad_(true);
  const torch::Tensor weights = torch::randn({2, 1, 2, 3, 3});
  (RotateClips(clips, torch::tensor({1, 3}, torch::kLong)) * weights).sum().backward();
  // d/dx sum(rot(x) * w) = rot^{-1}(w).
  ExpectClose(clips.grad().to(torch::kDouble),
              RotateClips(weights, torch::tensor({3, 1}, torch::kLong)).to(torch::kDouble),
              "gradient");
}

// ---------------------------------------------------------------------------
// Reference values from Python scripts run by /usr/bin/python3 (float64).

// The tensors of one reference script, run once per test binary.
class ReferenceTest : public ::testing::Test {
 protected:
  explicit ReferenceTest(std::string script) : script_(std::move(script)) {}

  void SetUp() override {
    static auto* cache =
        new std::map<std::string, absl::StatusOr<std::map<std::string, torch::Tensor>>>();
    auto it = cache->find(script_);
    if (it == cache->end()) {
      const std::string out = script_.substr(script_.rfind('/') + 1) + ".txt";
      it = cache->emplace(script_, ::tb::testing::RunReferenceTensors(script_, out)).first;
    }
    ASSERT_TRUE(it->second.ok()) << it->second.status();
    refs_ = &*it->second;
  }

  torch::Tensor Ref(const std::string& name) const {
    auto it = refs_->find(name);
    TORCH_CHECK(it != refs_->end(), "no reference tensor '", name, "' from ", script_);
    return it->second;
  }
  // A fresh leaf copy of a reference input, for gradients.
  torch::Tensor Leaf(const std::string& name) const {
    return Ref(name).clone().requires_grad_(true);
  }

 private:
  std::string script_;
  const std::map<std::string, torch::Tensor>* refs_ = nullptr;
};

// testdata/ssl_reference.py: loop-based definitions; its L_LL and L_GL are
// the MEAN reduction.
class PythonReferenceTest : public ReferenceTest {
 protected:
  PythonReferenceTest() : ReferenceTest("ssl/testdata/ssl_reference.py") {}
};

TEST_F(PythonReferenceTest, NtXent) {
  const torch::Tensor a = Leaf("ntxent_a");
  const torch::Tensor loss = NtXent(a, Ref("ntxent_b"), kTau);
  ExpectClose(loss, Ref("ntxent"), "NtXent");
  loss.backward();
  ExpectClose(a.grad(), Ref("ntxent_grad_a"), "NtXent grad a");
  // Float32 agrees with the float64 reference to float precision.
  ExpectClose(NtXent(Ref("ntxent_a").to(torch::kFloat), Ref("ntxent_b").to(torch::kFloat), kTau)
                  .to(torch::kDouble),
              Ref("ntxent"), "NtXent float32", 1e-4);
}

TEST_F(PythonReferenceTest, InstanceContrastiveLoss) {
  const torch::Tensor sparse = Leaf("ic_sparse"), dense = Leaf("ic_dense");
  const torch::Tensor loss = InstanceContrastiveLoss(sparse, dense, kTau);
  ExpectClose(loss, Ref("ic"), "L_IC");
  loss.backward();
  ExpectClose(sparse.grad(), Ref("ic_grad_sparse"), "L_IC grad sparse");
  ExpectClose(dense.grad(), Ref("ic_grad_dense"), "L_IC grad dense");
  ExpectClose(InstanceContrastiveLoss(Ref("ic_sparse"), Ref("ic3_dense"), kTau), Ref("ic3"),
              "L_IC with A = 3, S = 2 dense clips");
}

TEST_F(PythonReferenceTest, LocalLocalLoss) {
  const torch::Tensor dense = Leaf("ll_dense");
  const torch::Tensor loss = LocalLocalLoss(dense, kTau, TclrReduction::kMean);
  ExpectClose(loss, Ref("ll"), "L_LL (MEAN)");
  loss.backward();
  ExpectClose(dense.grad(), Ref("ll_grad_dense"), "L_LL grad");
}

TEST_F(PythonReferenceTest, GlobalLocalLoss) {
  const torch::Tensor slices = Leaf("gl_slices"), dense = Leaf("gl_dense");
  const torch::Tensor loss = GlobalLocalLoss(slices, dense, kTau, TclrReduction::kMean);
  ExpectClose(loss, Ref("gl"), "L_GL (MEAN)");
  loss.backward();
  ExpectClose(slices.grad(), Ref("gl_grad_slices"), "L_GL grad slices");
  ExpectClose(dense.grad(), Ref("gl_grad_dense"), "L_GL grad dense");
}

TEST_F(PythonReferenceTest, InfoNce) {
  const torch::Tensor q = Leaf("nce_q"), extra = Leaf("nce_extra");
  const torch::Tensor loss = InfoNce(q, Ref("nce_k"), Ref("nce_queue"), 0.07, extra);
  ExpectClose(loss, Ref("nce"), "InfoNCE");
  loss.backward();
  ExpectClose(q.grad(), Ref("nce_grad_q"), "InfoNCE grad q");
  ExpectClose(extra.grad(), Ref("nce_grad_extra"), "InfoNCE grad extra negatives");
  ExpectClose(InfoNce(Ref("nce_q"), Ref("nce_k"), Ref("nce_queue"), 0.07), Ref("nce_queue_only"),
              "InfoNCE queue only");
  ExpectClose(InfoNce(Ref("nce_q"), Ref("nce_k"), torch::zeros({0, 5}, torch::kDouble), 0.07,
                      Ref("nce_extra")),
              Ref("nce_extra_only"), "InfoNCE empty queue");
}

TEST_F(PythonReferenceTest, TripletByolTemporalSimilarity) {
  ExpectClose(TripletMarginLoss(Ref("tri_a"), Ref("tri_p"), Ref("tri_n"), 1.0), Ref("tri"),
              "triplet vs F.triplet_margin_loss");
  ExpectClose(ByolLoss(Ref("byol_p"), Ref("byol_z")), Ref("byol"), "BYOL");
  ExpectClose(TemporalSimilarity(Ref("tsim_feats")), Ref("tsim"), "temporal similarity");
}

TEST_F(PythonReferenceTest, SinkhornAndSwav) {
  ExpectClose(SinkhornKnopp(Ref("sk_scores"), 0.05, 3), Ref("sk"), "Sinkhorn-Knopp");
  std::vector<torch::Tensor> views;
  for (int i = 0; i < 3; ++i) views.push_back(Leaf(absl::StrCat("swav_scores", i)));
  const torch::Tensor loss = SwavLoss(views, kTau, 0.05, 3);
  ExpectClose(loss, Ref("swav"), "SwAV");
  loss.backward();
  for (int i = 0; i < 3; ++i) {
    ExpectClose(views[i].grad(), Ref(absl::StrCat("swav_grad", i)), absl::StrCat("SwAV grad ", i));
  }
}

TEST_F(PythonReferenceTest, RotateClipsMatchesTorchRot90) {
  const torch::Tensor out = RotateClips(Ref("rot_clips"), Ref("rot_k").to(torch::kLong));
  EXPECT_TRUE(torch::equal(out, Ref("rot")));
}

// ---------------------------------------------------------------------------
// testdata/tclr_reference.py: the official TCLR / TimeBalance reductions,
// written from TCLR's contrastive_loss/nt_xent_original.py (NTXentLoss),
// contrastive_loss/global_local_temporal_contrastive.py
// (global_local_temporal_contrastive) and train_gen_all_step.py (train_epoch;
// TimeBalance's pretraining.py, train_epoch, is the same loop with the
// ic / tcl / tcg weights). S = 4, A = 2 as the official code hard-codes.

class TclrReferenceTest : public ReferenceTest {
 protected:
  TclrReferenceTest() : ReferenceTest("ssl/testdata/tclr_reference.py") {}

  // Our three terms with the default (REFERENCE) reduction on the script's
  // inputs: sparse [2, B, D], slices and dense [2, S, B, D].
  std::vector<torch::Tensor> Terms(const torch::Tensor& sparse, const torch::Tensor& slices,
                                   const torch::Tensor& dense) const {
    return {InstanceContrastiveLoss(sparse, dense, kTau), LocalLocalLoss(dense, kTau),
            GlobalLocalLoss(slices, dense, kTau)};
  }
};

// Mirrors train_epoch's loss_ic2 + loss_ic1 (NTXentLoss), loss_local_local
// (NTXentLoss with batch_size 4, summed over the batch) and loss_global_local
// (global_local_temporal_contrastive summed over the 2 x 2 augmentation
// pairs): values and gradients with respect to the raw (unnormalised) inputs.
TEST_F(TclrReferenceTest, TermsAndGradientsMatchTheOfficialReductions) {
  const std::vector<std::string> names = {"ic", "ll", "gl"};
  const std::vector<std::string> inputs = {"sparse", "slices", "dense"};
  for (size_t k = 0; k < names.size(); ++k) {
    const torch::Tensor sparse = Leaf("sparse"), slices = Leaf("slices"), dense = Leaf("dense");
    const torch::Tensor loss = Terms(sparse, slices, dense)[k];
    ExpectClose(loss, Ref(names[k]), names[k]);
    loss.backward();
    const std::vector<torch::Tensor> leaves = {sparse, slices, dense};
    for (size_t i = 0; i < leaves.size(); ++i) {
      const torch::Tensor grad =
          leaves[i].grad().defined() ? leaves[i].grad() : torch::zeros_like(leaves[i]);
      ExpectClose(grad, Ref(absl::StrCat(names[k], "_grad_", inputs[i])),
                  absl::StrCat(names[k], " grad ", inputs[i]));
    }
  }
}

// TimeBalance's pretraining.py total: ic_weight * (loss_ic2 + loss_ic1) +
// tcl_weight * loss_local_local + tcg_weight * loss_global_local with the
// weights of configs/conf_ssl.py, conf_inv_teacher.py, conf_dist_teacher.py.
TEST_F(TclrReferenceTest, TeacherPretrainingTotals) {
  const std::vector<torch::Tensor> t = Terms(Ref("sparse"), Ref("slices"), Ref("dense"));
  ExpectClose(t[0] + t[1] + t[2], Ref("total_ssl"), "conf_ssl (1, 1, 1)");
  ExpectClose(t[0], Ref("total_inv"), "conf_inv_teacher (1, 0, 0)");
  ExpectClose(t[1] + t[2], Ref("total_dist"), "conf_dist_teacher (0, 1, 1)");
}

// The reference's batch (B = 40, 128-d, S = 4): our terms equal the official
// ones at full scale, in float64 and (to float precision) in float32, and
// the MEAN reduction is the reference's L_LL / B and L_GL * 2 / S.
TEST_F(TclrReferenceTest, ScaleAtTheReferenceBatch) {
  const torch::Tensor sparse = Ref("init_sparse"), slices = Ref("init_slices"),
                      dense = Ref("init_dense");
  const std::vector<torch::Tensor> t = Terms(sparse, slices, dense);
  ExpectClose(t[0], Ref("init_ic"), "L_IC at B = 40");
  ExpectClose(t[1], Ref("init_ll"), "L_LL at B = 40");
  ExpectClose(t[2], Ref("init_gl"), "L_GL at B = 40");
  const std::vector<torch::Tensor> f =
      Terms(sparse.to(torch::kFloat), slices.to(torch::kFloat), dense.to(torch::kFloat));
  ExpectClose(f[0].to(torch::kDouble), Ref("init_ic"), "L_IC float32", 1e-3);
  ExpectClose(f[1].to(torch::kDouble), Ref("init_ll"), "L_LL float32", 1e-3);
  ExpectClose(f[2].to(torch::kDouble), Ref("init_gl"), "L_GL float32", 1e-3);
  ExpectClose(LocalLocalLoss(dense, kTau, TclrReduction::kMean), Ref("init_ll") / 40.0,
              "L_LL MEAN");
  ExpectClose(GlobalLocalLoss(slices, dense, kTau, TclrReduction::kMean),
              Ref("init_gl") * 2.0 / 4.0, "L_GL MEAN");
}

// ---------------------------------------------------------------------------
// testdata/vtdl_reference.py: VTDL's official loss, written from
// src/NCE/NCEAverage.py (MemoryMoCo.forward, softmax path), NCESoftmaxLoss
// and src/train_temporal_dis.py (train_moco: the temporal negative from the
// online model, with gradient; TripletMarginLoss(q, k, n)), on the raw
// outputs of the id_head's Linear (src/model/r3d.py normalises them).

class VtdlReferenceTest : public ReferenceTest {
 protected:
  VtdlReferenceTest() : ReferenceTest("ssl/testdata/vtdl_reference.py") {}
};

TEST_F(VtdlReferenceTest, InfoNceWithTheOnlineTemporalNegative) {
  const torch::Tensor q = Leaf("q"), n = Leaf("n");
  // The temporal negative is query b's own extra negative: [B, 1, D].
  const torch::Tensor loss = InfoNce(q, Ref("k"), Ref("queue"), 0.07, n.unsqueeze(1));
  ExpectClose(loss, Ref("nce"), "VTDL InfoNCE");
  loss.backward();
  ExpectClose(q.grad(), Ref("nce_grad_q"), "VTDL InfoNCE grad q");
  ExpectClose(n.grad(), Ref("nce_grad_n"), "VTDL InfoNCE grad temporal negative");
}

TEST_F(VtdlReferenceTest, TripletOnOnlineAnchorKeyPositiveOnlineNegative) {
  const torch::Tensor q = Leaf("q"), n = Leaf("n");
  const torch::Tensor loss = TripletMarginLoss(q, Ref("k"), n, 1.0);
  ExpectClose(loss, Ref("triplet"), "VTDL triplet");
  loss.backward();
  ExpectClose(q.grad(), Ref("triplet_grad_q"), "VTDL triplet grad q");
  ExpectClose(n.grad(), Ref("triplet_grad_n"), "VTDL triplet grad n");
}

}  // namespace
}  // namespace ssl
}  // namespace tb
