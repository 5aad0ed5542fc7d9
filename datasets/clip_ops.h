// File: datasets/clip_ops.h
//
// Per-clip photometric augmentation, RandAugment, random erasing, cutout
// and normalisation of float clips laid out [3, T, S, S]. Parameters are
// drawn once per clip (DrawClipOps) from the caller's RngStream and applied
// identically to every frame (temporally consistent). Drawing always
// consumes the same number of random values whatever the probabilities, so
// switching one operation on or off does not change the draws of the others
// (RandAugment and cutout draw a fixed block only when one of them is
// configured; see datasets.proto). Plain C++, like augment.h, so loader
// threads do not use LibTorch's intra-op pool.
#ifndef TIMEBALANCE_DATASETS_CLIP_OPS_H_
#define TIMEBALANCE_DATASETS_CLIP_OPS_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/rng.h"
#include "datasets/datasets.pb.h"

namespace tb {

struct EraseBox {
  int y0 = 0, x0 = 0, height = 0, width = 0;
};

// RandAugment's operations (Augmentation.RandAugmentOptions in
// datasets.proto documents each one and its range).
enum class RandAugmentOp {
  kIdentity,
  kAutoContrast,
  kEqualize,
  kRotate,
  kSolarize,
  kColor,
  kPosterize,
  kContrast,
  kBrightness,
  kSharpness,
  kShearX,
  kShearY,
  kTranslateX,
  kTranslateY,
};
constexpr int kNumRandAugmentOps = 14;
// Operation slots drawn per clip whatever num_ops is (num_ops <= this).
constexpr int kMaxRandAugmentOps = 8;

const char* RandAugmentOpName(RandAugmentOp op);

// One applied RandAugment operation: magnitude on the 0..10 scale; `negate`
// flips the direction of the signed ones (rotate, shear, translate).
struct RandAugmentStep {
  RandAugmentOp op = RandAugmentOp::kIdentity;
  float magnitude = 0;
  bool negate = false;
};

// The parameters of one clip's photometric operations (identity values
// when an operation was not selected).
struct ClipOps {
  float brightness = 1, contrast = 1, saturation = 1, hue_shift = 0, gamma = 1;
  bool grayscale = false;
  int drop_channel = -1;
  std::vector<EraseBox> erase;
  // RandAugment operations in the order to apply, and the cutout square
  // (empty when not drawn or not selected).
  std::vector<RandAugmentStep> randaugment;
  std::vector<EraseBox> cutout;
};

ClipOps DrawClipOps(const Augmentation& options, int size, RngStream* rng);

// Applies the colour operations (not the erasing) to `clip` ([3, T, S, S],
// values in [0, 1]) in the order documented in datasets.proto.
void ApplyColorOps(const ClipOps& ops, int num_frames, int size, float* clip);

// Applies `steps` in order to `clip` ([3, T, S, S], values in [0, 1]); the
// same mapping on every frame.
void ApplyRandAugment(const std::vector<RandAugmentStep>& steps, int num_frames, int size,
                      float* clip);
void ApplyRandAugmentOp(const RandAugmentStep& step, int num_frames, int size, float* clip);

// (x - mean[c]) / std[c] in place.
void NormalizeClip(const std::array<float, 3>& mean, const std::array<float, 3>& std,
                   int num_frames, int size, float* clip);

// Sets the erase boxes to `value` on every frame and channel.
void ApplyErase(const std::vector<EraseBox>& boxes, int num_frames, int size, float value,
                float* clip);
// The same with a value per channel.
void ApplyErase(const std::vector<EraseBox>& boxes, int num_frames, int size,
                const std::array<float, 3>& values, float* clip);

// The value of 0.5 grey after NormalizeClip: (0.5 - mean) / std per channel
// (the cutout fill).
std::array<float, 3> NormalizedGrey(const std::array<float, 3>& mean,
                                    const std::array<float, 3>& std);

// Hue rotation of one RGB pixel in [0, 1] by `shift` turns (HSV round trip,
// torchvision's adjust_hue semantics).
void ShiftHue(float shift, float* r, float* g, float* b);

// The SSL augmentation of ../shared/reference ALGORITHMS.md (TCLR /
// TimeBalance pretraining): crop side U(0.5, 1) with the aspect kept,
// contrast p.25 U(.75, 1.25), hue p.3 U(-.1, .1), saturation p.3
// U(.75, 1.25), brightness p.3 U(.75, 1.25), grayscale p.175, channel drop
// p.125, flip p.5, random erase p.7 with sides in [1/6, 1/3).
Augmentation SslReferenceAugmentation();

// Checks ranges; errors name `path`.field and the value.
absl::Status ValidateAugmentation(const Augmentation& a, const std::string& path);

// Fills the values of `config` derived from others: the normalisation mean
// and std (Kinetics-400's, as the reference R3D-18 uses) when unset, and
// every sub-message, so a written config lists all defaults.
void ResolveDatasetDefaults(DatasetConfig* config);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_CLIP_OPS_H_
