// bench_data: decoding speed of the data pipeline on UCF101-like videos.
// Generates a handful of 320x240 MPEG-4 AVIs (25 fps, 7 s; the synthetic
// video writer, no B-frames) in a temporary folder, then reports median
// clips/s and decoded frames/s of
//   (a) decoding every frame of the video and cutting one 8-frame clip at
//       stride 2 (what the reference Python loader does),
//   (b) indexed decoding of only the clip's 8 frames (VideoReader::ReadFrames),
// both at native resolution and including opening the file, and the
// throughput of the training ClipLoader (decode at short side 128, random
// resized crop 112, flip, normalise; default DatasetConfig) with 1 and 2
// worker threads.
//
//   bazel run //tools:bench_data [-- --videos=5 --iters=30]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "configs/config_loader.h"
#include "core/rng.h"
#include "core/threads.h"
#include "datasets/clip_loader.h"
#include "datasets/synthetic/video_writer.h"
#include "datasets/video_reader.h"
#include "core/cli.h"

DEFINE_int32(videos, 5, "Videos to generate.");
DEFINE_int32(width, 320, "Frame width.");
DEFINE_int32(height, 240, "Frame height.");
DEFINE_double(seconds, 7, "Video length in seconds.");
DEFINE_double(fps, 25, "Frame rate.");
DEFINE_int32(gop, 12, "Key-frame interval of the generated videos.");
DEFINE_int32(iters, 30, "Timed clips per measurement of (a) and (b) (medians printed).");
DEFINE_int32(loader_batches, 12, "Timed batches of 8 clips per ClipLoader measurement.");
DEFINE_string(dir, "", "Folder for the generated videos (default: a fresh temp folder).");

namespace {

namespace fs = std::filesystem;
constexpr char kTool[] = "bench_data";
constexpr int kClipFrames = 8;
constexpr int kClipStride = 2;

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// A textured background drifting sideways, a moving bright disc and pixel
// noise: enough structure and motion that the encoder does real work.
absl::Status WriteVideo(const std::string& path, int seed) {
  const int w = FLAGS_width, h = FLAGS_height;
  const int frames = static_cast<int>(std::lround(FLAGS_seconds * FLAGS_fps));
  tb::VideoWriterOptions options;
  options.gop_size = FLAGS_gop;
  auto writer = tb::VideoWriter::Open(path, w, h, FLAGS_fps, options);
  if (!writer.ok()) return writer.status();
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  tb::RngStream rng(static_cast<uint64_t>(seed), 0, 0, 0);
  for (int t = 0; t < frames; ++t) {
    const double cx = w * (0.5 + 0.35 * std::sin(0.07 * t + seed));
    const double cy = h * (0.5 + 0.3 * std::cos(0.05 * t + 2 * seed));
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const int xs = x + 2 * t;
        const bool disc = (x - cx) * (x - cx) + (y - cy) * (y - cy) < 900;
        uint8_t* p = &rgb[(static_cast<size_t>(y) * w + x) * 3];
        const int noise = static_cast<int>(rng.NextU32() % 9) - 4;
        p[0] = static_cast<uint8_t>(std::clamp((disc ? 230 : (xs * 3 + y) % 160) + noise, 0, 255));
        p[1] = static_cast<uint8_t>(std::clamp((disc ? 200 : ((xs / 8 + y / 8) % 2) * 90 + 40) +
                                                   noise, 0, 255));
        p[2] = static_cast<uint8_t>(std::clamp((disc ? 40 : (y * 2 + seed * 37) % 200) + noise,
                                               0, 255));
      }
    }
    if (absl::Status s = (*writer)->WriteFrame(rgb.data()); !s.ok()) return s;
  }
  return (*writer)->Close();
}

std::vector<int64_t> ClipIndices(int64_t frame_count, tb::RngStream* rng) {
  const int64_t span = (kClipFrames - 1) * kClipStride + 1;
  const int64_t start =
      frame_count > span ? static_cast<int64_t>(rng->UniformInt(frame_count - span + 1)) : 0;
  std::vector<int64_t> indices;
  for (int k = 0; k < kClipFrames; ++k) {
    indices.push_back(std::min(frame_count - 1, start + k * kClipStride));
  }
  return indices;
}

struct Measurement {
  double clip_seconds = 0;    // median per clip
  double frames_per_clip = 0;  // frames decoded per clip
};

// (a) full decode + cut, or (b) only the clip's frames.
absl::StatusOr<Measurement> MeasureDecode(const std::vector<std::string>& videos, bool full) {
  std::vector<double> times;
  double frames = 0;
  for (int i = 0; i < FLAGS_iters + 2; ++i) {
    tb::RngStream rng(7, 0, static_cast<uint64_t>(i), 0);
    const auto start = std::chrono::steady_clock::now();
    auto reader = tb::VideoReader::Open(videos[i % videos.size()]);
    if (!reader.ok()) return reader.status();
    const int64_t n = (*reader)->info().frame_count;
    const std::vector<int64_t> clip = ClipIndices(n, &rng);
    std::vector<int64_t> wanted = clip;
    if (full) {
      wanted.resize(n);
      for (int64_t k = 0; k < n; ++k) wanted[k] = k;
    }
    auto decoded = (*reader)->ReadFrames(wanted, /*short_side=*/0);
    if (!decoded.ok()) return decoded.status();
    if (full) {  // cut the clip out of the decoded video
      const size_t frame_bytes = static_cast<size_t>(decoded->width) * decoded->height * 3;
      std::vector<uint8_t> cut(frame_bytes * clip.size());
      for (size_t k = 0; k < clip.size(); ++k) {
        std::copy_n(decoded->rgb.begin() + clip[k] * frame_bytes, frame_bytes,
                    cut.begin() + k * frame_bytes);
      }
    }
    if (i >= 2) {  // the first two are warm-up
      times.push_back(Seconds(start));
      frames += static_cast<double>(wanted.size());
    }
  }
  return Measurement{Median(times), frames / FLAGS_iters};
}

absl::StatusOr<double> MeasureLoader(const std::vector<std::string>& videos, int workers) {
  tb::ExperimentConfig experiment;
  tb::ResolveDefaults(&experiment);
  tb::DatasetConfig config = experiment.dataset();
  config.mutable_loader()->set_num_workers(workers);
  std::vector<tb::LabeledVideo> list;
  for (size_t i = 0; i < videos.size(); ++i) list.push_back({videos[i], static_cast<int>(i)});
  constexpr int kBatch = 8;
  tb::ClipLoader loader(list, config, kBatch, /*seed=*/1, /*first_batch=*/0);
  for (int i = 0; i < 2; ++i) {  // warm-up: fills the prefetch queue's pipeline
    auto b = loader.Next();
    if (!b.ok()) return b.status();
  }
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < FLAGS_loader_batches; ++i) {
    auto b = loader.Next();
    if (!b.ok()) return b.status();
  }
  return FLAGS_loader_batches * kBatch / Seconds(start);
}

int Run() {
  if (FLAGS_videos < 1 || FLAGS_iters < 1 || FLAGS_loader_batches < 1) {
    return tb::ToolError(kTool, tb::kExitUsageError,
                         "--videos, --iters and --loader_batches must be >= 1");
  }
  tb::ConfigureThreads(1);
  const bool own_dir = FLAGS_dir.empty();
  const std::string dir =
      own_dir ? (fs::temp_directory_path() / absl::StrCat("bench_data_", ::getpid())).string()
              : FLAGS_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return tb::ToolError(kTool, tb::kExitDataError, "cannot create " + dir);
  std::vector<std::string> videos;
  const auto gen_start = std::chrono::steady_clock::now();
  for (int i = 0; i < FLAGS_videos; ++i) {
    videos.push_back(absl::StrCat(dir, "/v_Bench_g01_c0", i + 1, ".avi"));
    if (absl::Status s = WriteVideo(videos.back(), i); !s.ok()) {
      return tb::ToolError(kTool, tb::kExitDataError, s);
    }
  }
  auto probe = tb::VideoReader::Open(videos[0]);
  if (!probe.ok()) return tb::ToolError(kTool, tb::kExitDataError, probe.status());
  std::printf("generated %d videos %dx%d, %lld frames at %g fps, MPEG-4 part 2 AVI, key frame every "
              "%d frames (%.1f s), %.0f KB each\n",
              FLAGS_videos, FLAGS_width, FLAGS_height,
              static_cast<long long>((*probe)->info().frame_count), FLAGS_fps, FLAGS_gop,
              Seconds(gen_start),
              static_cast<double>(fs::file_size(videos[0])) / 1024);

  auto full = MeasureDecode(videos, /*full=*/true);
  auto sparse = MeasureDecode(videos, /*full=*/false);
  if (!full.ok()) return tb::ToolError(kTool, tb::kExitDataError, full.status());
  if (!sparse.ok()) return tb::ToolError(kTool, tb::kExitDataError, sparse.status());
  auto loader1 = MeasureLoader(videos, 1);
  if (!loader1.ok()) return tb::ToolError(kTool, tb::kExitDataError, loader1.status());
  auto loader2 = MeasureLoader(videos, 2);
  if (!loader2.ok()) return tb::ToolError(kTool, tb::kExitDataError, loader2.status());

  std::printf("\n%-58s %10s %12s\n", "method (8-frame clip, stride 2)", "clips/s", "frames out/s");
  std::printf("%-58s %10.1f %12.0f\n", "(a) decode every frame, cut the clip (native size)",
              1 / full->clip_seconds, full->frames_per_clip / full->clip_seconds);
  std::printf("%-58s %10.1f %12.0f\n", "(b) indexed: decode only the clip's frames (native size)",
              1 / sparse->clip_seconds, sparse->frames_per_clip / sparse->clip_seconds);
  std::printf("%-58s %10.1f %12s\n", "ClipLoader, 1 worker (short side 128, crop 112, augment)",
              *loader1, "");
  std::printf("%-58s %10.1f %12s\n", "ClipLoader, 2 workers", *loader2, "");
  std::printf("\nratio (b)/(a) clips/s: %.2fx\n", full->clip_seconds / sparse->clip_seconds);
  if (own_dir) fs::remove_all(dir, ec);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = tb::InitTool(kTool,
                            "Benchmarks full vs indexed decoding and the ClipLoader on generated "
                            "UCF101-like videos.\n  bench_data [--videos=5] [--iters=30]",
                            &argc, &argv)) {
    return rc;
  }
  return Run();
}
