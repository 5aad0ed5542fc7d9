// The loader's flow views (SamplerConfig.flow, datasets/views.h) on
// lossless 64x48 fixture videos whose pixels say where they come from (red
// = 4 x, green = 5 y, blue = 10 t) and flow files written here whose fields
// say the same (x component level 60 + 2 x, y component level 100 + field
// index): every flow clip has the RGB clip's frames (field t for frame t,
// the last frame repeating the field before it), crop and flip (x
// negated); shapes; RGB untouched by asking for flow; the same batches with
// 1 and 3 workers; missing, damaged and stale flow files fail the batch
// naming the file or are substituted and counted.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/testing/test_util.h"
#include "datasets/clip_loader.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"
#include "datasets/flow/flow_test_util.h"
#include "datasets/views.h"
#include "google/protobuf/text_format.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

constexpr int kW = 64, kH = 48;
const std::vector<std::pair<std::string, int>> kVideos = {
    {"c/v0.mkv", 16}, {"c/v1.mkv", 12}, {"d/v2.mkv", 5}};  // the last is shorter than a clip

std::string Root() { return ::tb::testing::TmpPath("flow_view_test/videos"); }

void Pixel(int t, int x, int y, uint8_t* rgb) {
  rgb[0] = static_cast<uint8_t>(4 * x);
  rgb[1] = static_cast<uint8_t>(5 * y);
  rgb[2] = static_cast<uint8_t>(10 * t);
}

// Writes the flow folder `dir` for kVideos: fields of width x height (the
// decode size 64x48 or a smaller grid).
void WriteFlow(const std::string& dir, int width = kW, int height = kH) {
  fs::remove_all(dir);
  FlowIndex index;
  *index.mutable_settings() = DefaultFlowSettings();
  index.mutable_settings()->set_decode_short_side(height);
  for (const auto& [relative, frames] : kVideos) {
    FlowFileHeader h;
    h.set_version(kFlowFileVersion);
    *h.mutable_settings() = index.settings();
    h.set_relative_path(relative);
    h.set_frame_count(frames);
    h.set_width(width);
    h.set_height(height);
    std::vector<std::string> fields;
    std::vector<uint8_t> levels(2 * width * height);
    for (int f = 0; f < frames - 1; ++f) {
      for (int y = 0; y < height; ++y) {
        for (int x = 0; x < width; ++x) {
          levels[y * width + x] = static_cast<uint8_t>(60 + 2 * x);
          levels[width * height + y * width + x] = static_cast<uint8_t>(100 + f);
        }
      }
      fields.push_back(*EncodeFlowField(levels.data(), width, height, h.settings()));
    }
    ASSERT_TRUE(WriteFlowFile(dir + "/" + FlowRelativePath(relative), h, fields).ok());
    FlowIndexEntry* e = index.add_video();
    e->set_relative_path(relative);
    e->set_flow_path(FlowRelativePath(relative));
    e->set_frame_count(frames);
  }
  ASSERT_TRUE(WriteFlowIndex(dir + "/" + kFlowIndexName, index).ok());
}

class FlowViewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::remove_all(Root());
    for (const auto& [relative, frames] : kVideos) {
      ASSERT_TRUE(::tb::testing::WriteLosslessVideo(Root() + "/" + relative, kW, kH, frames, Pixel));
    }
  }

  void SetUp() override {
    flow_dir_ = ::tb::testing::TmpPath(
        std::string("flow_view_test/flow_") +
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    WriteFlow(flow_dir_);
    for (const auto& v : kVideos) videos_.push_back({Root() + "/" + v.first, 0});
  }

  DatasetConfig Dataset(int workers = 2) const {
    DatasetConfig d;
    d.mutable_clip()->set_num_frames(8);
    d.mutable_clip()->set_stride(2);
    d.mutable_clip()->set_decode_short_side(kH);
    d.mutable_clip()->set_crop_size(32);
    for (int c = 0; c < 3; ++c) {
      d.mutable_clip()->add_mean(0);
      d.mutable_clip()->add_std(1);
    }
    d.mutable_loader()->set_num_workers(workers);
    d.set_flow_dir(flow_dir_);
    return d;
  }

  static SamplerConfig Sampler(const std::string& text) {
    SamplerConfig s;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &s)) << text;
    return s;
  }

  std::unique_ptr<ClipLoader> Loader(const std::string& sampler, const DatasetConfig& d,
                                     uint64_t seed = 7) const {
    absl::StatusOr<std::unique_ptr<SamplePlanner>> planner =
        CreateSamplePlanner(Sampler(sampler), d);
    EXPECT_TRUE(planner.ok()) << planner.status();
    if (!planner.ok()) return nullptr;
    return std::make_unique<ClipLoader>(videos_, d, static_cast<int>(videos_.size()), seed, 0,
                                        std::shared_ptr<const SamplePlanner>(std::move(*planner)));
  }

  std::string flow_dir_;
  std::vector<LabeledVideo> videos_;
};

// Checks every pixel of the flow clips of `view` against its RGB clips;
// counts flipped and unflipped clips. `grid` = flow width / frame width.
void CheckConsistent(const ClipBatch& batch, const std::string& view, float scale, int* flipped,
                     int* unflipped, double grid = 1.0) {
  const torch::Tensor rgb = batch.views.at(view);
  const torch::Tensor flow = batch.views.at(view + "_flow");
  ASSERT_EQ(flow.size(2), 2);
  const FlowQuantization q = DefaultFlowSettings().quantization();
  const double step = FlowQuantStep(q);
  const int64_t s = rgb.size(-1);
  for (int64_t j = 0; j < rgb.size(0); ++j) {
    const int n = kVideos[batch.videos[j]].second;
    for (int64_t k = 0; k < rgb.size(1); ++k) {
      const torch::Tensor rgb_clip = rgb[j][k].contiguous(), flow_clip = flow[j][k].contiguous();
      const auto r = rgb_clip.accessor<float, 4>();
      const auto f = flow_clip.accessor<float, 4>();
      const bool flip = r[0][0][0][s - 1] < r[0][0][0][0];
      ++*(flip ? flipped : unflipped);
      for (int64_t t = 0; t < rgb.size(2); ++t) {
        const int frame = static_cast<int>(std::lround(r[2][t][0][0] * 255 / 10));
        const int field = std::min(frame, n - 2);
        const double want_y = ((100 + field) * step - q.bound()) * scale;
        for (int64_t oy = 0; oy < s; ++oy) {
          for (int64_t ox = 0; ox < s; ++ox) {
            ASSERT_NEAR(r[2][t][oy][ox] * 255 / 10, frame, 1e-3);
            ASSERT_NEAR(f[1][t][oy][ox], want_y, 1e-3 * scale) << "frame " << frame;
            const double x = r[0][t][oy][ox] * 255 / 4;  // source x in the frame
            if (grid == 1.0) {
              const double want_x = ((60 + 2 * x) * step - q.bound()) * scale * (flip ? -1 : 1);
              ASSERT_NEAR(f[0][t][oy][ox], want_x, 1e-3 * scale) << oy << "," << ox;
            } else if (ox >= 3 && ox < s - 3) {
              const double xf = (x + 0.5) * grid - 0.5;  // the same point in the field grid
              const double want_x = ((60 + 2 * xf) * step - q.bound()) * scale * (flip ? -1 : 1);
              ASSERT_NEAR(f[0][t][oy][ox], want_x, 1e-3 * scale) << oy << "," << ox;
            }
          }
        }
      }
    }
  }
}

TEST_F(FlowViewTest, FlowClipsHaveTheRgbClipsFramesCropAndFlip) {
  auto loader = Loader("flow {}", Dataset());
  int flipped = 0, unflipped = 0;
  for (int b = 0; b < 6; ++b) {
    absl::StatusOr<ClipBatch> batch = loader->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->views.size(), 2u);
    EXPECT_EQ(batch->views.at("clip").sizes(), (std::vector<int64_t>{3, 1, 3, 8, 32, 32}));
    EXPECT_EQ(batch->views.at("clip_flow").sizes(), (std::vector<int64_t>{3, 1, 2, 8, 32, 32}));
    EXPECT_EQ(batch->clips.sizes(), (std::vector<int64_t>{3, 3, 8, 32, 32}));
    CheckConsistent(*batch, "clip", 1.0f, &flipped, &unflipped);
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(unflipped, 0);
}

TEST_F(FlowViewTest, FlowAtASmallerSizeIsCroppedAtTheSamePlace) {
  WriteFlow(flow_dir_, kW / 2, kH / 2);
  auto loader = Loader("flow {}", Dataset());
  int flipped = 0, unflipped = 0;
  for (int b = 0; b < 3; ++b) {
    absl::StatusOr<ClipBatch> batch = loader->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    CheckConsistent(*batch, "clip", 1.0f, &flipped, &unflipped, 0.5);
  }
}

TEST_F(FlowViewTest, NormaliseDividesByTheBound) {
  auto loader = Loader("flow { normalize: true }", Dataset());
  int flipped = 0, unflipped = 0;
  absl::StatusOr<ClipBatch> batch = loader->Next();
  ASSERT_TRUE(batch.ok()) << batch.status();
  CheckConsistent(*batch, "clip", 1.0f / 20, &flipped, &unflipped);
  EXPECT_LE(batch->views.at("clip_flow").abs().max().item<float>(), 1.0f);
}

TEST_F(FlowViewTest, WeakStrongViewsGetTheirCompanions) {
  auto loader = Loader("weak_strong { strong_clips: 2 } flow {}", Dataset());
  absl::StatusOr<ClipBatch> batch = loader->Next();
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->views.at("weak_flow").sizes(), (std::vector<int64_t>{3, 1, 2, 8, 32, 32}));
  EXPECT_EQ(batch->views.at("strong_flow").sizes(), (std::vector<int64_t>{3, 2, 2, 8, 32, 32}));
  int flipped = 0, unflipped = 0;
  CheckConsistent(*batch, "weak", 1.0f, &flipped, &unflipped);

  loader = Loader("weak_strong { strong_clips: 2 } flow { views: 'weak' }", Dataset());
  batch = loader->Next();
  ASSERT_TRUE(batch.ok()) << batch.status();
  EXPECT_EQ(batch->views.size(), 3u);
  EXPECT_EQ(batch->views.count("strong_flow"), 0u);
}

TEST_F(FlowViewTest, AskingForFlowLeavesTheRgbClipsUnchanged) {
  auto with = Loader("flow {}", Dataset());
  auto without = Loader("", Dataset());
  for (int b = 0; b < 3; ++b) {
    absl::StatusOr<ClipBatch> x = with->Next(), y = without->Next();
    ASSERT_TRUE(x.ok() && y.ok());
    EXPECT_TRUE(torch::equal(x->views.at("clip"), y->views.at("clip")));
    EXPECT_EQ(x->videos, y->videos);
  }
}

TEST_F(FlowViewTest, SameBatchesWithOneAndThreeWorkers) {
  auto one = Loader("flow {}", Dataset(1));
  auto three = Loader("flow {}", Dataset(3));
  for (int b = 0; b < 4; ++b) {
    absl::StatusOr<ClipBatch> x = one->Next(), y = three->Next();
    ASSERT_TRUE(x.ok() && y.ok());
    for (const char* v : {"clip", "clip_flow"}) {
      EXPECT_TRUE(torch::equal(x->views.at(v), y->views.at(v))) << v << " batch " << b;
    }
  }
}

// Every sample of a batch is from a different video (batch = all videos),
// so the damaged one is read in batch 0.
TEST_F(FlowViewTest, DamagedMissingOrStaleFlowFailsNamingTheFileOrIsSubstituted) {
  const std::string v1 = flow_dir_ + "/c/v1.mkv.flow";
  const std::string good = ::tb::testing::ReadAll(v1);
  auto first_error = [&](LoaderOptions::ErrorPolicy policy, int* substitutions) {
    DatasetConfig d = Dataset();
    d.mutable_loader()->set_on_error(policy);
    auto loader = Loader("flow {}", d);
    absl::StatusOr<ClipBatch> batch = loader->Next();
    if (substitutions != nullptr && batch.ok()) *substitutions = batch->substitutions;
    return batch.ok() ? std::string() : std::string(batch.status().message());
  };
  // Cut short, which Open detects.
  fs::resize_file(v1, good.size() - 10);
  std::string error = first_error(LoaderOptions::FAIL, nullptr);
  EXPECT_NE(error.find("flow file " + v1 + " is corrupt"), std::string::npos) << error;
  int substitutions = 0;
  EXPECT_EQ(first_error(LoaderOptions::SUBSTITUTE, &substitutions), "");
  EXPECT_EQ(substitutions, 1);

  // Missing.
  fs::remove(v1);
  error = first_error(LoaderOptions::FAIL, nullptr);
  EXPECT_NE(error.find("flow file not found: " + v1), std::string::npos) << error;

  // Made for another frame count (stale).
  WriteFlow(flow_dir_);
  {
    absl::StatusOr<std::unique_ptr<FlowFile>> f = FlowFile::Open(flow_dir_ + "/c/v0.mkv.flow");
    ASSERT_TRUE(f.ok());
    FlowFileHeader h = (*f)->header();
    std::vector<std::string> fields;
    std::vector<uint8_t> levels(2 * kW * kH, 127);
    for (int i = 0; i < 10; ++i) {
      fields.push_back(*EncodeFlowField(levels.data(), kW, kH, h.settings()));
    }
    h.set_frame_count(11);
    ASSERT_TRUE(WriteFlowFile(v1, h, fields).ok());
  }
  error = first_error(LoaderOptions::FAIL, nullptr);
  EXPECT_NE(error.find("flow file " + v1 + " was computed for 11 frames but " + Root() +
                       "/c/v1.mkv has 12"),
            std::string::npos)
      << error;

  // A video the index does not list.
  WriteFlow(flow_dir_);
  videos_.push_back({Root() + "/c/v0.mkv.copy", 0});
  fs::copy_file(Root() + "/c/v0.mkv", Root() + "/c/v0.mkv.copy",
                fs::copy_options::overwrite_existing);
  videos_.erase(videos_.begin());  // keep 3 videos: v1, v2, the copy
  error = first_error(LoaderOptions::FAIL, nullptr);
  EXPECT_NE(error.find("no flow for video " + Root() + "/c/v0.mkv.copy: not listed in " +
                       flow_dir_ + "/flow_index.pbtxt"),
            std::string::npos)
      << error;
}

TEST_F(FlowViewTest, DamagedFieldDataIsAnErrorNamingTheFileAndField) {
  const std::string v0 = flow_dir_ + "/c/v0.mkv.flow";
  absl::StatusOr<std::unique_ptr<FlowFile>> f = FlowFile::Open(v0);
  ASSERT_TRUE(f.ok());
  // Damage the middle of every field's stream, so whichever fields the
  // clip reads are damaged.
  std::string bytes = ::tb::testing::ReadAll(v0);
  const std::vector<uint64_t>& offsets = (*f)->offsets();
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    const size_t at = (offsets[i] + offsets[i + 1]) / 2;
    bytes[at] = static_cast<char>(bytes[at] ^ 0x5a);
  }
  f->reset();
  std::ofstream(v0, std::ios::binary | std::ios::trunc) << bytes;
  DatasetConfig d = Dataset();
  auto loader = Loader("flow {}", d);
  absl::StatusOr<ClipBatch> batch = loader->Next();
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("flow file " + v0 + " is corrupt"), std::string::npos)
      << batch.status();
}

TEST_F(FlowViewTest, ConfigErrors) {
  // An unknown view name.
  absl::Status s = CreateSamplePlanner(Sampler("flow { views: 'strong' }"), Dataset()).status();
  EXPECT_NE(s.message().find("sampler.flow.views: no view 'strong' in this sampler (views: clip)"),
            std::string::npos)
      << s;
  // No flow folder for a ucf101-layout dataset.
  DatasetConfig d = Dataset();
  d.clear_flow_dir();
  d.mutable_ucf101()->set_root("/data/ucf");
  s = CreateSamplePlanner(Sampler("flow {}"), d).status();
  EXPECT_NE(s.message().find("dataset.flow_dir"), std::string::npos) << s;
  // The default next to a manifest; its index missing.
  d.mutable_manifest()->set_path("/nonexistent/ucf.manifest");
  EXPECT_EQ(*DatasetFlowDir(d), "/nonexistent/flow");
  s = CreateSamplePlanner(Sampler("flow {}"), d).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("flow index not found: /nonexistent/flow/flow_index.pbtxt"),
            std::string::npos)
      << s;
  // Without `flow` nothing is read.
  EXPECT_TRUE(CreateSamplePlanner(Sampler(""), d).ok());
}

}  // namespace
}  // namespace tb
