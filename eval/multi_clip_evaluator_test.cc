#include "eval/multi_clip_evaluator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tb {
namespace {

TEST(AccuracyFromProbabilities, HandComputedTopKPerClassAndConfusion) {
  // 4 videos, 6 classes.
  torch::Tensor p = torch::tensor({{0.5, 0.2, 0.1, 0.1, 0.05, 0.05},     // y=0: top1 hit
                                   {0.3, 0.25, 0.2, 0.15, 0.06, 0.04},   // y=4: rank 5 -> top5 hit
                                   {0.1, 0.6, 0.1, 0.1, 0.05, 0.05},     // y=1: top1 hit
                                   {0.05, 0.4, 0.3, 0.1, 0.1, 0.05}},    // y=5: rank 6 -> miss
                                  torch::kFloat);
  VideoAccuracy a = AccuracyFromProbabilities(p, {0, 4, 1, 5}, 6);
  EXPECT_EQ(a.num_videos, 4);
  EXPECT_DOUBLE_EQ(a.top1, 0.5);
  EXPECT_DOUBLE_EQ(a.top5, 0.75);
  EXPECT_DOUBLE_EQ(a.per_class_top1[0], 1.0);
  EXPECT_DOUBLE_EQ(a.per_class_top1[4], 0.0);
  EXPECT_DOUBLE_EQ(a.per_class_top1[2], -1.0);  // no videos of class 2
  EXPECT_EQ(a.per_class_count[5], 1);
  EXPECT_EQ(a.confusion[4][0], 1);
  EXPECT_EQ(a.confusion[5][1], 1);
  const std::string json = VideoAccuracyToJson(a, {"a", "b", "c", "d", "e", "f"});
  EXPECT_NE(json.find("\"top1\": 0.500000"), std::string::npos) << json;
  EXPECT_NE(json.find("\"e\": {\"top1\": 0.000000, \"videos\": 1}"), std::string::npos) << json;
}

TEST(AccuracyFromProbabilities, FewerThanFiveClasses) {
  torch::Tensor p = torch::tensor({{0.2, 0.8}, {0.9, 0.1}}, torch::kFloat);
  VideoAccuracy a = AccuracyFromProbabilities(p, {0, 0}, 2);
  EXPECT_DOUBLE_EQ(a.top1, 0.5);
  EXPECT_DOUBLE_EQ(a.top5, 1.0);  // top-2 covers all classes
}

}  // namespace
}  // namespace tb
