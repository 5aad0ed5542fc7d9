// compute_flow: the TV-L1 optical flow of every video of a dataset, stored
// once for the loader's flow views (datasets/views.h, SamplerConfig.flow):
//
//   bazel run //tools:compute_flow -- --manifest=/data/ucf101_split1.manifest
//       [--out=/data/flow] [--threads=N] [--short_side=128] [--on_error=fail|skip]
//       [--overwrite]
//   bazel run //tools:compute_flow -- --videos=list.txt --root=/data/videos --out=/data/flow
//
// One field per consecutive frame pair at the decode size (frames decoded
// by VideoReader at --short_side, as the loader decodes them), computed by
// OpenCV's cv::optflow::DualTVL1OpticalFlow with its default parameters on
// grey frames, clipped to [-bound, bound] px and quantised to `levels`
// levels, each field zlib-compressed: <out>/<relative path>.flow
// (datasets/flow/flow_file.h), plus <out>/flow_index.pbtxt listing the
// settings and the videos. Default --out: <manifest folder>/flow.
//
// One video per thread (OpenCV's own threading is switched off). Every file
// is written atomically, and a video whose file exists with the same
// settings is skipped, so an interrupted run (Ctrl-C, a kill) continues
// where it stopped when run again; --overwrite recomputes everything.
// --on_error=fail (default): the first unreadable video stops the run (no
// further video is started, the finished files stay), every failure is
// printed with the video and the reason, the index is not written, exit 1.
// --on_error=skip: failures are printed and counted, the index lists the
// other videos, exit 0. Exit codes: 0 ok, 1 data errors, 2 bad flags,
// 128 + signal when interrupted. The last stdout line is JSON.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "datasets/flow/flow_batch.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"
#include "datasets/flow/tvl1_flow.h"
#include "datasets/formats/listing.h"
#include "datasets/formats/manifest.h"
#include "core/cli.h"

DEFINE_string(manifest, "", "Manifest of the videos (tools/prepare_dataset); all its videos.");
DEFINE_string(videos, "",
              "Instead of --manifest: a file of video paths, one per line, relative to --root "
              "(or absolute below it); empty lines and lines starting with # are ignored.");
DEFINE_string(root, "", "Folder the --videos paths are under (default: the list's folder).");
DEFINE_string(out, "",
              "Output folder (default with --manifest: <manifest folder>/flow; required with "
              "--videos).");
DEFINE_int32(threads, 0, "Videos computed at once (0 = all hardware threads).");
DEFINE_int32(short_side, 128,
             "Decode frames with this short side (0 = native size); the loader's "
             "dataset.clip.decode_short_side.");
DEFINE_double(bound, 20.0, "Flow components are clipped to [-bound, bound] px.");
DEFINE_int32(levels, 255, "Quantisation levels of each component, in [2, 256].");
DEFINE_int32(zlib_level, 9, "zlib compression level 0..9.");
DEFINE_string(filter, "none",
              "Row filter before zlib: 'none' or 'left_delta' (differences of neighbours; "
              "smaller only for smooth ramps, larger on measured TV-L1 fields).");
DEFINE_string(on_error, "fail",
              "Unreadable videos: 'fail' (stop, no index, exit 1) or 'skip' (report, count, "
              "index without them).");
DEFINE_bool(overwrite, false, "Recompute videos that already have a flow file.");

namespace {

namespace fs = std::filesystem;
constexpr char kTool[] = "compute_flow";

int Usage(const std::string& message) {
  return tb::ToolError(kTool, tb::kExitUsageError, message);
}

std::string Mb(int64_t bytes) { return absl::StrFormat("%.3f MB", bytes / 1e6); }

// The jobs of --videos; errors name list:line.
absl::StatusOr<std::vector<tb::FlowJob>> ReadVideoList(const std::string& list,
                                                       const std::string& root) {
  std::ifstream in(list);
  if (!in) return absl::NotFoundError("video list not found: " + list);
  std::vector<tb::FlowJob> jobs;
  std::string line;
  int number = 0;
  const fs::path base = fs::absolute(root).lexically_normal();
  while (std::getline(in, line)) {
    ++number;
    const std::string v(absl::StripAsciiWhitespace(line));
    if (v.empty() || v[0] == '#') continue;
    const fs::path p(v);
    tb::FlowJob job;
    if (p.is_absolute()) {
      const fs::path rel = p.lexically_normal().lexically_relative(base);
      if (rel.empty() || *rel.begin() == "..") {
        return absl::InvalidArgumentError(absl::StrCat(list, ":", number, ": '", v,
                                                       "' is not below --root ", base.string()));
      }
      job.video_path = p.lexically_normal().string();
      job.relative_path = rel.generic_string();
    } else {
      job.relative_path = p.lexically_normal().generic_string();
      if (job.relative_path.rfind("../", 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(list, ":", number, ": '", v,
                                                       "' leaves --root"));
      }
      job.video_path = (base / p).lexically_normal().string();
    }
    jobs.push_back(std::move(job));
  }
  if (in.bad()) return absl::DataLossError("error reading " + list);
  return jobs;
}

int Run() {
  if (FLAGS_manifest.empty() == FLAGS_videos.empty()) {
    return Usage("give exactly one of --manifest and --videos");
  }
  if (FLAGS_on_error != "fail" && FLAGS_on_error != "skip") {
    return Usage("--on_error must be 'fail' or 'skip', got '" + FLAGS_on_error + "'");
  }
  if (FLAGS_threads < 0) return Usage(absl::StrCat("--threads ", FLAGS_threads, " must be >= 0"));
  if (!FLAGS_manifest.empty() && !FLAGS_root.empty()) {
    return Usage("--root goes with --videos (a manifest has its own root)");
  }
  if (!FLAGS_videos.empty() && FLAGS_out.empty()) return Usage("--videos needs --out");
  tb::FlowSettings settings = tb::DefaultFlowSettings();
  settings.set_decode_short_side(FLAGS_short_side);
  settings.mutable_quantization()->set_bound(static_cast<float>(FLAGS_bound));
  settings.mutable_quantization()->set_levels(FLAGS_levels);
  settings.set_zlib_level(FLAGS_zlib_level);
  settings.set_filter(FLAGS_filter);
  if (absl::Status s = tb::ValidateFlowSettings(settings); !s.ok()) {
    return Usage(std::string(s.message()));
  }

  std::vector<tb::FlowJob> jobs;
  tb::FlowBatchOptions options;
  if (!FLAGS_manifest.empty()) {
    absl::StatusOr<tb::Manifest> manifest = tb::ReadManifest(FLAGS_manifest);
    if (!manifest.ok()) return tb::ToolError(kTool, tb::kExitDataError, manifest.status());
    for (const tb::ManifestVideo& v : manifest->video()) {
      jobs.push_back({tb::JoinPath(manifest->root(), v.relative_path()), v.relative_path()});
    }
    options.source = fs::absolute(FLAGS_manifest).lexically_normal().string();
    options.root = manifest->root();
    const fs::path folder = fs::path(FLAGS_manifest).parent_path();
    options.out_dir = !FLAGS_out.empty() ? FLAGS_out : (folder / "flow").string();
  } else {
    const std::string root =
        !FLAGS_root.empty() ? FLAGS_root : fs::path(FLAGS_videos).parent_path().string();
    absl::StatusOr<std::vector<tb::FlowJob>> list =
        ReadVideoList(FLAGS_videos, root.empty() ? "." : root);
    if (!list.ok()) return tb::ToolError(kTool, tb::kExitDataError, list.status());
    jobs = std::move(*list);
    options.source = fs::absolute(FLAGS_videos).lexically_normal().string();
    options.root = fs::absolute(root.empty() ? "." : root).lexically_normal().string();
    options.out_dir = FLAGS_out;
  }
  options.settings = settings;
  options.threads = FLAGS_threads > 0 ? FLAGS_threads
                                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.overwrite = FLAGS_overwrite;
  options.stop_on_error = FLAGS_on_error == "fail";
  options.stop = tb::InstallStopSignalHandlers();
  tb::SetFlowLibraryThreads(1);

  const int64_t total = static_cast<int64_t>(jobs.size());
  std::fprintf(stderr, "%s: %lld videos -> %s (short side %d, bound %g px, %d levels), %d threads\n",
               kTool, static_cast<long long>(total), options.out_dir.c_str(), FLAGS_short_side,
               FLAGS_bound, FLAGS_levels, options.threads);
  const auto start = std::chrono::steady_clock::now();
  int64_t existing_seen = 0;
  auto progress = [&](const tb::FlowJob& job, const tb::FlowVideoResult& r, int64_t done,
                      int64_t n) {
    if (!r.note.empty()) std::fprintf(stderr, "%s: %s\n", kTool, r.note.c_str());
    switch (r.outcome) {
      case tb::FlowOutcome::kComputed:
        std::fprintf(stderr, "%s: %lld/%lld %s: %lld fields %dx%d, %s, %.1f s\n", kTool,
                     static_cast<long long>(done), static_cast<long long>(n),
                     job.relative_path.c_str(), static_cast<long long>(r.frame_count - 1),
                     r.width, r.height, Mb(r.file_bytes).c_str(), r.seconds);
        break;
      case tb::FlowOutcome::kExisting:
        ++existing_seen;
        if (done == n || done % std::max<int64_t>(1, n / 10) == 0) {
          std::fprintf(stderr, "%s: %lld/%lld (%lld already computed)\n", kTool,
                       static_cast<long long>(done), static_cast<long long>(n),
                       static_cast<long long>(existing_seen));
        }
        break;
      case tb::FlowOutcome::kFailed:
        std::fprintf(stderr, "%s: %s: %s\n", kTool, job.video_path.c_str(), r.error.c_str());
        break;
      case tb::FlowOutcome::kNotRun:
        break;
    }
  };
  absl::StatusOr<tb::FlowBatchResult> result = tb::ComputeFlowForVideos(jobs, options, progress);
  if (!result.ok()) return Usage(std::string(result.status().message()));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t computed = 0, existing = 0, failed = 0, not_run = 0, bytes = 0, fields = 0;
  double compute_seconds = 0;
  for (const tb::FlowVideoResult& r : result->videos) {
    switch (r.outcome) {
      case tb::FlowOutcome::kComputed:
        ++computed;
        compute_seconds += r.seconds;
        break;
      case tb::FlowOutcome::kExisting: ++existing; break;
      case tb::FlowOutcome::kFailed: ++failed; break;
      case tb::FlowOutcome::kNotRun: ++not_run; break;
    }
    if (r.outcome == tb::FlowOutcome::kComputed || r.outcome == tb::FlowOutcome::kExisting) {
      bytes += r.file_bytes;
      fields += r.frame_count - 1;
    }
  }
  if (result->stopped) {
    std::fprintf(stderr,
                 "%s: interrupted: %lld of %lld videos have their flow (%lld computed now); "
                 "run the same command again to continue\n",
                 kTool, static_cast<long long>(computed + existing), static_cast<long long>(total),
                 static_cast<long long>(computed));
    return 128 + tb::InterruptSignal();
  }
  if (failed > 0 && options.stop_on_error) {
    return tb::ToolError(
        kTool, tb::kExitDataError,
        absl::StrCat(failed, " of ", total, " videos failed", not_run > 0 ? absl::StrCat(
            " (", not_run, " not started)") : "", "; index not written (--on_error=skip "
            "writes it without them; finished files are kept and skipped on the next run)"));
  }
  const std::string index_path = (fs::path(options.out_dir) / tb::kFlowIndexName).string();
  if (absl::Status s = tb::WriteFlowIndex(index_path, result->index); !s.ok()) {
    return tb::ToolError(kTool, tb::kExitDataError, s);
  }
  if (failed > 0) {
    std::fprintf(stderr, "%s: skipped %lld of %lld videos (unreadable)\n", kTool,
                 static_cast<long long>(failed), static_cast<long long>(total));
  }
  std::printf(
      "{\"out\":%s,\"index\":%s,\"videos\":%lld,\"computed\":%lld,\"existing\":%lld,"
      "\"skipped\":%lld,\"fields\":%lld,\"bytes\":%lld,\"compute_seconds\":%.2f,"
      "\"seconds\":%.2f}\n",
      tb::JsonString(options.out_dir).c_str(), tb::JsonString(index_path).c_str(),
      static_cast<long long>(total), static_cast<long long>(computed),
      static_cast<long long>(existing), static_cast<long long>(failed),
      static_cast<long long>(fields), static_cast<long long>(bytes), compute_seconds, seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = tb::InitTool(
          kTool,
          "Computes and stores the TV-L1 optical flow of every video of a dataset.\n"
          "  compute_flow --manifest=M [--out=DIR] [--threads=N] [--short_side=128]\n"
          "  compute_flow --videos=LIST [--root=DIR] --out=DIR\n"
          "Exit codes: 0 ok, 1 data errors (unreadable videos, I/O), 2 bad flags, 128+signal "
          "when interrupted.",
          &argc, &argv)) {
    return rc;
  }
  return Run();
}
