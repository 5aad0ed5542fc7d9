#include "eval/multi_clip_evaluator.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/test_util.h"
#include "datasets/synthetic/video_writer.h"
#include "datasets/video_clips.h"

namespace tb {
namespace {

// A 16-frame video in three equal bands along its long side, red, green and
// blue (left to right when landscape, top to bottom when portrait).
std::string ThreeBandVideo(const std::string& name, int width, int height) {
  const std::string path = testing::TmpPath(name);
  auto writer = VideoWriter::Open(path, width, height, 25);
  EXPECT_TRUE(writer.ok()) << writer.status();
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 0);
  const int along = std::max(width, height);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int band = 3 * (width >= height ? x : y) / along;
      rgb[(static_cast<size_t>(y) * width + x) * 3 + band] = 255;
    }
  }
  for (int t = 0; t < 16; ++t) EXPECT_TRUE((*writer)->WriteFrame(rgb.data()).ok());
  EXPECT_TRUE((*writer)->Close().ok());
  return path;
}

ClipGeometry Geometry(int short_side) {
  ClipGeometry g;
  g.num_frames = 4;
  g.stride = 2;
  g.decode_short_side = short_side;
  g.crop_size = 8;
  g.mean = {0, 0, 0};
  g.std = {1, 1, 1};
  return g;
}

// The channel with the largest mean of view `v` of [V, 3, T, S, S], and
// checks that it dominates (> 0.6, the others < 0.3).
int DominantChannel(const torch::Tensor& views, int64_t v) {
  const torch::Tensor mean = views[v].mean({1, 2, 3});
  const int c = static_cast<int>(mean.argmax().item<int64_t>());
  for (int o = 0; o < 3; ++o) {
    if (o == c) {
      EXPECT_GT(mean[o].item<float>(), 0.6f) << "view " << v;
    } else {
      EXPECT_LT(mean[o].item<float>(), 0.3f) << "view " << v;
    }
  }
  return c;
}

TEST(DecodeEvaluationClips, ThreeCropsCoverStartCentreAndEndOfTheLongSide) {
  // Crops of a third of the short side (64 / 3 -> 21 pixels): left at x 0,
  // centre at x 37, right at x 75, each inside one band.
  const std::string landscape = ThreeBandVideo("three_band_landscape.avi", 96, 64);
  torch::Tensor views = torch::empty({2 * 3, 3, 4, 8, 8});
  ASSERT_TRUE(
      DecodeEvaluationClips(landscape, Geometry(64), 2, 1.0f / 3, views.data_ptr<float>(), 3)
          .ok());
  for (int k = 0; k < 2; ++k) {
    for (int crop = 0; crop < 3; ++crop) EXPECT_EQ(DominantChannel(views, k * 3 + crop), crop);
  }
  // Portrait: top, centre, bottom.
  const std::string portrait = ThreeBandVideo("three_band_portrait.avi", 64, 96);
  ASSERT_TRUE(
      DecodeEvaluationClips(portrait, Geometry(64), 2, 1.0f / 3, views.data_ptr<float>(), 3)
          .ok());
  for (int crop = 0; crop < 3; ++crop) EXPECT_EQ(DominantChannel(views, 3 + crop), crop);
  // One crop: the centre; other counts are refused.
  torch::Tensor centre = torch::empty({2, 3, 4, 8, 8});
  ASSERT_TRUE(
      DecodeEvaluationClips(landscape, Geometry(64), 2, 1.0f / 3, centre.data_ptr<float>()).ok());
  EXPECT_EQ(DominantChannel(centre, 1), 1);
  const absl::Status bad =
      DecodeEvaluationClips(landscape, Geometry(64), 2, 1.0f / 3, centre.data_ptr<float>(), 2);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
}

// Logits = 10 x the mean colour of each clip (3 classes); records the
// dominant colour of every clip it sees, in order.
class MeanColourModel : public VideoBackbone {
 public:
  torch::Tensor FeatureMap(const torch::Tensor& clip) override {
    for (int64_t i = 0; i < clip.size(0); ++i) {
      seen.push_back(static_cast<int>(clip[i].mean({1, 2, 3}).argmax().item<int64_t>()));
    }
    return clip;
  }
  torch::Tensor Logits(const torch::Tensor& features) override { return 10 * features; }
  int64_t feature_dim() const override { return 3; }
  int64_t num_classes() const override { return 3; }
  std::vector<int> seen;
};

TEST(EvaluateMultiClip, ThreeCropsGiveClipsTimesThreeViewsPerVideo) {
  const std::string video = ThreeBandVideo("three_band_eval.avi", 96, 64);
  DatasetConfig dataset;
  ClipSampling* clip = dataset.mutable_clip();
  clip->set_num_frames(4);
  clip->set_decode_short_side(64);
  clip->set_crop_size(8);
  for (int c = 0; c < 3; ++c) {
    clip->add_mean(0);
    clip->add_std(1);
  }
  EvaluationConfig evaluation;
  evaluation.set_num_clips(2);
  evaluation.set_crop_fraction(1.0f / 3);
  evaluation.set_batch_size(4);
  MeanColourModel model;
  // Labelled red (0): the centre crops are green, so the centre-crop
  // protocol gets it wrong. With three crops the model sees every band (the
  // averaged softmax is then nearly uniform; top-1 is not checked).
  auto centre = EvaluateMultiClip(model, {{video, 0}}, 3, dataset, evaluation,
                                  torch::Device(torch::kCPU));
  ASSERT_TRUE(centre.ok()) << centre.status();
  EXPECT_EQ(centre->num_clips, 2);
  EXPECT_EQ(centre->num_crops, 1);
  EXPECT_EQ(model.seen, (std::vector<int>{1, 1}));
  EXPECT_EQ(centre->top1, 0.0);

  model.seen.clear();
  evaluation.set_crops(EvaluationConfig::THREE);
  auto three = EvaluateMultiClip(model, {{video, 0}, {video, 2}}, 3, dataset, evaluation,
                                 torch::Device(torch::kCPU));
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->num_clips, 2);
  EXPECT_EQ(three->num_crops, 3);
  // 2 videos x 2 clips x 3 crops, clip-major: left, centre, right.
  EXPECT_EQ(model.seen, (std::vector<int>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(VideoAccuracyToRecord(*three, {"r", "g", "b"}).crops_per_clip(), 3);
}

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
  const VideoAccuracyRecord record = VideoAccuracyToRecord(a, {"a", "b", "c", "d", "e", "f"});
  EXPECT_EQ(record.top1(), 0.5);
  EXPECT_EQ(record.per_class(4).class_name(), "e");
  EXPECT_EQ(record.per_class(4).top1(), 0.0);
  EXPECT_EQ(record.per_class(4).videos(), 1);
  EXPECT_EQ(record.confusion(5).predicted(1), 1);
}

TEST(AccuracyFromProbabilities, FewerThanFiveClasses) {
  torch::Tensor p = torch::tensor({{0.2, 0.8}, {0.9, 0.1}}, torch::kFloat);
  VideoAccuracy a = AccuracyFromProbabilities(p, {0, 0}, 2);
  EXPECT_DOUBLE_EQ(a.top1, 0.5);
  EXPECT_DOUBLE_EQ(a.top5, 1.0);  // top-2 covers all classes
}

}  // namespace
}  // namespace tb
