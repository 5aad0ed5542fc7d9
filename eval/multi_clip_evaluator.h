// File: eval/multi_clip_evaluator.h
//
// Video-level accuracy under the standard multi-view protocol: for every test
// video, `num_clips` clips at evenly spaced starts x one centre crop, or x
// three crops along the long side with `crops: THREE` (crop_fraction of the
// short side, resized to the clip size); the softmax outputs of a video's
// num_clips x crops views are averaged and the video's prediction is the
// arg-max of the average. Reports top-1, top-5 (top-k for k = min(5,
// classes)), per-class top-1 and the confusion matrix. Decoding runs on
// worker threads ahead of the model.
//
// With `collectives` (data-parallel ranks, each calling with the same
// arguments) rank r evaluates videos r, r + N, r + 2N, ... and the ranks'
// per-video probabilities are summed into one [videos, classes] matrix (each
// row comes from exactly one rank, the others add zeros), so every rank gets
// the result of one process evaluating every video once.
//
// Example config:
//   evaluation { num_clips: 10 crop_fraction: 0.8 batch_size: 16 }
//   evaluation { num_clips: 10 crops: THREE crop_fraction: 1 }
#ifndef TIMEBALANCE_EVAL_MULTI_CLIP_EVALUATOR_H_
#define TIMEBALANCE_EVAL_MULTI_CLIP_EVALUATOR_H_

#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "core/autocast.h"
#include "core/collectives.h"
#include "core/results.pb.h"
#include "datasets/clip_loader.h"
#include "datasets/datasets.pb.h"
#include "eval/eval.pb.h"

namespace tb {

struct VideoAccuracy {
  int64_t num_videos = 0;
  int num_clips = 0;
  int num_crops = 0;  // spatial crops per clip (1 or 3)
  double top1 = 0;  // fractions in [0, 1]
  double top5 = 0;
  std::vector<double> per_class_top1;  // NaN-free: classes without videos get -1
  std::vector<int64_t> per_class_count;
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
  double seconds = 0;
};

absl::StatusOr<VideoAccuracy> EvaluateMultiClip(VideoBackbone& model,
                                                const std::vector<LabeledVideo>& videos,
                                                int num_classes, const DatasetConfig& dataset,
                                                const EvaluationConfig& evaluation,
                                                const torch::Device& device,
                                                Precision precision = Precision::kFp32,
                                                Collectives* collectives = nullptr);

// The same with `model` prepared as an InferenceModel (the experiments'
// default, evaluation.fold_batch_norm): it runs in the precision it was
// prepared with, on its own device.
absl::StatusOr<VideoAccuracy> EvaluateMultiClip(InferenceModel& model,
                                                const std::vector<LabeledVideo>& videos,
                                                int num_classes, const DatasetConfig& dataset,
                                                const EvaluationConfig& evaluation,
                                                Collectives* collectives = nullptr);

// Spatial crops per clip of `evaluation.crops`: 1 or 3.
int NumEvaluationCrops(const EvaluationConfig& evaluation);

// "10 clips x 1 centre crop (0.80 of the short side)" or "... x 3 crops
// (...)": the protocol as recorded in results and tables.
std::string EvaluationProtocol(const EvaluationConfig& evaluation);

// Aggregates per-video averaged probabilities [N, C] and labels [N]
// (exposed for tests and for evaluators that produce probabilities
// differently).
VideoAccuracy AccuracyFromProbabilities(const torch::Tensor& probabilities,
                                        const std::vector<int>& labels, int num_classes);

// The record of `accuracy` (core/results.proto), classes named.
VideoAccuracyRecord VideoAccuracyToRecord(const VideoAccuracy& accuracy,
                                          const std::vector<std::string>& class_names);

}  // namespace tb

#endif  // TIMEBALANCE_EVAL_MULTI_CLIP_EVALUATOR_H_
