// File: semisup/tacl_trainer.h
//
// TACL's temporal augmentations, augmentation curriculum and class-wise
// curriculum thresholds (Tong et al., IEEE TCSVT 2022; TaclOptions in
// semisup.proto says what the registered `tacl` trainer computes, and
// docs/BASELINES.md what of it the paper confirms). Exposed for
// semisup/tacl_trainer_test.cc, which checks them against
// semisup/testdata/tacl_reference.py.
#ifndef TIMEBALANCE_SEMISUP_TACL_TRAINER_H_
#define TIMEBALANCE_SEMISUP_TACL_TRAINER_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"

namespace tb {

// The augmentation strength before optimizer step `step` (0-based) of a
// curriculum of `ramp_steps`: min(1, step / ramp_steps), 1 when ramp_steps
// is 0. A pure function of the step.
double TaclCurriculumStrength(int64_t step, int64_t ramp_steps);

// The FINE window at strength s in [0, 1] for clips of T frames:
// round(T - s (T - w_min)), w_min = max(1, round(min_window_fraction * T)).
int64_t TaclFineWindow(int64_t frames, double min_window_fraction, double strength);

// The COARSE hold at strength s: round(1 + s (max_hold - 1)).
int64_t TaclCoarseHold(int64_t max_hold, double strength);

// Frame indices [T] of the FINE augmentation: window `window` in [1, T]
// starting at `start` in [0, T - window], stretched over T frames:
// start + floor(i * window / T).
std::vector<int64_t> TaclFineIndices(int64_t frames, int64_t window, int64_t start);

// Frame indices [T] of the COARSE augmentation: every `hold`-th frame from
// `phase` in [0, hold), each repeated `hold` times: min(T - 1, phase + hold
// * floor(i / hold)).
std::vector<int64_t> TaclCoarseIndices(int64_t frames, int64_t hold, int64_t phase);

// One strong clip's temporal augmentation.
struct TaclTemporalDraw {
  bool fine = true;
  std::vector<int64_t> indices;  // [T]
};

// The draw of strong clip `slot` of the video keyed `video` before step
// `step`: FINE with probability options.fine_probability, its window start
// (FINE) or phase (COARSE) uniform over the allowed range; every random
// number from RngStream(options.seed, step, video, slot). A pure function of
// its arguments.
TaclTemporalDraw TaclDrawTemporalAugmentation(const TaclOptions& options, int64_t frames,
                                              double strength, int64_t step, int64_t video,
                                              int64_t slot);

// Clips [N, C, T, H, W] re-indexed in time, row n by indices[n] ([T] each).
torch::Tensor TaclApplyTemporal(const torch::Tensor& clips,
                                const std::vector<std::vector<int64_t>>& indices);

// The class-wise thresholds [C] (float64) from the learning effect
// sigma [C] and the unconfident share u (a scalar tensor):
//   beta_c = sigma_c / max(max_c' sigma_c', u)   (warmup)
//   beta_c = sigma_c / max_c' sigma_c'           (no warmup; 0 if all are 0)
//   threshold_c = M(beta_c) * tau, M(x) = x / (2 - x) (CONVEX) or x (LINEAR).
torch::Tensor TaclClassThresholds(const torch::Tensor& sigma, const torch::Tensor& unused,
                                  double tau, bool warmup,
                                  TaclOptions::ThresholdMapping mapping);

// Hard pseudo-labels of probabilities [N, C] (no gradient): argmax, and
// mask 1 where max p >= thresholds[argmax].
PseudoLabels TaclPseudoLabels(const torch::Tensor& probabilities,
                              const torch::Tensor& thresholds);

// The batch's learning-effect counts [C + 1] (float64): per class c the
// number of rows with max p >= tau and argmax c, and last the number with
// max p < tau.
torch::Tensor TaclBatchCounts(const torch::Tensor& probabilities, double tau);

// One step of the moving averages from a batch's counts [C + 1] (summed
// over ranks) of n rows: sigma <- d sigma + (1 - d) counts[:C] / n,
// u <- d u + (1 - d) counts[C] / n, in place.
void TaclUpdateLearningEffect(const torch::Tensor& counts, double decay, torch::Tensor& sigma,
                              torch::Tensor& unused);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_TACL_TRAINER_H_
