#include "datasets/formats/split_maker.h"

#include <set>

#include <gtest/gtest.h>


namespace tb {
namespace {

// 3 classes of 50, 30 and 7 videos, interleaved.
std::vector<int> Labels() {
  std::vector<int> labels;
  for (int i = 0; i < 50; ++i) {
    labels.push_back(0);
    if (i < 30) labels.push_back(1);
    if (i < 7) labels.push_back(2);
  }
  return labels;
}

std::vector<int> PerClass(const std::vector<int>& labels, const std::vector<int64_t>& subset) {
  std::vector<int> count(3, 0);
  for (int64_t i : subset) ++count[labels[i]];
  return count;
}

TEST(MakeLabeledSplit, RandomSizeAndDeterminism) {
  const std::vector<int> labels = Labels();  // 87 videos
  auto a = MakeLabeledSplit(labels, 3, 0.1, 5, SplitMode::kRandom);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->size(), 9u);  // round(8.7)
  EXPECT_TRUE(std::is_sorted(a->begin(), a->end()));
  EXPECT_EQ(std::set<int64_t>(a->begin(), a->end()).size(), a->size());
  EXPECT_EQ(*a, *MakeLabeledSplit(labels, 3, 0.1, 5, SplitMode::kRandom));
  EXPECT_NE(*a, *MakeLabeledSplit(labels, 3, 0.1, 6, SplitMode::kRandom));
  EXPECT_EQ(MakeLabeledSplit(labels, 3, 0.001, 5, SplitMode::kRandom)->size(), 1u);
  EXPECT_EQ(MakeLabeledSplit(labels, 3, 1.0, 5, SplitMode::kRandom)->size(), 87u);
  EXPECT_FALSE(MakeLabeledSplit(labels, 3, 0, 5, SplitMode::kRandom).ok());
  EXPECT_FALSE(MakeLabeledSplit(labels, 3, 1.5, 5, SplitMode::kRandom).ok());
}

TEST(MakeLabeledSplit, PerClassIsBalanced) {
  const std::vector<int> labels = Labels();
  auto s = MakeLabeledSplit(labels, 3, 0.2, 1, SplitMode::kPerClass);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(PerClass(labels, *s), (std::vector<int>{10, 6, 1}));  // round(1.4) = 1
  auto tiny = MakeLabeledSplit(labels, 3, 0.01, 1, SplitMode::kPerClass);
  EXPECT_EQ(PerClass(labels, *tiny), (std::vector<int>{1, 1, 1}));  // at least one each
  EXPECT_EQ(*s, *MakeLabeledSplit(labels, 3, 0.2, 1, SplitMode::kPerClass));
  EXPECT_NE(*s, *MakeLabeledSplit(labels, 3, 0.2, 2, SplitMode::kPerClass));
  EXPECT_FALSE(ParseSplitMode("balanced").ok());
}

}  // namespace
}  // namespace tb
