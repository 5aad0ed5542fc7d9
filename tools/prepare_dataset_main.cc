// prepare_dataset: indexes every video of a dataset split and writes a
// manifest (tb.Manifest text proto, datasets/formats/manifest.proto) that
// DatasetConfig.manifest reads:
//
//   bazel run //tools:prepare_dataset -- --format=hmdb51 --root=/data/hmdb51
//       --annotations=/data/testTrainMulti_7030_splits --split=1
//       --out=/data/hmdb51_split1.manifest [--threads=N] [--on_error=fail|skip]
//       [--reencode_short_side=128 --gop=16 --reencode_dir=/data/hmdb51_128]
//
// Formats: ucf101, hmdb51, kinetics, list (datasets/formats/listing.h).
// Every listed video is opened (frame count, fps, size), its first and last
// frames are decoded, and its bytes are hashed (SHA-256). Each missing,
// undecodable or damaged video (cut short, corrupt packets, frames decoded
// with errors: "damaged: <reason>") is reported with its path and the
// reason. With
// --on_error=fail (default) any such video means no manifest is written and
// exit code 1; with --on_error=skip the manifest is written without them and
// their count is printed. Exit codes: 0 ok, 1 data errors (bad annotations,
// missing/undecodable videos under fail, I/O), 2 bad flags.
#include <filesystem>
#include <string>
#include <thread>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "datasets/formats/indexer.h"
#include "datasets/formats/listing.h"
#include "datasets/formats/manifest.h"
#include "core/cli.h"

DEFINE_string(format, "", "Annotation format: ucf101, hmdb51, kinetics or list. Required.");
DEFINE_string(root, "", "Folder the videos are under. Required.");
DEFINE_string(annotations, "",
              "Split files: the folder of classInd.txt/trainlistNN.txt (ucf101), of "
              "<class>_test_split<N>.txt (hmdb51), of train.txt/test.txt[/classes.txt] (list); "
              "a CSV file, comma-separated CSV files or a folder of CSVs (kinetics). "
              "Empty = --root.");
DEFINE_int32(split, 1, "Official split number (ucf101: 1-3, hmdb51: 1-3; kinetics, list: 1).");
DEFINE_string(out, "", "Manifest file to write. Required.");
DEFINE_string(name, "", "Dataset name recorded in the manifest (default from the format).");
DEFINE_int32(threads, 0, "Indexing threads (0 = all hardware threads).");
DEFINE_string(on_error, "fail",
              "Missing, undecodable or damaged videos: 'fail' (no manifest, exit 1) or 'skip' "
              "(leave them out and count them).");
DEFINE_bool(verify_decode, true, "Decode the first and last frame of every video.");
DEFINE_int32(reencode_short_side, 0,
             "If > 0, write re-encoded copies with this short side into --reencode_dir and "
             "describe those in the manifest.");
DEFINE_int32(gop, 16, "Key-frame interval of re-encoded copies.");
DEFINE_string(reencode_dir, "", "Folder for re-encoded copies (same relative paths).");
DEFINE_string(reencode_codec, "mpeg4",
              "libavcodec encoder of re-encoded copies (mpeg4, or e.g. libx264 if present).");
DEFINE_int32(reencode_qscale, 4, "Fixed quantiser 1..31 of re-encoded copies.");

namespace {

namespace fs = std::filesystem;
constexpr char kTool[] = "prepare_dataset";

int Usage(const std::string& message) {
  return tb::ToolError(kTool, tb::kExitUsageError, message);
}

int Run() {
  if (FLAGS_format.empty()) return Usage("--format is required (ucf101, hmdb51, kinetics, list)");
  if (FLAGS_root.empty()) return Usage("--root is required");
  if (FLAGS_out.empty()) return Usage("--out is required");
  if (FLAGS_on_error != "fail" && FLAGS_on_error != "skip") {
    return Usage("--on_error must be 'fail' or 'skip', got '" + FLAGS_on_error + "'");
  }
  if (FLAGS_threads < 0) return Usage(absl::StrCat("--threads ", FLAGS_threads, " must be >= 0"));
  tb::IndexOptions options;
  options.threads = FLAGS_threads > 0 ? FLAGS_threads
                                      : std::max(1u, std::thread::hardware_concurrency());
  options.verify_decode = FLAGS_verify_decode;
  if (FLAGS_reencode_short_side < 0) return Usage("--reencode_short_side must be >= 0");
  if (FLAGS_reencode_short_side > 0) {
    if (FLAGS_reencode_dir.empty()) return Usage("--reencode_short_side needs --reencode_dir");
    if (FLAGS_gop < 1) return Usage(absl::StrCat("--gop ", FLAGS_gop, " must be >= 1"));
    if (FLAGS_reencode_qscale < 1 || FLAGS_reencode_qscale > 31) {
      return Usage(absl::StrCat("--reencode_qscale ", FLAGS_reencode_qscale,
                                " must be in [1, 31]"));
    }
    options.reencode = true;
    options.reencode_dir = fs::absolute(FLAGS_reencode_dir).lexically_normal().string();
    options.reencode_options.short_side = FLAGS_reencode_short_side;
    options.reencode_options.gop = FLAGS_gop;
    options.reencode_options.codec = FLAGS_reencode_codec;
    options.reencode_options.qscale = FLAGS_reencode_qscale;
  } else if (!FLAGS_reencode_dir.empty()) {
    return Usage("--reencode_dir needs --reencode_short_side > 0");
  }
  std::error_code ec;
  if (!fs::is_directory(FLAGS_root, ec)) {
    return tb::ToolError(kTool, tb::kExitDataError, "video root not found: " + FLAGS_root);
  }
  const std::string root = fs::absolute(FLAGS_root).lexically_normal().string();
  const std::string annotations =
      FLAGS_annotations.empty() ? FLAGS_root : FLAGS_annotations;

  absl::StatusOr<tb::DatasetListing> listing =
      tb::ReadListing(FLAGS_format, FLAGS_root, FLAGS_annotations, FLAGS_split);
  if (!listing.ok()) {
    const bool usage = listing.status().message().find("unknown format") == 0 ||
                       listing.status().message().find("split") == 0;
    return tb::ToolError(kTool, usage ? tb::kExitUsageError : tb::kExitDataError,
                         listing.status());
  }
  for (const std::string& note : listing->notes) std::fprintf(stderr, "%s: %s\n", kTool, note.c_str());
  const int64_t total = static_cast<int64_t>(listing->videos.size());
  std::fprintf(stderr, "%s: indexing %lld videos of %d classes with %d threads\n", kTool,
               static_cast<long long>(total), static_cast<int>(listing->class_names.size()),
               options.threads);
  options.progress = [](int64_t done, int64_t n) {
    if (done == n || done % std::max<int64_t>(1, n / 10) == 0) {
      std::fprintf(stderr, "%s: %lld/%lld videos\n", kTool, static_cast<long long>(done),
                   static_cast<long long>(n));
    }
  };
  absl::StatusOr<tb::IndexResult> result = tb::IndexDataset(*listing, root, options);
  if (!result.ok()) return Usage(std::string(result.status().message()));
  for (const tb::VideoProblem& p : result->problems) {
    std::fprintf(stderr, "%s: %s: %s (listed at %s)\n", kTool, p.path.c_str(), p.reason.c_str(),
                 p.origin.c_str());
  }
  const size_t bad = result->problems.size();
  if (bad > 0 && FLAGS_on_error == "fail") {
    return tb::ToolError(kTool, tb::kExitDataError,
                         absl::StrCat(bad, " of ", total,
                                      " videos are missing, undecodable or damaged; ",
                                      "manifest not written (--on_error=skip writes it without "
                                      "them)"));
  }
  tb::Manifest& manifest = result->manifest;
  if (!FLAGS_name.empty()) manifest.set_dataset(FLAGS_name);
  manifest.set_split(FLAGS_split);
  manifest.set_annotations(fs::absolute(annotations).lexically_normal().string());
  absl::Status valid = tb::ValidateManifest(manifest, FLAGS_out);
  if (!valid.ok()) return tb::ToolError(kTool, tb::kExitDataError, valid);
  int train = 0, test = 0;
  for (const tb::ManifestVideo& v : manifest.video()) {
    (v.split() == tb::ManifestVideo::TRAIN ? train : test)++;
  }
  if (train == 0 || test == 0) {
    return tb::ToolError(kTool, tb::kExitDataError,
                         absl::StrCat("no ", train == 0 ? "training" : "test",
                                      " video could be indexed; manifest not written"));
  }
  absl::Status written = tb::WriteManifest(FLAGS_out, manifest);
  if (!written.ok()) return tb::ToolError(kTool, tb::kExitDataError, written);
  if (bad > 0) {
    std::fprintf(stderr, "%s: skipped %zu of %lld videos (missing, undecodable or damaged)\n",
                 kTool, bad, static_cast<long long>(total));
  }
  std::printf("{\"manifest\":%s,\"dataset\":%s,\"classes\":%d,\"videos\":%d,\"train\":%d,"
              "\"test\":%d,\"skipped\":%zu}\n",
              tb::JsonString(FLAGS_out).c_str(), tb::JsonString(manifest.dataset()).c_str(),
              manifest.class_names_size(), manifest.video_size(), train, test, bad);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = tb::InitTool(
          kTool,
          "Indexes a dataset split (ucf101, hmdb51, kinetics, list) and writes a manifest.\n"
          "  prepare_dataset --format=F --root=VIDEOS --annotations=SPLITS --split=1 --out=M\n"
          "Exit codes: 0 ok, 1 data errors (annotations, missing/undecodable/damaged videos), "
          "2 bad flags.",
          &argc, &argv)) {
    return rc;
  }
  return Run();
}
