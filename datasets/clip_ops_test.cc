#include "datasets/clip_ops.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

namespace tb {
namespace {

// A 1-frame 2x2 clip, [3, 1, 2, 2]: pixel i has RGB (r[i], g[i], b[i]).
std::vector<float> Clip(std::vector<float> r, std::vector<float> g, std::vector<float> b) {
  std::vector<float> out = r;
  out.insert(out.end(), g.begin(), g.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST(ClipOps, BrightnessContrastSaturationByHand) {
  std::vector<float> clip = Clip({0.2f, 0.4f, 0.6f, 0.8f}, {0.2f, 0.4f, 0.6f, 0.8f},
                                 {0.2f, 0.4f, 0.6f, 0.8f});
  ClipOps ops;
  ops.brightness = 1.5f;  // 0.2 0.4 0.6 0.8 -> 0.3 0.6 0.9 1.0 (clamped)
  ApplyColorOps(ops, 1, 2, clip.data());
  EXPECT_NEAR(clip[0], 0.3f, 1e-6);
  EXPECT_NEAR(clip[2], 0.9f, 1e-6);
  EXPECT_NEAR(clip[3], 1.0f, 1e-6);
  ops = ClipOps();
  ops.contrast = 0.5f;  // grey pixels: mean grey = (0.3+0.6+0.9+1.0)/4 = 0.7
  ApplyColorOps(ops, 1, 2, clip.data());
  EXPECT_NEAR(clip[0], 0.5f * 0.3f + 0.5f * 0.7f, 1e-6);
  EXPECT_NEAR(clip[3], 0.5f * 1.0f + 0.5f * 0.7f, 1e-6);

  std::vector<float> red = Clip({1, 1, 1, 1}, {0, 0, 0, 0}, {0, 0, 0, 0});
  ops = ClipOps();
  ops.saturation = 0.0f;  // fully grey: 0.299
  ApplyColorOps(ops, 1, 2, red.data());
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(red[c * 4], 0.299f, 1e-6);
}

TEST(ClipOps, HueRotationMovesPrimaries) {
  // A third of a turn maps red to green, green to blue.
  float r = 1, g = 0, b = 0;
  ShiftHue(1.0f / 3, &r, &g, &b);
  EXPECT_NEAR(r, 0, 1e-5);
  EXPECT_NEAR(g, 1, 1e-5);
  EXPECT_NEAR(b, 0, 1e-5);
  ShiftHue(1.0f / 3, &r, &g, &b);
  EXPECT_NEAR(b, 1, 1e-5);
  // (0.8, 0.4, 0.2): h = 1/18 turn, s = 0.75, v = 0.8; shifting by -1/18
  // gives hue 0: (0.8, 0.2, 0.2).
  r = 0.8f, g = 0.4f, b = 0.2f;
  ShiftHue(-1.0f / 18, &r, &g, &b);
  EXPECT_NEAR(r, 0.8f, 1e-5);
  EXPECT_NEAR(g, 0.2f, 1e-5);
  EXPECT_NEAR(b, 0.2f, 1e-5);
  // Grey has no hue.
  r = g = b = 0.5f;
  ShiftHue(0.25f, &r, &g, &b);
  EXPECT_EQ(r, 0.5f);
  EXPECT_EQ(b, 0.5f);
}

TEST(ClipOps, GrayscaleChannelDropGammaEraseNormalize) {
  std::vector<float> clip = Clip({1, 0, 0, 0.25f}, {0, 1, 0, 0.25f}, {0, 0, 1, 0.25f});
  ClipOps ops;
  ops.gamma = 2.0f;
  ops.grayscale = true;
  ops.drop_channel = 1;
  ApplyColorOps(ops, 1, 2, clip.data());
  // gamma first (0.25 -> 0.0625), then grey, then channel 1 zeroed.
  EXPECT_NEAR(clip[0], 0.299f, 1e-6);
  EXPECT_NEAR(clip[1], 0.587f, 1e-6);
  EXPECT_NEAR(clip[3], 0.0625f, 1e-6);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(clip[i], 0.0f);
  EXPECT_NEAR(clip[8 + 2], 0.114f, 1e-6);

  NormalizeClip({0.5f, 0.5f, 0.5f}, {0.5f, 0.25f, 1.0f}, 1, 2, clip.data());
  EXPECT_NEAR(clip[0], (0.299f - 0.5f) / 0.5f, 1e-6);
  EXPECT_NEAR(clip[4], -2.0f, 1e-6);

  ApplyErase({{1, 0, 1, 2}}, 1, 2, 7.0f, clip.data());  // bottom row of every channel
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(clip[c * 4 + 2], 7.0f);
    EXPECT_EQ(clip[c * 4 + 3], 7.0f);
    EXPECT_NE(clip[c * 4 + 0], 7.0f);
  }
}

TEST(ClipOps, DrawsRespectProbabilitiesAndRanges) {
  Augmentation off;
  off.set_erase_probability(0);
  Augmentation on = SslReferenceAugmentation();
  for (auto* f : {on.mutable_brightness(), on.mutable_contrast(), on.mutable_saturation()}) {
    f->set_probability(1);
  }
  on.set_hue_probability(1);
  on.set_grayscale_probability(1);
  on.set_channel_drop_probability(1);
  on.set_erase_probability(1);
  for (uint64_t sample = 0; sample < 50; ++sample) {
    RngStream a(1, 0, sample, 0, 0), b(1, 0, sample, 0, 0);
    const ClipOps none = DrawClipOps(off, 32, &a);
    const ClipOps all = DrawClipOps(on, 32, &b);
    // The same number of draws whatever the probabilities.
    EXPECT_EQ(a.position(), b.position());
    EXPECT_EQ(none.brightness, 1.0f);
    EXPECT_EQ(none.hue_shift, 0.0f);
    EXPECT_FALSE(none.grayscale);
    EXPECT_EQ(none.drop_channel, -1);
    EXPECT_TRUE(none.erase.empty());
    EXPECT_GE(all.brightness, 0.75f);
    EXPECT_LE(all.brightness, 1.25f);
    EXPECT_LE(std::abs(all.hue_shift), 0.1f);
    EXPECT_TRUE(all.grayscale);
    EXPECT_GE(all.drop_channel, 0);
    ASSERT_EQ(all.erase.size(), 1u);
    const EraseBox& e = all.erase[0];
    EXPECT_GE(e.height, 32 / 6);
    EXPECT_LT(e.height, 32 / 3 + 1);
    EXPECT_LE(e.y0 + e.height, 32);
    EXPECT_LE(e.x0 + e.width, 32);
  }
}

TEST(ClipOps, ValidationNamesTheField) {
  Augmentation a;
  a.mutable_contrast()->set_probability(1.5f);
  const absl::Status s = ValidateAugmentation(a, "sampler.tclr.augmentation");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sampler.tclr.augmentation.contrast.probability = 1.5"),
            std::string::npos)
      << s.message();
  EXPECT_TRUE(ValidateAugmentation(SslReferenceAugmentation(), "x").ok());
}

}  // namespace
}  // namespace tb
