#include "reweighting/scorer.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/config_check.h"
#include "core/records.h"
#include "core/status_macros.h"

namespace tb {

MixingRuleRegistryType& MixingRuleRegistry() {
  static auto* registry = new MixingRuleRegistryType("reweighting rule", "rule");
  return *registry;
}

absl::Status ValidateMixingRule(const ReweightingConfig& config, const std::string& path) {
  return MixingRuleRegistry().Validate(config, {path});
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateMixingRule(const ReweightingConfig& config) {
  RETURN_IF_ERROR(ValidateMixingRule(config, "score"));
  return MixingRuleRegistry().Create(config, Unused());
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

// (mean rank of s_i among the N values, 0-based) / (N - 1); 0.5 for N = 1.
std::vector<float> RankNormalized(const torch::Tensor& scores) {
  const torch::Tensor s = scores.to(torch::kDouble).contiguous();
  const int64_t n = s.numel();
  const double* v = s.data_ptr<double>();
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [v](int64_t a, int64_t b) { return v[a] < v[b]; });
  std::vector<float> out(n, 0.5f);
  if (n < 2) return out;
  for (int64_t first = 0; first < n;) {
    int64_t last = first;  // [first, last] hold equal values
    while (last + 1 < n && v[order[last + 1]] == v[order[first]]) ++last;
    const double rank = 0.5 * static_cast<double>(first + last);
    for (int64_t k = first; k <= last; ++k) out[order[k]] = static_cast<float>(rank / (n - 1));
    first = last + 1;
  }
  return out;
}

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
    switch (options_.normalization()) {
      case TemporalSimilarityRule::MIN_MAX: {
        const double lo = s.min().item<double>(), hi = s.max().item<double>();
        s = hi > lo ? (s - lo) / (hi - lo) : torch::full_like(s, 0.5);
        break;
      }
      case TemporalSimilarityRule::RANK:
        return RankNormalized(s);
      default:
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

absl::Status ValidateTemporalSimilarity(const TemporalSimilarityRule& o,
                                        const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.num_clips() >= 2, "num_clips", o.num_clips(), "must be >= 2");
  c.Require(o.crop_fraction() > 0 && o.crop_fraction() <= 1, "crop_fraction",
            o.crop_fraction(), "must be in (0, 1]");
  return c.status();
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateTemporalSimilarity(
    const TemporalSimilarityRule& o, const Unused&) {
  return std::unique_ptr<MixingRule>(new TemporalSimilarity(o));
}

absl::Status ValidateFixedWeight(const FixedWeightRule& o, const ConfigScope& scope) {
  return FieldChecker(scope.path)
      .Require(o.weight() >= 0 && o.weight() <= 1, "weight", o.weight(), "must be in [0, 1]")
      .status();
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateFixedWeight(const FixedWeightRule& o,
                                                              const Unused&) {
  return std::unique_ptr<MixingRule>(new Constant(o.weight()));
}

absl::Status ValidateInvariantOnly(const InvariantOnlyRule&, const ConfigScope&) {
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateInvariantOnly(const InvariantOnlyRule&,
                                                                const Unused&) {
  return std::unique_ptr<MixingRule>(new Constant(1.0f));
}

absl::Status ValidateDistinctiveOnly(const DistinctiveOnlyRule&, const ConfigScope&) {
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MixingRule>> CreateDistinctiveOnly(const DistinctiveOnlyRule&,
                                                                  const Unused&) {
  return std::unique_ptr<MixingRule>(new Constant(0.0f));
}

}  // namespace

TB_REGISTER_COMPONENT(MixingRuleRegistry(), temporal_similarity, ValidateTemporalSimilarity,
                      CreateTemporalSimilarity, "");
TB_REGISTER_COMPONENT(MixingRuleRegistry(), fixed_weight, ValidateFixedWeight, CreateFixedWeight,
                      "weight: 0.5");
TB_REGISTER_COMPONENT(MixingRuleRegistry(), invariant_only, ValidateInvariantOnly,
                      CreateInvariantOnly, "");
TB_REGISTER_COMPONENT(MixingRuleRegistry(), distinctive_only, ValidateDistinctiveOnly,
                      CreateDistinctiveOnly, "");

float ScoreFileWeight(float weight) {
  float stored = 0;
  CHECK(absl::SimpleAtof(absl::StrFormat("%.6f", weight), &stored));
  return stored;
}

absl::Status WriteScores(const std::string& path, const std::string& provenance,
                         const std::vector<std::string>& videos,
                         const std::vector<float>& weights) {
  if (videos.size() != weights.size()) {
    return absl::InternalError(absl::StrCat("WriteScores: ", videos.size(), " videos but ",
                                            weights.size(), " weights"));
  }
  TemporalScores scores;
  scores.set_provenance(provenance);
  for (size_t i = 0; i < videos.size(); ++i) {
    VideoWeight* v = scores.add_videos();
    v->set_video(videos[i]);
    v->set_weight(ScoreFileWeight(weights[i]));
  }
  return WriteTextRecord(path, scores);
}

absl::StatusOr<TemporalScores> ReadScores(const std::string& path) {
  ASSIGN_OR_RETURN(TemporalScores scores, ReadTextRecord<TemporalScores>(path));
  for (int i = 0; i < scores.videos_size(); ++i) {
    const VideoWeight& v = scores.videos(i);
    if (v.video().empty() || !(v.weight() >= 0 && v.weight() <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": videos[", i, "]: expected a video path and a weight in [0, 1], got \"",
          ToOneLineTextProto(v), "\""));
    }
  }
  return scores;
}

}  // namespace tb
