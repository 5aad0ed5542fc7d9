#include "datasets/formats/reencode.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "datasets/synthetic/video_writer.h"
#include "datasets/video_reader.h"

namespace tb {

namespace fs = std::filesystem;

std::string ReencodedRelativePath(const std::string& relative_path) {
  fs::path p(relative_path);
  const std::string ext = absl::AsciiStrToLower(p.extension().string());
  if (ext == ".avi" || ext == ".mp4" || ext == ".mkv" || ext == ".mov" || ext == ".m4v") {
    return relative_path;
  }
  return p.replace_extension(".mkv").string();
}

absl::Status ReencodeVideo(const std::string& src, const std::string& dst,
                           const ReencodeOptions& options) {
  if (options.short_side < 2) {
    return absl::InvalidArgumentError(absl::StrCat("re-encode short side ", options.short_side,
                                                   " must be >= 2"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(src));
  const VideoInfo info = reader->info();
  if (!(info.fps > 0)) return absl::InvalidArgumentError(src + ": unknown frame rate");
  int scaled_w = 0, scaled_h = 0;
  ScaledSize(info.width, info.height, options.short_side, &scaled_w, &scaled_h);
  // yuv420p needs even sides: drop the last column/row of an odd size.
  const int w = scaled_w & ~1, h = scaled_h & ~1;
  if (w < 2 || h < 2) return absl::InvalidArgumentError(src + ": frame too small to re-encode");
  std::error_code ec;
  fs::create_directories(fs::path(dst).parent_path(), ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot create folder for ", dst, ": ",
                                               ec.message()));
  }
  VideoWriterOptions wo;
  wo.codec = options.codec;
  wo.gop_size = options.gop;
  wo.qscale = options.qscale;
  ASSIGN_OR_RETURN(std::unique_ptr<VideoWriter> writer, VideoWriter::Open(dst, w, h, info.fps, wo));
  constexpr int64_t kChunk = 32;  // frames decoded per call, sequentially
  std::vector<uint8_t> cropped(static_cast<size_t>(w) * h * 3);
  for (int64_t first = 0; first < info.frame_count; first += kChunk) {
    std::vector<int64_t> indices;
    for (int64_t i = first; i < std::min(info.frame_count, first + kChunk); ++i) {
      indices.push_back(i);
    }
    ASSIGN_OR_RETURN(Frames frames, reader->ReadFrames(indices, options.short_side));
    const size_t frame_bytes = static_cast<size_t>(frames.width) * frames.height * 3;
    for (int64_t k = 0; k < frames.count; ++k) {
      const uint8_t* frame = frames.rgb.data() + k * frame_bytes;
      if (frames.width == w && frames.height == h) {
        RETURN_IF_ERROR(writer->WriteFrame(frame));
        continue;
      }
      for (int y = 0; y < h; ++y) {
        std::memcpy(cropped.data() + static_cast<size_t>(y) * w * 3,
                    frame + static_cast<size_t>(y) * frames.width * 3, static_cast<size_t>(w) * 3);
      }
      RETURN_IF_ERROR(writer->WriteFrame(cropped.data()));
    }
  }
  return writer->Close();
}

}  // namespace tb
