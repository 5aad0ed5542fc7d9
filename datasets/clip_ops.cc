#include "datasets/clip_ops.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tb {
namespace {

float DrawFactor(const RandomFactor& f, RngStream* rng) {
  const bool on = rng->Bernoulli(f.probability());
  const float value = rng->Uniform(f.min(), f.max());
  return on ? value : 1.0f;
}

inline float Clamp01(float v) { return std::min(1.0f, std::max(0.0f, v)); }

constexpr float kGrey[3] = {0.299f, 0.587f, 0.114f};

}  // namespace

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
  const size_t plane = static_cast<size_t>(size) * size;
  for (const EraseBox& box : boxes) {
    for (int c = 0; c < 3; ++c) {
      for (int t = 0; t < num_frames; ++t) {
        float* frame = clip + (static_cast<size_t>(c) * num_frames + t) * plane;
        for (int y = box.y0; y < box.y0 + box.height; ++y) {
          std::fill_n(frame + static_cast<size_t>(y) * size + box.x0, box.width, value);
        }
      }
    }
  }
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
  return absl::OkStatus();
}

}  // namespace tb
