#include "datasets/video_reader.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tb {
namespace {

constexpr char kFfmpeg[] = "/usr/bin/ffmpeg";
constexpr char kFfprobe[] = "/usr/bin/ffprobe";

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

std::string TmpDir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t != nullptr ? t : "/tmp";
}

bool RunCommand(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fixture video plus the CLI's own view of it: the frame count from
// `ffprobe -count_frames` and a full sequential decode to RGB24.
struct Fixture {
  std::string path;
  int64_t probed_frames = -1;
  std::string reference;  // frames * 120 * 160 * 3 bytes
  bool ok = false;
};

constexpr int kWidth = 160;
constexpr int kHeight = 120;
constexpr size_t kFrameBytes = kWidth * kHeight * 3;

Fixture MakeFixture(const std::string& name, const std::string& encode_args) {
  Fixture f;
  const std::string dir = TmpDir();
  f.path = dir + "/" + name;
  const std::string quiet = " -hide_banner -loglevel error -nostdin -y ";
  if (!RunCommand(std::string(kFfmpeg) + quiet + "-f lavfi -i testsrc=size=160x120:rate=25 -frames:v 60 " +
           encode_args + " " + f.path)) {
    return f;
  }
  const std::string ref = f.path + ".rgb";
  // passthrough keeps the CLI from duplicating or dropping frames.
  if (!RunCommand(std::string(kFfmpeg) + quiet + "-i " + f.path +
           " -map 0:v:0 -fps_mode passthrough -f rawvideo -pix_fmt rgb24 " + ref)) {
    return f;
  }
  f.reference = ReadAll(ref);
  const std::string count = f.path + ".count";
  if (!RunCommand(std::string(kFfprobe) +
           " -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames"
           " -of csv=p=0 " + f.path + " > " + count)) {
    return f;
  }
  std::istringstream(ReadAll(count)) >> f.probed_frames;
  f.ok = true;
  return f;
}

bool HaveLibx264() {
  const std::string out = TmpDir() + "/encoders.txt";
  return RunCommand(std::string(kFfmpeg) + " -hide_banner -encoders > " + out + " 2>/dev/null") &&
         ReadAll(out).find("libx264") != std::string::npos;
}

const std::map<std::string, Fixture>& Fixtures() {
  static const std::map<std::string, Fixture>* fixtures = [] {
    auto* m = new std::map<std::string, Fixture>;
    if (!Exists(kFfmpeg) || !Exists(kFfprobe)) return m;
    (*m)["avi"] = MakeFixture("mpeg4.avi", "-c:v mpeg4 -g 12 -q:v 5");
    // b-adapt=0 makes x264 really use the B-frames, so decode order differs
    // from presentation order.
    (*m)["mp4"] = HaveLibx264()
                      ? MakeFixture("h264_bframes.mp4",
                                    "-c:v libx264 -bf 2 -g 15 -x264-params b-adapt=0 "
                                    "-pix_fmt yuv420p")
                      : MakeFixture("mpeg4_bframes.mp4", "-c:v mpeg4 -bf 2 -g 15 -q:v 5");
    return m;
  }();
  return *fixtures;
}

class VideoReaderTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto it = Fixtures().find(GetParam());
    if (it == Fixtures().end()) GTEST_SKIP() << "ffmpeg CLI not installed";
    ASSERT_TRUE(it->second.ok) << "could not create fixture " << GetParam();
    fixture_ = &it->second;
    ASSERT_EQ(fixture_->reference.size(), 60 * kFrameBytes);
  }

  std::unique_ptr<VideoReader> OpenOrDie() {
    auto reader = VideoReader::Open(fixture_->path);
    EXPECT_TRUE(reader.ok()) << reader.status();
    return reader.ok() ? std::move(reader).value() : nullptr;
  }

  // Frame i of the CLI's sequential decode.
  std::string Reference(int64_t i) const { return fixture_->reference.substr(i * kFrameBytes, kFrameBytes); }

  static std::string FrameOf(const Frames& f, int64_t slot) {
    const size_t bytes = static_cast<size_t>(f.width) * f.height * 3;
    return std::string(reinterpret_cast<const char*>(f.rgb.data()) + slot * bytes, bytes);
  }

  const Fixture* fixture_ = nullptr;
};

TEST_P(VideoReaderTest, InfoMatchesFfprobe) {
  auto reader = OpenOrDie();
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->info().frame_count, fixture_->probed_frames);
  EXPECT_EQ(reader->info().frame_count, 60);
  EXPECT_EQ(reader->info().width, kWidth);
  EXPECT_EQ(reader->info().height, kHeight);
  EXPECT_NEAR(reader->info().fps, 25.0, 1e-6);
}

TEST_P(VideoReaderTest, FullDecodeEqualsCli) {
  auto reader = OpenOrDie();
  ASSERT_NE(reader, nullptr);
  std::vector<int64_t> all(60);
  for (int i = 0; i < 60; ++i) all[i] = i;
  auto frames = reader->ReadFrames(all, 0);
  ASSERT_TRUE(frames.ok()) << frames.status();
  EXPECT_EQ(frames->count, 60);
  EXPECT_EQ(frames->width, kWidth);
  EXPECT_EQ(frames->height, kHeight);
  ASSERT_EQ(frames->rgb.size(), 60 * kFrameBytes);
  for (int i = 0; i < 60; ++i) {
    EXPECT_TRUE(FrameOf(*frames, i) == Reference(i)) << "frame " << i;
  }
  // Sequential reading needs no seek beyond the initial one.
  EXPECT_EQ(reader->seek_count(), 1);
}

TEST_P(VideoReaderTest, RandomSubsetsWithDuplicatesMatchFullDecode) {
  std::mt19937 gen(1234);
  std::uniform_int_distribution<int> frame(0, 59);
  std::uniform_int_distribution<int> size(1, 12);
  auto shared = OpenOrDie();  // reused across requests, also going backwards
  ASSERT_NE(shared, nullptr);
  for (int round = 0; round < 12; ++round) {
    std::vector<int64_t> indices;
    const int k = size(gen);
    for (int j = 0; j < k; ++j) indices.push_back(frame(gen));
    indices.push_back(indices.front());  // a duplicate, out of order
    auto fresh = OpenOrDie();
    ASSERT_NE(fresh, nullptr);
    for (VideoReader* reader : {fresh.get(), shared.get()}) {
      auto frames = reader->ReadFrames(indices, 0);
      ASSERT_TRUE(frames.ok()) << frames.status();
      ASSERT_EQ(frames->count, static_cast<int64_t>(indices.size()));
      for (size_t s = 0; s < indices.size(); ++s) {
        EXPECT_TRUE(FrameOf(*frames, s) == Reference(indices[s]))
            << "round " << round << " slot " << s << " frame " << indices[s];
      }
    }
  }
}

TEST_P(VideoReaderTest, DistantFramesAreReachedBySeeking) {
  auto reader = OpenOrDie();
  ASSERT_NE(reader, nullptr);
  auto frames = reader->ReadFrames({55, 0}, 0);
  ASSERT_TRUE(frames.ok()) << frames.status();
  EXPECT_TRUE(FrameOf(*frames, 0) == Reference(55));
  EXPECT_TRUE(FrameOf(*frames, 1) == Reference(0));
  EXPECT_EQ(reader->seek_count(), 2);
  // Frame 0, then the GOP holding frame 55 (plus B-frame look-ahead).
  EXPECT_LT(reader->decoded_packet_count(), 25);
}

TEST_P(VideoReaderTest, ResizesToShortSide) {
  auto reader = OpenOrDie();
  ASSERT_NE(reader, nullptr);
  auto frames = reader->ReadFrames({3, 40, 3}, 64);
  ASSERT_TRUE(frames.ok()) << frames.status();
  EXPECT_EQ(frames->height, 64);
  EXPECT_EQ(frames->width, 85);  // round(160 * 64 / 120) = round(85.33)
  EXPECT_EQ(frames->count, 3);
  ASSERT_EQ(frames->rgb.size(), 3u * 64 * 85 * 3);
  EXPECT_TRUE(FrameOf(*frames, 0) == FrameOf(*frames, 2));
  EXPECT_FALSE(FrameOf(*frames, 0) == FrameOf(*frames, 1));
}

TEST_P(VideoReaderTest, OutOfRangeIndexIsAnError) {
  auto reader = OpenOrDie();
  ASSERT_NE(reader, nullptr);
  for (int64_t bad : {int64_t{-1}, int64_t{60}}) {
    auto frames = reader->ReadFrames({0, bad}, 0);
    ASSERT_FALSE(frames.ok());
    EXPECT_EQ(frames.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string msg(frames.status().message());
    EXPECT_NE(msg.find(fixture_->path), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
    EXPECT_NE(msg.find("60"), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Containers, VideoReaderTest, ::testing::Values("avi", "mp4"));

TEST(VideoReaderErrors, MissingFile) {
  const std::string path = TmpDir() + "/no_such_video.avi";
  auto reader = VideoReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(reader.status().message().find(path), std::string::npos) << reader.status();
}

TEST(VideoReaderErrors, NotAVideo) {
  const std::string path = TmpDir() + "/not_a_video.avi";
  std::ofstream(path) << "this is plain text, not a video\n";
  auto reader = VideoReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find(path), std::string::npos) << reader.status();
}

TEST(VideoReaderErrors, NoVideoStream) {
  if (!Exists(kFfmpeg)) GTEST_SKIP() << "ffmpeg CLI not installed";
  const std::string path = TmpDir() + "/audio_only.wav";
  ASSERT_TRUE(RunCommand(std::string(kFfmpeg) +
                  " -hide_banner -loglevel error -nostdin -y -f lavfi -i sine=duration=0.2 " +
                  path));
  auto reader = VideoReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find(path), std::string::npos) << reader.status();
}

TEST(ScaledSizeTest, RoundsLongSide) {
  int w = 0, h = 0;
  ScaledSize(320, 240, 128, &w, &h);
  EXPECT_EQ(w, 171);  // 170.67
  EXPECT_EQ(h, 128);
  ScaledSize(240, 320, 128, &w, &h);
  EXPECT_EQ(w, 128);
  EXPECT_EQ(h, 171);
  ScaledSize(320, 240, 0, &w, &h);
  EXPECT_EQ(w, 320);
  EXPECT_EQ(h, 240);
}

}  // namespace
}  // namespace tb
