// File: datasets/formats/manifest.h
//
// Reading and writing dataset manifests (tb.Manifest, manifest.proto) as text
// protos, and turning one into the train/test lists the loader uses.
//
//   ASSIGN_OR_RETURN(Manifest m, ReadManifest("data/hmdb51_split1.manifest"));
#ifndef TIMEBALANCE_DATASETS_FORMATS_MANIFEST_H_
#define TIMEBALANCE_DATASETS_FORMATS_MANIFEST_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datasets/formats/manifest.pb.h"
#include "datasets/ucf101.h"

namespace tb {

// Parses and validates a manifest: class names present and distinct, every
// video with a distinct relative path, a label in range and a split. A
// relative `root` is made relative to the manifest's folder. Errors name the
// file and the line (parse errors) or the video.
absl::StatusOr<Manifest> ReadManifest(const std::string& path);

// The same checks on a manifest in memory; `source` names it in errors.
absl::Status ValidateManifest(const Manifest& manifest, const std::string& source);

// Text proto with a header comment, written atomically (temp file + rename).
absl::Status WriteManifest(const std::string& path, const Manifest& manifest);

// Train and test lists with paths under `root_override` if non-empty, else
// under the manifest's root. check_files: require every video to exist.
absl::StatusOr<SplitSet> ManifestToSplitSet(const Manifest& manifest,
                                            const std::string& root_override, bool check_files);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_MANIFEST_H_
