#include "datasets/flow/flow_clip.h"

#include <algorithm>
#include <cmath>

#include <glog/logging.h>

namespace tb {
namespace {

struct Taps {
  std::vector<int> i0, i1;
  std::vector<float> w1;
};

// Output o of `out_size` samples the span [offset, offset + size) of an axis
// of `limit` pixels at (o + 0.5) * size / out_size - 0.5 (half-pixel
// centres, clamped into the span): for an integer span this is exactly the
// rule of CropResizeNormalize (datasets/augment.cc).
Taps MakeTaps(double offset, double size, int limit, int out_size) {
  Taps t;
  t.i0.resize(out_size);
  t.i1.resize(out_size);
  t.w1.resize(out_size);
  const double scale = size / out_size;
  const int first = std::clamp(static_cast<int>(std::floor(offset)), 0, limit - 1);
  const int last = std::clamp(static_cast<int>(std::ceil(offset + size)) - 1, first, limit - 1);
  for (int o = 0; o < out_size; ++o) {
    double rel = (o + 0.5) * scale - 0.5;
    rel = std::clamp(rel, 0.0, std::max(0.0, size - 1));
    double src = std::clamp(offset + rel, static_cast<double>(first), static_cast<double>(last));
    const int lo = static_cast<int>(std::floor(src));
    t.i0[o] = lo;
    t.i1[o] = std::min(lo + 1, last);
    t.w1[o] = static_cast<float>(src - lo);
  }
  return t;
}

}  // namespace

int64_t FlowFieldOfFrame(int64_t t, int64_t frame_count) {
  CHECK_GE(frame_count, 2);
  return std::min(t, frame_count - 2);
}

FlowCropBox MapCropBoxToField(const CropBox& box, int frame_height, int frame_width,
                              int field_height, int field_width) {
  FlowCropBox f;
  const double sy = static_cast<double>(field_height) / frame_height;
  const double sx = static_cast<double>(field_width) / frame_width;
  f.y0 = box.y0 * sy;
  f.x0 = box.x0 * sx;
  f.height = box.height * sy;
  f.width = box.width * sx;
  f.flip = box.flip;
  return f;
}

void CropResizeFlowClip(const std::vector<const float*>& fields, int h, int w,
                        const FlowCropBox& box, int out_size, float scale, float* out) {
  CHECK(box.width > 0 && box.height > 0) << "empty flow crop";
  const Taps ys = MakeTaps(box.y0, box.height, h, out_size);
  Taps xs = MakeTaps(box.x0, box.width, w, out_size);
  if (box.flip) {
    std::reverse(xs.i0.begin(), xs.i0.end());
    std::reverse(xs.i1.begin(), xs.i1.end());
    std::reverse(xs.w1.begin(), xs.w1.end());
  }
  const int t_count = static_cast<int>(fields.size());
  const size_t plane = static_cast<size_t>(out_size) * out_size;
  const size_t in_plane = static_cast<size_t>(w) * h;
  const float sign[2] = {box.flip ? -scale : scale, scale};
  for (int c = 0; c < 2; ++c) {
    for (int t = 0; t < t_count; ++t) {
      const float* src = fields[t] + c * in_plane;
      float* dst = out + (static_cast<size_t>(c) * t_count + t) * plane;
      for (int oy = 0; oy < out_size; ++oy) {
        const float* r0 = src + static_cast<size_t>(ys.i0[oy]) * w;
        const float* r1 = src + static_cast<size_t>(ys.i1[oy]) * w;
        const float wy = ys.w1[oy];
        for (int ox = 0; ox < out_size; ++ox) {
          const int a = xs.i0[ox], b = xs.i1[ox];
          const float wx = xs.w1[ox];
          const float top = r0[a] + (r0[b] - r0[a]) * wx;
          const float bottom = r1[a] + (r1[b] - r1[a]) * wx;
          dst[oy * out_size + ox] = (top + (bottom - top) * wy) * sign[c];
        }
      }
    }
  }
}

}  // namespace tb
