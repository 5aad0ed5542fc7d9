// File: datasets/views.h
//
// What one training sample consists of: the views a method asked for
// (SamplerConfig in datasets.proto), each a fixed number of clips. A
// SamplePlanner turns a video's frame count and the sample's RngStream into
// the clips to cut (frame indices, augmentation, crop); DecodeSample decodes
// the union of all clips' frames in one pass over the video and writes every
// clip, augmented with its own draw, into the per-view output buffers.
//
// The random draws of a sample happen in a fixed order (planning first,
// then each clip's crop and photometric draw in plan order) from the one
// RngStream of the sample, so a sample is the same whatever thread builds it.
//
// Optical flow (SamplerConfig.flow): chosen views get a companion view
// "<view>_flow" of 2-channel clips [2, T, S, S] (x, y in px, stored by
// //tools:compute_flow, see datasets/flow/): for every RGB clip of the view,
// the fields of the same frame indices (frame t's flow is the field from t
// to t + 1; a video's last frame repeats the field before it, so the flow
// clip has T fields like the RGB clip) cut with the same crop box and flip
// (a flip negates x). Photometric operations, RandAugment, erasing, cutout
// and mixup are RGB-only. Flow draws no random numbers: asking for it
// leaves every RGB clip unchanged.
#ifndef TIMEBALANCE_DATASETS_VIEWS_H_
#define TIMEBALANCE_DATASETS_VIEWS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/rng.h"
#include "datasets/datasets.pb.h"
#include "datasets/video_clips.h"

namespace tb {

struct ViewShape {
  std::string name;
  int clips = 1;     // K: clips of this view per sample
  int frames = 8;    // T of each clip
  int channels = 3;  // C: 3 (RGB) or 2 (flow x, y)
};

class FlowStore;

// The actor-mask companions of a planner's views (SamplerConfig.actor_masks).
struct ActorMaskViews {
  // For each view of the planner: the index of its "<view>_actor" view, or -1.
  std::vector<int> companion;
  float score_threshold = 0.4f;
};

// The flow companions of a planner's views.
struct FlowViews {
  std::shared_ptr<const FlowStore> store;  // finds each video's .flow file
  // For each view of the planner: the index of its "<view>_flow" view, or
  // -1 (flow views themselves have -1).
  std::vector<int> companion;
  // Divide the px values by the files' quantisation bound.
  bool normalize = false;
};

struct ClipPlan {
  int view = 0;  // index into SamplePlanner::views()
  int slot = 0;  // clip index within the view, in [0, K)
  std::vector<int64_t> frames;  // frame indices (already padded into range)
  // Random crop + flip + photometric ops + RandAugment + erase + cutout
  // from this augmentation, in that order (normalisation before erasing);
  // nullptr = centre crop of `centre_fraction`, no augmentation.
  const Augmentation* augmentation = nullptr;
  float centre_fraction = 1.0f;
  // Intra-video mixup (VTDL): frame `mixup_frame` (cropped like the clip)
  // blended into every frame with weight `mixup_weight`; -1 = none.
  int64_t mixup_frame = -1;
  float mixup_weight = 0.0f;
};

class SamplePlanner {
 public:
  virtual ~SamplePlanner() = default;
  virtual const std::vector<ViewShape>& views() const = 0;
  virtual std::vector<ClipPlan> Plan(int64_t frame_count, RngStream* rng) const = 0;
  // The flow companions (SamplerConfig.flow); nullptr = none.
  virtual const FlowViews* flow() const { return nullptr; }
  // The actor-mask companions (SamplerConfig.actor_masks); nullptr = none.
  virtual const ActorMaskViews* actor_masks() const { return nullptr; }
};

// Builds the planner of `sampler` (unset kind = `clip`) for a resolved
// DatasetConfig (its clip geometry and, for `clip`, its augmentation).
// With sampler.flow, reads the flow index of the dataset's flow folder
// (DatasetFlowDir); errors name it.
absl::StatusOr<std::unique_ptr<SamplePlanner>> CreateSamplePlanner(
    const SamplerConfig& sampler, const DatasetConfig& dataset);

// The FixMatch family's strong augmentation: `weak` (the crop and flip)
// plus RandAugment (2 operations, magnitude 9, one draw per clip) and
// cutout (a grey square of half the crop side).
Augmentation StrongReferenceAugmentation(const Augmentation& weak);

// The folder of the dataset's stored flow: dataset.flow_dir, or else
// <folder of the manifest>/flow for a manifest dataset; InvalidArgument for
// a ucf101-layout dataset without flow_dir.
absl::StatusOr<std::string> DatasetFlowDir(const DatasetConfig& dataset);

// Range checks of a sampler config; errors name `path`.<kind>.field.
absl::Status ValidateSampler(const SamplerConfig& sampler, const std::string& path);

// The same checks for callers that hold the selected kind's options
// elsewhere (e.g. an objective's `sampler` field of TclrSamplerOptions):
// `options_path` is where those options sit, and errors name
// `options_path`.field.
absl::Status ValidateSamplerOptions(const SamplerConfig& sampler,
                                    const std::string& options_path);

// Wall time of one DecodeSample call, by part.
struct SampleTimings {
  // Opening the video, planning the clips and decoding their frames.
  double decode_seconds = 0;
  // Cutting the clips: crop and resize, photometric operations, RandAugment,
  // normalisation, erasing, cutout, mixup.
  double augment_seconds = 0;
};

// Decodes the sample of the video at `path` as planned and writes clip
// (view v, slot k) at outputs[v] + k * C_v * T_v * S * S floats ([3, T, S, S]
// each, normalised; flow views [2, T, S, S]). With `timings`, adds the time
// spent to it (also when an error ends the call; reading flow counts as
// decoding). A flow view's file missing, damaged or made for a different
// frame count is an error naming the file.
absl::Status DecodeSample(const std::string& path, const SamplePlanner& planner,
                          const ClipGeometry& geometry, RngStream* rng,
                          const std::vector<float*>& outputs,
                          SampleTimings* timings = nullptr);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_VIEWS_H_
