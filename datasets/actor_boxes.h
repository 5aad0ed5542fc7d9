// File: datasets/actor_boxes.h
//
// Actor boxes of a video, for ActorCutMix (the `actor_cutmix` trainer and
// SamplerConfig.actor_masks): a lab runs its own person detector and writes,
// next to every video, a text file `<video path>.actors` with one box a
// line,
//   frame x0 y0 x1 y1 score
// frame the 0-based frame index of the video, the corners normalised to the
// frame ([0, 1]: x by the width, y by the height; x0 < x1, y0 < y1), score
// the detector's confidence. Lines starting with '#' and empty lines are
// skipped; a frame may have any number of boxes, or none. SynthActions
// (datasets/synthetic/) writes the main object's box of every frame at
// score 1.
//
// A clip's actor mask is 1 inside any box of its frame (boxes scoring at
// least the threshold) and 0 elsewhere, cut with the RGB clip's crop box and
// flip. As in the official ActorCutMix code (BuildHumanMask), a clip
// without any box in any of its frames is all actor (mask 1 everywhere).
#ifndef TIMEBALANCE_DATASETS_ACTOR_BOXES_H_
#define TIMEBALANCE_DATASETS_ACTOR_BOXES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "datasets/augment.h"

namespace tb {

struct ActorBox {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // normalised corners
  float score = 1;
};

// Frame index -> its boxes.
using ActorBoxes = std::map<int64_t, std::vector<ActorBox>>;

// `video_path` + ".actors".
std::string ActorBoxesPathFor(const std::string& video_path);

// Parses the file at `path`, keeping boxes with score >= score_threshold.
// NotFound names the file when it is missing; InvalidArgument names the file
// and line of a malformed line (fields, a corner outside [0, 1], x0 >= x1
// or y0 >= y1).
absl::StatusOr<ActorBoxes> ReadActorBoxes(const std::string& path, float score_threshold);

// Writes the actor mask of the clip of video frames `frames` to `out`
// ([T, out_size, out_size] floats, 0 or 1): output pixel (i, j) samples the
// decoded frame (frame_height x frame_width) at the centre of its cell of
// `crop` (mirrored when crop.flip) and is 1 when that point lies inside a
// box of its frame. All ones when none of the clip's frames has a box.
void RenderActorMask(const ActorBoxes& boxes, const std::vector<int64_t>& frames,
                     int frame_height, int frame_width, const CropBox& crop, int out_size,
                     float* out);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_ACTOR_BOXES_H_
