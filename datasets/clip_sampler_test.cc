#include "datasets/clip_sampler.h"

#include <gtest/gtest.h>

namespace tb {
namespace {

using V = std::vector<int64_t>;

TEST(ClipSampler, SpanAndIndices) {
  EXPECT_EQ(ClipSpan(8, 2), 15);
  EXPECT_EQ(ClipFrameIndices(100, 10, 4, 3, ClipSampling::MIRROR), (V{10, 13, 16, 19}));
}

TEST(ClipSampler, PaddingShortVideos) {
  // 5 frames (0..4), clip of 8 at stride 1 from 0.
  EXPECT_EQ(ClipFrameIndices(5, 0, 8, 1, ClipSampling::REPEAT_LAST), (V{0, 1, 2, 3, 4, 4, 4, 4}));
  EXPECT_EQ(ClipFrameIndices(5, 0, 8, 1, ClipSampling::MIRROR), (V{0, 1, 2, 3, 4, 3, 2, 1}));
  EXPECT_EQ(ClipFrameIndices(5, 0, 11, 1, ClipSampling::MIRROR),
            (V{0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2}));
  EXPECT_EQ(ClipFrameIndices(1, 0, 3, 2, ClipSampling::MIRROR), (V{0, 0, 0}));
}

TEST(ClipSampler, RandomStartCoversValidRangeUniformly) {
  // 20 frames, span 15: starts 0..5.
  std::vector<int> counts(6, 0);
  for (int s = 0; s < 6000; ++s) {
    RngStream rng(1, 0, s, 0);
    const int64_t start = RandomClipStart(20, 8, 2, &rng);
    ASSERT_GE(start, 0);
    ASSERT_LE(start, 5);
    ++counts[start];
  }
  for (int c : counts) EXPECT_NEAR(c, 1000, 150);
  RngStream rng(1, 0, 0, 0);
  EXPECT_EQ(RandomClipStart(10, 8, 2, &rng), 0);  // shorter than the span
}

TEST(ClipSampler, EvenlySpacedStarts) {
  // 100 frames, span 15 -> max start 85.
  EXPECT_EQ(EvenlySpacedClipStarts(100, 8, 2, 1), (V{42}));
  EXPECT_EQ(EvenlySpacedClipStarts(100, 8, 2, 2), (V{0, 85}));
  EXPECT_EQ(EvenlySpacedClipStarts(100, 8, 2, 6), (V{0, 17, 34, 51, 68, 85}));
  EXPECT_EQ(EvenlySpacedClipStarts(10, 8, 2, 3), (V{0, 0, 0}));
}

}  // namespace
}  // namespace tb
