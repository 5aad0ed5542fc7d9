// make_split: writes a labeled list (one training video's relative path per
// line, the format DatasetConfig.labeled_list reads) for a manifest, and
// prints its SHA-256 (LabeledSubsetSha256, the value runs record in results):
//
//   bazel run //tools:make_split -- --manifest=M --fraction=0.1 --seed=0
//       --mode=random|per_class --out=FILE
//   bazel run //tools:make_split -- --manifest=M --from_list=PUBLISHED --out=FILE
//
// random: a uniformly random subset of round(fraction * N) of the N training
// videos (at least 1), as the VideoSSL-style lists; per_class:
// round(fraction * n_c) videos (at least 1) of every class. --from_list
// checks that every entry of a published list is a training video of the
// manifest (the error lists every entry that is not) and re-writes it in
// manifest order. Exit codes: 0 ok, 1 bad manifest or list, 2 bad flags.
#include <string>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "datasets/formats/manifest.h"
#include "datasets/formats/split_maker.h"
#include "datasets/labeled_subset.h"
#include "core/cli.h"

DEFINE_string(manifest, "", "Manifest written by prepare_dataset. Required.");
DEFINE_double(fraction, 0, "Labeled fraction of the training videos, in (0, 1].");
DEFINE_uint64(seed, 0, "Seed of the random choice.");
DEFINE_string(mode, "random", "random (uniform over the train list) or per_class (balanced).");
DEFINE_string(from_list, "", "Validate and re-write this published list instead of drawing one.");
DEFINE_string(out, "", "Labeled list to write. Required.");

namespace {

constexpr char kTool[] = "make_split";

int Usage(const std::string& message) {
  return tb::ToolError(kTool, tb::kExitUsageError, message);
}

int Run() {
  if (FLAGS_manifest.empty()) return Usage("--manifest is required");
  if (FLAGS_out.empty()) return Usage("--out is required");
  absl::StatusOr<tb::SplitMode> mode = tb::ParseSplitMode(FLAGS_mode);
  if (!mode.ok()) return Usage("--mode: " + std::string(mode.status().message()));
  if (FLAGS_from_list.empty() && !(FLAGS_fraction > 0 && FLAGS_fraction <= 1)) {
    return Usage(absl::StrCat("--fraction ", FLAGS_fraction, " must be in (0, 1]"));
  }
  absl::StatusOr<tb::Manifest> manifest = tb::ReadManifest(FLAGS_manifest);
  if (!manifest.ok()) return tb::ToolError(kTool, tb::kExitDataError, manifest.status());
  std::vector<std::string> paths;
  std::vector<int> labels;
  for (const tb::ManifestVideo& v : manifest->video()) {
    if (v.split() != tb::ManifestVideo::TRAIN) continue;
    paths.push_back(v.relative_path());
    labels.push_back(v.label());
  }
  const int num_classes = manifest->class_names_size();
  absl::StatusOr<std::vector<int64_t>> subset =
      FLAGS_from_list.empty()
          ? tb::MakeLabeledSplit(labels, num_classes, FLAGS_fraction, FLAGS_seed, *mode)
          : tb::ReadLabeledList(FLAGS_from_list, paths);
  if (!subset.ok()) {
    return tb::ToolError(kTool, tb::kExitDataError,
                         absl::StrCat(FLAGS_manifest, ": ", subset.status().message()));
  }
  std::string text;
  std::vector<int> per_class(num_classes, 0);
  for (int64_t i : *subset) {
    absl::StrAppend(&text, paths[i], "\n");
    ++per_class[labels[i]];
  }
  absl::Status written = tb::WriteFileAtomically(FLAGS_out, text);
  if (!written.ok()) return tb::ToolError(kTool, tb::kExitDataError, written);
  int classes_covered = 0, min_per_class = -1, max_per_class = 0;
  for (int n : per_class) {
    if (n > 0) ++classes_covered;
    if (min_per_class < 0 || n < min_per_class) min_per_class = n;
    max_per_class = std::max(max_per_class, n);
  }
  std::printf("{\"out\":%s,\"labeled\":%zu,\"train\":%zu,\"classes\":%d,\"classes_covered\":%d,"
              "\"min_per_class\":%d,\"max_per_class\":%d,\"mode\":%s,\"sha256\":\"%s\"}\n",
              tb::JsonString(FLAGS_out).c_str(), subset->size(), paths.size(), num_classes,
              classes_covered, min_per_class, max_per_class,
              tb::JsonString(FLAGS_from_list.empty() ? FLAGS_mode : "from_list").c_str(),
              tb::LabeledSubsetSha256(paths, *subset).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = tb::InitTool(
          kTool,
          "Writes a labeled list for a manifest's train split and prints its SHA-256.\n"
          "  make_split --manifest=M --fraction=0.1 --seed=0 --mode=random|per_class --out=F\n"
          "  make_split --manifest=M --from_list=PUBLISHED --out=F\n"
          "Exit codes: 0 ok, 1 bad manifest or list, 2 bad flags.",
          &argc, &argv)) {
    return rc;
  }
  return Run();
}
