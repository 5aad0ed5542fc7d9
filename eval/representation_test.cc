#include "eval/representation.h"

#include "datasets/clip_ops.h"

#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/inference_model.h"
#include "core/testing/batch_norm_stats.h"
#include "core/testing/test_util.h"
#include "eval/multi_clip_evaluator.h"
#include "datasets/synthetic/synth_actions.h"
#include "datasets/ucf101.h"

namespace tb {
namespace {

TEST(Representation, KnnByHand) {
  // Train: class 0 along x, class 1 along y. Test (1, 0.2) is nearer x; with
  // k = 3 the single class-0 neighbour outweighs two distant class-1 ones at
  // a low temperature.
  const torch::Tensor train = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {0.1f, 1.0f}});
  const torch::Tensor test = torch::tensor({{1.0f, 0.2f}, {0.2f, 1.0f}});
  ClassAccuracy acc = KnnClassify(train, {0, 1, 1}, test, {0, 1}, 2, 3, 0.07);
  EXPECT_DOUBLE_EQ(acc.top1, 1.0);
  // At a very high temperature votes are counts: 2 class-1 neighbours win.
  acc = KnnClassify(train, {0, 1, 1}, test, {0, 1}, 2, 3, 1e6);
  EXPECT_DOUBLE_EQ(acc.top1, 0.5);
  EXPECT_DOUBLE_EQ(acc.per_class[0], 0.0);
  EXPECT_DOUBLE_EQ(acc.per_class[1], 1.0);
}

// Sequential "classes" made of the same two clips in opposite orders: the
// clip mean is identical for both, the ordered features separate them.
TEST(Representation, OrderedKnnSeparatesOrderMeanKnnCannot) {
  const torch::Tensor a = torch::tensor({1.0f, 0.0f}), b = torch::tensor({0.0f, 2.0f});
  const torch::Tensor train = torch::stack({torch::stack({a, b}), torch::stack({b, a})});
  const torch::Tensor test =
      torch::stack({torch::stack({a * 3, b + 0.1}), torch::stack({b, a + 0.1})});
  const torch::Tensor ordered = OrderedVideoFeatures(train);
  ASSERT_EQ(ordered.sizes(), (std::vector<int64_t>{2, 4}));
  // Each clip normalised, concatenated in order: (1, 0, 0, 1) and (0, 1, 1, 0).
  EXPECT_TRUE(torch::allclose(ordered, torch::tensor({{1.0f, 0.0f, 0.0f, 1.0f},
                                                      {0.0f, 1.0f, 1.0f, 0.0f}})));
  EXPECT_DOUBLE_EQ(
      KnnClassify(OrderedVideoFeatures(train), {0, 1}, OrderedVideoFeatures(test), {0, 1}, 2, 1,
                  0.07)
          .top1,
      1.0);
  // The means of the two training videos coincide: no order information.
  EXPECT_TRUE(torch::allclose(train[0].mean(0), train[1].mean(0)));
}

TEST(Representation, RetrievalRecallByHand) {
  // 2 train videos x 1 clip; 2 test videos x 2 clips.
  const torch::Tensor train = torch::tensor({{{1.0f, 0.0f}}, {{0.0f, 1.0f}}});
  const torch::Tensor test =
      torch::tensor({{{1.0f, 0.1f}, {0.1f, 1.0f}}, {{0.0f, 1.0f}, {0.2f, 1.0f}}});
  const auto recall = ClipRetrievalRecall(train, {0, 1}, test, {0, 1}, {1, 2});
  // Query clips: (video 0: nearest train 0 ok, nearest train 1 wrong),
  // (video 1: both nearest train 1, ok) -> R@1 = 3/4; R@2 covers all = 1.
  EXPECT_DOUBLE_EQ(recall.at(1), 0.75);
  EXPECT_DOUBLE_EQ(recall.at(2), 1.0);
}

TEST(Representation, TemporalSimilarityByHand) {
  // Video 0: three identical clips -> 1. Video 1: clips e1, e2, -e1 ->
  // off-diagonal cosines 0, -1, 0 (each twice) -> -1/3.
  const torch::Tensor f = torch::tensor({{{1.0f, 0.0f}, {2.0f, 0.0f}, {3.0f, 0.0f}},
                                         {{1.0f, 0.0f}, {0.0f, 1.0f}, {-1.0f, 0.0f}}});
  const torch::Tensor s = VideoTemporalSimilarity(f);
  EXPECT_NEAR(s[0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(s[1].item<float>(), -1.0f / 3, 1e-6);
}

// Two videos of two clips each around a large shared offset c = (10, 10):
// raw cosines are all ~0.995, centring reveals the structure.
TEST(Representation, CenteredAndCrossVideoSimilarityByHand) {
  const torch::Tensor c = torch::tensor({10.0f, 10.0f});
  // Video 0's clips differ along x, video 1's along y: each video's two clips
  // point in opposite directions once the mean (= c) is removed.
  const torch::Tensor f = torch::stack({torch::stack({c + torch::tensor({1.0f, 0.0f}),
                                                      c + torch::tensor({-1.0f, 0.0f})}),
                                        torch::stack({c + torch::tensor({0.0f, 1.0f}),
                                                      c + torch::tensor({0.0f, -1.0f})})});
  const double cos_11_10_9_10 = 199.0 / std::sqrt(221.0 * 181.0);
  const torch::Tensor raw = VideoTemporalSimilarity(f);
  EXPECT_NEAR(raw[0].item<float>(), cos_11_10_9_10, 1e-6);
  EXPECT_NEAR(raw[1].item<float>(), cos_11_10_9_10, 1e-6);
  const torch::Tensor centered = VideoTemporalSimilarity(CenterFeatures(f));
  EXPECT_NEAR(centered[0].item<float>(), -1.0f, 1e-6);
  EXPECT_NEAR(centered[1].item<float>(), -1.0f, 1e-6);
  // Cross-video pairs: (11,10)-(10,11), (11,10)-(10,9), (9,10)-(10,11),
  // (9,10)-(10,9); cos = 220/221, 200/sqrt(221*181), 200/sqrt(181*221),
  // 180/181.
  const double expected =
      (220.0 / 221 + 2 * 200.0 / std::sqrt(221.0 * 181.0) + 180.0 / 181) / 4;
  EXPECT_NEAR(CrossVideoSimilarity(f), expected, 1e-6);
  // Centred: orthogonal directions between the videos -> 0.
  EXPECT_NEAR(CrossVideoSimilarity(CenterFeatures(f)), 0.0, 1e-6);
  // Two videos whose clips agree: centred similarity 1, centred cross -1.
  const torch::Tensor g =
      torch::stack({torch::stack({c + torch::tensor({1.0f, 0.0f}), c + torch::tensor({1.0f, 0.0f})}),
                    torch::stack({c - torch::tensor({1.0f, 0.0f}), c - torch::tensor({1.0f, 0.0f})})});
  const torch::Tensor g_centered = VideoTemporalSimilarity(CenterFeatures(g));
  EXPECT_NEAR(g_centered[0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(g_centered[1].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(CrossVideoSimilarity(CenterFeatures(g)), -1.0, 1e-6);
}

TEST(Representation, LinearProbeSeparatesSeparableFeatures) {
  torch::manual_seed(0);
  const int per_class = 10, classes = 3, clips = 2, d = 8;
  const torch::Tensor centres = torch::randn({classes, d}) * 3;
  auto make = [&](int n) {
    std::vector<int> labels;
    std::vector<torch::Tensor> rows;
    for (int c = 0; c < classes; ++c) {
      for (int i = 0; i < n; ++i) {
        rows.push_back(centres[c].expand({clips, d}) + 0.3 * torch::randn({clips, d}));
        labels.push_back(c);
      }
    }
    return std::make_pair(torch::stack(rows), labels);
  };
  const auto [train, train_labels] = make(per_class);
  const auto [test, test_labels] = make(4);
  RepresentationEvalConfig config;
  const ClassAccuracy acc = LinearProbe(train, train_labels, test, test_labels, classes, config);
  EXPECT_DOUBLE_EQ(acc.top1, 1.0);
  // The same inputs give the same probe (seeded initialisation).
  const ClassAccuracy again =
      LinearProbe(train, train_labels, test, test_labels, classes, config);
  EXPECT_EQ(acc.per_class, again.per_class);
}

// 4 frames, short side 40, 24x24 crops.
DatasetConfig TinyClips() {
  DatasetConfig d;
  ResolveDatasetDefaults(&d);
  d.mutable_clip()->set_num_frames(4);
  d.mutable_clip()->set_decode_short_side(40);
  d.mutable_clip()->set_crop_size(24);
  return d;
}

TEST(Representation, EndToEndOnTinySynthActions) {
  ASSERT_TRUE(WriteSynthActions(testing::TmpPath("synth_rep"), SmokeTestOptions(2, 3, 2, 0), 2)
                  .ok());
  auto split = ReadUcf101Split(testing::TmpPath("synth_rep"), "", 1, true);
  ASSERT_TRUE(split.ok());
  std::vector<LabeledVideo> train, test;
  for (const auto& v : split->train) train.push_back({v.path, v.label});
  for (const auto& v : split->test) test.push_back({v.path, v.label});
  const DatasetConfig d = TinyClips();
  BackboneConfig b;
  b.mutable_r3d18()->set_width_multiplier(0.0625f);
  b.set_num_classes(2);
  auto model = CreateBackbone(b);
  ASSERT_TRUE(model.ok());
  RepresentationEvalConfig config;
  config.set_num_clips(3);
  config.set_knn_k(3);
  config.set_probe_steps(20);
  auto features = ExtractClipFeatures(**model, train, d, config, torch::kCPU, Precision::kFp32);
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_EQ(features->sizes(), (std::vector<int64_t>{6, 3, (*model)->feature_dim()}));
  // Extraction is deterministic.
  auto again = ExtractClipFeatures(**model, train, d, config, torch::kCPU, Precision::kFp32);
  EXPECT_TRUE(torch::equal(*features, *again));
  auto report = EvaluateRepresentation(**model, train, test, 2, d, config, torch::kCPU,
                                       Precision::kFp32);
  ASSERT_TRUE(report.ok()) << report.status();
  // Overall accuracies are the per-class ones weighted by test videos.
  for (const ClassAccuracy* acc : {&report->knn, &report->knn_ordered}) {
    ASSERT_EQ(acc->per_class.size(), 2u);
    double correct = 0, videos = 0;
    for (size_t c = 0; c < 2; ++c) {
      correct += acc->per_class[c] * acc->per_class_count[c];
      videos += acc->per_class_count[c];
    }
    EXPECT_EQ(videos, static_cast<double>(test.size()));
    EXPECT_NEAR(acc->top1, correct / videos, 1e-9);
  }
  // Recall@k cannot decrease with k.
  double previous = 0;
  for (const auto& [k, recall] : report->retrieval) {
    EXPECT_GE(recall, previous) << "R@" << k;
    previous = recall;
  }
  EXPECT_LE(report->temporal_similarity, 1.0 + 1e-6);
  EXPECT_LE(report->centered_temporal_similarity, 1.0 + 1e-6);
  EXPECT_GE(report->centered_temporal_similarity, -1.0 - 1e-6);
  EXPECT_EQ(report->centered_temporal_similarity_per_class.size(), 2u);
  EXPECT_LE(report->cross_video_similarity, 1.0 + 1e-6);
  const RepresentationRecord record = RepresentationReportToRecord(*report, split->class_names);
  EXPECT_EQ(record.knn_top1(), report->knn.top1);
  EXPECT_EQ(record.knn_ordered_top1(), report->knn_ordered.top1);
  EXPECT_EQ(record.retrieval_size(), static_cast<int>(report->retrieval.size()));
  ASSERT_EQ(record.per_class_size(), 2);
  EXPECT_EQ(record.per_class(1).class_name(), split->class_names[1]);
  EXPECT_EQ(record.per_class(1).centered_temporal_similarity(),
            report->centered_temporal_similarity_per_class[1]);
}

// Evaluation runs the trained model as a folded InferenceModel by default
// (evaluation.fold_batch_norm): the features and the multi-clip accuracy
// must be those of the eval-mode model, up to fp32 rounding.
TEST(Representation, FoldedInferenceModelMatchesTheEvalModeModel) {
  const absl::Status written =
      WriteSynthActions(testing::TmpPath("synth_fold"), SmokeTestOptions(4, 2, 1, 0), 2);
  ASSERT_TRUE(written.ok()) << written;
  auto split = ReadUcf101Split(testing::TmpPath("synth_fold"), "", 1, true);
  ASSERT_TRUE(split.ok());
  std::vector<LabeledVideo> train;
  for (const auto& v : split->train) train.push_back({v.path, v.label});
  const DatasetConfig d = TinyClips();
  BackboneConfig b;
  b.mutable_r3d18()->set_width_multiplier(0.125f);
  b.set_num_classes(4);
  torch::manual_seed(3);
  auto model = CreateBackbone(b);
  ASSERT_TRUE(model.ok());
  testing::RandomizeBatchNormStatistics(**model);
  auto folded = InferenceModel::Create(b, **model);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_EQ(folded->fold_report().batch_norms_after, 0) << folded->fold_report().ToString();

  RepresentationEvalConfig config;
  config.set_num_clips(3);
  auto reference = ExtractClipFeatures(**model, train, d, config, torch::kCPU, Precision::kFp32);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto features = ExtractClipFeatures(*folded, train, d, config);
  ASSERT_TRUE(features.ok()) << features.status();
  ASSERT_EQ(features->sizes(), reference->sizes());
  EXPECT_LT(((*features - *reference).abs().max() / reference->abs().max()).item<double>(),
            1e-5);

  EvaluationConfig evaluation;
  evaluation.set_num_clips(3);
  auto expected = EvaluateMultiClip(**model, train, 4, d, evaluation, torch::kCPU);
  ASSERT_TRUE(expected.ok()) << expected.status();
  auto actual = EvaluateMultiClip(*folded, train, 4, d, evaluation);
  ASSERT_TRUE(actual.ok()) << actual.status();
  EXPECT_EQ(actual->confusion, expected->confusion);
  EXPECT_EQ(actual->top5, expected->top5);
}

}  // namespace
}  // namespace tb
