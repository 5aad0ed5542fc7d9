#include "datasets/video_clips.h"

#include <algorithm>
#include <map>

#include <glog/logging.h>

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
  ASSIGN_OR_RETURN(Frames frames, reader.ReadFrames(all, short_side));
  u.frames_ = std::make_shared<const Frames>(std::move(frames));
  for (size_t i = 0; i < all.size(); ++i) u.slot_[all[i]] = static_cast<int64_t>(i);
  return u;
}

FrameUnion FrameUnion::Whole(std::shared_ptr<const DecodedVideoCache::Video> video) {
  FrameUnion u;
  const Frames* frames = &video->frames;
  u.frames_ = std::shared_ptr<const Frames>(std::move(video), frames);
  u.whole_ = true;
  return u;
}

void FrameUnion::Gather(const std::vector<int64_t>& indices, uint8_t* out) const {
  const size_t bytes = frame_bytes();
  for (size_t t = 0; t < indices.size(); ++t) {
    const int64_t slot = whole_ ? indices[t] : slot_.at(indices[t]);
    CHECK(slot >= 0 && slot < frames_->count) << "frame " << indices[t] << " not decoded";
    std::copy_n(frames_->rgb.data() + slot * bytes, bytes, out + t * bytes);
  }
}

absl::StatusOr<FrameUnion> ReadFrameUnion(const std::string& path, const ClipGeometry& g,
                                          const FrameListsFn& lists_for) {
  if (g.cache != nullptr) {
    if (std::shared_ptr<const DecodedVideoCache::Video> video =
            g.cache->Get(path, g.decode_short_side)) {
      lists_for(video->frame_count);  // the caller's plan, from the same frame count
      return FrameUnion::Whole(std::move(video));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(path));
  const std::vector<std::vector<int64_t>> lists = lists_for(reader->info().frame_count);
  return FrameUnion::Read(*reader, lists, g.decode_short_side);
}

ClipGeometry ClipGeometryFromConfig(const DatasetConfig& config) {
  const ClipSampling& c = config.clip();
  ClipGeometry g;
  g.num_frames = c.num_frames();
  g.stride = c.stride();
  g.decode_short_side = c.decode_short_side();
  g.crop_size = c.crop_size();
  g.pad = c.pad();
  g.cache = DecodedVideoCache::Shared(config.loader().decoded_cache_mb());
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
  std::vector<std::vector<int64_t>> per_clip;
  ASSIGN_OR_RETURN(FrameUnion frames, ReadFrameUnion(path, g, [&](int64_t n) {
                     per_clip.clear();
                     for (int64_t start : EvenlySpacedClipStarts(n, g.num_frames, g.stride,
                                                                 num_clips)) {
                       per_clip.push_back(ClipFrameIndices(n, start, g.num_frames, g.stride,
                                                           g.pad));
                     }
                     return per_clip;
                   }));
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
