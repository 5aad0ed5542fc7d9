#include "reweighting/scorer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/checkpoint.h"
#include "core/status_macros.h"

namespace tb {

MixingRuleRegistryType& MixingRuleRegistry() {
  static auto* registry = new MixingRuleRegistryType("reweighting rule");
  return *registry;
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateMixingRule(const ReweightingConfig& config) {
  ASSIGN_OR_RETURN(std::string kind, SetOneofField(config, "rule", "reweighting"));
  return MixingRuleRegistry().Create(kind, config);
}

torch::Tensor MeanOffDiagonalSimilarity(const torch::Tensor& clip_features) {
  torch::NoGradGuard no_grad;
  const int64_t n = clip_features.size(1);
  const torch::Tensor z = clip_features / clip_features.norm(2, -1, true).clamp_min(1e-12);
  const torch::Tensor sim = torch::matmul(z, z.transpose(1, 2));
  const torch::Tensor diagonal = sim.diagonal(0, 1, 2).sum(1);
  return (sim.sum({1, 2}) - diagonal) / static_cast<double>(n * (n - 1));
}

namespace {

class TemporalSimilarity : public MixingRule {
 public:
  explicit TemporalSimilarity(const TemporalSimilarityRule& o) : options_(o) {}
  bool NeedsFeatures() const override { return true; }
  TemporalSimilarityRule::Features FeatureKind() const override { return options_.features(); }
  int NumClips() const override { return options_.num_clips(); }
  float CropFraction() const override { return options_.crop_fraction(); }

  absl::StatusOr<std::vector<float>> Weights(const TeacherFeatures& f,
                                             int64_t num_videos) const override {
    std::vector<torch::Tensor> scores;
    const auto want = options_.teachers();
    for (const auto& [tensor, name, used] :
         {std::tuple{f.invariant, "invariant", want != TemporalSimilarityRule::DISTINCTIVE},
          std::tuple{f.distinctive, "distinctive", want != TemporalSimilarityRule::INVARIANT}}) {
      if (!used) continue;
      if (!tensor.defined() || tensor.dim() != 3 || tensor.size(0) != num_videos ||
          tensor.size(1) < 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            "temporal_similarity needs the ", name, " teacher's features [", num_videos,
            ", n >= 2, D], got ", tensor.defined() ? c10::str(tensor.sizes()) : "none"));
      }
      scores.push_back(MeanOffDiagonalSimilarity(tensor.to(torch::kFloat)));
    }
    torch::Tensor s = torch::stack(scores).mean(0);
    if (options_.normalization() == TemporalSimilarityRule::MIN_MAX) {
      const double lo = s.min().item<double>(), hi = s.max().item<double>();
      s = hi > lo ? (s - lo) / (hi - lo) : torch::full_like(s, 0.5);
    } else {
      s = s.clamp(0.0, 1.0);
    }
    s = s.contiguous();
    return std::vector<float>(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  }

 private:
  TemporalSimilarityRule options_;
};

class Constant : public MixingRule {
 public:
  explicit Constant(float weight) : weight_(weight) {}
  bool NeedsFeatures() const override { return false; }
  absl::StatusOr<std::vector<float>> Weights(const TeacherFeatures&,
                                             int64_t num_videos) const override {
    return std::vector<float>(num_videos, weight_);
  }

 private:
  float weight_;
};

absl::StatusOr<std::unique_ptr<MixingRule>> MakeTemporalSimilarity(const ReweightingConfig& c) {
  if (c.temporal_similarity().num_clips() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field temporal_similarity.num_clips = ", c.temporal_similarity().num_clips(),
        ": must be >= 2"));
  }
  const float crop = c.temporal_similarity().crop_fraction();
  if (!(crop > 0 && crop <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field temporal_similarity.crop_fraction = ", crop, ": must be in (0, 1]"));
  }
  return std::unique_ptr<MixingRule>(new TemporalSimilarity(c.temporal_similarity()));
}

absl::StatusOr<std::unique_ptr<MixingRule>> MakeFixedWeight(const ReweightingConfig& c) {
  const float w = c.fixed_weight().weight();
  if (!(w >= 0 && w <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field fixed_weight.weight = ", w, ": must be in [0, 1]"));
  }
  return std::unique_ptr<MixingRule>(new Constant(w));
}

absl::StatusOr<std::unique_ptr<MixingRule>> MakeInvariantOnly(const ReweightingConfig&) {
  return std::unique_ptr<MixingRule>(new Constant(1.0f));
}

absl::StatusOr<std::unique_ptr<MixingRule>> MakeDistinctiveOnly(const ReweightingConfig&) {
  return std::unique_ptr<MixingRule>(new Constant(0.0f));
}

}  // namespace

TB_REGISTER_COMPONENT(MixingRuleRegistry(), temporal_similarity, MakeTemporalSimilarity);
TB_REGISTER_COMPONENT(MixingRuleRegistry(), fixed_weight, MakeFixedWeight);
TB_REGISTER_COMPONENT(MixingRuleRegistry(), invariant_only, MakeInvariantOnly);
TB_REGISTER_COMPONENT(MixingRuleRegistry(), distinctive_only, MakeDistinctiveOnly);

absl::Status WriteScores(const std::string& path, const std::string& provenance,
                         const std::vector<std::string>& videos,
                         const std::vector<float>& weights) {
  if (videos.size() != weights.size()) {
    return absl::InternalError(absl::StrCat("WriteScores: ", videos.size(), " videos but ",
                                            weights.size(), " weights"));
  }
  std::string text = "# " + provenance + "\n";
  for (size_t i = 0; i < videos.size(); ++i) {
    absl::StrAppendFormat(&text, "%s\t%.6f\n", videos[i], weights[i]);
  }
  return WriteFileAtomically(path, text);
}

absl::StatusOr<std::vector<std::pair<std::string, float>>> ReadScores(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open scores file " + path);
  std::vector<std::pair<std::string, float>> out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.rfind('\t');
    float value = 0;
    if (tab == std::string::npos || !absl::SimpleAtof(line.substr(tab + 1), &value) ||
        !(value >= 0 && value <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", number, ": expected \"video<TAB>weight in [0, 1]\", got \"", line, "\""));
    }
    out.emplace_back(line.substr(0, tab), value);
  }
  return out;
}

}  // namespace tb
