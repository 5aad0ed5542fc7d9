// File: eval/representation.h
//
// Evaluation of learned representations (self-supervised backbones):
// feature extraction of evenly spaced clips per video, a weighted kNN
// classifier, clip retrieval recall@k, a linear probe on frozen features,
// and the temporal-similarity diagnostic (how alike a video's clips at
// different times are). All on CPU tensors of features; only extraction runs
// the model.
#ifndef TIMEBALANCE_EVAL_REPRESENTATION_H_
#define TIMEBALANCE_EVAL_REPRESENTATION_H_

#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "core/autocast.h"
#include "core/results.pb.h"
#include "datasets/clip_loader.h"
#include "eval/eval.pb.h"

namespace tb {

// Pooled backbone features [V, num_clips, D] (float, CPU) of `num_clips`
// non-overlapping, evenly spaced centre-cropped clips per video, in video
// order. The model is put in eval mode.
absl::StatusOr<torch::Tensor> ExtractClipFeatures(VideoBackbone& model,
                                                  const std::vector<LabeledVideo>& videos,
                                                  const DatasetConfig& dataset,
                                                  const RepresentationEvalConfig& config,
                                                  const torch::Device& device,
                                                  Precision precision);

// The same with `model` prepared as an InferenceModel (in the precision it
// was prepared with, on its own device).
absl::StatusOr<torch::Tensor> ExtractClipFeatures(InferenceModel& model,
                                                  const std::vector<LabeledVideo>& videos,
                                                  const DatasetConfig& dataset,
                                                  const RepresentationEvalConfig& config);

struct ClassAccuracy {
  double top1 = 0;
  std::vector<double> per_class;  // NaN-free: classes without videos get 0
  std::vector<int64_t> per_class_count;
};

// features [N, D] / [M, D] (any scale; L2-normalised inside).
ClassAccuracy KnnClassify(const torch::Tensor& train, const std::vector<int>& train_labels,
                          const torch::Tensor& test, const std::vector<int>& test_labels,
                          int num_classes, int k, double temperature);

// Clip features [N, n, D] / [M, n, D]; recall@k for each k.
std::map<int, double> ClipRetrievalRecall(const torch::Tensor& train,
                                          const std::vector<int>& train_labels,
                                          const torch::Tensor& test,
                                          const std::vector<int>& test_labels,
                                          const std::vector<int>& ks);

// Clip features [N, n, D] / [M, n, D]. Deterministic (seeded init).
ClassAccuracy LinearProbe(const torch::Tensor& train, const std::vector<int>& train_labels,
                          const torch::Tensor& test, const std::vector<int>& test_labels,
                          int num_classes, const RepresentationEvalConfig& config);

// Per video: mean off-diagonal cosine similarity of its clips' features
// ([V, n, D] -> [V]).
torch::Tensor VideoTemporalSimilarity(const torch::Tensor& clip_features);

// Order-aware video features: each clip's feature L2-normalised, then the
// clips concatenated in time order ([V, n, D] -> [V, n * D]). The cosine of
// two such vectors is the mean cosine of their clips at the same positions,
// so two videos made of the same clips in a different order are apart; the
// mean over clips (the standard kNN input) cannot tell them apart.
torch::Tensor OrderedVideoFeatures(const torch::Tensor& clip_features);

// Mean cosine similarity between clips of different videos ([V, n, D] ->
// scalar): the baseline against which a video's temporal similarity is read.
// Pooled post-ReLU features all lie in the positive orthant, so raw cosines
// are high (~0.9+) between any two clips, of one video or not.
double CrossVideoSimilarity(const torch::Tensor& clip_features);

// `clip_features` minus their mean over all videos and clips: cosines of the
// centred features measure how alike two clips are relative to the average
// clip, which removes the shared positive component.
torch::Tensor CenterFeatures(const torch::Tensor& clip_features);

struct RepresentationReport {
  ClassAccuracy knn;          // on the mean of a video's clip features
  ClassAccuracy knn_ordered;  // on OrderedVideoFeatures (same k, temperature)
  ClassAccuracy probe;  // top1 < 0 when skipped
  std::map<int, double> retrieval;
  // Temporal similarity over the training videos: overall mean, per class;
  // of the raw features, and of the features centred over the training set.
  double temporal_similarity = 0;
  std::vector<double> temporal_similarity_per_class;
  double centered_temporal_similarity = 0;
  std::vector<double> centered_temporal_similarity_per_class;
  // Mean cosine between clips of different training videos (raw features).
  double cross_video_similarity = 0;
  double seconds = 0;
};

// Runs everything above: train = the training videos, test = the test split.
absl::StatusOr<RepresentationReport> EvaluateRepresentation(
    VideoBackbone& model, const std::vector<LabeledVideo>& train,
    const std::vector<LabeledVideo>& test, int num_classes, const DatasetConfig& dataset,
    const RepresentationEvalConfig& config, const torch::Device& device, Precision precision);

absl::StatusOr<RepresentationReport> EvaluateRepresentation(
    InferenceModel& model, const std::vector<LabeledVideo>& train,
    const std::vector<LabeledVideo>& test, int num_classes, const DatasetConfig& dataset,
    const RepresentationEvalConfig& config);

// The record of `report` (core/results.proto), one entry per class name.
RepresentationRecord RepresentationReportToRecord(const RepresentationReport& report,
                                                  const std::vector<std::string>& class_names);

}  // namespace tb

#endif  // TIMEBALANCE_EVAL_REPRESENTATION_H_
