#include "datasets/views.h"

#include <filesystem>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "datasets/actor_boxes.h"
#include "datasets/clip_ops.h"
#include "google/protobuf/text_format.h"
#include "core/testing/test_util.h"
#include "datasets/clip_loader.h"
#include "datasets/clip_ops.h"
#include "datasets/clip_sampler.h"
#include "datasets/synthetic/synth_actions.h"
#include "datasets/ucf101.h"

namespace tb {
namespace {

DatasetConfig Dataset(int frames, int stride) {
  DatasetConfig d;
  ResolveDatasetDefaults(&d);
  d.mutable_clip()->set_num_frames(frames);
  d.mutable_clip()->set_stride(stride);
  d.mutable_clip()->set_decode_short_side(40);
  d.mutable_clip()->set_crop_size(24);
  return d;
}

std::unique_ptr<SamplePlanner> Planner(const std::string& text, const DatasetConfig& d) {
  SamplerConfig s;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &s)) << text;
  auto p = CreateSamplePlanner(s, d);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? std::move(*p) : nullptr;
}

TEST(ViewsTest, TclrSparseAndDenseTileTheWindow) {
  const auto planner = Planner("tclr { num_dense: 4 augmentations: 2 }", Dataset(4, 2));
  ASSERT_EQ(planner->views().size(), 2u);
  EXPECT_EQ(planner->views()[0].name, "sparse");
  EXPECT_EQ(planner->views()[0].clips, 2);
  EXPECT_EQ(planner->views()[1].name, "dense");
  EXPECT_EQ(planner->views()[1].clips, 8);
  for (uint64_t sample = 0; sample < 20; ++sample) {
    RngStream rng(3, 0, sample, 0, 0);
    const auto plans = planner->Plan(100, &rng);
    ASSERT_EQ(plans.size(), 10u);
    const int64_t start = plans[0].frames[0];
    EXPECT_LE(start + 16, 100);
    for (int a = 0; a < 2; ++a) {
      EXPECT_EQ(plans[a].frames, (std::vector<int64_t>{start, start + 4, start + 8, start + 12}));
    }
    for (int a = 0; a < 2; ++a) {
      for (int t = 0; t < 4; ++t) {
        const ClipPlan& p = plans[2 + a * 4 + t];
        EXPECT_EQ(p.view, 1);
        EXPECT_EQ(p.slot, a * 4 + t);
        const int64_t s = start + 4 * t;  // dense clip t covers sparse slice t's span
        EXPECT_EQ(p.frames, (std::vector<int64_t>{s, s + 1, s + 2, s + 3}));
      }
    }
  }
  // A video shorter than the window is padded into range.
  RngStream rng(3, 0, 0, 0, 0);
  for (const ClipPlan& p : planner->Plan(7, &rng)) {
    for (int64_t f : p.frames) {
      EXPECT_GE(f, 0);
      EXPECT_LT(f, 7);
    }
  }
}

// dense_stride 3: window 2 x 4 x 3 = 24 frames, sparse stride 6, dense
// clips at stride 3 each covering the span of one sparse slice.
TEST(ViewsTest, TclrDenseStrideWidensTheWindow) {
  const auto planner =
      Planner("tclr { num_dense: 2 augmentations: 2 dense_stride: 3 }", Dataset(4, 2));
  for (uint64_t sample = 0; sample < 20; ++sample) {
    RngStream rng(5, 0, sample, 0, 0);
    const auto plans = planner->Plan(100, &rng);
    ASSERT_EQ(plans.size(), 6u);
    const int64_t s = plans[0].frames[0];
    EXPECT_LE(s + 24, 100);
    EXPECT_EQ(plans[0].frames, (std::vector<int64_t>{s, s + 6, s + 12, s + 18}));
    for (int a = 0; a < 2; ++a) {
      EXPECT_EQ(plans[2 + a * 2].frames, (std::vector<int64_t>{s, s + 3, s + 6, s + 9}));
      EXPECT_EQ(plans[3 + a * 2].frames, (std::vector<int64_t>{s + 12, s + 15, s + 18, s + 21}));
    }
  }
  SamplerConfig bad;
  bad.mutable_tclr()->set_dense_stride(0);
  const absl::Status status = ValidateSampler(bad, "trainer.ssl.objective.tclr.sampler");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("tclr.dense_stride = 0"), std::string::npos) << status;
}

TEST(ViewsTest, VtdlNegativeIsAnotherSegmentAndOnlyTheAnchorIsMixed) {
  const auto planner = Planner("vtdl { max_mixup: 0.1 }", Dataset(4, 2));  // span 7
  for (uint64_t sample = 0; sample < 30; ++sample) {
    RngStream rng(4, 0, sample, 0, 0);
    const auto plans = planner->Plan(40, &rng);
    ASSERT_EQ(plans.size(), 3u);
    EXPECT_EQ(plans[0].frames, plans[1].frames);
    EXPECT_GE(std::abs(plans[2].frames[0] - plans[0].frames[0]), 7);
    EXPECT_GE(plans[0].mixup_frame, 0);
    EXPECT_LT(plans[0].mixup_frame, 40);
    EXPECT_GE(plans[0].mixup_weight, 0.0f);
    EXPECT_LE(plans[0].mixup_weight, 0.1f);
    EXPECT_EQ(plans[1].mixup_frame, -1);
    EXPECT_EQ(plans[2].mixup_frame, -1);
  }
}

TEST(ViewsTest, SpreadClipsDoNotOverlap) {
  const auto planner = Planner("spread { num_clips: 4 }", Dataset(4, 2));
  RngStream rng(0, 0, 0, 0, 0);
  const auto plans = planner->Plan(60, &rng);
  ASSERT_EQ(plans.size(), 4u);
  for (int k = 1; k < 4; ++k) EXPECT_GT(plans[k].frames.front(), plans[k - 1].frames.back());
  for (const auto& p : plans) EXPECT_EQ(p.augmentation, nullptr);
}

TEST(ViewsTest, WeakAndStrongClipsShareTheirFramesButNotTheirAugmentation) {
  const DatasetConfig d = Dataset(4, 3);
  const auto planner = Planner("weak_strong { strong_clips: 2 }", d);
  ASSERT_EQ(planner->views().size(), 2u);
  EXPECT_EQ(planner->views()[0].name, "weak");
  EXPECT_EQ(planner->views()[0].clips, 1);
  EXPECT_EQ(planner->views()[1].name, "strong");
  EXPECT_EQ(planner->views()[1].clips, 2);
  std::set<int64_t> starts;
  for (uint64_t sample = 0; sample < 30; ++sample) {
    RngStream rng(5, 0, sample, 0, 0);
    const auto plans = planner->Plan(40, &rng);
    ASSERT_EQ(plans.size(), 3u);
    const int64_t start = plans[0].frames[0];
    starts.insert(start);
    EXPECT_EQ(plans[0].frames, (std::vector<int64_t>{start, start + 3, start + 6, start + 9}));
    EXPECT_LE(start + 10, 40);
    EXPECT_EQ(plans[0].view, 0);
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ(plans[1 + k].view, 1);
      EXPECT_EQ(plans[1 + k].slot, k);
      EXPECT_EQ(plans[1 + k].frames, plans[0].frames);
    }
    // Weak: the dataset's crop + flip only; strong: more on top of it.
    EXPECT_EQ(plans[0].augmentation->DebugString(), d.augmentation().DebugString());
    EXPECT_EQ(plans[1].augmentation->DebugString(),
              StrongReferenceAugmentation(d.augmentation()).DebugString());
  }
  EXPECT_GT(starts.size(), 5u);  // the clip position is random
  EXPECT_NE(StrongReferenceAugmentation(d.augmentation()).DebugString(),
            d.augmentation().DebugString());
}

TEST(ViewsTest, TwoSpeedSlowClipIsTheBaseSpanAtHalfTheFrameRate) {
  const DatasetConfig d = Dataset(8, 2);
  const auto planner = Planner("two_speed {}", d);
  ASSERT_EQ(planner->views().size(), 2u);
  EXPECT_EQ(planner->views()[0].name, "base");
  EXPECT_EQ(planner->views()[0].frames, 8);
  EXPECT_EQ(planner->views()[1].name, "slow");
  EXPECT_EQ(planner->views()[1].frames, 4);
  std::set<int64_t> starts;
  for (uint64_t sample = 0; sample < 30; ++sample) {
    RngStream rng(6, 0, sample, 0, 0);
    const auto plans = planner->Plan(60, &rng);
    ASSERT_EQ(plans.size(), 2u);
    const int64_t s = plans[0].frames[0];
    starts.insert(s);
    EXPECT_EQ(plans[0].frames, (std::vector<int64_t>{s, s + 2, s + 4, s + 6, s + 8, s + 10,
                                                     s + 12, s + 14}));
    EXPECT_EQ(plans[1].view, 1);
    EXPECT_EQ(plans[1].frames, (std::vector<int64_t>{s, s + 4, s + 8, s + 12}));
    EXPECT_EQ(plans[0].augmentation->DebugString(), d.augmentation().DebugString());
    EXPECT_EQ(plans[1].augmentation, plans[0].augmentation);
  }
  EXPECT_GT(starts.size(), 5u);
  SamplerConfig bad;
  bad.mutable_two_speed()->set_speed_ratio(1);
  auto p = CreateSamplePlanner(bad, d);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("sampler.two_speed.speed_ratio = 1"), std::string::npos)
      << p.status();
}

// ClipSamplerOptions: the clip's own length, stride and augmentation (MemDPC's
// whole sequence); unset fields are the dataset's.
TEST(ViewsTest, ClipSamplerOptionsOverrideTheDatasetGeometry) {
  const DatasetConfig d = Dataset(4, 2);
  const auto plain = Planner("clip {}", d);
  ASSERT_EQ(plain->views().size(), 1u);
  EXPECT_EQ(plain->views()[0].frames, 4);
  const auto own = Planner("clip { num_frames: 12 stride: 3 augmentation { flip_probability: 0 } }",
                           d);
  ASSERT_EQ(own->views().size(), 1u);
  EXPECT_EQ(own->views()[0].name, "clip");
  EXPECT_EQ(own->views()[0].frames, 12);
  for (uint64_t sample = 0; sample < 10; ++sample) {
    RngStream rng(4, 0, sample, 0, 0);
    const auto plans = own->Plan(100, &rng);
    ASSERT_EQ(plans.size(), 1u);
    const int64_t s = plans[0].frames[0];
    EXPECT_LE(s + 34, 100);
    std::vector<int64_t> want;
    for (int i = 0; i < 12; ++i) want.push_back(s + 3 * i);
    EXPECT_EQ(plans[0].frames, want);
    EXPECT_FLOAT_EQ(plans[0].augmentation->flip_probability(), 0.0f);
  }
  RngStream rng(4, 0, 0, 0, 0);
  EXPECT_EQ(Planner("clip { stride: 5 }", d)->Plan(100, &rng)[0].frames.size(), 4u);
  SamplerConfig bad;
  bad.mutable_clip()->set_num_frames(0);
  auto p = CreateSamplePlanner(bad, d);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("sampler.clip.num_frames = 0: must be in [1, 512]"),
            std::string::npos)
      << p.status();
  bad.mutable_clip()->set_num_frames(8);
  bad.mutable_clip()->set_stride(65);
  p = CreateSamplePlanner(bad, d);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("sampler.clip.stride = 65"), std::string::npos)
      << p.status();
}

TEST(ViewsTest, BadOptionsNameTheField) {
  SamplerConfig s;
  s.mutable_rho()->set_rho(0);
  auto p = CreateSamplePlanner(s, Dataset(4, 2));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("sampler.rho.rho = 0"), std::string::npos)
      << p.status();
  DatasetConfig d = Dataset(4, 2);
  d.mutable_augmentation()->mutable_randaugment()->set_num_ops(12);
  p = CreateSamplePlanner(SamplerConfig(), d);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("dataset.augmentation.randaugment.num_ops = 12"),
            std::string::npos)
      << p.status();
  SamplerConfig w;
  w.mutable_weak_strong()->set_strong_clips(0);
  auto q = CreateSamplePlanner(w, Dataset(4, 2));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("sampler.weak_strong.strong_clips = 0"), std::string::npos)
      << q.status();
}

// Identity augmentation fields: full-frame crop (aspect kept), no flip, no
// ops.
constexpr char kIdentity[] =
    "keep_aspect_ratio: true min_crop_scale: 1 max_crop_scale: 1 flip_probability: 0 "
    "erase_probability: 0";

class ViewsDecodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(
        WriteSynthActions(testing::TmpPath("synth_views"), SmokeTestOptions(2, 3, 1, 0), 2).ok());
  }
  void SetUp() override {
    auto split = ReadUcf101Split(testing::TmpPath("synth_views"), "", 1, true);
    ASSERT_TRUE(split.ok()) << split.status();
    for (const auto& v : split->train) videos_.push_back({v.path, v.label});
  }
  std::vector<LabeledVideo> videos_;
};

TEST_F(ViewsDecodeTest, VtdlMixupIsTheOnlyDifferenceBetweenAnchorAndPositive) {
  const DatasetConfig d = Dataset(4, 2);
  const ClipGeometry g = ClipGeometryFromConfig(d);
  const std::string identity = std::string("augmentation { ") + kIdentity + " }";
  for (float mix : {0.0f, 0.5f}) {
    const auto planner =
        Planner("vtdl { max_mixup: " + std::to_string(mix) + " " + identity + " }", d);
    std::vector<torch::Tensor> views;
    std::vector<float*> outputs;
    for (int v = 0; v < 3; ++v) {
      views.push_back(torch::zeros({3, 4, 24, 24}));
      outputs.push_back(views.back().data_ptr<float>());
    }
    RngStream rng(1, 0, 0, 0, 0);
    ASSERT_TRUE(DecodeSample(videos_[0].path, *planner, g, &rng, outputs).ok());
    const double diff = (views[0] - views[1]).abs().max().item<double>();
    if (mix == 0.0f) {
      EXPECT_EQ(diff, 0.0);
    } else {
      EXPECT_GT(diff, 0.0);
    }
    EXPECT_GT(views[1].abs().sum().item<double>(), 0.0);
  }
}

// The weak view's actor mask (from the generator's .actors file): a
// 1-channel companion, binary, neither empty nor full (the object is in
// every frame and smaller than it); the strong view gets none; a missing box
// file is an error naming it.
TEST_F(ViewsDecodeTest, ActorMasksComeWithTheChosenViewFromTheBoxFile) {
  const DatasetConfig d = Dataset(4, 2);
  const ClipGeometry g = ClipGeometryFromConfig(d);
  // The whole frame, unflipped: the object is inside the weak clip.
  const auto planner = Planner(
      std::string("weak_strong { weak { ") + kIdentity + " } } actor_masks { views: \"weak\" }",
      d);
  ASSERT_EQ(planner->views().size(), 3u);
  EXPECT_EQ(planner->views()[2].name, "weak_actor");
  EXPECT_EQ(planner->views()[2].channels, 1);
  ASSERT_NE(planner->actor_masks(), nullptr);
  EXPECT_EQ(planner->actor_masks()->companion, (std::vector<int>{2, -1, -1}));
  std::vector<torch::Tensor> views = {torch::zeros({3, 4, 24, 24}), torch::zeros({3, 4, 24, 24}),
                                      torch::full({1, 4, 24, 24}, -1.0f)};
  std::vector<float*> outputs;
  for (auto& v : views) outputs.push_back(v.data_ptr<float>());
  RngStream rng(2, 0, 0, 0, 0);
  ASSERT_TRUE(DecodeSample(videos_[0].path, *planner, g, &rng, outputs).ok());
  const torch::Tensor& mask = views[2];
  EXPECT_TRUE(((mask == 0) | (mask == 1)).all().item<bool>());
  const double share = mask.mean().item<double>();
  EXPECT_GT(share, 0.0);
  EXPECT_LT(share, 1.0);
  const std::string moved = videos_[0].path + ".actors.moved";
  std::filesystem::rename(ActorBoxesPathFor(videos_[0].path), moved);
  const absl::Status missing = DecodeSample(videos_[0].path, *planner, g, &rng, outputs);
  std::filesystem::rename(moved, ActorBoxesPathFor(videos_[0].path));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find(".actors is missing"), std::string::npos) << missing;
  auto bad = CreateSamplePlanner(
      [] {
        SamplerConfig s;
        s.mutable_weak_strong();
        s.mutable_actor_masks()->add_views("nope");
        return s;
      }(),
      d);
  EXPECT_NE(bad.status().message().find("sampler.actor_masks.views: no view 'nope'"),
            std::string::npos)
      << bad.status();
}

TEST_F(ViewsDecodeTest, RandAugmentAndCutoutComeAfterTheCropAndCutoutIsGrey) {
  const DatasetConfig d = Dataset(4, 2);
  const ClipGeometry g = ClipGeometryFromConfig(d);
  auto decode = [&](const std::string& extra) {
    const auto planner =
        Planner(std::string("rho { rho: 1 augmentation { ") + kIdentity + " " + extra + " } }", d);
    torch::Tensor out = torch::zeros({3, 4, 24, 24});
    RngStream rng(1, 0, 0, 0, 0);
    EXPECT_TRUE(DecodeSample(videos_[0].path, *planner, g, &rng, {out.data_ptr<float>()}).ok());
    return out;
  };
  const torch::Tensor plain = decode("");
  // No operation drawn: the same clip (the extra draws come after the crop).
  EXPECT_TRUE(torch::equal(plain, decode("randaugment { num_ops: 0 }")));
  EXPECT_FALSE(torch::equal(plain, decode("randaugment { num_ops: 2 magnitude: 9 }")));
  // Cutout: the clip differs only inside one square, filled with 0.5 grey
  // normalised, on every frame.
  const torch::Tensor cut = decode("cutout { probability: 1 min_side: 0.5 max_side: 0.5 }");
  const torch::Tensor changed = (cut != plain).any(0).any(0);  // [S, S]
  const int64_t area = changed.sum().item<int64_t>();
  EXPECT_GE(area, 6 * 6);
  EXPECT_LE(area, 12 * 12);
  const std::array<float, 3> grey = NormalizedGrey(g.mean, g.std);
  const torch::Tensor inside = changed.nonzero();
  for (int64_t i = 0; i < inside.size(0); ++i) {
    const int64_t y = inside[i][0].item<int64_t>(), x = inside[i][1].item<int64_t>();
    for (int c = 0; c < 3; ++c) {
      for (int t = 0; t < 4; ++t) EXPECT_EQ(cut[c][t][y][x].item<float>(), grey[c]);
    }
  }
}

TEST_F(ViewsDecodeTest, LoaderWithTclrViewsIsDeterministicAcrossWorkers) {
  DatasetConfig d = Dataset(4, 1);
  const auto planner = std::shared_ptr<const SamplePlanner>(Planner("tclr {}", d));
  std::vector<ClipBatch> runs;
  for (int workers : {1, 3}) {
    d.mutable_loader()->set_num_workers(workers);
    ClipLoader loader(videos_, d, 2, 9, 0, planner);
    for (int i = 0; i < 3; ++i) {
      auto b = loader.Next();
      ASSERT_TRUE(b.ok()) << b.status();
      runs.push_back(*b);
    }
  }
  for (int i = 0; i < 3; ++i) {
    const ClipBatch& a = runs[i];
    const ClipBatch& b = runs[3 + i];
    EXPECT_FALSE(a.clips.defined());
    ASSERT_EQ(a.views.size(), 2u);
    EXPECT_EQ(a.views.at("sparse").sizes(), (std::vector<int64_t>{2, 2, 3, 4, 24, 24}));
    EXPECT_EQ(a.views.at("dense").sizes(), (std::vector<int64_t>{2, 8, 3, 4, 24, 24}));
    EXPECT_TRUE(torch::equal(a.views.at("sparse"), b.views.at("sparse")));
    EXPECT_TRUE(torch::equal(a.views.at("dense"), b.views.at("dense")));
    // Two augmentations of one clip differ.
    EXPECT_FALSE(torch::equal(a.views.at("sparse")[0][0], a.views.at("sparse")[0][1]));
  }
}

}  // namespace
}  // namespace tb
