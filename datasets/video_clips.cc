#include "datasets/video_clips.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "datasets/augment.h"
#include "datasets/clip_sampler.h"
#include "datasets/video_reader.h"

namespace tb {

ClipGeometry ClipGeometryFromConfig(const DatasetConfig& config) {
  const ClipSampling& c = config.clip();
  ClipGeometry g;
  g.num_frames = c.num_frames();
  g.stride = c.stride();
  g.decode_short_side = c.decode_short_side();
  g.crop_size = c.crop_size();
  g.pad = c.pad();
  for (int i = 0; i < 3; ++i) {
    g.mean[i] = c.mean(i);
    g.std[i] = c.std(i);
  }
  return g;
}

absl::Status DecodeEvaluationClips(const std::string& path, const ClipGeometry& g,
                                   int num_clips, float crop_fraction, float* out,
                                   int num_crops) {
  if (num_crops != 1 && num_crops != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeEvaluationClips: num_crops = ", num_crops, ": must be 1 or 3"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(path));
  const int64_t n = reader->info().frame_count;
  // Decode the union of all clips' frames once, then gather per clip.
  std::vector<int64_t> all;
  std::vector<std::vector<int64_t>> per_clip;
  for (int64_t start : EvenlySpacedClipStarts(n, g.num_frames, g.stride, num_clips)) {
    per_clip.push_back(ClipFrameIndices(n, start, g.num_frames, g.stride, g.pad));
    all.insert(all.end(), per_clip.back().begin(), per_clip.back().end());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  ASSIGN_OR_RETURN(Frames frames, reader->ReadFrames(all, g.decode_short_side));
  std::map<int64_t, int64_t> slot;
  for (size_t i = 0; i < all.size(); ++i) slot[all[i]] = static_cast<int64_t>(i);
  const size_t frame_bytes = static_cast<size_t>(frames.height) * frames.width * 3;
  std::vector<uint8_t> clip_rgb(frame_bytes * g.num_frames);
  const std::vector<CropBox> boxes =
      SpatialCropBoxes(frames.height, frames.width, crop_fraction, num_crops);
  for (int k = 0; k < num_clips; ++k) {
    for (int t = 0; t < g.num_frames; ++t) {
      std::copy_n(frames.rgb.data() + slot[per_clip[k][t]] * frame_bytes, frame_bytes,
                  clip_rgb.data() + t * frame_bytes);
    }
    for (int c = 0; c < num_crops; ++c) {
      CropResizeNormalize(clip_rgb.data(), g.num_frames, frames.height, frames.width, boxes[c],
                          g.crop_size, g.mean, g.std,
                          out + (static_cast<int64_t>(k) * num_crops + c) * g.clip_floats());
    }
  }
  return absl::OkStatus();
}

}  // namespace tb
