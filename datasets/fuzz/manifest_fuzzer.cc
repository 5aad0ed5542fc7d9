// Fuzz target: the dataset manifest reader (datasets/formats/manifest.h).
// The input is a manifest file's bytes, read with ReadManifest. Invariants:
// an error names the manifest; a manifest that reads passes
// ValidateManifest, turns into train and test lists holding every video
// once (ManifestToSplitSet), and reads back unchanged after WriteManifest.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/fuzz/fuzz_util.h"
#include "datasets/formats/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  tb::fuzz::ClearScratchDir();
  const std::string path = tb::fuzz::WriteScratchFile("in/data.manifest", bytes);
  absl::StatusOr<tb::Manifest> manifest = tb::ReadManifest(path);
  if (!manifest.ok()) {
    TB_FUZZ_CHECK(manifest.status().message().find(path) != absl::string_view::npos,
                  "the error does not name the manifest: " + manifest.status().ToString());
    return 0;
  }
  const absl::Status valid = tb::ValidateManifest(*manifest, path);
  TB_FUZZ_CHECK(valid.ok(), valid.ToString());

  absl::StatusOr<tb::SplitSet> set =
      tb::ManifestToSplitSet(*manifest, tb::fuzz::ScratchDir(), /*check_files=*/false);
  TB_FUZZ_CHECK(set.ok(), set.status().ToString());
  TB_FUZZ_CHECK(set->train.size() + set->test.size() ==
                    static_cast<size_t>(manifest->video_size()),
                absl::StrCat(set->train.size(), " train + ", set->test.size(), " test videos of ",
                             manifest->video_size()));
  TB_FUZZ_CHECK(set->class_names.size() == static_cast<size_t>(manifest->class_names_size()),
                "class names lost");

  // Written next to the input, so the (already resolved) root means the same.
  const std::string copy = tb::fuzz::ScratchDir() + "/in/copy.manifest";
  const absl::Status written = tb::WriteManifest(copy, *manifest);
  TB_FUZZ_CHECK(written.ok(), written.ToString());
  absl::StatusOr<tb::Manifest> again = tb::ReadManifest(copy);
  TB_FUZZ_CHECK(again.ok(), again.status().ToString());
  // Compared as text: a NaN (fps: nan) is equal to itself there.
  TB_FUZZ_CHECK(again->DebugString() == manifest->DebugString(),
                "a written manifest reads back different:\n" + again->DebugString() + "\nvs\n" +
                    manifest->DebugString());
  return 0;
}
