// File: datasets/video_reader.h
//
// Frame-accurate random access to the frames of one video file, decoding only
// what a clip needs. Open() indexes the video stream by reading its packets
// (without decoding them), so the frame count comes from the stream itself
// and not from the container's claim, which is often wrong for AVI and MP4.
// Frame i is always the i-th frame of a full sequential decode in
// presentation order: decoded frames are identified by their timestamps, and
// when timestamps cannot identify frames the reader decodes from the start
// instead of seeking, rather than return a neighbouring frame.
//
// One VideoReader per thread; Open() may be called from many threads at once.
// The decoder runs single-threaded because the loader parallelises across
// videos.
#ifndef TIMEBALANCE_DATASETS_VIDEO_READER_H_
#define TIMEBALANCE_DATASETS_VIDEO_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

struct VideoInfo {
  int width = 0;
  int height = 0;
  int64_t frame_count = 0;
  double fps = 0;
};

// Frames in request order, RGB24, each resized so that its short side equals
// the requested short side (aspect kept; 0 = native size).
struct Frames {
  int width = 0;
  int height = 0;
  int64_t count = 0;
  std::vector<uint8_t> rgb;  // count * height * width * 3
};

// The size a frame of width x height gets when its short side is scaled to
// `short_side` (0 = unchanged); the long side is rounded to nearest.
void ScaledSize(int width, int height, int short_side, int* out_width, int* out_height);

class VideoReader {
 public:
  static absl::StatusOr<std::unique_ptr<VideoReader>> Open(const std::string& path);
  ~VideoReader();

  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  const VideoInfo& info() const;

  // `indices` may be unsorted and repeat; each must be in [0, frame_count).
  absl::StatusOr<Frames> ReadFrames(const std::vector<int64_t>& indices, int short_side);

  // Seeks performed by ReadFrames so far (rewinds to the start included);
  // lets tests check that distant frames are reached without decoding
  // everything in between.
  int64_t seek_count() const;
  // Packets sent to the decoder by ReadFrames so far.
  int64_t decoded_packet_count() const;

  struct Impl;

 private:
  explicit VideoReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_VIDEO_READER_H_
