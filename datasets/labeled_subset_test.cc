#include "datasets/labeled_subset.h"

#include <cstdlib>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

namespace tb {
namespace {

std::vector<int> Labels(int classes, int per_class) {
  std::vector<int> labels;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) labels.push_back(c);
  return labels;
}

TEST(LabeledSubset, FractionSizeAndEveryClassPresent) {
  const auto labels = Labels(10, 30);
  auto subset = SelectLabeledSubset(labels, 10, 0.1, 0);
  ASSERT_TRUE(subset.ok());
  EXPECT_EQ(subset->size(), 30u);
  std::set<int> classes;
  for (int64_t i : *subset) classes.insert(labels[i]);
  EXPECT_EQ(classes.size(), 10u);
  // 1% of 300 = 3 videos, but every class needs one.
  EXPECT_EQ(SelectLabeledSubset(labels, 10, 0.01, 0)->size(), 10u);
  EXPECT_EQ(SelectLabeledSubset(labels, 10, 1.0, 0)->size(), 300u);
}

TEST(LabeledSubset, DeterministicPerSeed) {
  const auto labels = Labels(5, 20);
  EXPECT_EQ(*SelectLabeledSubset(labels, 5, 0.2, 3), *SelectLabeledSubset(labels, 5, 0.2, 3));
  EXPECT_NE(*SelectLabeledSubset(labels, 5, 0.2, 3), *SelectLabeledSubset(labels, 5, 0.2, 4));
}

TEST(LabeledSubset, BadInput) {
  EXPECT_FALSE(SelectLabeledSubset({0, 1}, 2, 0.0, 0).ok());
  EXPECT_FALSE(SelectLabeledSubset({0, 5}, 2, 0.5, 0).ok());
}

TEST(LabeledSubset, ListFileAndHash) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/list.txt";
  std::ofstream(path) << "A/a1.avi 1\r\n\nB/b2.avi\n";
  const std::vector<std::string> paths = {"A/a1.avi", "A/a2.avi", "B/b1.avi", "B/b2.avi"};
  auto subset = ReadLabeledList(path, paths);
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_EQ(*subset, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(LabeledSubsetSha256(paths, {0, 3}), LabeledSubsetSha256(paths, {3, 0}));
  EXPECT_NE(LabeledSubsetSha256(paths, {0, 3}), LabeledSubsetSha256(paths, {0, 2}));
  // printf 'A/a1.avi\nB/b2.avi\n' | sha256sum
  EXPECT_EQ(LabeledSubsetSha256(paths, {3, 0}),
            "806e48145302cffb73c9f9ca83c9cb0b4b72cbff7ab03655f9bf8362fb2edbee");
  std::ofstream(path) << "A/a1.avi\nC/c9.avi\n";
  auto bad = ReadLabeledList(path, paths);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("list.txt:2"), std::string::npos);
  EXPECT_NE(bad.status().message().find("C/c9.avi"), std::string::npos);
  // Every stray entry is named, not just the first.
  std::ofstream(path) << "X/x.avi\nA/a1.avi\nC/c9.avi 3\n";
  bad = ReadLabeledList(path, paths);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("2 listed videos"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("list.txt:1 'X/x.avi'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("list.txt:3 'C/c9.avi'"), std::string::npos);
}

}  // namespace
}  // namespace tb
