#include "core/rng.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace tb {
namespace {

// Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds).
TEST(Philox, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(Philox4x32({0, 0, 0, 0}, {0, 0}),
            (PhiloxBlock{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(Philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                       {0xffffffffu, 0xffffffffu}),
            (PhiloxBlock{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(Philox4x32({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                       {0xa4093822u, 0x299f31d0u}),
            (PhiloxBlock{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(RngStream, SameCoordinatesSameNumbers) {
  RngStream a(42, 3, 17, 1), b(42, 3, 17, 1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.NextU32(), b.NextU32());
}

TEST(RngStream, EveryCoordinateChangesTheStream) {
  auto first = [](RngStream s) {
    std::vector<uint32_t> v;
    for (int i = 0; i < 8; ++i) v.push_back(s.NextU32());
    return v;
  };
  const auto base = first(RngStream(42, 3, 17, 1, 0));
  EXPECT_NE(base, first(RngStream(43, 3, 17, 1, 0)));
  EXPECT_NE(base, first(RngStream(42, 4, 17, 1, 0)));
  EXPECT_NE(base, first(RngStream(42, 3, 18, 1, 0)));
  EXPECT_NE(base, first(RngStream(42, 3, 17, 2, 0)));
  EXPECT_NE(base, first(RngStream(42, 3, 17, 1, 1)));
}

TEST(RngStream, IndependentOfThreadScheduling) {
  // Draw sample streams from several threads in arbitrary order; each must
  // equal the stream drawn sequentially.
  constexpr int kSamples = 64;
  std::vector<double> sequential(kSamples), threaded(kSamples);
  for (int s = 0; s < kSamples; ++s) sequential[s] = RngStream(7, 1, s, 0).UniformDouble();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &threaded] {
      for (int s = kSamples - 1 - t; s >= 0; s -= 4) {
        threaded[s] = RngStream(7, 1, s, 0).UniformDouble();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(sequential, threaded);
}

TEST(RngStream, UniformMomentsAndRange) {
  RngStream rng(1, 0, 0, 0);
  constexpr int kN = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < kN; ++i) {
    const double u = rng.UniformFloat();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
  }
  const double mean = sum / kN, var = sum_sq / kN - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.005);
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
}

TEST(RngStream, NormalMoments) {
  RngStream rng(2, 0, 0, 0);
  constexpr int kN = 100000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < kN; ++i) {
    const double x = rng.Normal();
    sum += x;
    sum_sq += x * x;
  }
  EXPECT_NEAR(sum / kN, 0.0, 0.02);
  EXPECT_NEAR(sum_sq / kN, 1.0, 0.02);
}

TEST(RngStream, UniformIntCoversRangeEvenly) {
  RngStream rng(3, 0, 0, 0);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[rng.UniformInt(7)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
}

TEST(RngStream, PermutationIsAPermutation) {
  RngStream rng(4, 0, 0, 0);
  auto p = rng.Permutation(50);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
  std::vector<int64_t> identity(50);
  for (int i = 0; i < 50; ++i) identity[i] = i;
  EXPECT_NE(p, identity);
}

}  // namespace
}  // namespace tb
