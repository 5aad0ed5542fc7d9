// File: datasets/synthetic/video_writer.h
//
// Encodes RGB24 frames into a video file with libavcodec/libavformat, so that
// synthetic data goes through the same decoder path (and the same compression
// artefacts) as real datasets. The default matches UCF101: MPEG-4 part 2 in
// AVI, yuv420p. The container is chosen from the file extension (.avi, .mp4,
// .mkv, ...).
//
// Output is byte-identical for identical input: encoder and muxer run in
// bit-exact mode with one thread, so no version strings, timestamps or
// thread-dependent decisions end up in the file.
//
// The file appears under its final name only when Close() succeeds; until
// then it is written to "<path>.partial", so an interrupted run never leaves
// a truncated video that looks complete.
//
//   ASSIGN_OR_RETURN(auto writer, VideoWriter::Open("v.avi", 160, 120, 25));
//   for (...) RETURN_IF_ERROR(writer->WriteFrame(rgb));
//   RETURN_IF_ERROR(writer->Close());
#ifndef TIMEBALANCE_DATASETS_SYNTHETIC_VIDEO_WRITER_H_
#define TIMEBALANCE_DATASETS_SYNTHETIC_VIDEO_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

struct VideoWriterOptions {
  // libavcodec encoder name ("mpeg4" is AV_CODEC_ID_MPEG4).
  std::string codec = "mpeg4";
  // Fixed quantiser (1 = best, 31 = worst) when > 0; otherwise `bit_rate`
  // (bits/s) drives rate control.
  int qscale = 4;
  int64_t bit_rate = 400000;
  // Distance between key frames.
  int gop_size = 12;
  // B-frames reorder packets; the default keeps decode order = display order.
  int max_b_frames = 0;
};

class VideoWriter {
 public:
  // Width and height must be even (yuv420p) and positive; fps > 0.
  static absl::StatusOr<std::unique_ptr<VideoWriter>> Open(
      const std::string& path, int width, int height, double fps,
      const VideoWriterOptions& options = VideoWriterOptions());

  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;
  // Without a successful Close() the partial file is removed.
  ~VideoWriter();

  // `rgb` holds height rows of width * 3 bytes, no padding.
  absl::Status WriteFrame(const uint8_t* rgb);

  // Flushes the encoder, writes the trailer and moves the file into place.
  absl::Status Close();

  int width() const { return width_; }
  int height() const { return height_; }
  int64_t frames_written() const { return frames_written_; }
  const std::string& path() const { return path_; }

 private:
  struct Impl;
  VideoWriter(std::string path, int width, int height);

  // Sends `frame` (nullptr flushes) and muxes every packet the encoder returns.
  absl::Status Encode(bool flush);
  void Release();

  std::string path_;
  std::string partial_path_;
  int width_;
  int height_;
  int64_t frames_written_ = 0;
  bool closed_ = false;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_SYNTHETIC_VIDEO_WRITER_H_
