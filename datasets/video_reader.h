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
// Damaged files are named, not silently shortened: Open() and ReadFrames()
// collect what the demuxer and the decoder report (see Damage), and callers
// decide whether a damaged file is acceptable. No input makes a reader work
// without bound: ReadFrames() gives up with an error naming the file after a
// number of packets and seeks derived from the stream's own packet count.
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

// What is wrong with a file, as far as the reader has seen: Open() checks
// the whole packet index; ReadFrames() adds what decoding the requested
// frames revealed. A clean file of any codec the project reads reports
// nothing.
struct Damage {
  // The container's own frame count (AVI header, MP4 sample table; 0 when
  // the container declares none, e.g. Matroska) and the frames the stream
  // holds. Fewer packets than declared means the file was cut short.
  int64_t declared_frames = 0;
  int64_t frame_count = 0;
  bool truncated = false;
  // Video packets the demuxer flagged as corrupt (AV_PKT_FLAG_CORRUPT, e.g.
  // the partial last packet of a cut file); the first one's decode index.
  int64_t corrupt_packets = 0;
  int64_t first_corrupt_packet = -1;
  // Error-level messages FFmpeg logged while the file was opened and indexed.
  int64_t open_errors = 0;
  // Distinct frames that decoded with errors (concealment or
  // AV_FRAME_FLAG_CORRUPT) or could not be decoded at all.
  int64_t bad_frames = 0;
  // Distinct frames the decoder output after a later one: their timestamps
  // contradict the stream's decode order.
  int64_t misordered_frames = 0;
  // Distinct frames the decoder skipped: a later frame came out, or the
  // stream ended, without them although their packets were decoded.
  int64_t dropped_frames = 0;
  // The first error message FFmpeg logged for this file, if any.
  std::string first_message;

  bool damaged() const {
    return truncated || corrupt_packets > 0 || open_errors > 0 || bad_frames > 0 ||
           misordered_frames > 0 || dropped_frames > 0;
  }
  // One line, empty for an undamaged file, e.g. "truncated: 74 of 175 frames
  // decodable; 1 corrupt packet (packet 73); FFmpeg: avi: Packet corrupt ...".
  std::string reason() const;
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

  // What Open() and the ReadFrames() calls so far found wrong with the file.
  const Damage& damage() const;

  // `indices` may be unsorted and repeat; each must be in [0, frame_count).
  // Fails (DataLoss, naming the file) when a frame cannot be decoded, or when
  // one call has read more than 4 x (packets in the stream) + 64 packets or
  // made more than 2 x (distinct requested frames) + 8 seeks, which only a
  // damaged stream needs. Frames decoded with errors are returned and
  // recorded in damage().
  absl::StatusOr<Frames> ReadFrames(const std::vector<int64_t>& indices, int short_side);

  // Seeks performed by ReadFrames so far (rewinds to the start included);
  // lets tests check that distant frames are reached without decoding
  // everything in between.
  int64_t seek_count() const;
  // Packets sent to the decoder by ReadFrames so far.
  int64_t decoded_packet_count() const;
  // Packets read from the demuxer by ReadFrames so far (sent to the decoder
  // or not); the quantity the per-call limit bounds.
  int64_t read_packet_count() const;

  struct Impl;

 private:
  explicit VideoReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_VIDEO_READER_H_
