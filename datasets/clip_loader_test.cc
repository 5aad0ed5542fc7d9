#include "datasets/clip_loader.h"

#include <filesystem>
#include <set>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "datasets/clip_ops.h"
#include "datasets/decoded_cache.h"
#include "datasets/video_clips.h"
#include "core/testing/test_util.h"
#include "datasets/synthetic/synth_actions.h"
#include "datasets/ucf101.h"

namespace tb {
namespace {

class ClipLoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const SynthOptions options = SmokeTestOptions(2, 3, 1, 0);
    ASSERT_TRUE(WriteSynthActions(testing::TmpPath("synth"), options, 2).ok());
  }

  void SetUp() override {
    auto split = ReadUcf101Split(testing::TmpPath("synth"), "", 1, true);
    ASSERT_TRUE(split.ok()) << split.status();
    for (const auto& v : split->train) videos_.push_back({v.path, v.label});
    ResolveDatasetDefaults(&config_);
    config_.mutable_clip()->set_num_frames(4);
    config_.mutable_clip()->set_decode_short_side(40);
    config_.mutable_clip()->set_crop_size(24);
  }

  std::vector<ClipBatch> Take(const std::vector<LabeledVideo>& videos, int workers,
                              int64_t first, int count) {
    config_.mutable_loader()->set_num_workers(workers);
    ClipLoader loader(videos, config_, 2, /*seed=*/5, first);
    std::vector<ClipBatch> out;
    for (int i = 0; i < count; ++i) {
      auto b = loader.Next();
      EXPECT_TRUE(b.ok()) << b.status();
      if (b.ok()) out.push_back(*b);
    }
    return out;
  }

  std::vector<LabeledVideo> videos_;
  DatasetConfig config_;
};

TEST_F(ClipLoaderTest, BatchesIndependentOfWorkerCountAndStartPoint) {
  auto one = Take(videos_, 1, 0, 6);
  auto three = Take(videos_, 3, 0, 6);
  auto resumed = Take(videos_, 2, 4, 2);  // a run resumed at batch 4
  ASSERT_EQ(one.size(), 6u);
  ASSERT_EQ(three.size(), 6u);
  ASSERT_EQ(resumed.size(), 2u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(one[i].index, i);
    EXPECT_EQ(one[i].clips.sizes(), (std::vector<int64_t>{2, 3, 4, 24, 24}));
    EXPECT_TRUE(torch::equal(one[i].clips, three[i].clips)) << "batch " << i;
    EXPECT_TRUE(torch::equal(one[i].labels, three[i].labels)) << "batch " << i;
  }
  EXPECT_TRUE(torch::equal(one[4].clips, resumed[0].clips));
  EXPECT_TRUE(torch::equal(one[5].clips, resumed[1].clips));
  // 6 videos, batch 2: 3 batches per epoch; each epoch visits every video once.
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::set<int64_t> seen;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(one[3 * epoch + i].epoch, epoch);
      seen.insert(one[3 * epoch + i].videos.begin(), one[3 * epoch + i].videos.end());
    }
    EXPECT_EQ(seen.size(), 6u);
  }
  // Labels follow the videos.
  for (const auto& b : one) {
    for (int j = 0; j < 2; ++j) EXPECT_EQ(b.labels[j].item<int64_t>(), videos_[b.videos[j]].label);
  }
}

TEST_F(ClipLoaderTest, ShardsTogetherAreTheUnshardedBatch) {
  // Data-parallel ranks: shard r of 2 of a batch of 4 is its samples
  // [2r, 2r + 2), clip for clip, also across an epoch boundary.
  config_.mutable_loader()->set_num_workers(2);
  ClipLoader whole(videos_, config_, 4, /*seed=*/9, 0);
  ClipLoader first(videos_, config_, 4, 9, 0, nullptr, SlowVideoOptions(), LoaderShard{0, 2});
  ClipLoader second(videos_, config_, 4, 9, 0, nullptr, SlowVideoOptions(), LoaderShard{1, 2});
  for (int i = 0; i < 2 * whole.batches_per_epoch() + 1; ++i) {
    auto w = whole.Next();
    auto a = first.Next();
    auto b = second.Next();
    ASSERT_TRUE(w.ok() && a.ok() && b.ok());
    ASSERT_EQ(a->clips.size(0), 2);
    EXPECT_TRUE(torch::equal(torch::cat({a->clips, b->clips}), w->clips)) << "batch " << i;
    EXPECT_TRUE(torch::equal(torch::cat({a->labels, b->labels}), w->labels)) << "batch " << i;
    std::vector<std::string> paths = a->paths;
    paths.insert(paths.end(), b->paths.begin(), b->paths.end());
    EXPECT_EQ(paths, w->paths);
  }
}

TEST_F(ClipLoaderTest, MeasuresDecodeAndAugmentTimeSeparately) {
  config_.mutable_loader()->set_num_workers(2);
  ClipLoader loader(videos_, config_, 2, /*seed=*/5, 0);
  EXPECT_GE(loader.decode_seconds(), 0.0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(loader.Next().ok());
  const double decode = loader.decode_seconds(), augment = loader.augment_seconds();
  EXPECT_GT(decode, 0.0);
  EXPECT_GT(augment, 0.0);
  // Building a batch directly adds to both.
  ASSERT_TRUE(loader.Build(10).ok());
  EXPECT_GT(loader.decode_seconds(), decode);
  EXPECT_GT(loader.augment_seconds(), augment);
  EXPECT_GE(loader.wait_seconds(), 0.0);
}

TEST_F(ClipLoaderTest, CountsSlowDecodes) {
  config_.mutable_loader()->set_num_workers(1);
  // Thresholds of zero make every decode slow, huge ones none: the counting
  // is checked without depending on how long decoding takes.
  SlowVideoOptions always;
  always.factor = 0;
  always.min_seconds = 0;
  always.min_samples = 0;
  ClipLoader counting(videos_, config_, 2, /*seed=*/5, 0, nullptr, always);
  ASSERT_TRUE(counting.Next().ok());
  const int64_t before = counting.slow_video_count();
  EXPECT_GE(before, 2);
  ASSERT_TRUE(counting.Build(10).ok());  // two more decodes, one per sample
  EXPECT_GE(counting.slow_video_count(), before + 2);

  SlowVideoOptions never;
  never.factor = 1e9;
  never.min_seconds = 1e9;
  never.min_samples = 0;
  ClipLoader quiet(videos_, config_, 2, /*seed=*/5, 0, nullptr, never);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(quiet.Next().ok());
  EXPECT_EQ(quiet.slow_video_count(), 0);
}

TEST_F(ClipLoaderTest, UnreadableVideoFailsOrIsSubstitutedNeverDropped) {
  std::vector<LabeledVideo> broken = videos_;
  for (auto& v : broken) v.path = testing::TmpPath("missing.avi");
  broken[0] = videos_[0];  // one readable video left
  config_.mutable_loader()->set_on_error(LoaderOptions::FAIL);
  {
    ClipLoader loader(broken, config_, 2, 5, 0);
    auto b = loader.Next();
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("missing.avi"), std::string::npos) << b.status();
  }
  config_.mutable_loader()->set_on_error(LoaderOptions::SUBSTITUTE);
  ClipLoader loader(broken, config_, 2, 5, 0);
  auto b = loader.Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->clips.size(0), 2);
  EXPECT_EQ(b->videos, (std::vector<int64_t>{0, 0}));
  EXPECT_GT(b->substitutions, 0);
}

// LoaderOptions.decoded_cache_mb: the same clips from memory as from the
// file, for training batches and evaluation clips; a damaged video is not
// cached (and not decoded whole again).
TEST_F(ClipLoaderTest, DecodedCacheServesIdenticalClips) {
  const auto plain = Take(videos_, 2, 0, 6);
  config_.mutable_loader()->set_decoded_cache_mb(64);
  const auto filling = Take(videos_, 2, 0, 6);
  const auto served = Take(videos_, 1, 0, 6);
  ASSERT_EQ(filling.size(), 6u);
  ASSERT_EQ(served.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(torch::equal(plain[i].clips, filling[i].clips)) << "batch " << i;
    EXPECT_TRUE(torch::equal(plain[i].clips, served[i].clips)) << "batch " << i;
  }
  DecodedVideoCache* cache = DecodedVideoCache::Shared(64);
  ASSERT_NE(cache, nullptr);
  EXPECT_EQ(DecodedVideoCache::Shared(0), nullptr);
  const DecodedVideoCache::Stats stats = cache->stats();
  EXPECT_EQ(stats.videos, 6);
  EXPECT_GE(stats.hits, 12);  // every read after the first of each video
  EXPECT_GT(stats.bytes, 0);

  ClipGeometry g = ClipGeometryFromConfig(config_);
  ASSERT_EQ(g.cache, cache);
  std::vector<float> with_cache(5 * g.clip_floats()), without(5 * g.clip_floats());
  ASSERT_TRUE(DecodeEvaluationClips(videos_[0].path, g, 5, 0.8f, with_cache.data()).ok());
  g.cache = nullptr;
  ASSERT_TRUE(DecodeEvaluationClips(videos_[0].path, g, 5, 0.8f, without.data()).ok());
  EXPECT_EQ(with_cache, without);

  // A copy cut to half its bytes: damaged, so never cached.
  const std::string cut = testing::TmpPath("cut.avi");
  std::filesystem::copy_file(videos_[0].path, cut,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(cut, std::filesystem::file_size(cut) / 2);
  DecodedVideoCache small(64 << 20);
  EXPECT_EQ(small.Get(cut, 40), nullptr);
  EXPECT_EQ(small.Get(cut, 40), nullptr);
  EXPECT_EQ(small.stats().uncacheable, 1);
  EXPECT_EQ(small.stats().videos, 0);
  // A budget too small for one video: nothing kept, nothing fails.
  DecodedVideoCache tiny(1000);
  EXPECT_EQ(tiny.Get(videos_[0].path, 40), nullptr);
  EXPECT_EQ(tiny.stats().bytes, 0);
}

}  // namespace
}  // namespace tb
