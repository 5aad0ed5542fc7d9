// File: datasets/flow/flow_clip.h
//
// Cutting a flow clip that matches an RGB clip: the frame-to-field rule and
// the crop. Frame t's flow is field t (from frame t to t + 1); the last
// frame of a video (t = n - 1) has none and repeats field n - 2, so a clip
// of T frames gets T fields, one per frame, aligned with the RGB clip. The
// RGB clip's crop box (drawn on the decoded frame) is mapped to the field
// grid (the same box when the flow was computed at the loader's decode
// size, else scaled by the size ratio), resized bilinearly with the same
// half-pixel-centre rule as datasets/augment.h, and a horizontal flip
// mirrors the field and negates its x component. Values stay in px of the
// stored field grid (not rescaled by the crop's resize, as flow images are
// treated in the TSN/I3D pipelines), optionally multiplied by `scale`.
#ifndef TIMEBALANCE_DATASETS_FLOW_FLOW_CLIP_H_
#define TIMEBALANCE_DATASETS_FLOW_FLOW_CLIP_H_

#include <cstdint>
#include <vector>

#include "datasets/augment.h"

namespace tb {

// The field holding the flow of frame `t` of a video of `frame_count`
// (>= 2) frames: min(t, frame_count - 2).
int64_t FlowFieldOfFrame(int64_t t, int64_t frame_count);

// A crop in a field's pixel grid (fractional when the grids differ).
struct FlowCropBox {
  double y0 = 0, x0 = 0, height = 0, width = 0;
  bool flip = false;
};

// Maps `box`, drawn on a frame_height x frame_width frame, to a
// field_height x field_width grid of the same picture.
FlowCropBox MapCropBoxToField(const CropBox& box, int frame_height, int frame_width,
                              int field_height, int field_width);

// fields[t] is the field of clip frame t ([2, H, W] floats, px); writes the
// flow clip [2, T, out_size, out_size] to `out`: the crop resized, mirrored
// with the x component negated when box.flip, times `scale`.
void CropResizeFlowClip(const std::vector<const float*>& fields, int field_height,
                        int field_width, const FlowCropBox& box, int out_size, float scale,
                        float* out);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FLOW_FLOW_CLIP_H_
