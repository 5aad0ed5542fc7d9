// File: semisup/video_semi_trainer.h
//
// VideoSSL's losses (Jing et al., WACV 2021; the comparison table's
// "VideoSemi" row; VideoSemiOptions in semisup.proto says what the
// registered `video_semi` trainer computes, docs/BASELINES.md what differs
// from the paper). Exposed for semisup/video_semi_trainer_test.cc, which
// checks them against semisup/testdata/video_semi_reference.py.
#ifndef TIMEBALANCE_SEMISUP_VIDEO_SEMI_TRAINER_H_
#define TIMEBALANCE_SEMISUP_VIDEO_SEMI_TRAINER_H_

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "backbones/backbone.h"
#include "semisup/semi_supervised.h"
#include "semisup/semisup.pb.h"

namespace tb {

// The frames of a clip of `num_frames` the image model sees: the centres of
// `count` equal segments, floor((i + 1/2) * num_frames / count) for
// i < count (count 1 = the middle frame); count 0 or >= num_frames = every
// frame.
std::vector<int64_t> ImageFrameIndices(int64_t num_frames, int64_t count);

// The image model's logits of frames `frames` of clips [B, 3, T, H, W],
// every frame on its own as a 1-frame clip: [B, F, K] (F = frames.size(),
// K = image_model.num_classes()). One forward pass over the B * F frames.
torch::Tensor ImageFrameLogits(VideoBackbone& image_model, const torch::Tensor& clips,
                               const std::vector<int64_t>& frames);

// The appearance target of each clip, [B, K]: the mean over the F frames of
// softmax(frame_logits[:, f] / temperature). frame_logits [B, F, K].
torch::Tensor AppearanceTargets(const torch::Tensor& frame_logits, double temperature);

// temperature^2 * (1 / B) sum_b KL(q_b || softmax(logits_b / temperature)),
// q = targets [B, K] (rows summing to 1, treated as constants; terms with
// q = 0 count 0), logits [B, K] the appearance head's. In the logits' dtype
// (fp64 stays fp64).
torch::Tensor AppearanceDistillationLoss(const torch::Tensor& logits, const torch::Tensor& targets,
                                         double temperature);

struct VideoSemiLossOptions {
  float threshold = 0.95f;
  PseudoLabelOptions::Normalization normalization = PseudoLabelOptions::ALL;
  double pseudo_label_weight = 1.0;  // w(t)
  double appearance_weight = 1.0;    // appearance_weight * r(t)
  double temperature = 1.0;
};

struct VideoSemiLoss {
  torch::Tensor total;
  torch::Tensor ce;            // on the labeled rows
  torch::Tensor pseudo_label;  // PseudoLabelLoss of the unlabeled rows
  torch::Tensor appearance;    // undefined without appearance logits
  PseudoLabels pseudo_labels;  // of the unlabeled rows
};

// VideoSSL's loss after the warm-up, from the video model's class `logits`
// [nl + nu, C] (labeled rows first) and `labels` [nl]:
//   total = CE(logits[:nl], y)
//         + pseudo_label_weight * PseudoLabelLoss(logits[nl:], pl)
//         + appearance_weight * AppearanceDistillationLoss(appearance_logits,
//                                                          appearance_targets)
// with pl the argmax of softmax(logits[nl:]) where its maximum >= threshold
// (no gradient through the labels). `appearance_logits` [M, K] (the
// appearance head's, any M rows) and `appearance_targets` [M, K] may be
// undefined (no appearance term). Logits in fp32 or fp64 stay in their dtype.
VideoSemiLoss ComputeVideoSemiLoss(const torch::Tensor& logits, const torch::Tensor& labels,
                                   const torch::Tensor& appearance_logits,
                                   const torch::Tensor& appearance_targets,
                                   const VideoSemiLossOptions& options);

// The image backbone of `options` (image_backbone, or the default
// tsm_r18 { shift_div: 1024 }: a per-frame ResNet-18 with nothing shifted).
BackboneConfig VideoSemiImageBackbone(const VideoSemiOptions& options);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_VIDEO_SEMI_TRAINER_H_
