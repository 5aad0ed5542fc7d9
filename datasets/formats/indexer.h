// File: datasets/formats/indexer.h
//
// Builds a manifest from a DatasetListing: every listed video is opened
// with VideoReader (frame count, frame rate, size), optionally test-decoded
// (first and last frame), hashed (SHA-256 of the file), and optionally
// re-encoded, on several threads. A video that is missing, empty, not a
// regular file, not decodable or damaged (VideoReader's Damage: cut short,
// corrupt packets, frames decoded with errors; reason "damaged: ...") is
// reported with its path and the reason; the caller decides whether that
// fails the whole manifest.
#ifndef TIMEBALANCE_DATASETS_FORMATS_INDEXER_H_
#define TIMEBALANCE_DATASETS_FORMATS_INDEXER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "datasets/formats/listing.h"
#include "datasets/formats/manifest.pb.h"
#include "datasets/formats/reencode.h"

namespace tb {

struct IndexOptions {
  int threads = 2;
  // Decode the first and the last frame of every video.
  bool verify_decode = true;
  // Re-encode every video into `reencode_dir` (same relative paths, see
  // ReencodedRelativePath); the manifest then describes the copies.
  bool reencode = false;
  std::string reencode_dir;
  ReencodeOptions reencode_options;
  // Called after each video (from worker threads, serialised).
  std::function<void(int64_t done, int64_t total)> progress;
};

struct VideoProblem {
  std::string path;    // the video file
  std::string reason;  // e.g. "file not found", "damaged: truncated: 74 of 175 frames decodable"
  std::string origin;  // annotation file:line that listed it
};

struct IndexResult {
  Manifest manifest;  // the videos that were indexed, in listing order
  std::vector<VideoProblem> problems;  // listing order
};

// `root`: the folder the listing's relative paths are under. Fails only for
// bad options; per-video failures go to `problems`.
absl::StatusOr<IndexResult> IndexDataset(const DatasetListing& listing, const std::string& root,
                                         const IndexOptions& options);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_INDEXER_H_
