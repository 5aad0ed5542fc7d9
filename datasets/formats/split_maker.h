// File: datasets/formats/split_maker.h
//
// Labeled subsets of a training split, as the published semi-supervised
// protocols define them:
//   kRandom    a uniformly random subset of round(fraction * N) videos (at
//              least 1) of the whole train list, not class-balanced, as the
//              VideoSSL-style UCF101/HMDB51 lists;
//   kPerClass  round(fraction * n_c) videos (at least 1) of every class c,
//              as the class-balanced Kinetics-400 lists.
// The choice is a pure function of (labels, fraction, seed, mode).
#ifndef TIMEBALANCE_DATASETS_FORMATS_SPLIT_MAKER_H_
#define TIMEBALANCE_DATASETS_FORMATS_SPLIT_MAKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

enum class SplitMode { kRandom, kPerClass };

absl::StatusOr<SplitMode> ParseSplitMode(const std::string& name);

// Ascending indices into `labels` (each in [0, num_classes)).
absl::StatusOr<std::vector<int64_t>> MakeLabeledSplit(const std::vector<int>& labels,
                                                      int num_classes, double fraction,
                                                      uint64_t seed, SplitMode mode);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_SPLIT_MAKER_H_
