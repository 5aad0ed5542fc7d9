#include "reweighting/scorer.h"

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/test_util.h"
#include "google/protobuf/text_format.h"

namespace tb {
namespace {

TEST(Scorer, ConstantFeaturesGiveOneOrthogonalGiveZero) {
  // Video 0: the same feature at every time (scaled) -> 1.
  // Video 1: orthogonal features -> 0.
  // Video 2: e1, e1, e2, e2 -> 4 of the 12 ordered off-diagonal pairs are
  //          equal (cosine 1), the rest orthogonal -> 1/3.
  torch::Tensor f = torch::zeros({3, 4, 4});
  for (int t = 0; t < 4; ++t) {
    f[0][t][0] = 1.0f + t;
    f[1][t][t] = 1.0f;
  }
  f[2][0][0] = f[2][1][0] = 1.0f;
  f[2][2][1] = f[2][3][1] = 1.0f;
  const torch::Tensor s = MeanOffDiagonalSimilarity(f);
  EXPECT_NEAR(s[0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(s[1].item<float>(), 0.0f, 1e-6);
  // Ordered off-diagonal pairs: 12; equal-feature pairs (0,1),(1,0),(2,3),(3,2) = 4.
  EXPECT_NEAR(s[2].item<float>(), 4.0f / 12, 1e-6);
}

std::unique_ptr<MixingRule> Rule(const std::string& text) {
  ReweightingConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  auto rule = CreateMixingRule(config);
  EXPECT_TRUE(rule.ok()) << rule.status();
  return rule.ok() ? std::move(*rule) : nullptr;
}

TEST(Scorer, TemporalSimilarityAveragesTeachersAndNormalises) {
  // Raw scores: invariant (1, 0, 1/3), distinctive (1, 0, 0) -> mean
  // (1, 0, 1/6) -> min-max (1, 0, 1/6).
  torch::Tensor inv = torch::zeros({3, 4, 4}), dis = torch::zeros({3, 4, 4});
  for (int t = 0; t < 4; ++t) {
    inv[0][t][0] = dis[0][t][0] = 1;
    inv[1][t][t] = dis[1][t][t] = 1;
    dis[2][t][t] = 1;
  }
  inv[2][0][0] = inv[2][1][0] = inv[2][2][1] = inv[2][3][1] = 1;
  TeacherFeatures features{inv, dis};
  auto both = Rule("temporal_similarity {}")->Weights(features, 3);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_NEAR((*both)[0], 1.0f, 1e-6);
  EXPECT_NEAR((*both)[1], 0.0f, 1e-6);
  EXPECT_NEAR((*both)[2], 1.0f / 6, 1e-6);
  auto only_inv = Rule("temporal_similarity { teachers: INVARIANT }")->Weights(features, 3);
  EXPECT_NEAR((*only_inv)[2], 1.0f / 3, 1e-6);
  auto only_dis = Rule("temporal_similarity { teachers: DISTINCTIVE }")->Weights(features, 3);
  EXPECT_NEAR((*only_dis)[2], 0.0f, 1e-6);
  // Without min-max: raw means clipped to [0, 1]; negative similarity -> 0.
  torch::Tensor opposite = torch::zeros({1, 2, 2});
  opposite[0][0][0] = 1;
  opposite[0][1][0] = -1;
  auto clipped = Rule("temporal_similarity { normalization: CLIP teachers: INVARIANT }")
                     ->Weights(TeacherFeatures{opposite, {}}, 1);
  ASSERT_TRUE(clipped.ok());
  EXPECT_EQ((*clipped)[0], 0.0f);
  // RANK: (1, 0, 1/6) -> ranks 2, 0, 1 -> (1, 0, 0.5).
  auto ranked = Rule("temporal_similarity { normalization: RANK }")->Weights(features, 3);
  ASSERT_TRUE(ranked.ok()) << ranked.status();
  EXPECT_EQ(*ranked, (std::vector<float>{1.0f, 0.0f, 0.5f}));
  // Missing features are an error naming the teacher.
  auto missing = Rule("temporal_similarity {}")->Weights(TeacherFeatures{inv, {}}, 3);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("distinctive"), std::string::npos);
}

// RANK by hand: ties share their mean rank, and one
// outlier does not squeeze the others (unlike MIN_MAX).
TEST(Scorer, RankNormalisationTiesAndOutliers) {
  // Videos whose mean off-diagonal cosine is c: clip features (1, 0) and
  // (c, sqrt(1 - c^2)) in 2 clips give cos = c.
  const std::vector<double> raw = {0.96, 0.95, 0.97, 0.96, -0.5};
  torch::Tensor f = torch::zeros({5, 2, 2});
  for (int i = 0; i < 5; ++i) {
    f[i][0][0] = 1;
    f[i][1][0] = raw[i];
    f[i][1][1] = std::sqrt(1 - raw[i] * raw[i]);
  }
  auto rank = Rule("temporal_similarity { normalization: RANK teachers: INVARIANT }")
                  ->Weights(TeacherFeatures{f, {}}, 5);
  ASSERT_TRUE(rank.ok()) << rank.status();
  // Sorted: -0.5 (0), 0.95 (1), 0.96 and 0.96 (ranks 2 and 3 -> 2.5), 0.97 (4); / 4.
  const std::vector<float> expected = {0.625f, 0.25f, 1.0f, 0.625f, 0.0f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR((*rank)[i], expected[i], 1e-6) << i;
  auto minmax = Rule("temporal_similarity { teachers: INVARIANT }")
                    ->Weights(TeacherFeatures{f, {}}, 5);
  ASSERT_TRUE(minmax.ok());
  // The outlier maps the other four into [0.97, 1].
  for (int i = 0; i < 4; ++i) EXPECT_GT((*minmax)[i], 0.97f) << i;
}

TEST(Scorer, ConstantRules) {
  EXPECT_EQ(*Rule("fixed_weight {}")->Weights({}, 2), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_EQ(*Rule("fixed_weight { weight: 0.25 }")->Weights({}, 1), (std::vector<float>{0.25f}));
  EXPECT_EQ(*Rule("invariant_only {}")->Weights({}, 1), (std::vector<float>{1.0f}));
  EXPECT_EQ(*Rule("distinctive_only {}")->Weights({}, 1), (std::vector<float>{0.0f}));
  EXPECT_FALSE(Rule("invariant_only {}")->NeedsFeatures());
  ReweightingConfig bad;
  bad.mutable_fixed_weight()->set_weight(2);
  auto made = CreateMixingRule(bad);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("fixed_weight.weight = 2"), std::string::npos);
}

TEST(Scorer, ScoresFileRoundTripAndErrors) {
  const std::string path = testing::TmpPath("scores.pbtxt");
  ASSERT_TRUE(WriteScores(path, "teachers abc", {"A/v1.avi", "B/v 2.avi"},
                          {0.25f, 0.123456789f})
                  .ok());
  auto read = ReadScores(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->videos_size(), 2);
  EXPECT_EQ(read->provenance(), "teachers abc");
  EXPECT_EQ(read->videos(1).video(), "B/v 2.avi");
  EXPECT_EQ(read->videos(0).weight(), 0.25f);
  // Stored at 6 decimals, exactly what the file reads back.
  EXPECT_EQ(read->videos(1).weight(), 0.123457f);
  EXPECT_EQ(ScoreFileWeight(0.123456789f), 0.123457f);

  std::ofstream(path) << "provenance: \"x\"\nvideos { video: \"A/v1.avi\" weight: 1.5 }\n";
  auto out_of_range = ReadScores(path);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.status().message().find(path + ": videos[0]"), std::string::npos)
      << out_of_range.status();
  std::ofstream(path) << "provenance: \"x\"\nvideos { video: \"A/v1.avi\" wieght: 1 }\n";
  auto misspelt = ReadScores(path);
  ASSERT_FALSE(misspelt.ok());
  EXPECT_NE(misspelt.status().message().find(path + ":2:"), std::string::npos)
      << misspelt.status();
}

}  // namespace
}  // namespace tb
