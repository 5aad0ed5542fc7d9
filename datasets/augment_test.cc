#include "datasets/augment.h"

#include <cmath>

#include <gtest/gtest.h>

namespace tb {
namespace {

const std::array<float, 3> kZero{0, 0, 0};
const std::array<float, 3> kUnit{1, 1, 1};

TEST(Augment, FullFrameSameSizeIsIdentityAndLayoutIsCTHW) {
  // 2 frames of 2x2, value = 100*t + 10*y + x (+c) per channel.
  std::vector<uint8_t> rgb(2 * 2 * 2 * 3);
  for (int t = 0; t < 2; ++t)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 2; ++x)
        for (int c = 0; c < 3; ++c) rgb[((t * 2 + y) * 2 + x) * 3 + c] = 100 * t + 10 * y + x + c;
  CropBox box{0, 0, 2, 2, false};
  std::vector<float> out(3 * 2 * 2 * 2);
  CropResizeNormalize(rgb.data(), 2, 2, 2, box, 2, kZero, kUnit, out.data());
  for (int c = 0; c < 3; ++c)
    for (int t = 0; t < 2; ++t)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x)
          EXPECT_NEAR(out[((c * 2 + t) * 2 + y) * 2 + x] * 255.f, 100 * t + 10 * y + x + c, 1e-3);
}

TEST(Augment, BilinearUpsampleMatchesHalfPixelRule) {
  // One frame, 1 row of 2 pixels: 0 and 200, upsampled to width 4 (and height
  // 4 from 1 row). torch.nn.functional.interpolate(bilinear,
  // align_corners=False) gives 0, 50, 150, 200 along x.
  std::vector<uint8_t> rgb = {0, 0, 0, 200, 200, 200};
  CropBox box{0, 0, 1, 2, false};
  std::vector<float> out(3 * 4 * 4);
  CropResizeNormalize(rgb.data(), 1, 1, 2, box, 4, kZero, kUnit, out.data());
  const float expected[4] = {0, 50, 150, 200};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) EXPECT_NEAR(out[y * 4 + x] * 255.f, expected[x], 1e-3);
  box.flip = true;
  CropResizeNormalize(rgb.data(), 1, 1, 2, box, 4, kZero, kUnit, out.data());
  for (int x = 0; x < 4; ++x) EXPECT_NEAR(out[x] * 255.f, expected[3 - x], 1e-3);
}

TEST(Augment, NormalisesPerChannel) {
  std::vector<uint8_t> rgb = {255, 0, 51};
  CropBox box{0, 0, 1, 1, false};
  std::vector<float> out(3);
  CropResizeNormalize(rgb.data(), 1, 1, 1, box, 1, {0.5f, 0.5f, 0.1f}, {0.5f, 0.25f, 0.1f},
                      out.data());
  EXPECT_NEAR(out[0], 1.0f, 1e-5);
  EXPECT_NEAR(out[1], -2.0f, 1e-5);
  EXPECT_NEAR(out[2], 1.0f, 1e-5);
}

TEST(Augment, RandomResizedCropRespectsScaleAndBounds) {
  Augmentation options;
  options.set_min_crop_scale(0.4f);
  options.set_max_crop_scale(1.0f);
  int flips = 0;
  for (int s = 0; s < 2000; ++s) {
    RngStream rng(5, 0, s, 0);
    const CropBox b = RandomResizedCropBox(96, 128, options, &rng);
    ASSERT_GE(b.y0, 0);
    ASSERT_GE(b.x0, 0);
    ASSERT_LE(b.y0 + b.height, 96);
    ASSERT_LE(b.x0 + b.width, 128);
    const double area = static_cast<double>(b.height) * b.width / (96.0 * 128.0);
    EXPECT_GE(area, 0.35);
    EXPECT_LE(area, 1.0);
    flips += b.flip;
  }
  EXPECT_NEAR(flips, 1000, 120);
  // Same stream, same box: augmentation is a pure function of the stream.
  RngStream a(9, 1, 2, 3), b(9, 1, 2, 3);
  const CropBox ba = RandomResizedCropBox(96, 128, options, &a);
  const CropBox bb = RandomResizedCropBox(96, 128, options, &b);
  EXPECT_EQ(std::make_tuple(ba.y0, ba.x0, ba.height, ba.width, ba.flip),
            std::make_tuple(bb.y0, bb.x0, bb.height, bb.width, bb.flip));
}

TEST(Augment, CenterCrop) {
  const CropBox b = CenterCropBox(96, 128, 0.8f);
  EXPECT_EQ(b.height, 77);
  EXPECT_EQ(b.width, 77);
  EXPECT_EQ(b.y0, 9);
  EXPECT_EQ(b.x0, 25);
}

TEST(Augment, ThreeCropsAlongTheLongSide) {
  auto tuple = [](const CropBox& b) { return std::make_tuple(b.y0, b.x0, b.height, b.width); };
  // Landscape 96 x 128, side 77: left, centre, right, centred vertically.
  std::vector<CropBox> b = SpatialCropBoxes(96, 128, 0.8f, 3);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(tuple(b[0]), std::make_tuple(9, 0, 77, 77));
  EXPECT_EQ(tuple(b[1]), std::make_tuple(9, 25, 77, 77));
  EXPECT_EQ(tuple(b[2]), std::make_tuple(9, 51, 77, 77));
  // Portrait 128 x 96, full short side: top, centre, bottom.
  b = SpatialCropBoxes(128, 96, 1.0f, 3);
  EXPECT_EQ(tuple(b[0]), std::make_tuple(0, 0, 96, 96));
  EXPECT_EQ(tuple(b[1]), std::make_tuple(16, 0, 96, 96));
  EXPECT_EQ(tuple(b[2]), std::make_tuple(32, 0, 96, 96));
  b = SpatialCropBoxes(96, 128, 0.8f, 1);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(tuple(b[0]), tuple(CenterCropBox(96, 128, 0.8f)));
}

}  // namespace
}  // namespace tb
