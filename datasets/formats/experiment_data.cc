#include "datasets/formats/experiment_data.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "datasets/formats/manifest.h"
#include "datasets/labeled_subset.h"
#include "datasets/ucf101.h"

namespace tb {

namespace {

// The split lists named by the config's format, and a description of them.
absl::StatusOr<SplitSet> ReadConfiguredSplit(const DatasetConfig& config, std::string* name,
                                             std::string* where) {
  if (config.has_ucf101()) {
    const Ucf101Format& f = config.ucf101();
    *name = absl::StrCat("ucf101-layout split ", f.split(), " of ", f.root());
    *where = f.root();
    return ReadUcf101Split(f.root(), f.annotations(), f.split(), config.check_files());
  }
  if (config.has_manifest()) {
    const ManifestFormat& f = config.manifest();
    ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(f.path()));
    *name = absl::StrCat(manifest.dataset(), " split ", manifest.split(), " from manifest ",
                         f.path());
    *where = "manifest " + f.path();
    return ManifestToSplitSet(manifest, f.root(), config.check_files());
  }
  return absl::InvalidArgumentError("dataset: no format set (ucf101 or manifest)");
}

}  // namespace

absl::StatusOr<ExperimentData> LoadExperimentData(const DatasetConfig& config) {
  std::string split_name, where;
  ASSIGN_OR_RETURN(SplitSet split, ReadConfiguredSplit(config, &split_name, &where));
  if (split.train.empty()) return absl::InvalidArgumentError("no training videos in " + where);
  if (split.test.empty()) return absl::InvalidArgumentError("no test videos in " + where);
  ExperimentData data;
  data.class_names = split.class_names;
  data.num_train = static_cast<int64_t>(split.train.size());
  data.split_name = split_name;
  std::vector<int> labels;
  std::vector<std::string> relative;
  for (const VideoEntry& v : split.train) {
    labels.push_back(v.label);
    relative.push_back(v.relative_path);
  }
  std::vector<int64_t> subset;
  if (!config.labeled_list().empty()) {
    ASSIGN_OR_RETURN(subset, ReadLabeledList(config.labeled_list(), relative));
  } else {
    ASSIGN_OR_RETURN(subset, SelectLabeledSubset(labels, static_cast<int>(split.class_names.size()),
                                                 config.labeled_fraction(),
                                                 config.labeled_seed()));
  }
  data.labeled_sha256 = LabeledSubsetSha256(relative, subset);
  std::vector<bool> is_labeled(split.train.size(), false);
  for (int64_t i : subset) is_labeled[i] = true;
  for (size_t i = 0; i < split.train.size(); ++i) {
    LabeledVideo v{split.train[i].path, split.train[i].label};
    data.train.push_back(v);
    if (is_labeled[i]) data.labeled.push_back(v);
    if (!is_labeled[i] || config.unlabeled_set() == DatasetConfig::ALL_TRAIN) {
      data.unlabeled.push_back(v);
    }
  }
  for (const VideoEntry& v : split.test) data.test.push_back({v.path, v.label});
  return data;
}

}  // namespace tb
