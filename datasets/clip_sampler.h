// File: datasets/clip_sampler.h
//
// Which frames make a clip. A clip of T frames at stride s spans
// (T - 1) * s + 1 frames from its start; frames past the end of a short video
// are padded in time (repeat the last frame, or mirror back and forth).
// Training clips start at a uniformly random frame; evaluation uses K evenly
// spaced starts covering the video.
#ifndef TIMEBALANCE_DATASETS_CLIP_SAMPLER_H_
#define TIMEBALANCE_DATASETS_CLIP_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "datasets/datasets.pb.h"

namespace tb {

// Frames covered by a clip: (num_frames - 1) * stride + 1.
int64_t ClipSpan(int num_frames, int stride);

// Maps a (possibly out-of-range) frame position to a frame of a video with
// `frame_count` frames (> 0) according to `pad`.
int64_t PadFrameIndex(int64_t position, int64_t frame_count, ClipSampling::PadMode pad);

// The frame indices of the clip starting at `start`.
std::vector<int64_t> ClipFrameIndices(int64_t frame_count, int64_t start, int num_frames,
                                      int stride, ClipSampling::PadMode pad);

// Uniform start in [0, max(0, frame_count - span)].
int64_t RandomClipStart(int64_t frame_count, int num_frames, int stride, RngStream* rng);

// `num_clips` starts evenly spaced over [0, max(0, frame_count - span)]; a
// single clip is centred.
std::vector<int64_t> EvenlySpacedClipStarts(int64_t frame_count, int num_frames, int stride,
                                            int num_clips);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_CLIP_SAMPLER_H_
