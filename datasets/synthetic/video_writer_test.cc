#include "datasets/synthetic/video_writer.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"

namespace tb {
namespace {

constexpr int kWidth = 96;
constexpr int kHeight = 64;
constexpr int kFrames = 30;

using ::tb::testing::TmpPath;
using ::tb::testing::ReadAll;
using ::tb::testing::RunCommand;

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

// Smooth content (gradient + a moving block) that MPEG-4 reproduces closely.
std::vector<uint8_t> MakeFrame(int t) {
  std::vector<uint8_t> rgb(kWidth * kHeight * 3);
  for (int y = 0; y < kHeight; ++y) {
    for (int x = 0; x < kWidth; ++x) {
      uint8_t* p = &rgb[(y * kWidth + x) * 3];
      p[0] = static_cast<uint8_t>(40 + x * 2);
      p[1] = static_cast<uint8_t>(60 + y * 2);
      p[2] = static_cast<uint8_t>(100 + t * 3);
      const int bx = 10 + 2 * t;
      if (x >= bx && x < bx + 16 && y >= 20 && y < 36) {
        p[0] = 230;
        p[1] = 220;
        p[2] = 30;
      }
    }
  }
  return rgb;
}

void WriteVideo(const std::string& path, const VideoWriterOptions& options = {}) {
  auto writer = VideoWriter::Open(path, kWidth, kHeight, 25.0, options);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int t = 0; t < kFrames; ++t) {
    const std::vector<uint8_t> frame = MakeFrame(t);
    ASSERT_TRUE((*writer)->WriteFrame(frame.data()).ok());
  }
  EXPECT_EQ((*writer)->frames_written(), kFrames);
  const absl::Status closed = (*writer)->Close();
  ASSERT_TRUE(closed.ok()) << closed;
}

std::string Probe(const std::string& path, const std::string& entries) {
  return RunCommand("/usr/bin/ffprobe -v error -count_frames -select_streams v:0 -show_entries " +
             entries + " -of default=noprint_wrappers=1 '" + path + "'");
}

TEST(VideoWriter, AviHasEveryFrameAndTheRequestedFormat) {
  const std::string path = TmpPath("frames.avi");
  WriteVideo(path);
  EXPECT_FALSE(Exists(path + ".partial"));
  const std::string info =
      Probe(path, "stream=codec_name,width,height,pix_fmt,nb_read_frames,r_frame_rate");
  EXPECT_NE(info.find("codec_name=mpeg4"), std::string::npos) << info;
  EXPECT_NE(info.find("width=96"), std::string::npos) << info;
  EXPECT_NE(info.find("height=64"), std::string::npos) << info;
  EXPECT_NE(info.find("pix_fmt=yuv420p"), std::string::npos) << info;
  EXPECT_NE(info.find("r_frame_rate=25/1"), std::string::npos) << info;
  EXPECT_NE(info.find("nb_read_frames=30"), std::string::npos) << info;
  const std::string format = RunCommand("/usr/bin/ffprobe -v error -show_entries format=format_name "
                                 "-of default=noprint_wrappers=1 '" + path + "'");
  EXPECT_NE(format.find("format_name=avi"), std::string::npos) << format;
}

TEST(VideoWriter, DecodedFramesAreCloseToTheInput) {
  const std::string path = TmpPath("content.avi");
  WriteVideo(path);
  const std::string decoded =
      RunCommand("/usr/bin/ffmpeg -nostdin -v error -i '" + path + "' -f rawvideo -pix_fmt rgb24 -");
  ASSERT_EQ(decoded.size(), static_cast<size_t>(kFrames) * kWidth * kHeight * 3);
  double total = 0;
  for (int t = 0; t < kFrames; ++t) {
    const std::vector<uint8_t> expected = MakeFrame(t);
    const uint8_t* got =
        reinterpret_cast<const uint8_t*>(decoded.data()) + t * expected.size();
    double frame_error = 0;
    for (size_t i = 0; i < expected.size(); ++i) frame_error += std::abs(got[i] - expected[i]);
    frame_error /= expected.size();
    // Every frame must be the right one, not merely the average.
    EXPECT_LT(frame_error, 8.0) << "frame " << t;
    total += frame_error;
  }
  EXPECT_LT(total / kFrames, 5.0);
}

TEST(VideoWriter, SameFramesGiveIdenticalBytes) {
  const std::string a = TmpPath("same_a.avi");
  const std::string b = TmpPath("same_b.avi");
  WriteVideo(a);
  WriteVideo(b);
  const std::string bytes_a = ReadAll(a);
  ASSERT_FALSE(bytes_a.empty());
  EXPECT_TRUE(bytes_a == ReadAll(b));
  // No libavformat version string: it would change with the FFmpeg package.
  EXPECT_EQ(bytes_a.find("Lavf"), std::string::npos);
}

TEST(VideoWriter, Mp4ContainerAndBitRateMode) {
  const std::string path = TmpPath("frames.mp4");
  VideoWriterOptions options;
  options.qscale = 0;
  options.bit_rate = 300000;
  options.gop_size = 5;
  WriteVideo(path, options);
  const std::string format = RunCommand("/usr/bin/ffprobe -v error -show_entries format=format_name "
                                 "-of default=noprint_wrappers=1 '" + path + "'");
  EXPECT_NE(format.find("mp4"), std::string::npos) << format;
  EXPECT_NE(Probe(path, "stream=nb_read_frames").find("nb_read_frames=30"), std::string::npos);
  // Key frames every gop_size frames.
  const std::string keys = RunCommand(
      "/usr/bin/ffprobe -v error -select_streams v:0 -show_entries frame=key_frame "
      "-of csv=p=0 '" + path + "'");
  int num_keys = 0;
  for (char c : keys) num_keys += c == '1';
  EXPECT_EQ(num_keys, 6) << keys;
}

TEST(VideoWriter, ErrorsNameThePathAndTheReason) {
  auto odd = VideoWriter::Open(TmpPath("odd.avi"), 95, 64, 25.0);
  EXPECT_EQ(odd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(odd.status().message().find("odd.avi"), std::string::npos);

  auto bad_ext = VideoWriter::Open(TmpPath("clip.notacontainer"), 96, 64, 25.0);
  EXPECT_EQ(bad_ext.status().code(), absl::StatusCode::kInvalidArgument);

  VideoWriterOptions no_codec;
  no_codec.codec = "no_such_encoder";
  auto bad_codec = VideoWriter::Open(TmpPath("c.avi"), 96, 64, 25.0, no_codec);
  EXPECT_NE(bad_codec.status().message().find("no_such_encoder"), std::string::npos);

  const std::string missing = TmpPath("no/such/dir/v.avi");
  auto no_dir = VideoWriter::Open(missing, 96, 64, 25.0);
  EXPECT_EQ(no_dir.status().code(), absl::StatusCode::kNotFound) << no_dir.status();
  EXPECT_NE(no_dir.status().message().find(missing), std::string::npos);
  EXPECT_NE(no_dir.status().message().find("No such file"), std::string::npos)
      << no_dir.status();
}

TEST(VideoWriter, AbandonedWriterLeavesNoFile) {
  const std::string path = TmpPath("abandoned.avi");
  {
    auto writer = VideoWriter::Open(path, kWidth, kHeight, 25.0);
    ASSERT_TRUE(writer.ok());
    const std::vector<uint8_t> frame = MakeFrame(0);
    ASSERT_TRUE((*writer)->WriteFrame(frame.data()).ok());
    EXPECT_TRUE(Exists(path + ".partial"));
  }
  EXPECT_FALSE(Exists(path));
  EXPECT_FALSE(Exists(path + ".partial"));
}

TEST(VideoWriter, WriteAfterCloseFails) {
  const std::string path = TmpPath("closed.avi");
  auto writer = VideoWriter::Open(path, kWidth, kHeight, 25.0);
  ASSERT_TRUE(writer.ok());
  const std::vector<uint8_t> frame = MakeFrame(0);
  ASSERT_TRUE((*writer)->WriteFrame(frame.data()).ok());
  ASSERT_TRUE((*writer)->Close().ok());
  EXPECT_EQ((*writer)->WriteFrame(frame.data()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(path));
}

}  // namespace
}  // namespace tb
