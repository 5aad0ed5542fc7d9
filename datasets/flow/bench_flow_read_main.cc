// bench_flow_read: how fast the loader's flow views can read stored flow.
//
//   bazel run //datasets/flow:bench_flow_read -- --flow_dir=/data/flow [--clips=200]
//
// For `clips` random (video, start) pairs of the folder's index, opens the
// video's .flow file and reads an 8-field clip at stride 2 (fields
// dequantised to floats, what DecodeSample does before cropping), on one
// thread. Prints one JSON line: clips/s, fields/s, ms per clip, and the
// mean stored bytes per field and per video.
#include <chrono>
#include <cstdio>
#include <random>

#include <gflags/gflags.h>

#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"

DEFINE_string(flow_dir, "", "Folder written by //tools:compute_flow. Required.");
DEFINE_int32(clips, 200, "Clips to read.");
DEFINE_int32(frames, 8, "Fields per clip.");
DEFINE_int32(stride, 2, "Stride between the fields of a clip.");

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_flow_dir.empty() || FLAGS_clips < 1) {
    std::fprintf(stderr, "bench_flow_read: --flow_dir is required, --clips >= 1\n");
    return 2;
  }
  absl::StatusOr<std::shared_ptr<const tb::FlowStore>> store = tb::FlowStore::Open(FLAGS_flow_dir);
  if (!store.ok()) {
    std::fprintf(stderr, "bench_flow_read: %s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  const tb::FlowIndex& index = (*store)->index();
  if (index.video_size() == 0) {
    std::fprintf(stderr, "bench_flow_read: no video in the index\n");
    return 1;
  }
  int64_t bytes = 0, fields = 0;
  for (const tb::FlowIndexEntry& e : index.video()) {
    bytes += e.file_bytes();
    fields += e.frame_count() - 1;
  }
  std::mt19937_64 rng(0);
  std::vector<float> xy;
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < FLAGS_clips; ++c) {
    const tb::FlowIndexEntry& e = index.video(static_cast<int>(rng() % index.video_size()));
    absl::StatusOr<std::unique_ptr<tb::FlowFile>> file =
        tb::FlowFile::Open(FLAGS_flow_dir + "/" + e.flow_path());
    if (!file.ok()) {
      std::fprintf(stderr, "bench_flow_read: %s\n", std::string(file.status().message()).c_str());
      return 1;
    }
    const int64_t n = (*file)->num_fields();
    const int64_t span = static_cast<int64_t>(FLAGS_frames - 1) * FLAGS_stride + 1;
    const int64_t first = n > span ? static_cast<int64_t>(rng() % (n - span + 1)) : 0;
    xy.resize(2 * static_cast<size_t>((*file)->header().width()) * (*file)->header().height());
    for (int t = 0; t < FLAGS_frames; ++t) {
      const int64_t f = std::min(n - 1, first + static_cast<int64_t>(t) * FLAGS_stride);
      if (absl::Status s = (*file)->ReadFieldFloat(f, xy.data()); !s.ok()) {
        std::fprintf(stderr, "bench_flow_read: %s\n", std::string(s.message()).c_str());
        return 1;
      }
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"clips\":%d,\"clips_per_s\":%.1f,\"fields_per_s\":%.0f,\"ms_per_clip\":%.3f,"
              "\"bytes_per_field\":%.0f,\"bytes_per_video\":%.0f}\n",
              FLAGS_clips, FLAGS_clips / seconds, FLAGS_clips * FLAGS_frames / seconds,
              1000 * seconds / FLAGS_clips, static_cast<double>(bytes) / std::max<int64_t>(1, fields),
              static_cast<double>(bytes) / index.video_size());
  return 0;
}
