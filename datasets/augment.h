// File: datasets/augment.h
//
// Spatial augmentation and tensor conversion of decoded clips. A crop box is
// drawn once per clip and applied to all of its frames (temporally
// consistent); the crop is resized bilinearly to a square, optionally
// flipped, scaled to [0, 1] and normalised per channel, producing the
// network's float input [3, T, S, S]. Written in plain C++ (no LibTorch ops)
// so loader threads do not compete with the trainer for LibTorch's
// intra-op thread pool.
#ifndef TIMEBALANCE_DATASETS_AUGMENT_H_
#define TIMEBALANCE_DATASETS_AUGMENT_H_

#include <array>
#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "datasets/datasets.pb.h"

namespace tb {

struct CropBox {
  int y0 = 0, x0 = 0, height = 0, width = 0;
  bool flip = false;
};

// With options.keep_aspect_ratio: a crop whose sides are s times the
// frame's, s ~ U(min_crop_scale, max_crop_scale), at a uniform position.
// Otherwise torchvision's RandomResizedCrop rule (10 attempts, then a centre crop with
// the aspect ratio clamped) plus a horizontal flip with the configured
// probability.
CropBox RandomResizedCropBox(int height, int width, const Augmentation& options,
                             RngStream* rng);

// A centred square crop whose side is `fraction` of the short side.
CropBox CenterCropBox(int height, int width, float fraction);

// The spatial crops of multi-crop testing, squares of side `fraction` of the
// short side: num_crops 1 = {CenterCropBox}; 3 = at the start, the centre
// and the end of the long side, centred across it (left, centre, right of a
// landscape frame; top, centre, bottom of a portrait one; SlowFast's
// three-crop testing). Other counts are a programming error.
std::vector<CropBox> SpatialCropBoxes(int height, int width, float fraction, int num_crops);

// Crops `box` out of every frame of `rgb` ([T, H, W, 3] uint8, contiguous),
// resizes to out_size x out_size (bilinear, half-pixel centres), flips if
// asked and writes float [3, T, out_size, out_size] normalised by mean/std
// into `out`, which holds 3 * T * out_size * out_size floats.
void CropResizeNormalize(const uint8_t* rgb, int num_frames, int height, int width,
                         const CropBox& box, int out_size, const std::array<float, 3>& mean,
                         const std::array<float, 3>& std, float* out);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_AUGMENT_H_
