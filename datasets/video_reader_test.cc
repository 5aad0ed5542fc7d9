#include "datasets/video_reader.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
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

// ---------------------------------------------------------------- damage

std::string Runfile(const std::string& relative) {
  const char* dir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return std::string(dir != nullptr ? dir : ".") + "/" +
         (workspace != nullptr ? workspace : "timebalance") + "/" + relative;
}

std::string Encoders() {
  static const std::string* encoders = [] {
    const std::string out = TmpDir() + "/all_encoders.txt";
    RunCommand(std::string(kFfmpeg) + " -hide_banner -encoders > " + out + " 2>/dev/null");
    return new std::string(ReadAll(out));
  }();
  return *encoders;
}

bool HaveEncoder(const std::string& name) {
  return Encoders().find(" " + name + " ") != std::string::npos;
}

// A small test-pattern video of `frames` frames made by the ffmpeg CLI.
bool Encode(const std::string& path, int frames, const std::string& args,
            const std::string& size = "96x64") {
  return RunCommand(std::string(kFfmpeg) +
                    " -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc=size=" + size +
                    ":rate=25 -frames:v " + std::to_string(frames) + " " + args + " " + path);
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// The per-call limits ReadFrames documents.
void ExpectWithinLimits(const VideoReader& reader, int64_t packets, int64_t frames_wanted) {
  EXPECT_LE(reader.read_packet_count(), 4 * packets + 64);
  EXPECT_LE(reader.seek_count(), 2 * frames_wanted + 8);
}

// The bad-bytes drill's hang (tools/bad_bytes_drill.py): a variable-frame-
// rate H.264 MKV with one bit flipped in the timestamp of packet 1 (40 ms
// became 2088 ms). The decoder outputs that picture second while its
// timestamp makes it one of the last frames, and ReadFrames used to restart
// from the key frame for ever, waiting for frame 1 to come out before it.
// Made by `ffmpeg -f lavfi -i testsrc=size=160x120:rate=25 -frames:v 60 -vf
// "select='not(eq(mod(n\,5)\,2))*not(eq(mod(n\,7)\,3))'" -fps_mode vfr
// -c:v libx264 -bf 2 -g 12 -pix_fmt yuv420p`, then byte 3229 ^= 0x08.
TEST(VideoReaderDamage, MisorderedTimestampsEndBoundedAndAreReported) {
  const std::string path = Runfile("datasets/testdata/h264_vfr_flipped_bit.mkv");
  auto reader = VideoReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_FALSE((*reader)->damage().damaged()) << "the index alone shows nothing";
  // Every frame the index lists is decoded, once, in one pass: the read
  // neither loops nor needs the limits that stop a looping read.
  auto frames = (*reader)->ReadFrames({0, 3, 1}, 0);
  EXPECT_TRUE(frames.ok()) << frames.status();
  ExpectWithinLimits(**reader, 60, 3);
  const Damage& damage = (*reader)->damage();
  EXPECT_TRUE(damage.damaged());
  EXPECT_GT(damage.misordered_frames, 0);
  EXPECT_NE(damage.reason().find("out of timestamp order"), std::string::npos) << damage.reason();
}

// A 160x120 MPEG-4 AVI of 60 frames, key frames every 12, made by the
// ffmpeg CLI; returns its bytes.
std::string MakeMpeg4Avi(const std::string& path) {
  if (!Encode(path, 60, "-c:v mpeg4 -g 12 -q:v 5", "160x120")) return "";
  return ReadAll(path);
}

// Where the chunk of video packet k ("00dc", 4-byte size, data) starts in an
// AVI written by ffmpeg, npos if there is none.
size_t AviVideoChunk(const std::string& avi, int k) {
  size_t at = avi.find("movi");
  for (int i = 0; i <= k && at != std::string::npos; ++i) at = avi.find("00dc", at + 1);
  return at;
}

uint32_t LittleEndian32(const std::string& bytes, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
  return v;
}

// The other hang the drill found: an AVI that lost one packet (its chunk
// header zeroed), read far from the start. Seeking to a frame's key frame
// lands after it, so the reader reopens the file at the start, and used to
// seek again at the next step, for ever. Now the key frame is reached by
// decoding on, and the missing packet shows as damage.
TEST(VideoReaderDamage, UnreachableKeyFrameEndsBounded) {
  if (!Exists(kFfmpeg)) GTEST_SKIP() << "ffmpeg CLI not installed";
  const std::string path = TmpDir() + "/lost_packet.avi";
  std::string bytes = MakeMpeg4Avi(path);
  const size_t at = AviVideoChunk(bytes, 10);
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 8, std::string(8, '\0'));  // packet 10's chunk header
  WriteAll(path, bytes);

  auto reader = VideoReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const int64_t n = (*reader)->info().frame_count;
  EXPECT_EQ(n, 59);
  EXPECT_TRUE((*reader)->damage().truncated);
  EXPECT_EQ((*reader)->damage().reason(), "truncated: 59 of 60 frames decodable");
  auto frames = (*reader)->ReadFrames({n - 1, n / 2, n / 3, 1}, 0);
  EXPECT_TRUE(frames.ok()) << frames.status();
  ExpectWithinLimits(**reader, 59, 4);
}

// A packet whose picture header is blanked (start code kept): the decoder
// makes no frame of it. Reading a frame after it used to restart from the
// key frame for ever ("frame 1 was passed"); now the read goes to the end of
// the stream, once more from the start, then names the missing frame.
TEST(VideoReaderDamage, FrameTheDecoderSkipsEndsBoundedAndIsReported) {
  if (!Exists(kFfmpeg)) GTEST_SKIP() << "ffmpeg CLI not installed";
  const std::string path = TmpDir() + "/blank_picture.avi";
  const std::string clean = MakeMpeg4Avi(path);
  for (int blanked : {1, 2}) {
    SCOPED_TRACE(blanked);
    std::string bytes = clean;
    const size_t at = AviVideoChunk(bytes, blanked);
    ASSERT_NE(at, std::string::npos);
    const uint32_t size = LittleEndian32(bytes, at + 4);
    ASSERT_GT(size, 4u);
    ASSERT_EQ(bytes.substr(at + 8, 4), std::string("\0\0\1\xb6", 4));  // VOP start code
    bytes.replace(at + 12, size - 4, std::string(size - 4, '\0'));
    WriteAll(path, bytes);
    auto reader = VideoReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    auto frames = (*reader)->ReadFrames({0, 3, 1}, 0);
    ExpectWithinLimits(**reader, 60, 3);
    const Damage& damage = (*reader)->damage();
    EXPECT_EQ(damage.dropped_frames, 1) << damage.reason();
    EXPECT_NE(damage.reason().find("1 frame not produced by the decoder"), std::string::npos)
        << damage.reason();
    if (blanked == 1) {
      ASSERT_FALSE(frames.ok());
      EXPECT_EQ(frames.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_EQ(frames.status().message(), path + ": decoder did not produce frame 1 of 60");
    } else {
      EXPECT_TRUE(frames.ok()) << frames.status();  // frame 2 is not wanted
    }
  }
}

// A cut AVI (the header still declares every frame) used to be accepted as a
// shorter valid video.
TEST(VideoReaderDamage, TruncatedAviIsDamaged) {
  if (!Exists(kFfmpeg)) GTEST_SKIP() << "ffmpeg CLI not installed";
  const std::string path = TmpDir() + "/cut.avi";
  ASSERT_TRUE(Encode(path, 175, "-c:v mpeg4 -q:v 4"));
  const std::string bytes = ReadAll(path);
  WriteAll(path, bytes.substr(0, bytes.size() * 42 / 100));
  auto reader = VideoReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  const Damage& damage = (*reader)->damage();
  EXPECT_TRUE(damage.damaged());
  EXPECT_TRUE(damage.truncated);
  EXPECT_EQ(damage.declared_frames, 175);
  EXPECT_EQ(damage.frame_count, (*reader)->info().frame_count);
  EXPECT_LT(damage.frame_count, 175);
  EXPECT_GT(damage.frame_count, 30);
  // The cut goes through a packet, which the demuxer flags as corrupt.
  EXPECT_EQ(damage.corrupt_packets, 1);
  const std::string want = "truncated: " + std::to_string(damage.frame_count) +
                           " of 175 frames decodable; 1 corrupt packet (first: packet ";
  EXPECT_EQ(damage.reason().rfind(want, 0), 0u) << damage.reason();
  // The frames before the cut still decode.
  EXPECT_TRUE((*reader)->ReadFrames({0, 10}, 0).ok());
}

// Clean files of every codec the project reads report no damage, after the
// index and after decoding all frames and random subsets (with seeks).
TEST(VideoReaderDamage, CleanFilesOfEveryCodecAreNotDamaged) {
  if (!Exists(kFfmpeg)) GTEST_SKIP() << "ffmpeg CLI not installed";
  const std::string x264 = "-c:v libx264 -bf 2 -g 12 -x264-params b-adapt=0 -pix_fmt yuv420p";
  struct Codec {
    std::string file, encoder, args;
  };
  const std::vector<Codec> codecs = {
      {"mpeg4.avi", "mpeg4", "-c:v mpeg4 -g 12 -q:v 5"},
      {"mpeg4_bframes.avi", "mpeg4", "-c:v mpeg4 -bf 2 -g 12 -q:v 5"},
      HaveEncoder("libxvid") ? Codec{"xvid.avi", "libxvid", "-c:v libxvid -q:v 5"}
                             : Codec{"xvid.avi", "mpeg4", "-c:v mpeg4 -vtag xvid -q:v 5"},
      {"h264.mp4", "libx264", x264},
      {"h264.mkv", "libx264", x264},
      {"h264_vfr.mkv", "libx264",
       "-vf \"select='not(eq(mod(n,5),2))*not(eq(mod(n,7),3))'\" -fps_mode vfr " + x264},
      {"hevc.mp4", "libx265", "-c:v libx265 -x265-params log-level=error -pix_fmt yuv420p"},
      {"mjpeg.avi", "mjpeg", "-c:v mjpeg -q:v 5 -pix_fmt yuvj420p"},
      {"msmpeg4v3.avi", "msmpeg4", "-c:v msmpeg4 -q:v 5"},
      {"cinepak.avi", "cinepak", "-c:v cinepak"},
  };
  int checked = 0;
  for (const Codec& c : codecs) {
    if (!HaveEncoder(c.encoder)) {
      std::cout << "[  SKIPPED ] " << c.file << ": this ffmpeg has no " << c.encoder
                << " encoder\n";
      continue;
    }
    SCOPED_TRACE(c.file);
    const std::string path = TmpDir() + "/clean_" + c.file;
    ASSERT_TRUE(Encode(path, 30, c.args));
    auto reader = VideoReader::Open(path);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->info().frame_count, 30);
    std::vector<int64_t> all(30);
    for (int i = 0; i < 30; ++i) all[i] = i;
    auto frames = (*reader)->ReadFrames(all, 0);
    ASSERT_TRUE(frames.ok()) << frames.status();
    std::mt19937 gen(7);
    for (int round = 0; round < 6; ++round) {
      const std::vector<int64_t> some = {static_cast<int64_t>(gen() % 30),
                                         static_cast<int64_t>(gen() % 30),
                                         static_cast<int64_t>(gen() % 30)};
      ASSERT_TRUE((*reader)->ReadFrames(some, 0).ok());
    }
    EXPECT_FALSE((*reader)->damage().damaged()) << (*reader)->damage().reason();
    EXPECT_EQ((*reader)->damage().reason(), "");
    ++checked;
  }
  std::cout << checked << " of " << codecs.size() << " codecs checked\n";
  EXPECT_GE(checked, 6);  // the codecs of Debian's ffmpeg without extras
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
