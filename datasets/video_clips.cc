#include "datasets/video_clips.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "datasets/augment.h"
#include "datasets/clip_sampler.h"
#include "datasets/video_reader.h"

namespace tb {

absl::StatusOr<FrameUnion> FrameUnion::Read(VideoReader& reader,
                                            const std::vector<std::vector<int64_t>>& index_lists,
                                            int short_side) {
  std::vector<int64_t> all;
  for (const auto& list : index_lists) all.insert(all.end(), list.begin(), list.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  FrameUnion u;
  ASSIGN_OR_RETURN(u.frames_, reader.ReadFrames(all, short_side));
  for (size_t i = 0; i < all.size(); ++i) u.slot_[all[i]] = static_cast<int64_t>(i);
  return u;
}

void FrameUnion::Gather(const std::vector<int64_t>& indices, uint8_t* out) const {
  const size_t bytes = frame_bytes();
  for (size_t t = 0; t < indices.size(); ++t) {
    std::copy_n(frames_.rgb.data() + slot_.at(indices[t]) * bytes, bytes, out + t * bytes);
  }
}

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
  std::vector<std::vector<int64_t>> per_clip;
  for (int64_t start : EvenlySpacedClipStarts(n, g.num_frames, g.stride, num_clips)) {
    per_clip.push_back(ClipFrameIndices(n, start, g.num_frames, g.stride, g.pad));
  }
  ASSIGN_OR_RETURN(FrameUnion frames, FrameUnion::Read(*reader, per_clip, g.decode_short_side));
  std::vector<uint8_t> clip_rgb(frames.frame_bytes() * g.num_frames);
  const std::vector<CropBox> boxes =
      SpatialCropBoxes(frames.height(), frames.width(), crop_fraction, num_crops);
  for (int k = 0; k < num_clips; ++k) {
    frames.Gather(per_clip[k], clip_rgb.data());
    for (int c = 0; c < num_crops; ++c) {
      CropResizeNormalize(clip_rgb.data(), g.num_frames, frames.height(), frames.width(), boxes[c],
                          g.crop_size, g.mean, g.std,
                          out + (static_cast<int64_t>(k) * num_crops + c) * g.clip_floats());
    }
  }
  return absl::OkStatus();
}

}  // namespace tb
