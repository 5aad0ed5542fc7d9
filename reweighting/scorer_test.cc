#include "reweighting/scorer.h"

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
  // Missing features are an error naming the teacher.
  auto missing = Rule("temporal_similarity {}")->Weights(TeacherFeatures{inv, {}}, 3);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("distinctive"), std::string::npos);
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
