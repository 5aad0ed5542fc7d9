#include "datasets/labeled_subset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "core/rng.h"
#include "core/sha256.h"

namespace tb {
namespace {
constexpr uint32_t kSubsetPurpose = 11;
}  // namespace

absl::StatusOr<std::vector<std::vector<int64_t>>> GroupByClass(const std::vector<int>& labels,
                                                               int num_classes) {
  std::vector<std::vector<int64_t>> by_class(std::max(num_classes, 0));
  for (int64_t i = 0; i < static_cast<int64_t>(labels.size()); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("video ", i, " has label ", labels[i],
                                                     " outside [0, ", num_classes, ")"));
    }
    by_class[labels[i]].push_back(i);
  }
  return by_class;
}

absl::StatusOr<std::vector<int64_t>> SelectLabeledSubset(const std::vector<int>& labels,
                                                         int num_classes, double fraction,
                                                         uint64_t seed) {
  if (!(fraction > 0 && fraction <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("labeled fraction ", fraction,
                                                   " is not in (0, 1]"));
  }
  const int64_t n = static_cast<int64_t>(labels.size());
  absl::StatusOr<std::vector<std::vector<int64_t>>> grouped = GroupByClass(labels, num_classes);
  if (!grouped.ok()) return grouped.status();
  const std::vector<std::vector<int64_t>>& by_class = *grouped;
  std::vector<bool> chosen(n, false);
  int64_t count = 0;
  for (int c = 0; c < num_classes; ++c) {
    if (by_class[c].empty()) continue;
    RngStream rng(seed, 0, c, 0, kSubsetPurpose);
    chosen[by_class[c][rng.UniformInt(by_class[c].size())]] = true;
    ++count;
  }
  const int64_t target = std::max<int64_t>(count, std::llround(fraction * n));
  RngStream rng(seed, 1, 0, 0, kSubsetPurpose);
  for (int64_t i : rng.Permutation(n)) {
    if (count >= target) break;
    if (!chosen[i]) {
      chosen[i] = true;
      ++count;
    }
  }
  std::vector<int64_t> subset;
  for (int64_t i = 0; i < n; ++i) {
    if (chosen[i]) subset.push_back(i);
  }
  return subset;
}

absl::StatusOr<std::vector<int64_t>> ReadLabeledList(
    const std::string& list_path, const std::vector<std::string>& relative_paths) {
  std::ifstream in(list_path);
  if (!in) return absl::NotFoundError("labeled list not found: " + list_path);
  std::map<std::string, int64_t> index;
  for (int64_t i = 0; i < static_cast<int64_t>(relative_paths.size()); ++i) {
    index[relative_paths[i]] = i;
  }
  std::vector<bool> chosen(relative_paths.size(), false);
  std::vector<std::string> strays;  // "file:line 'path'" of entries not in the split
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty()) continue;
    const std::string path(text.substr(0, text.find_first_of(" \t")));
    auto it = index.find(path);
    if (it == index.end()) {
      strays.push_back(absl::StrCat(list_path, ":", line_no, " '", path, "'"));
    } else {
      chosen[it->second] = true;
    }
  }
  if (!strays.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(list_path, ": ", strays.size(), " listed videos are not in the training ",
                     "split: ", absl::StrJoin(strays, ", ")));
  }
  std::vector<int64_t> subset;
  for (int64_t i = 0; i < static_cast<int64_t>(chosen.size()); ++i) {
    if (chosen[i]) subset.push_back(i);
  }
  if (subset.empty()) return absl::InvalidArgumentError("labeled list is empty: " + list_path);
  return subset;
}

std::string LabeledSubsetSha256(const std::vector<std::string>& relative_paths,
                                const std::vector<int64_t>& subset) {
  std::vector<std::string> names;
  for (int64_t i : subset) names.push_back(relative_paths[i]);
  std::sort(names.begin(), names.end());
  Sha256 sha;
  for (const auto& name : names) {
    sha.Update(name.data(), name.size());
    sha.Update("\n", 1);
  }
  return sha.HexDigest();
}

}  // namespace tb
