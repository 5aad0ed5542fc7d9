// File: datasets/formats/experiment_data.h
//
// The videos of one experiment: the split read from the dataset config, the
// labeled subset of the training videos (with its SHA-256), the unlabeled rest,
// and the test videos.
#ifndef TIMEBALANCE_DATASETS_FORMATS_EXPERIMENT_DATA_H_
#define TIMEBALANCE_DATASETS_FORMATS_EXPERIMENT_DATA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "datasets/clip_loader.h"
#include "datasets/datasets.pb.h"

namespace tb {

struct ExperimentData {
  std::vector<std::string> class_names;
  std::vector<LabeledVideo> labeled;    // labeled training videos
  // What semi-supervised methods read as unlabeled (their labels are kept
  // for diagnostics only): the other training videos, or every training
  // video with dataset.unlabeled_set = ALL_TRAIN.
  std::vector<LabeledVideo> unlabeled;
  std::vector<LabeledVideo> train;  // every training video, in split order
  std::vector<LabeledVideo> test;
  int64_t num_train = 0;
  std::string labeled_sha256;  // LabeledSubsetSha256 of the labeled list
  std::string split_name;    // e.g. "ucf101 split 1"
};

// Errors name the dataset folder or split file at fault.
absl::StatusOr<ExperimentData> LoadExperimentData(const DatasetConfig& config);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_EXPERIMENT_DATA_H_
