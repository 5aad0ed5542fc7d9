#include "datasets/formats/split_maker.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/rng.h"
#include "datasets/labeled_subset.h"

namespace tb {
namespace {
// Separates these streams from the other users of RngStream.
constexpr uint32_t kSplitPurpose = 23;

int64_t Quota(double fraction, int64_t n) {
  return std::max<int64_t>(1, std::llround(fraction * static_cast<double>(n)));
}
}  // namespace

absl::StatusOr<SplitMode> ParseSplitMode(const std::string& name) {
  if (name == "random") return SplitMode::kRandom;
  if (name == "per_class") return SplitMode::kPerClass;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown split mode '", name, "' (want random or per_class)"));
}

absl::StatusOr<std::vector<int64_t>> MakeLabeledSplit(const std::vector<int>& labels,
                                                      int num_classes, double fraction,
                                                      uint64_t seed, SplitMode mode) {
  if (!(fraction > 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("fraction ", fraction, " is not in (0, 1]"));
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  if (n == 0) return absl::InvalidArgumentError("the train split is empty");
  absl::StatusOr<std::vector<std::vector<int64_t>>> grouped = GroupByClass(labels, num_classes);
  if (!grouped.ok()) return grouped.status();
  const std::vector<std::vector<int64_t>>& by_class = *grouped;
  std::vector<int64_t> chosen;
  if (mode == SplitMode::kRandom) {
    RngStream rng(seed, 0, 0, 0, kSplitPurpose);
    const std::vector<int64_t> order = rng.Permutation(n);
    chosen.assign(order.begin(), order.begin() + Quota(fraction, n));
  } else {
    for (int c = 0; c < num_classes; ++c) {
      const std::vector<int64_t>& members = by_class[c];
      if (members.empty()) continue;
      RngStream rng(seed, 1, static_cast<uint64_t>(c), 0, kSplitPurpose);
      const std::vector<int64_t> order = rng.Permutation(static_cast<int64_t>(members.size()));
      const int64_t quota = Quota(fraction, static_cast<int64_t>(members.size()));
      for (int64_t k = 0; k < quota; ++k) chosen.push_back(members[order[k]]);
    }
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace tb
