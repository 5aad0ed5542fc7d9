// File: datasets/ucf101.h
//
// Reader for the official UCF101 split lists (classInd.txt, trainlistNN.txt,
// testlistNN.txt), which our synthetic datasets are written in too. Every
// inconsistency in the lists is an error naming the file, the line and the
// text: a silently mislabeled or dropped video would only show up, much
// later, as a worse accuracy.
#ifndef TIMEBALANCE_DATASETS_UCF101_H_
#define TIMEBALANCE_DATASETS_UCF101_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

struct VideoEntry {
  std::string path;           // root joined with relative_path
  int label = 0;              // 0-based
  std::string relative_path;  // as listed, e.g. "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
};

struct SplitSet {
  std::vector<std::string> class_names;  // index = label
  std::vector<VideoEntry> train;
  std::vector<VideoEntry> test;
};

// root: folder with class sub-folders of videos. annotations: folder with
// classInd.txt, trainlistNN.txt and testlistNN.txt ("" = root). split: the
// NN of the list files (>= 1). check_files: also require every listed video
// to exist under root.
absl::StatusOr<SplitSet> ReadUcf101Split(const std::string& root, const std::string& annotations,
                                         int split, bool check_files);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_UCF101_H_
