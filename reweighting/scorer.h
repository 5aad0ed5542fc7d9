// File: reweighting/scorer.h
//
// Per-video teacher-mixing weights s_v in [0, 1] (ReweightingConfig in
// reweighting.proto), one registered rule per oneof field. A rule gets the
// teachers' clip features of every training video (computed once by the
// pipeline's score stage; rules that need none get empty tensors) and
// returns the weights in video order.
//
// Defaults and deviations (TimeBalance, CVPR 2023; see ALGORITHMS.md):
// - temporal_similarity: n = 4 clips at non-overlapping, evenly spaced
//   times, centre crop; cosine similarity matrix per teacher; mean of the
//   off-diagonal entries; average over both teachers; min-max normalised
//   over the training set. The paper does not settle which features (we use
//   the pooled backbone features by default, projection as an option) nor
//   the normalisation (min-max by default, clipping as an option).
// - A high s (clips alike over time) weights the invariant teacher more.
// - fixed_weight / invariant_only / distinctive_only: the ablations.
#ifndef TIMEBALANCE_REWEIGHTING_SCORER_H_
#define TIMEBALANCE_REWEIGHTING_SCORER_H_

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "core/registry.h"
#include "core/results.pb.h"
#include "reweighting/reweighting.pb.h"

namespace tb {

struct TeacherFeatures {
  torch::Tensor invariant;    // [V, n, D] or undefined
  torch::Tensor distinctive;  // [V, n, D] or undefined
};

class MixingRule {
 public:
  virtual ~MixingRule() = default;
  // Whether Weights() reads teacher features (false: the pipeline skips
  // feature extraction).
  virtual bool NeedsFeatures() const = 0;
  // Which feature kind to extract (backbone or projection).
  virtual TemporalSimilarityRule::Features FeatureKind() const {
    return TemporalSimilarityRule::BACKBONE;
  }
  virtual int NumClips() const { return 4; }
  virtual float CropFraction() const { return 0.8f; }
  virtual absl::StatusOr<std::vector<float>> Weights(const TeacherFeatures& features,
                                                     int64_t num_videos) const = 0;
};

// Mixing rules take no context to be built.
struct Unused {};
using MixingRuleRegistryType = ComponentRegistry<MixingRule, ConfigScope, Unused>;
MixingRuleRegistryType& MixingRuleRegistry();

// Checks the rule selected in `config`, which sits at `path` (e.g.
// "timebalance.score").
absl::Status ValidateMixingRule(const ReweightingConfig& config, const std::string& path);

// Builds the rule selected in `config` (validated first, at path "score").
absl::StatusOr<std::unique_ptr<MixingRule>> CreateMixingRule(const ReweightingConfig& config);

// Mean off-diagonal cosine similarity per video: [V, n, D] -> [V].
torch::Tensor MeanOffDiagonalSimilarity(const torch::Tensor& clip_features);

// The weight as the scores file stores it: rounded to 6 decimals (the
// resolution the file format has always had, so runs stay comparable).
float ScoreFileWeight(float weight);

// Scores file: a TemporalScores text proto (core/results.proto), one entry
// per video with its ScoreFileWeight, written atomically.
absl::Status WriteScores(const std::string& path, const std::string& provenance,
                         const std::vector<std::string>& videos,
                         const std::vector<float>& weights);
// Errors name the file (and the line, for a parse error, or the entry).
absl::StatusOr<TemporalScores> ReadScores(const std::string& path);

}  // namespace tb

#endif  // TIMEBALANCE_REWEIGHTING_SCORER_H_
