// RandAugment and cutout of datasets/clip_ops.h: each operation against
// hand-computed values on tiny clips, temporal consistency, the draws.
#include <cmath>
#include <functional>
#include <set>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "datasets/clip_ops.h"

namespace tb {
namespace {

// A [3, T, S, S] clip with value f(c, t, y, x).
struct TinyClip {
  int frames, size;
  std::vector<float> v;
  TinyClip(int t, int s, const std::function<float(int, int, int, int)>& f)
      : frames(t), size(s), v(3 * t * s * s) {
    for (int c = 0; c < 3; ++c) {
      for (int tt = 0; tt < t; ++tt) {
        for (int y = 0; y < s; ++y) {
          for (int x = 0; x < s; ++x) at(c, tt, y, x) = f(c, tt, y, x);
        }
      }
    }
  }
  float& at(int c, int t, int y, int x) { return v[((c * frames + t) * size + y) * size + x]; }
  void Apply(RandAugmentOp op, float magnitude, bool negate = false) {
    ApplyRandAugmentOp({op, magnitude, negate}, frames, size, v.data());
  }
};

// Distinct values per pixel: (1 + y * S + x) / 100 on channel 0, shifted per
// channel and frame.
float Ramp(int c, int t, int y, int x, int s) {
  return (1 + y * s + x) / 100.0f + 0.2f * c + 0.01f * t;
}

TEST(RandAugment, IdentityAndBrightness) {
  TinyClip clip(2, 4, [](int c, int t, int y, int x) { return Ramp(c, t, y, x, 4); });
  const std::vector<float> before = clip.v;
  clip.Apply(RandAugmentOp::kIdentity, 9);
  EXPECT_EQ(clip.v, before);
  clip.Apply(RandAugmentOp::kBrightness, 10);  // f = 0.95
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(clip.v[i], 0.95f * before[i], 1e-6);
}

TEST(RandAugment, AutoContrastUsesTheWholeClip) {
  // Channel 0: frame 0 in [0.2, 0.35], frame 1 in [0.4, 0.6]: one mapping
  // (x - 0.2) / 0.4 for both frames. Channel 1 is flat: unchanged.
  TinyClip clip(2, 4, [](int c, int t, int y, int x) {
    if (c == 1) return 0.3f;
    if (t == 0) return 0.2f + 0.01f * (y * 4 + x);
    return (y == 0 && x == 0) ? 0.6f : 0.4f;
  });
  clip.Apply(RandAugmentOp::kAutoContrast, 0);
  EXPECT_NEAR(clip.at(0, 0, 0, 0), 0.0f, 1e-6);
  EXPECT_NEAR(clip.at(0, 0, 3, 3), 0.15f / 0.4f, 1e-6);
  EXPECT_NEAR(clip.at(0, 1, 0, 0), 1.0f, 1e-6);
  EXPECT_NEAR(clip.at(0, 1, 2, 2), 0.5f, 1e-6);
  EXPECT_EQ(clip.at(1, 1, 2, 2), 0.3f);
  // Channel 2 holds the same values as channel 0.
  EXPECT_NEAR(clip.at(2, 1, 0, 0), 1.0f, 1e-6);
}

TEST(RandAugment, EqualizeFollowsPilOnTheClipHistogram) {
  // 2 frames of 16x16 = 512 values per channel on the 8-bit grid:
  // 100 x 10, 155 x 50, 257 x 90. PIL: step = (512 - 257) // 255 = 1,
  // lut[v] = (step // 2 + values below v) // step: 10 -> 0, 50 -> 100,
  // 90 -> 255.
  TinyClip clip(2, 16, [](int, int t, int y, int x) {
    const int i = y * 16 + x;
    if (t == 1 || i == 255) return 90 / 255.0f;
    return (i < 100 ? 10 : 50) / 255.0f;
  });
  clip.Apply(RandAugmentOp::kEqualize, 0);
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(clip.at(c, 0, 0, 0), 0.0f, 1e-6);
    EXPECT_NEAR(clip.at(c, 0, 10, 0), 100 / 255.0f, 1e-6);
    EXPECT_NEAR(clip.at(c, 0, 15, 15), 1.0f, 1e-6);
    EXPECT_NEAR(clip.at(c, 1, 7, 3), 1.0f, 1e-6);
  }
  // Fewer than 256 values: PIL's step is 0 and the image is unchanged.
  TinyClip tiny(2, 4, [](int c, int t, int y, int x) { return Ramp(c, t, y, x, 4); });
  const std::vector<float> before = tiny.v;
  tiny.Apply(RandAugmentOp::kEqualize, 5);
  EXPECT_EQ(tiny.v, before);
}

TEST(RandAugment, SolarizeColorPosterizeContrast) {
  // Solarize at m = 5: threshold 0.5, values above it inverted.
  const std::vector<float> values = {0.2f, 0.5f, 0.7f, 1.0f};
  TinyClip s(1, 2, [&](int, int, int y, int x) { return values[y * 2 + x]; });
  s.Apply(RandAugmentOp::kSolarize, 5);
  EXPECT_NEAR(s.at(0, 0, 0, 0), 0.2f, 1e-6);
  EXPECT_NEAR(s.at(0, 0, 0, 1), 0.5f, 1e-6);
  EXPECT_NEAR(s.at(1, 0, 1, 0), 0.3f, 1e-6);
  EXPECT_NEAR(s.at(2, 0, 1, 1), 0.0f, 1e-6);
  // m = 0 changes nothing.
  TinyClip s0(1, 2, [](int, int, int, int) { return 1.0f; });
  s0.Apply(RandAugmentOp::kSolarize, 0);
  EXPECT_EQ(s0.at(0, 0, 0, 0), 1.0f);

  // Color at m = 5 (f = 0.5) on pure red: grey 0.299; r = 0.299 + 0.5 *
  // 0.701, g = b = 0.1495.
  TinyClip red(2, 2, [](int c, int, int, int) { return c == 0 ? 1.0f : 0.0f; });
  red.Apply(RandAugmentOp::kColor, 5);
  EXPECT_NEAR(red.at(0, 1, 1, 1), 0.6495f, 1e-6);
  EXPECT_NEAR(red.at(1, 0, 0, 0), 0.1495f, 1e-6);
  EXPECT_NEAR(red.at(2, 1, 0, 1), 0.1495f, 1e-6);

  // Posterize keeps 4 + floor(0.4 m) bits: m = 0 4 bits (200 -> 192,
  // 15 -> 0), m = 3 5 bits (15 -> 8), m = 5 6 bits (203 -> 200), m = 9.9 7
  // bits (203 -> 202), m = 10 all 8.
  for (const auto& [m, in, out] : std::vector<std::tuple<float, int, int>>{
           {0, 200, 192}, {0, 15, 0}, {3, 15, 8}, {5, 203, 200}, {9.9f, 203, 202}, {10, 203, 203}}) {
    TinyClip p(1, 1, [in = in](int, int, int, int) { return in / 255.0f; });
    p.Apply(RandAugmentOp::kPosterize, m);
    EXPECT_NEAR(p.at(1, 0, 0, 0), out / 255.0f, 1e-6) << "m " << m << " in " << in;
  }

  // Contrast at m = 5 (f = 0.5) blends with the clip's mean grey: frame 0
  // grey 0.2, frame 1 grey 0.6, mean 0.4 -> 0.3 and 0.5.
  TinyClip grey(2, 2, [](int, int t, int, int) { return t == 0 ? 0.2f : 0.6f; });
  grey.Apply(RandAugmentOp::kContrast, 5);
  EXPECT_NEAR(grey.at(0, 0, 1, 0), 0.3f, 1e-6);
  EXPECT_NEAR(grey.at(2, 1, 0, 1), 0.5f, 1e-6);
}

TEST(RandAugment, SharpnessBlendsWithPilSmoothInside) {
  // One white pixel at (1, 1) of a black 4x4 frame; m = 0: f = 0.05. SMOOTH
  // gives 5/13 at (1, 1) and 1/13 at its interior neighbours; result
  // blur + f (x - blur). The border is not filtered.
  TinyClip clip(2, 4, [](int, int, int y, int x) { return (y == 1 && x == 1) ? 1.0f : 0.0f; });
  clip.Apply(RandAugmentOp::kSharpness, 0);
  for (int c = 0; c < 3; ++c) {
    for (int t = 0; t < 2; ++t) {
      EXPECT_NEAR(clip.at(c, t, 1, 1), 5.4f / 13, 1e-6);
      EXPECT_NEAR(clip.at(c, t, 1, 2), 0.95f / 13, 1e-6);
      EXPECT_NEAR(clip.at(c, t, 2, 2), 0.95f / 13, 1e-6);
      EXPECT_EQ(clip.at(c, t, 0, 0), 0.0f);
      EXPECT_EQ(clip.at(c, t, 0, 1), 0.0f);
    }
  }
}

// Index of the source pixel of every output pixel: the clip holds y * S + x
// and (-1 stands for filled with 0) values are read back per pixel.
std::vector<int> SourceMap(RandAugmentOp op, float magnitude, bool negate, int size) {
  TinyClip clip(2, size, [size](int, int, int y, int x) { return (1 + y * size + x) / 1000.0f; });
  clip.Apply(op, magnitude, negate);
  std::vector<int> map;
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      for (int c = 1; c < 3; ++c) {
        for (int t = 0; t < 2; ++t) EXPECT_EQ(clip.at(c, t, y, x), clip.at(0, 0, y, x));
      }
      map.push_back(static_cast<int>(std::lround(clip.at(0, 0, y, x) * 1000)) - 1);
    }
  }
  return map;
}

TEST(RandAugment, TranslateMovesByAFractionOfTheSide) {
  // m = 10: 0.3 * 4 = 1.2 pixels; nearest sampling moves the content one
  // pixel right (left when negated), filling with black.
  EXPECT_EQ(SourceMap(RandAugmentOp::kTranslateX, 10, false, 4),
            (std::vector<int>{-1, 0, 1, 2, -1, 4, 5, 6, -1, 8, 9, 10, -1, 12, 13, 14}));
  EXPECT_EQ(SourceMap(RandAugmentOp::kTranslateX, 10, true, 4),
            (std::vector<int>{1, 2, 3, -1, 5, 6, 7, -1, 9, 10, 11, -1, 13, 14, 15, -1}));
  EXPECT_EQ(SourceMap(RandAugmentOp::kTranslateY, 10, false, 4),
            (std::vector<int>{-1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  // m = 5 at side 4: 0.6 pixel; x + 0.5 - 0.6 floors to x - 1: one pixel.
  EXPECT_EQ(SourceMap(RandAugmentOp::kTranslateX, 5, false, 4)[1], 0);
  // m = 2: 0.24 pixel: unchanged.
  EXPECT_EQ(SourceMap(RandAugmentOp::kTranslateX, 2, false, 4)[1], 1);
}

TEST(RandAugment, ShearAboutTheCentre) {
  // Side 8, m = 10: factor 0.3. Output pixel centre offsets oy = y - 3.5;
  // x_in = x + 0.5 + 0.3 oy: rows 0-1 read x - 1, rows 2-5 x, rows 6-7 x + 1.
  const std::vector<int> map = SourceMap(RandAugmentOp::kShearX, 10, false, 8);
  for (int y = 0; y < 8; ++y) {
    const int shift = y < 2 ? -1 : (y < 6 ? 0 : 1);
    for (int x = 0; x < 8; ++x) {
      const int sx = x + shift;
      EXPECT_EQ(map[y * 8 + x], (sx >= 0 && sx < 8) ? y * 8 + sx : -1) << y << "," << x;
    }
  }
  // shear_y negated: y_in = y + 0.5 - 0.3 ox: columns 0-1 read y + 1,
  // columns 6-7 y - 1.
  const std::vector<int> map_y = SourceMap(RandAugmentOp::kShearY, 10, true, 8);
  for (int y = 0; y < 8; ++y) {
    for (int x = 0; x < 8; ++x) {
      const int sy = y + (x < 2 ? 1 : (x < 6 ? 0 : -1));
      EXPECT_EQ(map_y[y * 8 + x], (sy >= 0 && sy < 8) ? sy * 8 + x : -1) << y << "," << x;
    }
  }
}

TEST(RandAugment, RotateCounterClockwiseAboutTheCentre) {
  // 90 degrees (magnitude 30, outside the drawn range, for an exact check):
  // the top-right corner goes to the top-left, as PIL's rotate(90).
  EXPECT_EQ(SourceMap(RandAugmentOp::kRotate, 30, false, 4),
            (std::vector<int>{3, 7, 11, 15, 2, 6, 10, 14, 1, 5, 9, 13, 0, 4, 8, 12}));
  // 30 degrees (m = 10) by hand, output (x, y) from input
  // (cos30 ox - sin30 oy + 2, sin30 ox + cos30 oy + 2), o = centre offsets:
  // (0, 0) <- (1.45, -0.05): outside; (1, 1) <- (1.82, 1.32): itself;
  // (0, 1) <- (0.95, 0.82): (0, 0); (2, 0) <- (3.18, 0.95): (3, 0);
  // (3, 3) <- (2.55, 4.05): outside.
  const std::vector<int> map = SourceMap(RandAugmentOp::kRotate, 10, false, 4);
  EXPECT_EQ(map[0], -1);
  EXPECT_EQ(map[1 * 4 + 1], 5);
  EXPECT_EQ(map[1 * 4 + 0], 0);
  EXPECT_EQ(map[0 * 4 + 2], 3);
  EXPECT_EQ(map[3 * 4 + 3], -1);
  // Negated (clockwise): (0, 0) <- (cos30 ox + sin30 oy + 2,
  // -sin30 ox + cos30 oy + 2) = (-0.05, 1.45): outside.
  EXPECT_EQ(SourceMap(RandAugmentOp::kRotate, 10, true, 4)[0], -1);
  EXPECT_EQ(SourceMap(RandAugmentOp::kRotate, 0, true, 4)[6], 6);
}

TEST(RandAugment, EveryOperationMapsEqualFramesEqually) {
  // A clip whose frames are equal stays so under every operation and
  // magnitude: one mapping for all frames.
  for (int op = 0; op < kNumRandAugmentOps; ++op) {
    for (float m : {0.0f, 3.0f, 9.0f, 10.0f}) {
      for (bool negate : {false, true}) {
        TinyClip clip(3, 16, [](int c, int, int y, int x) {
          return std::fmod(0.37f * (y * 16 + x) + 0.11f * c, 1.0f);
        });
        clip.Apply(static_cast<RandAugmentOp>(op), m, negate);
        for (int c = 0; c < 3; ++c) {
          for (int t = 1; t < 3; ++t) {
            for (int i = 0; i < 256; ++i) {
              ASSERT_EQ(clip.at(c, t, i / 16, i % 16), clip.at(c, 0, i / 16, i % 16))
                  << RandAugmentOpName(static_cast<RandAugmentOp>(op)) << " m " << m;
            }
          }
        }
        for (float x : clip.v) {
          ASSERT_GE(x, 0.0f);
          ASSERT_LE(x, 1.0f);
        }
      }
    }
  }
}

Augmentation Strong(int num_ops, float magnitude, bool cutout) {
  Augmentation a;
  a.set_erase_probability(0);
  a.mutable_randaugment()->set_num_ops(num_ops);
  a.mutable_randaugment()->set_magnitude(magnitude);
  if (cutout) a.mutable_cutout();
  return a;
}

TEST(RandAugment, DrawsAreFixedAndIndependentOfTheOptions) {
  Augmentation plain;
  plain.set_erase_probability(0);
  std::set<int> ops_seen;
  for (uint64_t sample = 0; sample < 200; ++sample) {
    auto draw = [&](const Augmentation& a, uint64_t* position) {
      RngStream rng(5, 1, sample, 0, 0);
      ClipOps ops = DrawClipOps(a, 8, &rng);
      *position = rng.position();
      return ops;
    };
    uint64_t p_plain, p_two, p_three, p_none, p_cut, p_cut_only, p_off;
    const ClipOps none = draw(plain, &p_plain);
    EXPECT_TRUE(none.randaugment.empty());
    EXPECT_TRUE(none.cutout.empty());
    const ClipOps two = draw(Strong(2, 9, false), &p_two);
    const ClipOps three = draw(Strong(3, 9, false), &p_three);
    const ClipOps zero = draw(Strong(0, 9, true), &p_none);
    const ClipOps cut = draw(Strong(2, 9, true), &p_cut);
    Augmentation cutout_only = plain;
    cutout_only.mutable_cutout();
    const ClipOps only = draw(cutout_only, &p_cut_only);
    Augmentation never = Strong(2, 9, true);
    never.mutable_randaugment()->set_op_probability(0);
    never.mutable_cutout()->set_probability(0);
    const ClipOps off = draw(never, &p_off);
    // Unconfigured: no extra draws; configured: one fixed block.
    EXPECT_GT(p_two, p_plain);
    for (uint64_t p : {p_three, p_none, p_cut, p_cut_only, p_off}) EXPECT_EQ(p, p_two);
    ASSERT_EQ(two.randaugment.size(), 2u);
    ASSERT_EQ(three.randaugment.size(), 3u);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(three.randaugment[i].op, two.randaugment[i].op);
      EXPECT_EQ(three.randaugment[i].negate, two.randaugment[i].negate);
      EXPECT_EQ(cut.randaugment[i].op, two.randaugment[i].op);
      EXPECT_EQ(two.randaugment[i].magnitude, 9.0f);
      ops_seen.insert(static_cast<int>(two.randaugment[i].op));
    }
    EXPECT_TRUE(two.cutout.empty());
    EXPECT_TRUE(zero.randaugment.empty());
    ASSERT_EQ(cut.cutout.size(), 1u);
    ASSERT_EQ(only.cutout.size(), 1u);
    ASSERT_EQ(zero.cutout.size(), 1u);
    EXPECT_EQ(zero.cutout[0].y0, cut.cutout[0].y0);
    EXPECT_EQ(only.cutout[0].x0, cut.cutout[0].x0);
    EXPECT_TRUE(off.randaugment.empty());
    EXPECT_TRUE(off.cutout.empty());
    // Half the side of 8, clipped to the crop, holding the drawn centre.
    const EraseBox& b = cut.cutout[0];
    EXPECT_GE(b.height, 2);
    EXPECT_LE(b.height, 4);
    EXPECT_GE(b.width, 2);
    EXPECT_LE(b.width, 4);
    EXPECT_GE(b.y0, 0);
    EXPECT_LE(b.y0 + b.height, 8);
    EXPECT_LE(b.x0 + b.width, 8);
    if (b.y0 > 0 && b.y0 + b.height < 8) EXPECT_EQ(b.height, 4);
  }
  EXPECT_EQ(ops_seen.size(), static_cast<size_t>(kNumRandAugmentOps));
}

TEST(RandAugment, MagnitudeModes) {
  Augmentation mc = Strong(2, 10, false);  // RandAugmentMC(2, 10)
  mc.mutable_randaugment()->set_uniform_magnitude(true);
  Augmentation noisy = Strong(8, 5, false);
  noisy.mutable_randaugment()->set_magnitude_std(3);
  std::set<float> uniform_values;
  double sum = 0;
  int count = 0;
  for (uint64_t sample = 0; sample < 300; ++sample) {
    RngStream a(2, 0, sample, 0, 0), b(2, 0, sample, 0, 0);
    for (const RandAugmentStep& s : DrawClipOps(mc, 8, &a).randaugment) {
      EXPECT_EQ(s.magnitude, std::floor(s.magnitude));
      uniform_values.insert(s.magnitude);
    }
    for (const RandAugmentStep& s : DrawClipOps(noisy, 8, &b).randaugment) {
      EXPECT_GE(s.magnitude, 0.0f);
      EXPECT_LE(s.magnitude, 10.0f);
      sum += s.magnitude;
      ++count;
    }
  }
  EXPECT_EQ(uniform_values, (std::set<float>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_NEAR(sum / count, 5.0, 0.3);
}

TEST(RandAugment, SameStreamSameClip) {
  const Augmentation a = Strong(3, 9, true);
  std::vector<float> out[2];
  for (int run = 0; run < 2; ++run) {
    RngStream rng(7, 3, 11, 0, 0);
    const ClipOps ops = DrawClipOps(a, 16, &rng);
    TinyClip clip(2, 16, [](int c, int t, int y, int x) {
      return std::fmod(0.13f * (y * 16 + x) + 0.3f * c + 0.05f * t, 1.0f);
    });
    ApplyRandAugment(ops.randaugment, 2, 16, clip.v.data());
    ApplyErase(ops.cutout, 2, 16, NormalizedGrey({0.5f, 0.4f, 0.3f}, {0.25f, 0.2f, 0.1f}),
               clip.v.data());
    out[run] = clip.v;
  }
  EXPECT_EQ(out[0], out[1]);
}

TEST(RandAugment, CutoutFillIsNormalizedGrey) {
  const std::array<float, 3> grey = NormalizedGrey({0.5f, 0.4f, 0.3f}, {0.25f, 0.2f, 0.1f});
  EXPECT_NEAR(grey[0], 0.0f, 1e-6);
  EXPECT_NEAR(grey[1], 0.5f, 1e-6);
  EXPECT_NEAR(grey[2], 2.0f, 1e-6);
  TinyClip clip(2, 4, [](int, int, int, int) { return -9.0f; });
  ApplyErase({{1, 2, 2, 1}}, 2, 4, grey, clip.v.data());
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(clip.at(1, t, 1, 2), grey[1]);
    EXPECT_EQ(clip.at(2, t, 2, 2), grey[2]);
    EXPECT_EQ(clip.at(2, t, 2, 1), -9.0f);
    EXPECT_EQ(clip.at(0, t, 3, 2), -9.0f);
  }
}

TEST(RandAugment, ValidationNamesTheFieldAndValue) {
  auto message = [](const Augmentation& a) {
    return std::string(ValidateAugmentation(a, "dataset.augmentation").message());
  };
  EXPECT_TRUE(ValidateAugmentation(Strong(2, 9, true), "x").ok());
  Augmentation a = Strong(9, 9, false);
  EXPECT_EQ(message(a), "config field dataset.augmentation.randaugment.num_ops = 9: "
                        "must be in [0, 8]");
  a = Strong(2, 11, false);
  EXPECT_NE(message(a).find("randaugment.magnitude = 11: must be in [0, 10]"), std::string::npos);
  a = Strong(2, 1.5f, false);
  a.mutable_randaugment()->set_uniform_magnitude(true);
  EXPECT_NE(message(a).find("randaugment.magnitude = 1.5: must be >= 2"), std::string::npos);
  a = Strong(2, 9, false);
  a.mutable_randaugment()->set_magnitude_std(-1);
  EXPECT_NE(message(a).find("randaugment.magnitude_std = -1"), std::string::npos);
  a = Strong(2, 9, false);
  a.mutable_randaugment()->set_op_probability(2);
  EXPECT_NE(message(a).find("randaugment.op_probability = 2: must be in [0, 1]"),
            std::string::npos);
  a = Strong(2, 9, true);
  a.mutable_cutout()->set_min_side(0.6f);
  EXPECT_NE(message(a).find("cutout.min_side = 0.6: must be in [0, cutout.max_side]"),
            std::string::npos);
  a = Strong(2, 9, true);
  a.mutable_cutout()->set_max_side(1.5f);
  EXPECT_NE(message(a).find("cutout.max_side = 1.5: must be <= 1"), std::string::npos);
  a = Strong(2, 9, true);
  a.mutable_cutout()->set_probability(-0.1f);
  EXPECT_NE(message(a).find("cutout.probability = -0.1"), std::string::npos);
}

}  // namespace
}  // namespace tb
