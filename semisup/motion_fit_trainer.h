// File: semisup/motion_fit_trainer.h
//
// MotionFit's losses (Gavrilyuk et al., ICCV 2021; MotionFitOptions in
// semisup.proto says what the registered `motion_fit` trainer computes and
// in which phases). Exposed for semisup/motion_fit_trainer_test.cc, which
// checks them against semisup/testdata/motion_fit_reference.py.
#ifndef TIMEBALANCE_SEMISUP_MOTION_FIT_TRAINER_H_
#define TIMEBALANCE_SEMISUP_MOTION_FIT_TRAINER_H_

#include <torch/types.h>

#include <cstdint>

#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"

namespace tb {

// The mean over each video's clips of clip-major rows [K * B, C] (row k * B
// + b is clip k of video b, ClipMajor's order) -> [B, C].
torch::Tensor MultiClipMean(const torch::Tensor& clip_major, int64_t clips);

// The multi-clip loss: CE(MultiClipMean(logits, clips), labels), a mean over
// the B videos.
torch::Tensor MultiClipCrossEntropy(const torch::Tensor& clip_major_logits,
                                    const torch::Tensor& labels, int64_t clips);

// The self-training loss of the RGB model's clip-major logits [K * B, C]
// against the motion model's clip-major logits [K * B, C] of the same
// videos (no gradient flows into them): p = softmax(MultiClipMean(motion) /
// temperature) per video; hard targets argmax p masked by max p >=
// threshold (PseudoLabelLoss), or soft targets p with the same mask
// (SoftPseudoLabelLoss); every clip of a video gets the video's target.
// `pseudo_labels`, when not null, receives the B videos' hard labels and
// mask.
torch::Tensor MotionFitSelfTrainingLoss(const torch::Tensor& rgb_logits,
                                        const torch::Tensor& motion_logits, int64_t clips,
                                        const MotionFitOptions& options,
                                        PseudoLabels* pseudo_labels = nullptr);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_MOTION_FIT_TRAINER_H_
