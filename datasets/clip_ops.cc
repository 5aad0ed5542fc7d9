#include "datasets/clip_ops.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tb {
namespace {

float DrawFactor(const RandomFactor& f, RngStream* rng) {
  const bool on = rng->Bernoulli(f.probability());
  const float value = rng->Uniform(f.min(), f.max());
  return on ? value : 1.0f;
}

inline float Clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

constexpr float kGrey[3] = {0.299f, 0.587f, 0.114f};

// FixMatch's enhancement factor (brightness, color, contrast, sharpness) at
// magnitude m: 0.05 + 0.9 m / 10.
inline float EnhanceFactor(float m) { return 0.05f + 0.09f * m; }

// The RandAugment operation slots and the cutout square: a fixed number of
// draws whatever the options (see datasets.proto).
void DrawStrongOps(const Augmentation& a, int size, RngStream* rng, ClipOps* ops) {
  const Augmentation::RandAugmentOptions& r = a.randaugment();
  for (int slot = 0; slot < kMaxRandAugmentOps; ++slot) {
    const double which = rng->UniformDouble();
    const bool on = rng->Bernoulli(r.op_probability());
    const bool negate = rng->Bernoulli(0.5);
    const double u1 = 1.0 - rng->UniformDouble();  // (0, 1]
    const double u2 = rng->UniformDouble();
    if (!a.has_randaugment() || slot >= r.num_ops() || !on) continue;
    RandAugmentStep step;
    step.op = static_cast<RandAugmentOp>(
        std::min(kNumRandAugmentOps - 1, static_cast<int>(which * kNumRandAugmentOps)));
    step.negate = negate;
    if (r.uniform_magnitude()) {
      const int top = static_cast<int>(std::floor(r.magnitude()));  // >= 2 (validated)
      step.magnitude = static_cast<float>(
          1 + std::min(top - 2, static_cast<int>(u2 * (top - 1))));
    } else {
      const double normal = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
      step.magnitude = static_cast<float>(
          std::min(10.0, std::max(0.0, r.magnitude() + r.magnitude_std() * normal)));
    }
    ops->randaugment.push_back(step);
  }
  const Augmentation::CutoutOptions& c = a.cutout();
  const bool on = rng->Bernoulli(c.probability());
  const float side_fraction = rng->Uniform(c.min_side(), c.max_side());
  const int cy = std::min(size - 1, static_cast<int>(rng->UniformDouble() * size));
  const int cx = std::min(size - 1, static_cast<int>(rng->UniformDouble() * size));
  if (!a.has_cutout() || !on) return;
  const int side = std::max(1, static_cast<int>(std::lround(side_fraction * size)));
  // The square [top, top + side) holds the centre pixel; clipped to the crop.
  const int top = cy - side / 2, left = cx - side / 2;
  EraseBox box;
  box.y0 = std::max(0, top);
  box.x0 = std::max(0, left);
  box.height = std::min(size, top + side) - box.y0;
  box.width = std::min(size, left + side) - box.x0;
  ops->cutout.push_back(box);
}

// Per-channel pointwise map of every value of the clip.
template <typename F>
void MapChannel(float* channel, size_t n, F f) {
  for (size_t i = 0; i < n; ++i) channel[i] = f(channel[i]);
}

void AutoContrast(int num_frames, int size, float* clip) {
  const size_t n = static_cast<size_t>(num_frames) * size * size;
  for (int c = 0; c < 3; ++c) {
    float* p = clip + c * n;
    const auto [lo, hi] = std::minmax_element(p, p + n);
    const float low = *lo, range = *hi - *lo;
    if (range <= 0) continue;  // flat channel: unchanged, as PIL
    MapChannel(p, n, [&](float x) { return (x - low) / range; });
  }
}

inline int To8Bit(float x) { return static_cast<int>(std::lround(Clamp01(x) * 255.0f)); }

// PIL's ImageOps.equalize per channel on the clip's 8-bit histogram.
void Equalize(int num_frames, int size, float* clip) {
  const size_t n = static_cast<size_t>(num_frames) * size * size;
  for (int c = 0; c < 3; ++c) {
    float* p = clip + c * n;
    std::array<int64_t, 256> histogram{};
    for (size_t i = 0; i < n; ++i) ++histogram[To8Bit(p[i])];
    int64_t last_nonzero = 0, nonzero_bins = 0;
    for (int v = 0; v < 256; ++v) {
      if (histogram[v] > 0) {
        last_nonzero = histogram[v];
        ++nonzero_bins;
      }
    }
    if (nonzero_bins <= 1) continue;
    const int64_t step = (static_cast<int64_t>(n) - last_nonzero) / 255;
    if (step == 0) continue;
    std::array<float, 256> lut;
    int64_t running = step / 2;
    for (int v = 0; v < 256; ++v) {
      lut[v] = static_cast<float>(std::min<int64_t>(255, running / step)) / 255.0f;
      running += histogram[v];
    }
    MapChannel(p, n, [&](float x) { return lut[To8Bit(x)]; });
  }
}

// Blends every value with `reference` (a per-pixel or per-clip value
// computed by the caller): reference + f (x - reference), clamped.
inline float Blend(float x, float reference, float f) {
  return Clamp01(reference + f * (x - reference));
}

void Sharpness(float f, int num_frames, int size, float* clip) {
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<float> original(plane);
  for (int k = 0; k < 3 * num_frames; ++k) {
    float* p = clip + k * plane;
    std::copy_n(p, plane, original.data());
    for (int y = 1; y + 1 < size; ++y) {
      for (int x = 1; x + 1 < size; ++x) {
        float sum = 4.0f * original[y * size + x];  // centre weight 5 = 4 + 1 below
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx) sum += original[(y + dy) * size + x + dx];
        }
        const float blurred = sum / 13.0f;
        p[y * size + x] = Blend(original[y * size + x], blurred, f);
      }
    }
  }
}

// Nearest-neighbour resampling of every frame through the affine map from
// output offsets to input offsets relative to the frame centre:
// (x_in, y_in) = (a x + b y + tx, c x + d y + ty); uncovered pixels get 0.
void Affine(float a, float b, float c, float d, float tx, float ty, int num_frames, int size,
            float* clip) {
  const size_t plane = static_cast<size_t>(size) * size;
  const float centre = size / 2.0f;
  std::vector<int64_t> source(plane);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const float ox = x + 0.5f - centre, oy = y + 0.5f - centre;
      const int ix = static_cast<int>(std::floor(a * ox + b * oy + tx + centre));
      const int iy = static_cast<int>(std::floor(c * ox + d * oy + ty + centre));
      const bool inside = ix >= 0 && ix < size && iy >= 0 && iy < size;
      source[y * size + x] = inside ? static_cast<int64_t>(iy) * size + ix : -1;
    }
  }
  std::vector<float> original(plane);
  for (int k = 0; k < 3 * num_frames; ++k) {
    float* p = clip + k * plane;
    std::copy_n(p, plane, original.data());
    for (size_t i = 0; i < plane; ++i) p[i] = source[i] >= 0 ? original[source[i]] : 0.0f;
  }
}

}  // namespace

const char* RandAugmentOpName(RandAugmentOp op) {
  switch (op) {
    case RandAugmentOp::kIdentity: return "identity";
    case RandAugmentOp::kAutoContrast: return "autocontrast";
    case RandAugmentOp::kEqualize: return "equalize";
    case RandAugmentOp::kRotate: return "rotate";
    case RandAugmentOp::kSolarize: return "solarize";
    case RandAugmentOp::kColor: return "color";
    case RandAugmentOp::kPosterize: return "posterize";
    case RandAugmentOp::kContrast: return "contrast";
    case RandAugmentOp::kBrightness: return "brightness";
    case RandAugmentOp::kSharpness: return "sharpness";
    case RandAugmentOp::kShearX: return "shear_x";
    case RandAugmentOp::kShearY: return "shear_y";
    case RandAugmentOp::kTranslateX: return "translate_x";
    case RandAugmentOp::kTranslateY: return "translate_y";
  }
  return "unknown";
}

void ApplyRandAugmentOp(const RandAugmentStep& step, int num_frames, int size, float* clip) {
  const float m = step.magnitude;
  const float sign = step.negate ? -1.0f : 1.0f;
  const size_t n = static_cast<size_t>(num_frames) * size * size;
  float* ch[3] = {clip, clip + n, clip + 2 * n};
  switch (step.op) {
    case RandAugmentOp::kIdentity:
      break;
    case RandAugmentOp::kAutoContrast:
      AutoContrast(num_frames, size, clip);
      break;
    case RandAugmentOp::kEqualize:
      Equalize(num_frames, size, clip);
      break;
    case RandAugmentOp::kRotate: {
      const double theta = sign * 3.0 * m * M_PI / 180.0;
      const float cs = static_cast<float>(std::cos(theta)), sn = static_cast<float>(std::sin(theta));
      Affine(cs, -sn, sn, cs, 0, 0, num_frames, size, clip);
      break;
    }
    case RandAugmentOp::kSolarize: {
      const float threshold = 1.0f - m / 10.0f;
      for (float* p : ch) MapChannel(p, n, [&](float x) { return x > threshold ? 1 - x : x; });
      break;
    }
    case RandAugmentOp::kColor: {
      const float f = EnhanceFactor(m);
      for (size_t i = 0; i < n; ++i) {
        const float grey = kGrey[0] * ch[0][i] + kGrey[1] * ch[1][i] + kGrey[2] * ch[2][i];
        for (float* p : ch) p[i] = Blend(p[i], grey, f);
      }
      break;
    }
    case RandAugmentOp::kPosterize: {
      const int bits = 4 + static_cast<int>(std::floor(m * 4.0f / 10.0f));
      const int mask = (0xFF << (8 - std::min(8, bits))) & 0xFF;
      for (float* p : ch) MapChannel(p, n, [&](float x) { return (To8Bit(x) & mask) / 255.0f; });
      break;
    }
    case RandAugmentOp::kContrast: {
      double sum = 0;
      for (size_t i = 0; i < n; ++i) {
        sum += kGrey[0] * ch[0][i] + kGrey[1] * ch[1][i] + kGrey[2] * ch[2][i];
      }
      const float mean = static_cast<float>(sum / n), f = EnhanceFactor(m);
      for (float* p : ch) MapChannel(p, n, [&](float x) { return Blend(x, mean, f); });
      break;
    }
    case RandAugmentOp::kBrightness: {
      const float f = EnhanceFactor(m);
      for (float* p : ch) MapChannel(p, n, [&](float x) { return Blend(x, 0.0f, f); });
      break;
    }
    case RandAugmentOp::kSharpness:
      Sharpness(EnhanceFactor(m), num_frames, size, clip);
      break;
    case RandAugmentOp::kShearX:
      Affine(1, sign * 0.03f * m, 0, 1, 0, 0, num_frames, size, clip);
      break;
    case RandAugmentOp::kShearY:
      Affine(1, 0, sign * 0.03f * m, 1, 0, 0, num_frames, size, clip);
      break;
    case RandAugmentOp::kTranslateX:
      Affine(1, 0, 0, 1, -sign * 0.03f * m * size, 0, num_frames, size, clip);
      break;
    case RandAugmentOp::kTranslateY:
      Affine(1, 0, 0, 1, 0, -sign * 0.03f * m * size, num_frames, size, clip);
      break;
  }
}

void ApplyRandAugment(const std::vector<RandAugmentStep>& steps, int num_frames, int size,
                      float* clip) {
  for (const RandAugmentStep& step : steps) ApplyRandAugmentOp(step, num_frames, size, clip);
}

ClipOps DrawClipOps(const Augmentation& a, int size, RngStream* rng) {
  ClipOps ops;
  ops.brightness = DrawFactor(a.brightness(), rng);
  ops.contrast = DrawFactor(a.contrast(), rng);
  ops.saturation = DrawFactor(a.saturation(), rng);
  {
    const bool on = rng->Bernoulli(a.hue_probability());
    const float shift = rng->Uniform(-a.max_hue_shift(), a.max_hue_shift());
    ops.hue_shift = on ? shift : 0.0f;
  }
  ops.gamma = DrawFactor(a.gamma(), rng);
  ops.grayscale = rng->Bernoulli(a.grayscale_probability());
  {
    const bool on = rng->Bernoulli(a.channel_drop_probability());
    const int channel = static_cast<int>(rng->UniformInt(3));
    ops.drop_channel = on ? channel : -1;
  }
  for (int i = 0; i < a.erase_count(); ++i) {
    const bool on = rng->Bernoulli(a.erase_probability());
    const int h = std::max(1, static_cast<int>(size * rng->Uniform(a.erase_min_side(),
                                                                   a.erase_max_side())));
    const int w = std::max(1, static_cast<int>(size * rng->Uniform(a.erase_min_side(),
                                                                   a.erase_max_side())));
    EraseBox box;
    box.height = std::min(h, size);
    box.width = std::min(w, size);
    box.y0 = static_cast<int>(rng->UniformInt(size - box.height + 1));
    box.x0 = static_cast<int>(rng->UniformInt(size - box.width + 1));
    if (on) ops.erase.push_back(box);
  }
  if (a.has_randaugment() || a.has_cutout()) DrawStrongOps(a, size, rng, &ops);
  return ops;
}

void ShiftHue(float shift, float* r, float* g, float* b) {
  const float maxc = std::max({*r, *g, *b});
  const float minc = std::min({*r, *g, *b});
  const float v = maxc;
  const float delta = maxc - minc;
  if (delta <= 0.0f) return;  // grey: hue undefined, unchanged
  const float s = delta / maxc;
  float h;
  if (maxc == *r) {
    h = (*g - *b) / delta;
  } else if (maxc == *g) {
    h = 2.0f + (*b - *r) / delta;
  } else {
    h = 4.0f + (*r - *g) / delta;
  }
  h = h / 6.0f + shift;
  h -= std::floor(h);
  const float h6 = h * 6.0f;
  const int sector = std::min(5, static_cast<int>(h6));
  const float f = h6 - sector;
  const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  switch (sector) {
    case 0: *r = v; *g = t; *b = p; break;
    case 1: *r = q; *g = v; *b = p; break;
    case 2: *r = p; *g = v; *b = t; break;
    case 3: *r = p; *g = q; *b = v; break;
    case 4: *r = t; *g = p; *b = v; break;
    default: *r = v; *g = p; *b = q; break;
  }
}

void ApplyColorOps(const ClipOps& ops, int num_frames, int size, float* clip) {
  const size_t plane = static_cast<size_t>(size) * size;
  const size_t channel_stride = plane * num_frames;
  for (int t = 0; t < num_frames; ++t) {
    float* ch[3];
    for (int c = 0; c < 3; ++c) ch[c] = clip + c * channel_stride + t * plane;
    if (ops.brightness != 1.0f) {
      for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < plane; ++i) ch[c][i] = Clamp01(ch[c][i] * ops.brightness);
      }
    }
    if (ops.contrast != 1.0f) {
      double sum = 0;
      for (size_t i = 0; i < plane; ++i) {
        sum += kGrey[0] * ch[0][i] + kGrey[1] * ch[1][i] + kGrey[2] * ch[2][i];
      }
      const float mean = static_cast<float>(sum / plane);
      for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < plane; ++i) {
          ch[c][i] = Clamp01(ops.contrast * ch[c][i] + (1 - ops.contrast) * mean);
        }
      }
    }
    if (ops.saturation != 1.0f) {
      for (size_t i = 0; i < plane; ++i) {
        const float grey = kGrey[0] * ch[0][i] + kGrey[1] * ch[1][i] + kGrey[2] * ch[2][i];
        for (int c = 0; c < 3; ++c) {
          ch[c][i] = Clamp01(ops.saturation * ch[c][i] + (1 - ops.saturation) * grey);
        }
      }
    }
    if (ops.hue_shift != 0.0f) {
      for (size_t i = 0; i < plane; ++i) ShiftHue(ops.hue_shift, &ch[0][i], &ch[1][i], &ch[2][i]);
    }
    if (ops.gamma != 1.0f) {
      for (int c = 0; c < 3; ++c) {
        for (size_t i = 0; i < plane; ++i) ch[c][i] = std::pow(ch[c][i], ops.gamma);
      }
    }
    if (ops.grayscale) {
      for (size_t i = 0; i < plane; ++i) {
        const float grey = kGrey[0] * ch[0][i] + kGrey[1] * ch[1][i] + kGrey[2] * ch[2][i];
        ch[0][i] = ch[1][i] = ch[2][i] = grey;
      }
    }
    if (ops.drop_channel >= 0) std::fill_n(ch[ops.drop_channel], plane, 0.0f);
  }
}

void NormalizeClip(const std::array<float, 3>& mean, const std::array<float, 3>& std,
                   int num_frames, int size, float* clip) {
  const size_t n = static_cast<size_t>(size) * size * num_frames;
  for (int c = 0; c < 3; ++c) {
    float* p = clip + c * n;
    const float inv = 1.0f / std[c];
    for (size_t i = 0; i < n; ++i) p[i] = (p[i] - mean[c]) * inv;
  }
}

void ApplyErase(const std::vector<EraseBox>& boxes, int num_frames, int size, float value,
                float* clip) {
  ApplyErase(boxes, num_frames, size, std::array<float, 3>{value, value, value}, clip);
}

void ApplyErase(const std::vector<EraseBox>& boxes, int num_frames, int size,
                const std::array<float, 3>& values, float* clip) {
  const size_t plane = static_cast<size_t>(size) * size;
  for (const EraseBox& box : boxes) {
    for (int c = 0; c < 3; ++c) {
      for (int t = 0; t < num_frames; ++t) {
        float* frame = clip + (static_cast<size_t>(c) * num_frames + t) * plane;
        for (int y = box.y0; y < box.y0 + box.height; ++y) {
          std::fill_n(frame + static_cast<size_t>(y) * size + box.x0, box.width, values[c]);
        }
      }
    }
  }
}

std::array<float, 3> NormalizedGrey(const std::array<float, 3>& mean,
                                    const std::array<float, 3>& std) {
  std::array<float, 3> grey;
  for (int c = 0; c < 3; ++c) grey[c] = (0.5f - mean[c]) / std[c];
  return grey;
}

Augmentation SslReferenceAugmentation() {
  Augmentation a;
  a.set_keep_aspect_ratio(true);
  a.set_min_crop_scale(0.5f);
  a.set_max_crop_scale(1.0f);
  a.set_flip_probability(0.5f);
  auto factor = [](RandomFactor* f, float p, float lo, float hi) {
    f->set_probability(p);
    f->set_min(lo);
    f->set_max(hi);
  };
  factor(a.mutable_contrast(), 0.25f, 0.75f, 1.25f);
  factor(a.mutable_saturation(), 0.3f, 0.75f, 1.25f);
  factor(a.mutable_brightness(), 0.3f, 0.75f, 1.25f);
  a.set_hue_probability(0.3f);
  a.set_max_hue_shift(0.1f);
  a.set_grayscale_probability(0.175f);
  a.set_channel_drop_probability(0.125f);
  a.set_erase_probability(0.7f);
  a.set_erase_count(1);
  a.set_erase_min_side(1.0f / 6);
  a.set_erase_max_side(1.0f / 3);
  return a;
}

absl::Status ValidateAugmentation(const Augmentation& a, const std::string& path) {
  auto bad = [&](const std::string& field, double value, const std::string& rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field ", path, ".", field, " = ", value, ": ", rule));
  };
  auto probability = [&](const std::string& field, double p) -> absl::Status {
    if (!(p >= 0 && p <= 1)) return bad(field, p, "must be in [0, 1]");
    return absl::OkStatus();
  };
  if (!(a.min_crop_scale() > 0 && a.min_crop_scale() <= a.max_crop_scale())) {
    return bad("min_crop_scale", a.min_crop_scale(), "must be in (0, max_crop_scale]");
  }
  if (a.max_crop_scale() > 1) return bad("max_crop_scale", a.max_crop_scale(), "must be <= 1");
  if (!(a.min_aspect_ratio() > 0 && a.min_aspect_ratio() <= a.max_aspect_ratio())) {
    return bad("min_aspect_ratio", a.min_aspect_ratio(), "must be in (0, max_aspect_ratio]");
  }
  for (const auto& [name, p] :
       std::vector<std::pair<std::string, double>>{
           {"flip_probability", a.flip_probability()},
           {"hue_probability", a.hue_probability()},
           {"grayscale_probability", a.grayscale_probability()},
           {"channel_drop_probability", a.channel_drop_probability()},
           {"erase_probability", a.erase_probability()},
           {"brightness.probability", a.brightness().probability()},
           {"contrast.probability", a.contrast().probability()},
           {"saturation.probability", a.saturation().probability()},
           {"gamma.probability", a.gamma().probability()}}) {
    if (absl::Status s = probability(name, p); !s.ok()) return s;
  }
  for (const auto& [name, f] : std::vector<std::pair<std::string, const RandomFactor*>>{
           {"brightness", &a.brightness()},
           {"contrast", &a.contrast()},
           {"saturation", &a.saturation()},
           {"gamma", &a.gamma()}}) {
    if (!(f->min() >= 0 && f->min() <= f->max())) {
      return bad(name + ".min", f->min(), "must be in [0, " + name + ".max]");
    }
  }
  if (!(a.max_hue_shift() >= 0 && a.max_hue_shift() <= 0.5)) {
    return bad("max_hue_shift", a.max_hue_shift(), "must be in [0, 0.5] (turns)");
  }
  if (!(a.erase_count() >= 0 && a.erase_count() <= 16)) {
    return bad("erase_count", a.erase_count(), "must be in [0, 16]");
  }
  if (!(a.erase_min_side() > 0 && a.erase_min_side() <= a.erase_max_side() &&
        a.erase_max_side() <= 1)) {
    return bad("erase_min_side", a.erase_min_side(),
               "must satisfy 0 < erase_min_side <= erase_max_side <= 1");
  }
  if (a.has_randaugment()) {
    const Augmentation::RandAugmentOptions& r = a.randaugment();
    if (!(r.num_ops() >= 0 && r.num_ops() <= kMaxRandAugmentOps)) {
      return bad("randaugment.num_ops", r.num_ops(),
                 absl::StrCat("must be in [0, ", kMaxRandAugmentOps, "]"));
    }
    if (!(r.magnitude() >= 0 && r.magnitude() <= 10)) {
      return bad("randaugment.magnitude", r.magnitude(), "must be in [0, 10]");
    }
    if (!(r.magnitude_std() >= 0 && r.magnitude_std() <= 10)) {
      return bad("randaugment.magnitude_std", r.magnitude_std(), "must be in [0, 10]");
    }
    if (r.uniform_magnitude() && r.magnitude() < 2) {
      return bad("randaugment.magnitude", r.magnitude(),
                 "must be >= 2 with uniform_magnitude (integers in [1, magnitude))");
    }
    RETURN_IF_ERROR(probability("randaugment.op_probability", r.op_probability()));
  }
  if (a.has_cutout()) {
    const Augmentation::CutoutOptions& c = a.cutout();
    RETURN_IF_ERROR(probability("cutout.probability", c.probability()));
    if (!(c.min_side() >= 0 && c.min_side() <= c.max_side())) {
      return bad("cutout.min_side", c.min_side(), "must be in [0, cutout.max_side]");
    }
    if (c.max_side() > 1) return bad("cutout.max_side", c.max_side(), "must be <= 1");
  }
  return absl::OkStatus();
}

void ResolveDatasetDefaults(DatasetConfig* config) {
  ClipSampling* clip = config->mutable_clip();
  if (clip->mean_size() == 0) {
    for (float m : {0.43216f, 0.394666f, 0.37645f}) clip->add_mean(m);
  }
  if (clip->std_size() == 0) {
    for (float s : {0.22803f, 0.22145f, 0.216989f}) clip->add_std(s);
  }
  config->mutable_augmentation();
  config->mutable_loader();
}

}  // namespace tb
