// Indexing real (tiny) videos into a manifest, reading it back, and using it
// as an experiment's dataset.
#include "datasets/formats/manifest.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/formats/indexer.h"
#include "datasets/formats/listing.h"
#include "datasets/synthetic/video_writer.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

void WriteVideo(const std::string& path, int frames, int width = 64, int height = 48) {
  fs::create_directories(fs::path(path).parent_path());
  auto w = VideoWriter::Open(path, width, height, 25);
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<uint8_t> rgb(width * height * 3);
  for (int t = 0; t < frames; ++t) {
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 3 + t * 40);
    ASSERT_TRUE((*w)->WriteFrame(rgb.data()).ok());
  }
  ASSERT_TRUE((*w)->Close().ok());
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A UCF101-layout tree: 2 classes, 3 train + 2 test videos.
class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TmpPath("ucf");
    fs::remove_all(root_);
    fs::create_directories(root_);
    WriteText(root_ + "/classInd.txt", "1 ApplyEyeMakeup\n2 Basketball\n");
    WriteText(root_ + "/trainlist01.txt",
              "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
              "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi 1\n"
              "Basketball/v_Basketball_g08_c01.avi 2\n");
    WriteText(root_ + "/testlist01.txt",
              "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nBasketball/v_Basketball_g01_c01.avi\n");
    for (const char* v : {"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
                          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi",
                          "Basketball/v_Basketball_g08_c01.avi",
                          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                          "Basketball/v_Basketball_g01_c01.avi"}) {
      WriteVideo(root_ + "/" + v, 6);
    }
  }

  absl::StatusOr<IndexResult> Index(const IndexOptions& options = IndexOptions()) {
    auto listing = ReadListing("ucf101", root_, "", 1);
    if (!listing.ok()) return listing.status();
    return IndexDataset(*listing, root_, options);
  }

  std::string root_;
};

TEST_F(ManifestTest, IndexesEveryVideoAndRoundTrips) {
  auto r = Index();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->problems.empty());
  const Manifest& m = r->manifest;
  ASSERT_EQ(m.video_size(), 5);
  EXPECT_EQ(m.class_names_size(), 2);
  EXPECT_EQ(m.video(2).label(), 1);
  EXPECT_EQ(m.video(2).split(), ManifestVideo::TRAIN);
  EXPECT_EQ(m.video(3).split(), ManifestVideo::TEST);
  for (const ManifestVideo& v : m.video()) {
    EXPECT_EQ(v.frame_count(), 6);
    EXPECT_EQ(v.width(), 64);
    EXPECT_EQ(v.height(), 48);
    EXPECT_DOUBLE_EQ(v.fps(), 25);
    const std::string cli = testing::RunCommand("sha256sum '" + root_ + "/" + v.relative_path() + "'");
    EXPECT_EQ(v.content_hash(), "sha256:" + cli.substr(0, 64));
  }
  const std::string path = testing::TmpPath("ucf.manifest");
  ASSERT_TRUE(WriteManifest(path, m).ok());
  auto back = ReadManifest(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->video_size(), 5);
  EXPECT_EQ(back->video(4).content_hash(), m.video(4).content_hash());

  // The manifest as an experiment's dataset: same lists as the ucf101 path.
  DatasetConfig by_manifest;
  by_manifest.mutable_manifest()->set_path(path);
  auto a = LoadExperimentData(by_manifest);
  ASSERT_TRUE(a.ok()) << a.status();
  DatasetConfig by_ucf;
  by_ucf.mutable_ucf101()->set_root(root_);
  auto b = LoadExperimentData(by_ucf);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->class_names, b->class_names);
  ASSERT_EQ(a->labeled.size(), b->labeled.size());
  ASSERT_EQ(a->test.size(), b->test.size());
  for (size_t i = 0; i < a->test.size(); ++i) {
    EXPECT_EQ(fs::path(a->test[i].path), fs::path(b->test[i].path));
    EXPECT_EQ(a->test[i].label, b->test[i].label);
  }
  EXPECT_EQ(a->labeled_sha256, b->labeled_sha256);

  // root override, and a root that does not exist.
  by_manifest.mutable_manifest()->set_root("/nonexistent_root");
  auto c = LoadExperimentData(by_manifest);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("/nonexistent_root"), std::string::npos) << c.status();
}

TEST_F(ManifestTest, BadVideosAreReportedByPathAndReason) {
  const std::string a = root_ + "/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi";
  const std::string b = root_ + "/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi";
  const std::string c = root_ + "/Basketball/v_Basketball_g08_c01.avi";
  const std::string d = root_ + "/Basketball/v_Basketball_g01_c01.avi";
  fs::remove(a);                                  // missing
  WriteText(b, "");                               // zero bytes
  WriteText(c, "this is not a video, just text");  // not a video
  fs::resize_file(d, 300);                         // truncated inside the first frame
  auto r = Index();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_GE(r->problems.size(), 3u);
  EXPECT_EQ(r->problems[0].path, a);
  EXPECT_EQ(r->problems[0].reason, "file not found");
  EXPECT_NE(r->problems[0].origin.find("trainlist01.txt"), std::string::npos);
  EXPECT_EQ(r->problems[1].path, b);
  EXPECT_EQ(r->problems[1].reason, "empty file (0 bytes)");
  EXPECT_EQ(r->problems[2].path, c);
  EXPECT_FALSE(r->problems[2].reason.empty());
  // The intact test video is still indexed.
  bool found = false;
  for (const ManifestVideo& v : r->manifest.video()) {
    found |= v.relative_path() == "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi";
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(r->manifest.video_size() + static_cast<int>(r->problems.size()), 5);
}

TEST_F(ManifestTest, ReencodedCopies) {
  IndexOptions options;
  options.reencode = true;
  options.reencode_dir = testing::TmpPath("ucf_small");
  fs::remove_all(options.reencode_dir);
  options.reencode_options.short_side = 32;
  options.reencode_options.gop = 2;
  auto r = Index(options);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->problems.empty()) << r->problems[0].path << ": " << r->problems[0].reason;
  EXPECT_EQ(r->manifest.root(), options.reencode_dir);
  EXPECT_EQ(r->manifest.source_root(), root_);
  for (const ManifestVideo& v : r->manifest.video()) {
    EXPECT_EQ(v.frame_count(), 6);
    EXPECT_EQ(v.height(), 32);
    EXPECT_EQ(v.width(), 42);  // round(64 * 32 / 48) = 43, made even
    EXPECT_NE(v.content_hash(), v.source_content_hash());
    EXPECT_TRUE(fs::is_regular_file(options.reencode_dir + "/" + v.relative_path()));
  }
}

TEST(ReadManifest, ErrorsNameFileAndLineOrVideo) {
  const std::string path = testing::TmpPath("bad.manifest");
  WriteText(path, "dataset: \"x\"\nroot: \"/v\"\nclass_names: \"a\"\nvideo { relative_pth: \"q\" }\n");
  auto r = ReadManifest(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.manifest:4"), std::string::npos) << r.status();
  WriteText(path, "root: \"/v\"\nclass_names: \"a\"\n"
                  "video { relative_path: \"a/1.avi\" label: 3 split: TRAIN }\n");
  r = ReadManifest(path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("a/1.avi"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("label 3"), std::string::npos) << r.status();
  WriteText(path, "root: \"rel\"\nclass_names: \"a\"\n"
                  "video { relative_path: \"a/1.avi\" label: 0 split: TEST }\n");
  r = ReadManifest(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->root(), (fs::path(path).parent_path() / "rel").string());
  EXPECT_FALSE(ReadManifest(path + ".missing").ok());
}

}  // namespace
}  // namespace tb
