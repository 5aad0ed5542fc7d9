#include "datasets/synthetic/synth_actions.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/rng.h"
#include "core/status_macros.h"
#include "datasets/synthetic/video_writer.h"

namespace tb {
namespace {

constexpr float kPi = 3.14159265358979f;
constexpr float kTwoPi = 2 * kPi;

// Independent RngStream purposes per video, so that turning one nuisance knob
// does not reshuffle the others (useful when calibrating difficulty).
enum StreamPurpose : uint32_t {
  kLayoutStream = 0,      // size, length, look, motion, position, background
  kDistractorStream = 1,
  kJitterStream = 2,
  kNoiseStream = 3,
  kBackgroundChoiceStream = 4,  // which pool background a video takes
};
// Pool background b is rendered from RngStream(seed, 1, b, 0, 0): epoch 1 is
// never used by a video's streams (epoch 0), so pool and videos cannot collide.
constexpr uint64_t kBackgroundPoolEpoch = 1;

enum class Shape { kCircle, kSquare, kTriangle, kRing, kCross, kDiamond };
constexpr int kNumShapes = 6;
constexpr const char* kShapeNames[kNumShapes] = {"Circle", "Square", "Triangle",
                                                 "Ring",   "Cross",  "Diamond"};

enum class Texture { kSolid, kStriped, kChecked, kBullseye, kSplit };
constexpr const char* kTextureNames[] = {"Solid", "Striped", "Checked", "Bullseye", "Split"};
constexpr const char* kTextureWords[] = {"plain", "striped", "checked", "bullseye",
                                         "two-tone"};

enum class Motion { kOrbit, kBounce, kPulse, kSpin, kSwing, kEight };
constexpr int kNumMotions = 6;
constexpr const char* kMotionNames[kNumMotions] = {"Orbit", "Bounce", "Pulse",
                                                   "Spin",  "Swing",  "Eight"};
constexpr const char* kMotionWords[kNumMotions] = {
    "circles around a point", "bounces up and down", "pulsates in size",
    "spins in place",         "swings left and right", "traces a figure eight"};

enum class SubAction { kRight, kLeft, kUp, kDown, kGrow, kShrink, kTurn };
constexpr const char* kSubActionNames[] = {"Right", "Left", "Up", "Down",
                                           "Grow",  "Shrink", "Turn"};
constexpr const char* kSubActionWords[] = {"moves right", "moves left", "moves up",
                                           "moves down",  "grows",      "shrinks",
                                           "turns around"};

// Sequential classes come in groups sharing one set of sub-actions; within a
// group, classes are the permutations of the set. Sets with only translations
// and scaling come first because they stay visible for every pool shape.
constexpr int kNumSequenceSets = 6;
constexpr SubAction kSequenceSets[kNumSequenceSets][3] = {
    {SubAction::kRight, SubAction::kUp, SubAction::kGrow},
    {SubAction::kLeft, SubAction::kDown, SubAction::kShrink},
    {SubAction::kRight, SubAction::kUp, SubAction::kShrink},
    {SubAction::kLeft, SubAction::kDown, SubAction::kGrow},
    {SubAction::kRight, SubAction::kDown, SubAction::kTurn},
    {SubAction::kLeft, SubAction::kUp, SubAction::kTurn},
};
// Ordered so that the first classes of a group already disagree on which
// sub-action comes first, second and third.
constexpr int kPermutations[6][3] = {{0, 1, 2}, {1, 0, 2}, {0, 2, 1},
                                     {2, 0, 1}, {1, 2, 0}, {2, 1, 0}};
constexpr int kMaxPerFamily = kNumSequenceSets * 6;

// Cyclic period in frames at speed 1: one period fits in a 16-frame clip
// (8 frames at stride 2) at the fastest speeds and two in a 48-frame video.
constexpr float kBasePeriod = 20.0f;

struct Rgb {
  float r = 0, g = 0, b = 0;
};

Rgb Hsv(float h, float s, float v) {
  h = h - std::floor(h);
  const float hh = h * 6.0f;
  const int sector = static_cast<int>(hh) % 6;
  const float f = hh - std::floor(hh);
  const float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  Rgb c;
  switch (sector) {
    case 0: c = {v, t, p}; break;
    case 1: c = {q, v, p}; break;
    case 2: c = {p, v, t}; break;
    case 3: c = {p, q, v}; break;
    case 4: c = {t, p, v}; break;
    default: c = {v, p, q}; break;
  }
  return {c.r * 255, c.g * 255, c.b * 255};
}

struct Look {
  Shape shape = Shape::kCircle;
  Texture texture = Texture::kSolid;
  Rgb c1, c2;
};

struct ClassSpec {
  SynthFamily family = SynthFamily::kCyclic;
  int index = 0;  // within the family
  // Cyclic.
  Shape shape = Shape::kCircle;
  Texture texture = Texture::kStriped;
  Motion motion = Motion::kOrbit;
  float hue = 0;
  // Sequential.
  std::array<SubAction, 3> steps{};
};

// Families alternate so that every prefix of the class list is balanced.
ClassSpec SpecFor(int class_id) {
  ClassSpec spec;
  const int j = class_id / 2;
  spec.index = j;
  if (class_id % 2 == 0) {
    spec.family = SynthFamily::kCyclic;
    // Motion cycles fastest and the shape shifts once per motion cycle, so
    // (motion, shape) is unique for j < 36 and neighbours differ in both.
    spec.motion = static_cast<Motion>(j % kNumMotions);
    spec.shape = static_cast<Shape>((j + j / kNumMotions) % kNumShapes);
    spec.texture = static_cast<Texture>(1 + (3 * j + j / kNumMotions) % 4);
    // A rotation-invariant pattern would make spinning invisible.
    if (spec.motion == Motion::kSpin && spec.texture == Texture::kBullseye) {
      spec.texture = Texture::kSplit;
    }
    // Golden-ratio steps spread any number of hues around the wheel.
    spec.hue = std::fmod(0.03f + 0.61803398875f * j, 1.0f);
  } else {
    spec.family = SynthFamily::kSequential;
    const auto& set = kSequenceSets[j / 6];
    const auto& perm = kPermutations[j % 6];
    for (int k = 0; k < 3; ++k) spec.steps[k] = set[perm[k]];
  }
  return spec;
}

Look ClassLook(const ClassSpec& spec, float hue_shift) {
  Look look;
  look.shape = spec.shape;
  look.texture = spec.texture;
  look.c1 = Hsv(spec.hue + hue_shift, 0.85f, 0.95f);
  look.c2 = Hsv(spec.hue + hue_shift, 0.75f, 0.35f);
  return look;
}

// The look pool shared by sequential classes (and by cyclic videos when
// appearance_similarity kicks in). Two-tone so that turning is visible on
// every shape. Always consumes the same number of draws.
Look PoolLook(RngStream& rng) {
  Look look;
  look.shape = static_cast<Shape>(rng.UniformInt(kNumShapes));
  look.texture = Texture::kSplit;
  const float hue = rng.UniformFloat();
  look.c1 = Hsv(hue, rng.Uniform(0.4f, 1.0f), rng.Uniform(0.65f, 1.0f));
  look.c2 = Hsv(hue + rng.Uniform(0.25f, 0.75f), rng.Uniform(0.4f, 1.0f),
                rng.Uniform(0.15f, 0.55f));
  return look;
}

Look SolidLook(RngStream& rng) {
  Look look;
  look.shape = static_cast<Shape>(rng.UniformInt(kNumShapes));
  look.texture = Texture::kSolid;
  look.c1 = Hsv(rng.UniformFloat(), rng.Uniform(0.2f, 1.0f), rng.Uniform(0.3f, 1.0f));
  look.c2 = look.c1;
  return look;
}

// (u, v): object-local coordinates, the object fills roughly the unit disc.
bool Inside(Shape shape, float u, float v) {
  switch (shape) {
    case Shape::kCircle:
      return u * u + v * v <= 1.0f;
    case Shape::kSquare:
      return std::abs(u) <= 0.85f && std::abs(v) <= 0.85f;
    case Shape::kTriangle:
      return v >= -1.0f && v <= 0.75f && std::abs(u) <= 0.9f * (v + 1.0f) / 1.75f;
    case Shape::kRing: {
      const float r2 = u * u + v * v;
      return r2 <= 1.0f && r2 >= 0.3f;
    }
    case Shape::kCross:
      return (std::abs(u) <= 0.33f && std::abs(v) <= 1.0f) ||
             (std::abs(v) <= 0.33f && std::abs(u) <= 1.0f);
    case Shape::kDiamond:
      return std::abs(u) + std::abs(v) <= 1.0f;
  }
  return false;
}

const Rgb& TextureColour(const Look& look, float u, float v) {
  bool second = false;
  switch (look.texture) {
    case Texture::kSolid:
      break;
    case Texture::kStriped:
      second = static_cast<int>(std::floor(u * 2.5f)) & 1;
      break;
    case Texture::kChecked:
      second = (static_cast<int>(std::floor(u * 2.5f)) +
                static_cast<int>(std::floor(v * 2.5f))) & 1;
      break;
    case Texture::kBullseye:
      second = static_cast<int>(std::sqrt(u * u + v * v) * 4.0f) & 1;
      break;
    case Texture::kSplit:
      second = u < 0;
      break;
  }
  return second ? look.c2 : look.c1;
}

uint8_t ToByte(float x) { return static_cast<uint8_t>(std::clamp(x, 0.0f, 255.0f) + 0.5f); }

// Draws a hard-edged object centred at (cx, cy) with the given radius and
// rotation, sampling each pixel at its centre.
void DrawObject(uint8_t* rgb, int width, int height, const Look& look, float cx, float cy,
                float radius, float angle) {
  if (radius < 0.5f) return;
  const float reach = radius * 1.25f;  // bounding radius of every shape
  const int x0 = std::max(0, static_cast<int>(std::floor(cx - reach)));
  const int x1 = std::min(width - 1, static_cast<int>(std::ceil(cx + reach)));
  const int y0 = std::max(0, static_cast<int>(std::floor(cy - reach)));
  const int y1 = std::min(height - 1, static_cast<int>(std::ceil(cy + reach)));
  const float c = std::cos(angle) / radius, s = std::sin(angle) / radius;
  for (int y = y0; y <= y1; ++y) {
    const float dy = y + 0.5f - cy;
    uint8_t* row = rgb + static_cast<size_t>(y) * width * 3;
    for (int x = x0; x <= x1; ++x) {
      const float dx = x + 0.5f - cx;
      const float u = c * dx + s * dy;
      const float v = -s * dx + c * dy;
      if (!Inside(look.shape, u, v)) continue;
      const Rgb& colour = TextureColour(look, u, v);
      row[3 * x] = ToByte(colour.r);
      row[3 * x + 1] = ToByte(colour.g);
      row[3 * x + 2] = ToByte(colour.b);
    }
  }
}

// The normalised box around an object DrawObject draws at (cx, cy) with
// `radius` (its bounding radius is 1.25 radius), clipped to the frame.
std::array<float, 4> ObjectBox(float cx, float cy, float radius, int width, int height) {
  const float reach = radius * 1.25f;
  return {std::clamp((cx - reach) / width, 0.0f, 1.0f),
          std::clamp((cy - reach) / height, 0.0f, 1.0f),
          std::clamp((cx + reach) / width, 0.0f, 1.0f),
          std::clamp((cy + reach) / height, 0.0f, 1.0f)};
}

// The `.actors` file of a video's actor boxes (datasets/actor_boxes.h):
// "frame x0 y0 x1 y1 score" lines, score 1; a box clipped to nothing (the
// object outside the frame) is left out.
std::string ActorBoxesText(const std::vector<std::array<float, 4>>& boxes) {
  std::string text = "# frame x0 y0 x1 y1 score (corners normalised to the frame)\n";
  for (size_t t = 0; t < boxes.size(); ++t) {
    const std::array<float, 4>& b = boxes[t];
    if (b[0] >= b[2] || b[1] >= b[3]) continue;
    absl::StrAppendFormat(&text, "%d %.5f %.5f %.5f %.5f 1\n", t, b[0], b[1], b[2], b[3]);
  }
  return text;
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Pixel noise is most of the rendering work, so it uses SplitMix64 seeded
// per frame from the video's noise stream (still a pure function of the
// seed) and triangular values (sum of two 16-bit uniforms): two values per
// 64-bit draw instead of a Box-Muller pair each.
void AddNoise(uint8_t* bytes, size_t n, float scale, uint64_t seed) {
  uint64_t state = seed;
  size_t i = 0;
  auto apply = [scale](uint8_t& b, uint64_t r) {
    const float v = static_cast<float>(r & 0xffff) + static_cast<float>((r >> 16) & 0xffff) -
                    65535.0f;
    b = ToByte(b + v * scale);
  };
  for (; i + 1 < n; i += 2) {
    const uint64_t r = SplitMix64(state);
    apply(bytes[i], r);
    apply(bytes[i + 1], r >> 32);
  }
  if (i < n) apply(bytes[i], SplitMix64(state));
}

struct Pose {
  float x = 0, y = 0, scale = 1, angle = 0;
};

std::vector<Pose> CyclicTrajectory(Motion motion, int num_frames, float short_side,
                                   float speed, RngStream& rng) {
  const float period = kBasePeriod / speed;
  const float phase = rng.Uniform(0, kTwoPi);
  const float direction = rng.Bernoulli(0.5) ? 1.0f : -1.0f;
  const float amplitude = short_side * rng.Uniform(0.16f, 0.24f);
  const float base_angle = rng.Uniform(0, kTwoPi);
  std::vector<Pose> poses(num_frames);
  for (int t = 0; t < num_frames; ++t) {
    const float theta = phase + kTwoPi * t / period;
    Pose& p = poses[t];
    p.angle = base_angle;
    switch (motion) {
      case Motion::kOrbit:
        p.x = amplitude * std::cos(theta);
        p.y = direction * amplitude * std::sin(theta);
        break;
      case Motion::kBounce:
        p.y = -1.3f * amplitude * std::abs(std::sin(0.5f * theta));
        break;
      case Motion::kPulse:
        p.scale = 1.0f + 0.4f * std::sin(theta);
        break;
      case Motion::kSpin:
        p.angle = base_angle + direction * theta;
        break;
      case Motion::kSwing:
        p.x = direction * amplitude * std::sin(theta);
        break;
      case Motion::kEight:
        p.x = amplitude * std::sin(theta);
        p.y = direction * 0.5f * amplitude * std::sin(2 * theta);
        break;
    }
  }
  return poses;
}

std::vector<Pose> SequentialTrajectory(const std::array<SubAction, 3>& steps, int num_frames,
                                       float short_side, float speed_variation,
                                       RngStream& rng) {
  // Idle lead-in and tail, then three segments whose relative durations are
  // the per-step speeds.
  const float lead = rng.Uniform(0.0f, 0.12f) * num_frames;
  const float tail = rng.Uniform(0.0f, 0.12f) * num_frames;
  std::array<float, 3> weight, extent;
  for (int k = 0; k < 3; ++k) {
    weight[k] = rng.Uniform(1 - speed_variation, 1 + speed_variation);
    extent[k] = rng.Uniform(1 - 0.5f * speed_variation, 1 + 0.5f * speed_variation);
  }
  const float turn_direction = rng.Bernoulli(0.5) ? 1.0f : -1.0f;
  const float base_angle = rng.Uniform(0, kTwoPi);
  const float total = weight[0] + weight[1] + weight[2];
  const float active = std::max(1.0f, num_frames - 1 - lead - tail);
  std::array<float, 4> bound;
  bound[0] = lead;
  for (int k = 0; k < 3; ++k) bound[k + 1] = bound[k] + active * weight[k] / total;

  const float distance = 0.30f * short_side;
  std::vector<Pose> poses(num_frames);
  for (int t = 0; t < num_frames; ++t) {
    Pose& p = poses[t];
    p.angle = base_angle;
    float log_scale = 0;
    for (int k = 0; k < 3; ++k) {
      const float progress = std::clamp((t - bound[k]) / (bound[k + 1] - bound[k]), 0.0f, 1.0f);
      const float amount = progress * extent[k];
      switch (steps[k]) {
        case SubAction::kRight: p.x += distance * amount; break;
        case SubAction::kLeft: p.x -= distance * amount; break;
        case SubAction::kUp: p.y -= distance * amount; break;
        case SubAction::kDown: p.y += distance * amount; break;
        case SubAction::kGrow: log_scale += std::log(1.8f) * amount; break;
        case SubAction::kShrink: log_scale += std::log(0.55f) * amount; break;
        case SubAction::kTurn: p.angle += turn_direction * kTwoPi * amount; break;
      }
    }
    p.scale = std::exp(log_scale);
  }
  return poses;
}

// Picks an origin so that the whole trajectory stays inside the frame.
std::pair<float, float> PlaceTrajectory(const std::vector<Pose>& poses, float radius,
                                        int width, int height, RngStream& rng) {
  float min_x = 1e9f, max_x = -1e9f, min_y = 1e9f, max_y = -1e9f;
  for (const Pose& p : poses) {
    const float reach = radius * p.scale * 1.2f;
    min_x = std::min(min_x, p.x - reach);
    max_x = std::max(max_x, p.x + reach);
    min_y = std::min(min_y, p.y - reach);
    max_y = std::max(max_y, p.y + reach);
  }
  auto place = [&rng](float lo_extent, float hi_extent, int size) {
    const float lo = 1 - lo_extent, hi = size - 1 - hi_extent;
    const float u = rng.UniformFloat();
    return lo <= hi ? lo + u * (hi - lo) : 0.5f * (lo + hi);
  };
  const float ox = place(min_x, max_x, width);
  const float oy = place(min_y, max_y, height);
  return {ox, oy};
}

// Background larger than the frame by `margin` on each side, so camera jitter
// reveals real content rather than borders.
std::vector<uint8_t> RenderBackground(int width, int height, float short_side,
                                      float clutter, RngStream& rng) {
  const Rgb a = Hsv(rng.UniformFloat(), rng.Uniform(0.1f, 0.5f), rng.Uniform(0.25f, 0.85f));
  const Rgb b = Hsv(rng.UniformFloat(), rng.Uniform(0.1f, 0.5f), rng.Uniform(0.25f, 0.85f));
  const float direction = rng.Uniform(0, kTwoPi);
  const float dcx = std::cos(direction), dcy = std::sin(direction);
  const float half_diagonal = 0.5f * std::sqrt(float(width) * width + float(height) * height);
  std::vector<float> image(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const float proj = ((x - 0.5f * width) * dcx + (y - 0.5f * height) * dcy) / half_diagonal;
      const float w = std::clamp(0.5f + 0.5f * proj, 0.0f, 1.0f);
      float* p = &image[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = a.r + w * (b.r - a.r);
      p[1] = a.g + w * (b.g - a.g);
      p[2] = a.b + w * (b.b - a.b);
    }
  }
  // Static clutter: translucent ellipses and rectangles.
  constexpr int kBlobs = 10;
  for (int i = 0; i < kBlobs; ++i) {
    const float cx = rng.Uniform(0, width), cy = rng.Uniform(0, height);
    const float rx = short_side * rng.Uniform(0.05f, 0.25f);
    const float ry = short_side * rng.Uniform(0.05f, 0.25f);
    const bool ellipse = rng.Bernoulli(0.5);
    const Rgb colour = Hsv(rng.UniformFloat(), rng.Uniform(0.0f, 0.8f), rng.Uniform(0.1f, 1.0f));
    const float alpha = clutter * rng.Uniform(0.3f, 0.7f);
    if (alpha <= 0) continue;
    const int x0 = std::max(0, static_cast<int>(cx - rx));
    const int x1 = std::min(width - 1, static_cast<int>(cx + rx));
    const int y0 = std::max(0, static_cast<int>(cy - ry));
    const int y1 = std::min(height - 1, static_cast<int>(cy + ry));
    for (int y = y0; y <= y1; ++y) {
      for (int x = x0; x <= x1; ++x) {
        if (ellipse) {
          const float ex = (x + 0.5f - cx) / rx, ey = (y + 0.5f - cy) / ry;
          if (ex * ex + ey * ey > 1) continue;
        }
        float* p = &image[(static_cast<size_t>(y) * width + x) * 3];
        p[0] += alpha * (colour.r - p[0]);
        p[1] += alpha * (colour.g - p[1]);
        p[2] += alpha * (colour.b - p[2]);
      }
    }
  }
  std::vector<uint8_t> bytes(image.size());
  for (size_t i = 0; i < image.size(); ++i) bytes[i] = ToByte(image[i]);
  return bytes;
}

struct Distractor {
  Look look;
  float radius = 0;
  float x = 0, y = 0, vx = 0, vy = 0;
  float angle = 0, spin = 0;
  bool in_front = false;
};

std::vector<Distractor> MakeDistractors(const SynthOptions& options, int width, int height,
                                        float short_side, float main_radius, RngStream& rng) {
  const int num_cyclic = options.num_classes / 2;
  const int count = static_cast<int>(rng.UniformInt(options.max_distractors + 1));
  std::vector<Distractor> distractors(count);
  for (Distractor& d : distractors) {
    const bool lookalike = rng.Bernoulli(options.lookalike_distractors);
    const int mimic = static_cast<int>(rng.UniformInt(num_cyclic));
    const float hue_shift = options.hue_jitter * rng.Uniform(-1, 1);
    const Look solid = SolidLook(rng);
    d.look = lookalike ? ClassLook(SpecFor(2 * mimic), hue_shift) : solid;
    d.radius = main_radius * rng.Uniform(0.4f, 0.7f);
    d.x = rng.Uniform(d.radius, width - d.radius);
    d.y = rng.Uniform(d.radius, height - d.radius);
    const float heading = rng.Uniform(0, kTwoPi);
    const float speed = short_side / 64.0f * rng.Uniform(0.4f, 1.5f);
    d.vx = speed * std::cos(heading);
    d.vy = speed * std::sin(heading);
    d.angle = rng.Uniform(0, kTwoPi);
    d.spin = rng.Uniform(-0.1f, 0.1f);
    d.in_front = rng.Bernoulli(0.5);
  }
  return distractors;
}

// Moves on a straight line and bounces off the frame edges.
void StepDistractor(Distractor& d, int width, int height) {
  d.x += d.vx;
  d.y += d.vy;
  if (d.x < d.radius || d.x > width - d.radius) {
    d.vx = -d.vx;
    d.x = std::clamp(d.x, d.radius, width - d.radius);
  }
  if (d.y < d.radius || d.y > height - d.radius) {
    d.vy = -d.vy;
    d.y = std::clamp(d.y, d.radius, height - d.radius);
  }
  d.angle += d.spin;
}

int VideosPerClass(const SynthOptions& o) { return o.train_per_class + o.test_per_class; }

std::string VideoRelativePath(const std::string& class_name, int video_index) {
  return absl::StrFormat("%s/v_%s_g%02d_c01.avi", class_name, class_name, video_index + 1);
}

absl::Status FsError(const std::string& path, const std::string& what,
                     const std::error_code& ec) {
  const std::string message = absl::StrCat(path, ": ", what, ": ", ec.message());
  if (ec == std::errc::permission_denied || ec == std::errc::operation_not_permitted ||
      ec == std::errc::read_only_file_system) {
    return absl::PermissionDeniedError(message);
  }
  if (ec == std::errc::no_such_file_or_directory) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  const std::string partial = path + ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::PermissionDeniedError(absl::StrCat(partial, ": cannot open for writing"));
    }
    out << text;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat(partial, ": write failed"));
  }
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) return FsError(path, "cannot rename into place", ec);
  return absl::OkStatus();
}

std::string DescribeOptions(const SynthOptions& o) {
  std::string s;
  absl::StrAppend(&s, "generator_version=", kSynthGeneratorVersion, "\n");
  absl::StrAppend(&s, "num_classes=", o.num_classes, "\n");
  absl::StrAppend(&s, "train_per_class=", o.train_per_class, "\n");
  absl::StrAppend(&s, "test_per_class=", o.test_per_class, "\n");
  absl::StrAppend(&s, "seed=", o.seed, "\n");
  absl::StrAppend(&s, "min_frames=", o.min_frames, "\n");
  absl::StrAppend(&s, "max_frames=", o.max_frames, "\n");
  absl::StrAppend(&s, "min_short_side=", o.min_short_side, "\n");
  absl::StrAppend(&s, "max_short_side=", o.max_short_side, "\n");
  absl::StrAppend(&s, "fps=", o.fps, "\n");
  absl::StrAppend(&s, "noise=", o.noise, "\n");
  absl::StrAppend(&s, "max_distractors=", o.max_distractors, "\n");
  absl::StrAppend(&s, "jitter=", o.jitter, "\n");
  absl::StrAppend(&s, "speed_variation=", o.speed_variation, "\n");
  absl::StrAppend(&s, "hue_jitter=", o.hue_jitter, "\n");
  absl::StrAppend(&s, "appearance_similarity=", o.appearance_similarity, "\n");
  absl::StrAppend(&s, "lookalike_distractors=", o.lookalike_distractors, "\n");
  absl::StrAppend(&s, "object_size=", o.object_size, "\n");
  absl::StrAppend(&s, "background_clutter=", o.background_clutter, "\n");
  absl::StrAppend(&s, "background_pool=", o.background_pool, "\n");
  absl::StrAppend(&s, "qscale=", o.qscale, "\n");
  absl::StrAppend(&s, "gop_size=", o.gop_size, "\n");
  return s;
}

// The text of synth_actions.txt: generator version, options, class list.
std::string DatasetInfo(const SynthOptions& options, const std::vector<SynthClass>& classes) {
  std::string info =
      "# SynthActions: synthetic action dataset (//datasets/synthetic:make_synthetic).\n"
      "# Options:\n";
  absl::StrAppend(&info, DescribeOptions(options), "# label name family description\n");
  for (size_t c = 0; c < classes.size(); ++c) {
    absl::StrAppend(&info, c + 1, " ", classes[c].name, " ", SynthFamilyName(classes[c].family),
                    " ", classes[c].description, "\n");
  }
  return info;
}

// "key=value" lines of synth_actions.txt, in order (comments and the class
// list, which follows from the options, are left out).
std::vector<std::pair<std::string, std::string>> OptionLines(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == absl::string_view::npos) continue;
    lines.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return lines;
}

struct WrittenVideo {
  int64_t bytes = 0;
  int64_t frames = 0;
};

absl::StatusOr<WrittenVideo> WriteOneVideo(const std::string& path, int class_id, int video_index,
                                      const SynthOptions& options) {
  ASSIGN_OR_RETURN(SynthVideo video, RenderVideo(class_id, video_index, options));
  VideoWriterOptions writer_options;
  writer_options.qscale = options.qscale;
  writer_options.gop_size = options.gop_size;
  ASSIGN_OR_RETURN(std::unique_ptr<VideoWriter> writer,
                   VideoWriter::Open(path, video.width, video.height, options.fps,
                                     writer_options));
  for (int t = 0; t < video.num_frames; ++t) RETURN_IF_ERROR(writer->WriteFrame(video.frame(t)));
  RETURN_IF_ERROR(writer->Close());
  const std::string actors = ActorBoxesText(video.actor_boxes);
  RETURN_IF_ERROR(WriteTextFile(path + ".actors", actors));
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return FsError(path, "cannot stat", ec);
  return WrittenVideo{static_cast<int64_t>(size + actors.size()), video.num_frames};
}

}  // namespace

const char* SynthFamilyName(SynthFamily family) {
  return family == SynthFamily::kCyclic ? "cyclic" : "sequential";
}

absl::Status ValidateSynthOptions(const SynthOptions& o) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (o.num_classes < 2 || o.num_classes % 2 != 0) {
    return bad(absl::StrCat("num_classes: must be even and >= 2 (half cyclic, half "
                            "sequential), got ", o.num_classes));
  }
  if (o.num_classes > 2 * kMaxPerFamily) {
    return bad(absl::StrCat("num_classes: at most ", 2 * kMaxPerFamily, " supported, got ",
                            o.num_classes));
  }
  if (o.train_per_class < 0) return bad("train_per_class: must be >= 0");
  if (o.test_per_class < 0) return bad("test_per_class: must be >= 0");
  if (o.train_per_class + o.test_per_class < 1) {
    return bad("train_per_class: train_per_class + test_per_class must be >= 1");
  }
  if (o.min_frames < 8) return bad(absl::StrCat("min_frames: must be >= 8, got ", o.min_frames));
  if (o.max_frames < o.min_frames || o.max_frames > 10000) {
    return bad(absl::StrCat("max_frames: must be in [min_frames, 10000], got ", o.max_frames));
  }
  if (o.min_short_side < 32) {
    return bad(absl::StrCat("min_short_side: must be >= 32, got ", o.min_short_side));
  }
  if (o.max_short_side < o.min_short_side || o.max_short_side > 1080) {
    return bad(absl::StrCat("max_short_side: must be in [min_short_side, 1080], got ",
                            o.max_short_side));
  }
  if (!(o.fps > 0 && o.fps <= 240)) return bad(absl::StrCat("fps: must be in (0, 240], got ", o.fps));
  if (!(o.noise >= 0 && o.noise <= 128)) return bad("noise: must be in [0, 128]");
  if (o.max_distractors < 0 || o.max_distractors > 32) {
    return bad("max_distractors: must be in [0, 32]");
  }
  if (!(o.jitter >= 0 && o.jitter <= 16)) return bad("jitter: must be in [0, 16]");
  if (!(o.speed_variation >= 0 && o.speed_variation <= 0.6f)) {
    return bad("speed_variation: must be in [0, 0.6]");
  }
  if (!(o.hue_jitter >= 0 && o.hue_jitter <= 0.5f)) return bad("hue_jitter: must be in [0, 0.5]");
  if (!(o.appearance_similarity >= 0 && o.appearance_similarity <= 1)) {
    return bad("appearance_similarity: must be in [0, 1]");
  }
  if (!(o.lookalike_distractors >= 0 && o.lookalike_distractors <= 1)) {
    return bad("lookalike_distractors: must be in [0, 1]");
  }
  if (!(o.object_size >= 0.03f && o.object_size <= 0.2f)) {
    return bad("object_size: must be in [0.03, 0.2]");
  }
  if (!(o.background_clutter >= 0 && o.background_clutter <= 1)) {
    return bad("background_clutter: must be in [0, 1]");
  }
  if (o.background_pool < 0 || o.background_pool > 1000000) {
    return bad(absl::StrCat("background_pool: must be in [0, 1000000] (0: one background per "
                            "video), got ", o.background_pool));
  }
  if (o.qscale < 1 || o.qscale > 31) return bad("qscale: must be in [1, 31]");
  if (o.gop_size < 1) return bad("gop_size: must be >= 1");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SynthClass>> SynthClasses(const SynthOptions& options) {
  RETURN_IF_ERROR(ValidateSynthOptions(options));
  std::vector<SynthClass> classes;
  for (int c = 0; c < options.num_classes; ++c) {
    const ClassSpec spec = SpecFor(c);
    SynthClass out;
    out.family = spec.family;
    if (spec.family == SynthFamily::kCyclic) {
      const int m = static_cast<int>(spec.motion), s = static_cast<int>(spec.shape),
                t = static_cast<int>(spec.texture);
      out.name = absl::StrCat(kMotionNames[m], kTextureNames[t], kShapeNames[s]);
      out.description = absl::StrFormat(
          "a %s %s (hue %d deg) %s, repeating over the whole video", kTextureWords[t],
          absl::AsciiStrToLower(kShapeNames[s]), static_cast<int>(spec.hue * 360),
          kMotionWords[m]);
    } else {
      std::string words;
      for (int k = 0; k < 3; ++k) {
        const int a = static_cast<int>(spec.steps[k]);
        absl::StrAppend(&out.name, kSubActionNames[a]);
        absl::StrAppend(&words, k == 0 ? "" : (k == 1 ? ", then " : ", and finally "),
                        kSubActionWords[a]);
      }
      out.description =
          absl::StrCat("an object of random look (shared pool) ", words);
    }
    classes.push_back(std::move(out));
  }
  return classes;
}

absl::StatusOr<SynthVideo> RenderVideo(int class_id, int video_index,
                                       const SynthOptions& options) {
  RETURN_IF_ERROR(ValidateSynthOptions(options));
  if (class_id < 0 || class_id >= options.num_classes) {
    return absl::OutOfRangeError(absl::StrCat("class_id ", class_id, " not in [0, ",
                                              options.num_classes, ")"));
  }
  if (video_index < 0 || video_index >= VideosPerClass(options)) {
    return absl::OutOfRangeError(absl::StrCat("video_index ", video_index, " not in [0, ",
                                              VideosPerClass(options), ")"));
  }
  const uint64_t sample =
      static_cast<uint64_t>(class_id) * VideosPerClass(options) + video_index;
  const ClassSpec spec = SpecFor(class_id);
  RngStream layout(options.seed, 0, sample, 0, kLayoutStream);

  // Size and length. Both sides even for yuv420p.
  const int short_side =
      (options.min_short_side +
       static_cast<int>(layout.UniformInt(options.max_short_side - options.min_short_side + 1))) &
      ~1;
  const int height = short_side;
  const int width = 2 * static_cast<int>(std::lround(short_side * 4.0 / 3.0 / 2.0));
  const int num_frames =
      options.min_frames +
      static_cast<int>(layout.UniformInt(options.max_frames - options.min_frames + 1));
  const float s = static_cast<float>(short_side);

  // Main object. Every draw is made whatever the knobs, so that a knob only
  // changes what it is about.
  const float radius = options.object_size * s * layout.Uniform(0.8f, 1.2f);
  const float speed = layout.Uniform(1 - options.speed_variation, 1 + options.speed_variation);
  const float hue_shift = options.hue_jitter * layout.Uniform(-1, 1);
  const bool use_pool_look = layout.Bernoulli(options.appearance_similarity);
  const Look pool_look = PoolLook(layout);
  Look look;
  std::vector<Pose> poses;
  if (spec.family == SynthFamily::kCyclic) {
    look = use_pool_look ? pool_look : ClassLook(spec, hue_shift);
    poses = CyclicTrajectory(spec.motion, num_frames, s, speed, layout);
  } else {
    look = pool_look;
    poses = SequentialTrajectory(spec.steps, num_frames, s, options.speed_variation, layout);
  }
  const auto [origin_x, origin_y] = PlaceTrajectory(poses, radius, width, height, layout);

  const int margin = static_cast<int>(std::ceil(3 * options.jitter)) + 1;
  const int bg_width = width + 2 * margin, bg_height = height + 2 * margin;
  // The video's own background is always rendered, so that the layout stream
  // makes the same draws whatever background_pool is.
  std::vector<uint8_t> background =
      RenderBackground(bg_width, bg_height, s, options.background_clutter, layout);
  if (options.background_pool > 0) {
    RngStream choice(options.seed, 0, sample, 0, kBackgroundChoiceStream);
    const uint64_t index = choice.UniformInt(options.background_pool);
    // The same draws at another frame size give the same scene rescaled:
    // positions and sizes are drawn relative to the frame.
    RngStream pool(options.seed, kBackgroundPoolEpoch, index, 0, 0);
    background = RenderBackground(bg_width, bg_height, s, options.background_clutter, pool);
  }

  RngStream distractor_rng(options.seed, 0, sample, 0, kDistractorStream);
  std::vector<Distractor> distractors =
      MakeDistractors(options, width, height, s, radius, distractor_rng);
  RngStream jitter_rng(options.seed, 0, sample, 0, kJitterStream);
  RngStream noise_rng(options.seed, 0, sample, 0, kNoiseStream);
  // Triangular noise (sum of two uniforms) scaled to the requested standard
  // deviation: one 32-bit draw per value instead of a Box-Muller pair.
  const float noise_scale = options.noise * std::sqrt(6.0f) / 65535.0f;

  SynthVideo video;
  video.width = width;
  video.height = height;
  video.num_frames = num_frames;
  const size_t frame_bytes = static_cast<size_t>(width) * height * 3;
  video.rgb.resize(frame_bytes * num_frames);
  const float max_shift = 3 * options.jitter;
  for (int t = 0; t < num_frames; ++t) {
    const float jx = std::clamp(static_cast<float>(jitter_rng.Normal()) * options.jitter,
                                -max_shift, max_shift);
    const float jy = std::clamp(static_cast<float>(jitter_rng.Normal()) * options.jitter,
                                -max_shift, max_shift);
    const int dx = static_cast<int>(std::lround(jx)), dy = static_cast<int>(std::lround(jy));
    uint8_t* frame = video.rgb.data() + frame_bytes * t;
    for (int y = 0; y < height; ++y) {
      const uint8_t* src =
          background.data() + (static_cast<size_t>(y + margin + dy) * bg_width + margin + dx) * 3;
      std::copy(src, src + width * 3, frame + static_cast<size_t>(y) * width * 3);
    }
    for (const Distractor& d : distractors) {
      if (!d.in_front) {
        DrawObject(frame, width, height, d.look, d.x - dx, d.y - dy, d.radius, d.angle);
      }
    }
    const Pose& p = poses[t];
    DrawObject(frame, width, height, look, origin_x + p.x - dx, origin_y + p.y - dy,
               radius * p.scale, p.angle);
    video.actor_boxes.push_back(ObjectBox(origin_x + p.x - dx, origin_y + p.y - dy,
                                          radius * p.scale, width, height));
    for (Distractor& d : distractors) {
      if (d.in_front) {
        DrawObject(frame, width, height, d.look, d.x - dx, d.y - dy, d.radius, d.angle);
      }
      StepDistractor(d, width, height);
    }
    if (options.noise > 0) AddNoise(frame, frame_bytes, noise_scale, noise_rng.NextU64());
  }
  return video;
}

SynthOptions SmokeTestOptions(int num_classes, int train_per_class, int test_per_class,
                              uint64_t seed) {
  SynthOptions o;
  o.num_classes = num_classes;
  o.train_per_class = train_per_class;
  o.test_per_class = test_per_class;
  o.seed = seed;
  o.min_frames = 24;
  o.max_frames = 32;
  o.min_short_side = 48;
  o.max_short_side = 56;
  return o;
}

absl::StatusOr<SynthDirState> CheckSynthActionsDir(const std::string& out_dir,
                                                   const SynthOptions& options,
                                                   std::string* difference) {
  ASSIGN_OR_RETURN(const std::vector<SynthClass> classes, SynthClasses(options));
  const std::string info_path = absl::StrCat(out_dir, "/synth_actions.txt");
  std::error_code ec;
  if (!std::filesystem::exists(info_path, ec)) return SynthDirState::kMissing;
  std::ifstream in(info_path, std::ios::binary);
  if (!in) return absl::PermissionDeniedError(absl::StrCat(info_path, ": cannot open"));
  const std::string found((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string expected = DatasetInfo(options, classes);
  if (found == expected) {
    for (const char* list : {"classInd.txt", "trainlist01.txt", "testlist01.txt"}) {
      if (!std::filesystem::exists(absl::StrCat(out_dir, "/", list), ec)) {
        if (difference != nullptr) *difference = absl::StrCat(list, " is missing");
        return SynthDirState::kStale;
      }
    }
    return SynthDirState::kUpToDate;
  }
  if (difference != nullptr) {
    const auto have = OptionLines(found), want = OptionLines(expected);
    *difference = "the class list differs";
    for (const auto& [key, value] : want) {
      const auto it = std::find_if(have.begin(), have.end(),
                                   [&key = key](const auto& kv) { return kv.first == key; });
      const std::string old_value = it == have.end() ? "(absent)" : it->second;
      if (old_value != value) {
        *difference = absl::StrCat(key, ": the folder has ", old_value, ", these options give ",
                                   value);
        break;
      }
    }
  }
  return SynthDirState::kStale;
}

absl::Status WriteSynthActions(const std::string& out_dir, const SynthOptions& options,
                               int num_threads, SynthWriteStats* stats) {
  ASSIGN_OR_RETURN(const std::vector<SynthClass> classes, SynthClasses(options));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return FsError(out_dir, "cannot create the output folder", ec);
  for (const SynthClass& c : classes) {
    const std::string dir = absl::StrCat(out_dir, "/", c.name);
    std::filesystem::create_directories(dir, ec);
    if (ec) return FsError(dir, "cannot create the class folder", ec);
  }

  const int per_class = VideosPerClass(options);
  const int num_jobs = options.num_classes * per_class;
  if (num_threads <= 0) num_threads = static_cast<int>(std::thread::hardware_concurrency());
  num_threads = std::clamp(num_threads, 1, num_jobs);

  std::atomic<int> next_job{0};
  std::atomic<bool> failed{false};
  std::atomic<int64_t> total_bytes{0}, total_frames{0};
  std::mutex error_mu;
  absl::Status first_error;
  auto worker = [&]() {
    while (!failed.load()) {
      const int job = next_job.fetch_add(1);
      if (job >= num_jobs) return;
      const int class_id = job / per_class, video_index = job % per_class;
      const std::string path = absl::StrCat(
          out_dir, "/", VideoRelativePath(classes[class_id].name, video_index));
      absl::StatusOr<WrittenVideo> written =
          WriteOneVideo(path, class_id, video_index, options);
      if (!written.ok()) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (first_error.ok()) first_error = written.status();
        failed = true;
        return;
      }
      total_bytes += written->bytes;
      total_frames += written->frames;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < num_threads; ++i) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  RETURN_IF_ERROR(first_error);

  std::string class_ind, train_list, test_list;
  const std::string info = DatasetInfo(options, classes);
  for (int c = 0; c < options.num_classes; ++c) {
    const SynthClass& cls = classes[c];
    absl::StrAppend(&class_ind, c + 1, " ", cls.name, "\n");
    for (int k = 0; k < per_class; ++k) {
      const std::string rel = VideoRelativePath(cls.name, k);
      if (k < options.train_per_class) {
        absl::StrAppend(&train_list, rel, " ", c + 1, "\n");
      } else {
        absl::StrAppend(&test_list, rel, "\n");
      }
    }
  }
  const std::pair<const char*, const std::string*> files[] = {
      {"classInd.txt", &class_ind},
      {"trainlist01.txt", &train_list},
      {"testlist01.txt", &test_list},
      {"synth_actions.txt", &info}};
  int64_t list_bytes = 0;
  for (const auto& [name, text] : files) {
    RETURN_IF_ERROR(WriteTextFile(absl::StrCat(out_dir, "/", name), *text));
    list_bytes += static_cast<int64_t>(text->size());
  }

  if (stats != nullptr) {
    stats->videos = num_jobs;
    stats->frames = total_frames.load();
    stats->bytes = total_bytes.load() + list_bytes;
  }
  return absl::OkStatus();
}

}  // namespace tb
