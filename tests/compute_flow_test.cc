// //tools:compute_flow as a user runs it, on 64x48 fixture videos of a
// smooth pattern translating by (+2, +1) px per frame: the stored,
// dequantised fields against OpenCV's own TV-L1 run by /usr/bin/python3
// (python3-opencv) within half a quantisation step, and the translation;
// resuming (existing files skipped, a deleted or damaged one recomputed, an
// interrupted run continued); other settings refused without --overwrite;
// --on_error=fail/skip with an unreadable video; usage errors.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"
#include "datasets/flow/flow_test_util.h"

namespace tb {
namespace {

namespace fs = std::filesystem;
using ::tb::testing::CommandResult;
using ::tb::testing::RunWithOutput;

constexpr int kWidth = 64, kHeight = 48, kFrames = 16;

// A smooth pattern of several orientations; frame t shows it moved by
// (2t, t) px, so the true flow is (+2, +1) everywhere.
void Translating(int t, int x, int y, uint8_t* rgb) {
  const double u = x - 2.0 * t, v = y - 1.0 * t;
  const double g = 128 + 45 * std::sin(u * 0.31) + 35 * std::cos(v * 0.27) +
                   30 * std::sin((u + v) * 0.19) + 15 * std::cos((u - 2 * v) * 0.41);
  const uint8_t value = static_cast<uint8_t>(std::lround(std::clamp(g, 0.0, 255.0)));
  rgb[0] = value;
  rgb[1] = static_cast<uint8_t>(255 - value / 2);
  rgb[2] = static_cast<uint8_t>(value / 3 + 40);
}

class ComputeFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = ::tb::testing::TmpPath(::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(work_);
    fs::create_directories(work_ + "/videos");
  }

  std::string Video(const std::string& relative, int frames = kFrames) {
    const std::string path = work_ + "/videos/" + relative;
    EXPECT_TRUE(::tb::testing::WriteLosslessVideo(path, kWidth, kHeight, frames, Translating));
    return path;
  }

  void List(const std::vector<std::string>& lines) {
    std::ofstream out(work_ + "/videos/list.txt");
    for (const std::string& l : lines) out << l << "\n";
  }

  CommandResult Tool(const std::string& flags) {
    return RunWithOutput(::tb::testing::RunfilePath("tools/compute_flow") + " --videos='" + work_ +
                         "/videos/list.txt' --out='" + work_ + "/flow' " + flags);
  }

  std::string FlowPath(const std::string& relative) { return work_ + "/flow/" + relative + ".flow"; }

  std::string work_;
};

int64_t ModificationNanos(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

TEST_F(ComputeFlowTest, MatchesOpenCvPythonWithinHalfAQuantisationStep) {
  const std::string video = Video("walk/a.mkv");
  List({"walk/a.mkv"});
  const CommandResult r = Tool("--short_side=0 --threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"computed\":1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"fields\":15"), std::string::npos) << r.out;

  absl::StatusOr<std::unique_ptr<FlowFile>> file = FlowFile::Open(FlowPath("walk/a.mkv"));
  ASSERT_TRUE(file.ok()) << file.status();
  const FlowFileHeader& h = (*file)->header();
  EXPECT_EQ(h.frame_count(), kFrames);
  EXPECT_EQ((*file)->num_fields(), kFrames - 1);
  EXPECT_EQ(h.width(), kWidth);
  EXPECT_EQ(h.height(), kHeight);
  EXPECT_EQ(h.relative_path(), "walk/a.mkv");
  EXPECT_EQ(h.settings().algorithm(), "opencv_dual_tvl1");
  EXPECT_EQ(h.settings().quantization().bound(), 20.0f);
  EXPECT_EQ(h.settings().quantization().levels(), 255);
  EXPECT_DOUBLE_EQ(h.settings().tvl1().tau(), 0.25);
  EXPECT_EQ(h.settings().tvl1().scales(), 5);
  EXPECT_EQ(h.library().rfind("OpenCV 4.", 0), 0u) << h.library();

  const std::string reference = work_ + "/reference.f32";
  const auto py = ::tb::testing::RunPythonReference(
      "datasets/flow/testdata/tvl1_reference.py", {video, "64", "48", reference}, {"cv2"});
  ASSERT_TRUE(py.ok()) << py.status();
  const std::string bytes = ::tb::testing::ReadAll(reference);
  const size_t plane = kWidth * kHeight;
  ASSERT_EQ(bytes.size(), (kFrames - 1) * plane * 2 * sizeof(float));
  const float* ref = reinterpret_cast<const float*>(bytes.data());

  const FlowQuantization& q = h.settings().quantization();
  const float half_step = FlowQuantStep(q) / 2;  // 0.0787 px
  std::vector<float> xy(2 * plane);
  double worst = 0, sum_x = 0, sum_y = 0;
  int64_t interior = 0;
  for (int f = 0; f < kFrames - 1; ++f) {
    ASSERT_TRUE((*file)->ReadFieldFloat(f, xy.data()).ok());
    for (size_t i = 0; i < plane; ++i) {
      for (int c = 0; c < 2; ++c) {
        const float want = std::clamp(ref[(f * plane + i) * 2 + c], -q.bound(), q.bound());
        worst = std::max<double>(worst, std::abs(xy[c * plane + i] - want));
      }
      const int x = static_cast<int>(i % kWidth), y = static_cast<int>(i / kWidth);
      if (x >= 8 && x < kWidth - 8 && y >= 8 && y < kHeight - 8) {
        sum_x += xy[i];
        sum_y += xy[plane + i];
        ++interior;
      }
    }
  }
  std::printf("largest |stored - cv2.optflow| = %.5f px (half step %.5f); interior mean (%.3f, "
              "%.3f) px\n", worst, half_step, sum_x / interior, sum_y / interior);
  EXPECT_LE(worst, half_step + 1e-4) << "stored flow differs from cv2.optflow's";
  // The translation itself (TV-L1 smooths the borders; the interior mean).
  EXPECT_NEAR(sum_x / interior, 2.0, 0.25);
  EXPECT_NEAR(sum_y / interior, 1.0, 0.25);

  // The index next to the outputs.
  absl::StatusOr<FlowIndex> index = ReadFlowIndex(work_ + "/flow/flow_index.pbtxt");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->video_size(), 1);
  EXPECT_EQ(index->video(0).relative_path(), "walk/a.mkv");
  EXPECT_EQ(index->video(0).flow_path(), "walk/a.mkv.flow");
  EXPECT_EQ(index->video(0).frame_count(), kFrames);
  EXPECT_EQ(index->settings().decode_short_side(), 0);
  EXPECT_EQ(index->settings().quantization().bound(), 20.0f);
}

// From a manifest (relative root), output next to it by default.
TEST_F(ComputeFlowTest, ManifestInputDecodesAtTheShortSideLikeTheLoader) {
  Video("c/a.mkv", 4);
  {
    std::ofstream m(work_ + "/m.manifest");
    m << "dataset: \"t\" format: \"list\" split: 1 root: \"videos\" class_names: \"c\"\n"
         "video { relative_path: \"c/a.mkv\" label: 0 split: TRAIN }\n";
  }
  const CommandResult r = RunWithOutput(::tb::testing::RunfilePath("tools/compute_flow") +
                                        " --manifest='" + work_ + "/m.manifest' --short_side=24");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  absl::StatusOr<std::unique_ptr<FlowFile>> file = FlowFile::Open(FlowPath("c/a.mkv"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->header().width(), 32);
  EXPECT_EQ((*file)->header().height(), 24);
  EXPECT_EQ((*file)->header().source_width(), 64);
  EXPECT_EQ((*file)->header().settings().decode_short_side(), 24);
  absl::StatusOr<FlowIndex> index = ReadFlowIndex(work_ + "/flow/flow_index.pbtxt");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->source(), work_ + "/m.manifest");
  EXPECT_EQ(index->root(), work_ + "/videos");
  ASSERT_EQ(index->video_size(), 1);
  EXPECT_EQ(index->video(0).relative_path(), "c/a.mkv");
}

TEST_F(ComputeFlowTest, ResumesSkippingFinishedVideosAndRecomputingMissingOrDamagedOnes) {
  Video("a/one.mkv", 4);
  Video("b/two.mkv", 4);
  Video("b/three.mkv", 4);
  List({"a/one.mkv", "# a comment", "", "b/two.mkv", "b/three.mkv"});
  CommandResult r = Tool("--threads=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"computed\":3,\"existing\":0"), std::string::npos) << r.out;
  const int64_t one = ModificationNanos(FlowPath("a/one.mkv"));
  const std::string two_bytes = ::tb::testing::ReadAll(FlowPath("b/two.mkv"));

  // Second run: nothing to do, files untouched.
  r = Tool("--threads=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"computed\":0,\"existing\":3"), std::string::npos) << r.out;
  EXPECT_EQ(ModificationNanos(FlowPath("a/one.mkv")), one);

  // A deleted output is recomputed (to the same bytes), a damaged one too.
  fs::remove(FlowPath("b/two.mkv"));
  fs::resize_file(FlowPath("b/three.mkv"), 100);
  r = Tool("--threads=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"computed\":2,\"existing\":1"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("recomputing"), std::string::npos) << r.err;
  EXPECT_EQ(::tb::testing::ReadAll(FlowPath("b/two.mkv")), two_bytes);
  EXPECT_TRUE(FlowFile::Open(FlowPath("b/three.mkv")).ok());
  EXPECT_EQ(ModificationNanos(FlowPath("a/one.mkv")), one);
  absl::StatusOr<FlowIndex> index = ReadFlowIndex(work_ + "/flow/flow_index.pbtxt");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->video_size(), 3);

  // Other settings are refused, naming the file; --overwrite recomputes.
  r = Tool("--bound=10");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(FlowPath("a/one.mkv") + " exists with other settings (bound 20 vs 10"),
            std::string::npos)
      << r.err;
  r = Tool("--bound=10 --overwrite");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"computed\":3"), std::string::npos) << r.out;
  index = ReadFlowIndex(work_ + "/flow/flow_index.pbtxt");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->settings().quantization().bound(), 10.0f);
}

TEST_F(ComputeFlowTest, AnInterruptedRunContinues) {
  for (int i = 0; i < 3; ++i) Video("v" + std::to_string(i) + ".mkv", 10);
  List({"v0.mkv", "v1.mkv", "v2.mkv"});
  const std::string err = work_ + "/err.txt", pid = work_ + "/pid", rc_file = work_ + "/rc";
  // The tool in the background; its pid (exec keeps it) and exit code go to files.
  const std::string command = "(sh -c 'echo $$ > " + pid + "; exec " +
                              ::tb::testing::RunfilePath("tools/compute_flow") + " --videos=" +
                              work_ + "/videos/list.txt --out=" + work_ +
                              "/flow --threads=1 2>" + err + " >/dev/null'; echo $? > " +
                              rc_file + ") &";
  ASSERT_EQ(std::system(command.c_str()), 0);
  // Interrupt once the first video is done.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (::tb::testing::ReadAll(err).find("1/3 v0.mkv") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(::tb::testing::ReadAll(err).find("1/3 v0.mkv"), std::string::npos);
  const pid_t tool = static_cast<pid_t>(std::stol(::tb::testing::ReadAll(pid)));
  ASSERT_GT(tool, 1);
  kill(tool, SIGINT);
  std::string rc;
  while ((rc = ::tb::testing::ReadAll(rc_file)).empty() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(rc == "130\n" || rc == "0\n") << rc;  // 0: it finished first
  if (rc == "130\n") {
    EXPECT_NE(::tb::testing::ReadAll(err).find("interrupted"), std::string::npos);
    EXPECT_FALSE(fs::exists(work_ + "/flow/flow_index.pbtxt"));
  }
  EXPECT_TRUE(fs::exists(FlowPath("v0.mkv")));
  const CommandResult r = Tool("--threads=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"existing\":"), std::string::npos);
  EXPECT_EQ(r.out.find("\"existing\":0"), std::string::npos) << r.out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(FlowFile::Open(FlowPath("v" + std::to_string(i) + ".mkv")).ok());
  }
}

TEST_F(ComputeFlowTest, UnreadableVideosFailOrAreSkipped) {
  Video("good.mkv", 5);
  {
    std::ofstream bad(work_ + "/videos/bad.avi");
    bad << "not a video";
  }
  List({"bad.avi", "good.mkv", "missing.avi"});
  CommandResult r = Tool("--threads=1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(work_ + "/videos/bad.avi: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("index not written"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(work_ + "/flow/flow_index.pbtxt"));

  r = Tool("--threads=1 --on_error=skip");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(work_ + "/videos/bad.avi: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("video not found: " + work_ + "/videos/missing.avi"), std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("\"computed\":1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"skipped\":2"), std::string::npos) << r.out;
  absl::StatusOr<FlowIndex> index = ReadFlowIndex(work_ + "/flow/flow_index.pbtxt");
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->video_size(), 1);
  EXPECT_EQ(index->video(0).relative_path(), "good.mkv");
}

TEST_F(ComputeFlowTest, BadFlagsAreUsageErrors) {
  List({"x.mkv"});
  const std::string tool = ::tb::testing::RunfilePath("tools/compute_flow");
  EXPECT_EQ(RunWithOutput(tool + " --videos='" + work_ + "/videos/list.txt'").exit_code, 2);
  const CommandResult levels = Tool("--levels=300");
  EXPECT_EQ(levels.exit_code, 2);
  EXPECT_NE(levels.err.find("quantization levels 300 not in [2, 256]"), std::string::npos)
      << levels.err;
  EXPECT_EQ(RunWithOutput(tool + " --manifest=/nonexistent.manifest").exit_code, 1);
}

}  // namespace
}  // namespace tb
