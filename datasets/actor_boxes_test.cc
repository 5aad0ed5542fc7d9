// The actor box file (parse, errors) and the mask of a clip by
// hand: boxes under the crop and flip, frames without boxes, clips without
// any box.
#include "datasets/actor_boxes.h"

#include <fstream>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"

namespace tb {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = testing::TmpPath(name);
  std::ofstream(path) << text;
  return path;
}

TEST(ActorBoxes, ParsesAndKeepsConfidentBoxes) {
  const std::string path = Write("a.actors",
                                 "# comment\n\n0 0.1 0.2 0.5 0.6 0.9\n0 0 0 1 1 0.3\n"
                                 "3 0.25 0.25 0.75 0.75 1\n");
  auto boxes = ReadActorBoxes(path, 0.4f);
  ASSERT_TRUE(boxes.ok()) << boxes.status();
  ASSERT_EQ(boxes->size(), 2u);
  ASSERT_EQ(boxes->at(0).size(), 1u);  // the 0.3 box is below the threshold
  EXPECT_FLOAT_EQ(boxes->at(0)[0].x1, 0.5f);
  EXPECT_FLOAT_EQ(boxes->at(3)[0].y0, 0.25f);
  auto all = ReadActorBoxes(path, 0.0f);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->at(0).size(), 2u);
}

TEST(ActorBoxes, ErrorsNameTheFileAndLine) {
  auto missing = ReadActorBoxes(testing::TmpPath("none.actors"), 0.4f);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("none.actors is missing"), std::string::npos);
  const std::string path = Write("bad.actors", "0 0.1 0.2 0.5 0.6 1\n1 0.5 0.2 0.4 0.6 1\n");
  auto bad = ReadActorBoxes(path, 0.4f);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("bad.actors line 2"), std::string::npos) << bad.status();
  auto extra = ReadActorBoxes(Write("extra.actors", "0 0.1 0.2 0.5 0.6 1 7\n"), 0.4f);
  EXPECT_FALSE(extra.ok());
}

TEST(ActorBoxes, MaskFollowsTheCropAndFlip) {
  // A 10 x 20 frame (height x width), the crop its right half (x 10..20),
  // 5 x 5 output: cell centres at x = 11, 13, ..., 19 (u = 0.55 .. 0.95) and
  // y = 1, 3, ..., 9 (v = 0.1 .. 0.9). The box u in [0.5, 0.7), v in
  // [0.2, 0.6) covers columns 0, 1 and rows 1, 2.
  ActorBoxes boxes;
  boxes[4] = {{0.5f, 0.2f, 0.7f, 0.6f, 1}};
  CropBox crop;
  crop.y0 = 0;
  crop.x0 = 10;
  crop.height = 10;
  crop.width = 10;
  std::vector<float> mask(2 * 25, -1);
  RenderActorMask(boxes, {4, 5}, 10, 20, crop, 5, mask.data());
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) {
      const bool inside = (i == 1 || i == 2) && (j == 0 || j == 1);
      EXPECT_EQ(mask[i * 5 + j], inside ? 1.0f : 0.0f) << i << "," << j;
      EXPECT_EQ(mask[25 + i * 5 + j], 0.0f);  // frame 5 has no box
    }
  }
  crop.flip = true;  // output column j shows source column 4 - j
  RenderActorMask(boxes, {4}, 10, 20, crop, 5, mask.data());
  for (int j = 0; j < 5; ++j) EXPECT_EQ(mask[1 * 5 + j], (j == 3 || j == 4) ? 1.0f : 0.0f) << j;
  // No box in any frame of the clip: all actor.
  RenderActorMask(boxes, {0, 1}, 10, 20, crop, 5, mask.data());
  for (float m : mask) EXPECT_EQ(m, 1.0f);
}

}  // namespace
}  // namespace tb
