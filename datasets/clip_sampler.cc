#include "datasets/clip_sampler.h"

#include <algorithm>
#include <cmath>

#include <glog/logging.h>

namespace tb {

int64_t ClipSpan(int num_frames, int stride) {
  return static_cast<int64_t>(num_frames - 1) * stride + 1;
}

int64_t PadFrameIndex(int64_t position, int64_t frame_count, ClipSampling::PadMode pad) {
  CHECK_GT(frame_count, 0);
  CHECK_GE(position, 0);
  if (position < frame_count) return position;
  if (pad == ClipSampling::REPEAT_LAST || frame_count == 1) return frame_count - 1;
  // Mirror: 0 1 2 3 2 1 0 1 2 ... (period 2(n-1), end frames not doubled).
  const int64_t period = 2 * (frame_count - 1);
  const int64_t p = position % period;
  return p < frame_count ? p : period - p;
}

std::vector<int64_t> ClipFrameIndices(int64_t frame_count, int64_t start, int num_frames,
                                      int stride, ClipSampling::PadMode pad) {
  std::vector<int64_t> indices(num_frames);
  for (int t = 0; t < num_frames; ++t) {
    indices[t] = PadFrameIndex(start + static_cast<int64_t>(t) * stride, frame_count, pad);
  }
  return indices;
}

int64_t RandomClipStart(int64_t frame_count, int num_frames, int stride, RngStream* rng) {
  const int64_t max_start = std::max<int64_t>(0, frame_count - ClipSpan(num_frames, stride));
  return static_cast<int64_t>(rng->UniformInt(static_cast<uint64_t>(max_start) + 1));
}

std::vector<int64_t> EvenlySpacedClipStarts(int64_t frame_count, int num_frames, int stride,
                                            int num_clips) {
  CHECK_GE(num_clips, 1);
  const int64_t max_start = std::max<int64_t>(0, frame_count - ClipSpan(num_frames, stride));
  std::vector<int64_t> starts(num_clips);
  if (num_clips == 1) {
    starts[0] = max_start / 2;
    return starts;
  }
  for (int k = 0; k < num_clips; ++k) {
    starts[k] = static_cast<int64_t>(
        std::llround(static_cast<double>(k) * max_start / (num_clips - 1)));
  }
  return starts;
}

}  // namespace tb
