// File: datasets/video_clips.h
//
// Turns a video file into network input: decodes only the frames a clip
// needs (through VideoReader), crops, resizes and normalises them.
// Training samples (one or more views) are cut by datasets/views.h;
// evaluation decodes the union of the frames of
// K evenly spaced clips in one pass and takes a centre crop (or three crops)
// of each.
#ifndef TIMEBALANCE_DATASETS_VIDEO_CLIPS_H_
#define TIMEBALANCE_DATASETS_VIDEO_CLIPS_H_

#include <array>
#include <functional>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/rng.h"
#include "datasets/datasets.pb.h"
#include "datasets/decoded_cache.h"
#include "datasets/video_reader.h"

namespace tb {

struct ClipGeometry {
  int num_frames = 8;
  int stride = 2;
  int decode_short_side = 128;
  int crop_size = 112;
  ClipSampling::PadMode pad = ClipSampling::MIRROR;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  // Whole decoded videos shared by the process's loaders
  // (LoaderOptions.decoded_cache_mb); null = off.
  DecodedVideoCache* cache = nullptr;

  // Floats in one clip: 3 * T * S * S.
  int64_t clip_floats() const {
    return 3LL * num_frames * crop_size * crop_size;
  }
};

// The frames several clips need, decoded in one forward pass over the video
// (the sorted union of their indices, each frame once).
class FrameUnion {
 public:
  // Decodes the union of `index_lists` at `short_side` (0 = native).
  static absl::StatusOr<FrameUnion> Read(VideoReader& reader,
                                         const std::vector<std::vector<int64_t>>& index_lists,
                                         int short_side);
  // Every frame of a cached video (no copy).
  static FrameUnion Whole(std::shared_ptr<const DecodedVideoCache::Video> video);
  int height() const { return frames_->height; }
  int width() const { return frames_->width; }
  size_t frame_bytes() const { return static_cast<size_t>(frames_->height) * frames_->width * 3; }
  // Copies the frames `indices` (each part of the union) to `out`, in order,
  // frame_bytes() each.
  void Gather(const std::vector<int64_t>& indices, uint8_t* out) const;

 private:
  std::shared_ptr<const Frames> frames_;
  bool whole_ = false;               // frame index == position in frames_
  std::map<int64_t, int64_t> slot_;  // otherwise: frame index -> position in frames_
};

// The frames of video `path` that `lists_for(frame_count)` asks for: from
// g.cache when the video is cached there (every frame), else decoded now
// (the union of the lists). `lists_for` is called exactly once.
using FrameListsFn = std::function<std::vector<std::vector<int64_t>>(int64_t frame_count)>;
absl::StatusOr<FrameUnion> ReadFrameUnion(const std::string& path, const ClipGeometry& g,
                                          const FrameListsFn& lists_for);

// Reads the clip geometry of a resolved (defaults filled) DatasetConfig,
// with the process's decoded-video cache when loader.decoded_cache_mb > 0.
ClipGeometry ClipGeometryFromConfig(const DatasetConfig& config);

// `num_clips` evenly spaced clips, each cut with `num_crops` square crops
// of side `crop_fraction` of the short side (1: centre; 3: start, centre and
// end of the long side, see SpatialCropBoxes), into `out`
// (num_clips * num_crops * clip_floats() floats, [K * num_crops, 3, T, S, S],
// clip-major: view k * num_crops + crop). Other num_crops: InvalidArgument.
absl::Status DecodeEvaluationClips(const std::string& path, const ClipGeometry& geometry,
                                   int num_clips, float crop_fraction, float* out,
                                   int num_crops = 1);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_VIDEO_CLIPS_H_
