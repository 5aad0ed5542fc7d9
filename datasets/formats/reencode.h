// File: datasets/formats/reencode.h
//
// Re-encoding a video to a smaller size and a fixed key-frame interval
// through the FFmpeg C API (VideoReader decodes, VideoWriter encodes), so
// that training decodes fewer pixels and seeks land close to every clip.
// Audio is dropped. The copy has the same frame count and frame rate.
#ifndef TIMEBALANCE_DATASETS_FORMATS_REENCODE_H_
#define TIMEBALANCE_DATASETS_FORMATS_REENCODE_H_

#include <string>

#include "absl/status/status.h"

namespace tb {

struct ReencodeOptions {
  // Short side of the copy (aspect kept; both sides rounded down to even).
  int short_side = 128;
  // Frames between key frames.
  int gop = 16;
  // libavcodec encoder name: "mpeg4" (always built in) or e.g. "libx264".
  std::string codec = "mpeg4";
  // Fixed quantiser 1..31 for mpeg4-like encoders.
  int qscale = 4;
};

// Writes `dst` (folders created; the container follows its extension) from
// `src`. The file appears only when complete.
absl::Status ReencodeVideo(const std::string& src, const std::string& dst,
                           const ReencodeOptions& options);

// The relative path a re-encoded copy gets: the same, except that containers
// the encoders here cannot write into (.webm, .flv, ...) become .mkv.
std::string ReencodedRelativePath(const std::string& relative_path);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_REENCODE_H_
