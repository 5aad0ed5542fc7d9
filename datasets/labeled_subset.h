// File: datasets/labeled_subset.h
//
// The labeled part of a training split. Either a random fraction of the
// training videos (as the public VideoSSL-style lists: random, not
// class-balanced, but with at least one video per class so that every class
// is learnable), or an explicit list file. The choice depends only on the
// list, the fraction and `seed`, so two methods compared on "10%, seed 0"
// see the same labeled videos.
#ifndef TIMEBALANCE_DATASETS_LABELED_SUBSET_H_
#define TIMEBALANCE_DATASETS_LABELED_SUBSET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

// Indices (ascending) into `labels` of the labeled videos:
// max(num_classes, round(fraction * n)) videos, one random video of each class
// first, the rest uniformly from the remaining ones.
absl::StatusOr<std::vector<int64_t>> SelectLabeledSubset(const std::vector<int>& labels,
                                                         int num_classes, double fraction,
                                                         uint64_t seed);

// The indices of the videos of each class (ascending); a label outside
// [0, num_classes) is an error naming the video.
absl::StatusOr<std::vector<std::vector<int64_t>>> GroupByClass(const std::vector<int>& labels,
                                                               int num_classes);

// Indices of the videos whose relative paths are listed in `list_path` (one
// per line, optionally followed by a label, as trainlist01.txt; repeats
// count once). Listed paths that are not in the training split are an error
// naming every one of them with file and line.
absl::StatusOr<std::vector<int64_t>> ReadLabeledList(
    const std::string& list_path, const std::vector<std::string>& relative_paths);

// SHA-256 (lower-case hex) of the sorted relative paths of a subset, each
// followed by "\n": `sort list.txt | sha256sum` of a labeled list with one
// path per line gives the same digest. Recorded in results so that runs can
// be matched to the exact labeled list.
std::string LabeledSubsetSha256(const std::vector<std::string>& relative_paths,
                                const std::vector<int64_t>& subset);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_LABELED_SUBSET_H_
