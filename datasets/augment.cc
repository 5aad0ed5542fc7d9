#include "datasets/augment.h"

#include <algorithm>
#include <cmath>

#include <glog/logging.h>

namespace tb {

CropBox RandomResizedCropBox(int height, int width, const Augmentation& options,
                             RngStream* rng) {
  CropBox box;
  if (options.keep_aspect_ratio()) {
    const double side = rng->Uniform(options.min_crop_scale(), options.max_crop_scale());
    box.height = std::clamp(static_cast<int>(std::lround(side * height)), 1, height);
    box.width = std::clamp(static_cast<int>(std::lround(side * width)), 1, width);
    box.y0 = static_cast<int>(rng->UniformInt(height - box.height + 1));
    box.x0 = static_cast<int>(rng->UniformInt(width - box.width + 1));
    box.flip = rng->Bernoulli(options.flip_probability());
    return box;
  }
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(options.min_aspect_ratio());
  const double log_hi = std::log(options.max_aspect_ratio());
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * rng->Uniform(options.min_crop_scale(), options.max_crop_scale());
    const double ratio = std::exp(log_lo + (log_hi - log_lo) * rng->UniformDouble());
    const int w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      box.height = h;
      box.width = w;
      box.y0 = static_cast<int>(rng->UniformInt(height - h + 1));
      box.x0 = static_cast<int>(rng->UniformInt(width - w + 1));
      found = true;
    }
  }
  if (!found) {
    const double in_ratio = static_cast<double>(width) / height;
    if (in_ratio < options.min_aspect_ratio()) {
      box.width = width;
      box.height = static_cast<int>(std::lround(width / options.min_aspect_ratio()));
    } else if (in_ratio > options.max_aspect_ratio()) {
      box.height = height;
      box.width = static_cast<int>(std::lround(height * options.max_aspect_ratio()));
    } else {
      box.width = width;
      box.height = height;
    }
    box.height = std::clamp(box.height, 1, height);
    box.width = std::clamp(box.width, 1, width);
    box.y0 = (height - box.height) / 2;
    box.x0 = (width - box.width) / 2;
  }
  box.flip = rng->Bernoulli(options.flip_probability());
  return box;
}

CropBox CenterCropBox(int height, int width, float fraction) {
  CropBox box;
  const int side = std::max(1, static_cast<int>(std::lround(std::min(height, width) * fraction)));
  box.height = box.width = side;
  box.y0 = (height - side) / 2;
  box.x0 = (width - side) / 2;
  return box;
}

std::vector<CropBox> SpatialCropBoxes(int height, int width, float fraction, int num_crops) {
  CHECK(num_crops == 1 || num_crops == 3) << "num_crops " << num_crops;
  const CropBox centre = CenterCropBox(height, width, fraction);
  if (num_crops == 1) return {centre};
  std::vector<CropBox> boxes(3, centre);
  if (height > width) {
    boxes[0].y0 = 0;
    boxes[2].y0 = height - centre.height;
  } else {
    boxes[0].x0 = 0;
    boxes[2].x0 = width - centre.width;
  }
  return boxes;
}

namespace {

// Source sample positions and weights for one output axis (half-pixel
// centres, as torch's bilinear interpolate with align_corners = false).
struct AxisTaps {
  std::vector<int> i0, i1;
  std::vector<float> w1;
};

AxisTaps MakeTaps(int offset, int in_size, int out_size) {
  AxisTaps taps;
  taps.i0.resize(out_size);
  taps.i1.resize(out_size);
  taps.w1.resize(out_size);
  const double scale = static_cast<double>(in_size) / out_size;
  for (int o = 0; o < out_size; ++o) {
    double src = (o + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    int lo = static_cast<int>(src);
    if (lo > in_size - 1) lo = in_size - 1;
    const int hi = std::min(lo + 1, in_size - 1);
    taps.i0[o] = offset + lo;
    taps.i1[o] = offset + hi;
    taps.w1[o] = static_cast<float>(src - lo);
  }
  return taps;
}

}  // namespace

void CropResizeNormalize(const uint8_t* rgb, int num_frames, int height, int width,
                         const CropBox& box, int out_size, const std::array<float, 3>& mean,
                         const std::array<float, 3>& std, float* out) {
  CHECK(box.y0 >= 0 && box.x0 >= 0 && box.y0 + box.height <= height &&
        box.x0 + box.width <= width)
      << "crop box outside the frame";
  const AxisTaps ys = MakeTaps(box.y0, box.height, out_size);
  AxisTaps xs = MakeTaps(box.x0, box.width, out_size);
  if (box.flip) {
    std::reverse(xs.i0.begin(), xs.i0.end());
    std::reverse(xs.i1.begin(), xs.i1.end());
    std::reverse(xs.w1.begin(), xs.w1.end());
  }
  const size_t plane = static_cast<size_t>(out_size) * out_size;
  const size_t channel_stride = plane * num_frames;
  float scale[3], bias[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * std[c]);
    bias[c] = -mean[c] / std[c];
  }
  const size_t row_stride = static_cast<size_t>(width) * 3;
  for (int t = 0; t < num_frames; ++t) {
    const uint8_t* frame = rgb + static_cast<size_t>(t) * height * row_stride;
    for (int oy = 0; oy < out_size; ++oy) {
      const uint8_t* r0 = frame + ys.i0[oy] * row_stride;
      const uint8_t* r1 = frame + ys.i1[oy] * row_stride;
      const float wy = ys.w1[oy];
      for (int ox = 0; ox < out_size; ++ox) {
        const int a = xs.i0[ox] * 3, b = xs.i1[ox] * 3;
        const float wx = xs.w1[ox];
        for (int c = 0; c < 3; ++c) {
          const float top = r0[a + c] + (r0[b + c] - r0[a + c]) * wx;
          const float bottom = r1[a + c] + (r1[b + c] - r1[a + c]) * wx;
          const float v = top + (bottom - top) * wy;
          out[c * channel_stride + t * plane + oy * out_size + ox] = v * scale[c] + bias[c];
        }
      }
    }
  }
}

}  // namespace tb
