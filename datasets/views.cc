#include "datasets/views.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "datasets/actor_boxes.h"
#include "datasets/augment.h"
#include "datasets/clip_ops.h"
#include "datasets/clip_sampler.h"
#include "datasets/flow/flow_clip.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"
#include "datasets/video_reader.h"

namespace tb {
namespace {

// The configured augmentation, or the SSL reference one when unset.
template <typename Options>
Augmentation AugmentationOf(const Options& o) {
  return o.has_augmentation() ? o.augmentation() : SslReferenceAugmentation();
}

class ClipPlanner : public SamplePlanner {
 public:
  ClipPlanner(const ClipSamplerOptions& o, const DatasetConfig& d)
      : augmentation_(o.has_augmentation() ? o.augmentation() : d.augmentation()),
        num_frames_(o.has_num_frames() ? o.num_frames() : d.clip().num_frames()),
        stride_(o.has_stride() ? o.stride() : d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"clip", 1, num_frames_}} {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    ClipPlan plan;
    const int64_t start = RandomClipStart(n, num_frames_, stride_, rng);
    plan.frames = ClipFrameIndices(n, start, num_frames_, stride_, pad_);
    plan.augmentation = &augmentation_;
    return {plan};
  }

 private:
  const Augmentation augmentation_;
  const int num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

class TclrPlanner : public SamplePlanner {
 public:
  TclrPlanner(const TclrSamplerOptions& o, const DatasetConfig& d)
      : augmentation_(AugmentationOf(o)),
        num_dense_(o.num_dense()),
        augmentations_(o.augmentations()),
        dense_stride_(o.dense_stride()),
        num_frames_(d.clip().num_frames()),
        pad_(d.clip().pad()),
        views_{{"sparse", o.augmentations(), d.clip().num_frames()},
               {"dense", o.augmentations() * o.num_dense(), d.clip().num_frames()}} {
  }
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    const int window = num_dense_ * num_frames_ * dense_stride_;
    const int64_t start = RandomClipStart(n, window, 1, rng);
    std::vector<ClipPlan> plans;
    const std::vector<int64_t> sparse =
        ClipFrameIndices(n, start, num_frames_, num_dense_ * dense_stride_, pad_);
    for (int a = 0; a < augmentations_; ++a) {
      ClipPlan p;
      p.view = 0;
      p.slot = a;
      p.frames = sparse;
      p.augmentation = &augmentation_;
      plans.push_back(std::move(p));
    }
    for (int a = 0; a < augmentations_; ++a) {
      for (int t = 0; t < num_dense_; ++t) {
        ClipPlan p;
        p.view = 1;
        p.slot = a * num_dense_ + t;
        p.frames = ClipFrameIndices(
            n, start + static_cast<int64_t>(t) * num_frames_ * dense_stride_, num_frames_,
            dense_stride_, pad_);
        p.augmentation = &augmentation_;
        plans.push_back(std::move(p));
      }
    }
    return plans;
  }

 private:
  const Augmentation augmentation_;
  const int num_dense_, augmentations_, dense_stride_, num_frames_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

class RhoPlanner : public SamplePlanner {
 public:
  RhoPlanner(const RhoSamplerOptions& o, const DatasetConfig& d)
      : augmentation_(AugmentationOf(o)),
        rho_(o.rho()),
        num_frames_(d.clip().num_frames()),
        stride_(d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"clips", o.rho(), d.clip().num_frames()}} {
  }
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    std::vector<ClipPlan> plans;
    for (int k = 0; k < rho_; ++k) {
      ClipPlan p;
      p.slot = k;
      p.frames = ClipFrameIndices(n, RandomClipStart(n, num_frames_, stride_, rng), num_frames_,
                                  stride_, pad_);
      p.augmentation = &augmentation_;
      plans.push_back(std::move(p));
    }
    return plans;
  }

 private:
  const Augmentation augmentation_;
  const int rho_, num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

class VtdlPlanner : public SamplePlanner {
 public:
  VtdlPlanner(const VtdlSamplerOptions& o, const DatasetConfig& d)
      : augmentation_(AugmentationOf(o)),
        max_mixup_(o.max_mixup()),
        num_frames_(d.clip().num_frames()),
        stride_(d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"anchor", 1, d.clip().num_frames()},
               {"positive", 1, d.clip().num_frames()},
               {"negative", 1, d.clip().num_frames()}} {
  }
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    const int64_t span = ClipSpan(num_frames_, stride_);
    const int64_t anchor_start = RandomClipStart(n, num_frames_, stride_, rng);
    // The negative segment does not overlap the anchor's when the video is
    // long enough (starts at least one span apart); otherwise it is the
    // start farthest from the anchor's.
    const int64_t last = std::max<int64_t>(0, n - span);
    std::vector<int64_t> far;
    for (int64_t s = 0; s <= last; ++s) {
      if (std::abs(s - anchor_start) >= span) far.push_back(s);
    }
    int64_t negative_start;
    const uint64_t pick = rng->UniformInt(std::max<size_t>(1, far.size()));
    if (!far.empty()) {
      negative_start = far[pick];
    } else {
      negative_start = (anchor_start > last - anchor_start) ? 0 : last;
    }
    const float lambda = rng->Uniform(0.0f, max_mixup_);
    const int64_t mix_frame = static_cast<int64_t>(rng->UniformInt(static_cast<uint64_t>(n)));
    std::vector<ClipPlan> plans(3);
    for (int v = 0; v < 3; ++v) {
      plans[v].view = v;
      plans[v].augmentation = &augmentation_;
      plans[v].frames = ClipFrameIndices(n, v == 2 ? negative_start : anchor_start, num_frames_,
                                         stride_, pad_);
    }
    plans[0].mixup_frame = mix_frame;
    plans[0].mixup_weight = lambda;
    return plans;
  }

 private:
  const Augmentation augmentation_;
  const float max_mixup_;
  const int num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

class SpreadPlanner : public SamplePlanner {
 public:
  SpreadPlanner(const SpreadSamplerOptions& o, const DatasetConfig& d)
      : num_clips_(o.num_clips()),
        crop_fraction_(o.crop_fraction()),
        num_frames_(d.clip().num_frames()),
        stride_(d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"clips", o.num_clips(), d.clip().num_frames()}} {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream*) const override {
    // Non-overlapping when the video holds num_clips spans: the n clips tile
    // equal segments of the video, each clip centred in its segment.
    std::vector<ClipPlan> plans;
    const int64_t span = ClipSpan(num_frames_, stride_);
    for (int k = 0; k < num_clips_; ++k) {
      const int64_t segment_start = n * k / num_clips_;
      const int64_t segment_end = n * (k + 1) / num_clips_;
      const int64_t start =
          std::max<int64_t>(0, segment_start + (segment_end - segment_start - span) / 2);
      ClipPlan p;
      p.slot = k;
      p.frames = ClipFrameIndices(n, start, num_frames_, stride_, pad_);
      p.centre_fraction = crop_fraction_;
      plans.push_back(std::move(p));
    }
    return plans;
  }

 private:
  const int num_clips_;
  const float crop_fraction_;
  const int num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

class WeakStrongPlanner : public SamplePlanner {
 public:
  WeakStrongPlanner(const WeakStrongSamplerOptions& o, const DatasetConfig& d)
      : weak_(o.has_weak() ? o.weak() : d.augmentation()),
        strong_(o.has_strong() ? o.strong() : StrongReferenceAugmentation(d.augmentation())),
        strong_clips_(o.strong_clips()),
        num_frames_(d.clip().num_frames()),
        stride_(d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"weak", 1, d.clip().num_frames()},
               {"strong", o.strong_clips(), d.clip().num_frames()}} {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    const std::vector<int64_t> frames = ClipFrameIndices(
        n, RandomClipStart(n, num_frames_, stride_, rng), num_frames_, stride_, pad_);
    std::vector<ClipPlan> plans(1 + strong_clips_);
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].view = i == 0 ? 0 : 1;
      plans[i].slot = i == 0 ? 0 : static_cast<int>(i) - 1;
      plans[i].frames = frames;
      plans[i].augmentation = i == 0 ? &weak_ : &strong_;
    }
    return plans;
  }

 private:
  const Augmentation weak_, strong_;
  const int strong_clips_, num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

// TCL's two playback speeds of one span: "base" (T frames at the dataset
// stride) and "slow" (T / r frames at r times the stride from the same
// start, frames base[0], base[r], ...), each with its own augmentation draw.
class TwoSpeedPlanner : public SamplePlanner {
 public:
  TwoSpeedPlanner(const TwoSpeedSamplerOptions& o, const DatasetConfig& d)
      : augmentation_(o.has_augmentation() ? o.augmentation() : d.augmentation()),
        ratio_(o.speed_ratio()),
        num_frames_(d.clip().num_frames()),
        stride_(d.clip().stride()),
        pad_(d.clip().pad()),
        views_{{"base", 1, d.clip().num_frames()},
               {"slow", 1, std::max(1, d.clip().num_frames() / o.speed_ratio())}} {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    const int64_t start = RandomClipStart(n, num_frames_, stride_, rng);
    std::vector<ClipPlan> plans(2);
    plans[0].frames = ClipFrameIndices(n, start, num_frames_, stride_, pad_);
    plans[1].view = 1;
    plans[1].frames = ClipFrameIndices(n, start, views_[1].frames, stride_ * ratio_, pad_);
    for (ClipPlan& p : plans) p.augmentation = &augmentation_;
    return plans;
  }

 private:
  const Augmentation augmentation_;
  const int ratio_, num_frames_, stride_;
  const ClipSampling::PadMode pad_;
  const std::vector<ViewShape> views_;
};

}  // namespace

Augmentation StrongReferenceAugmentation(const Augmentation& weak) {
  // FixMatch's strong view on top of the weak crop and flip: RandAugment
  // with 2 operations at magnitude 9 (one draw per clip), then cutout of a
  // square of half the crop side.
  Augmentation strong = weak;
  strong.mutable_randaugment()->set_num_ops(2);
  strong.mutable_randaugment()->set_magnitude(9);
  strong.mutable_cutout()->set_probability(1.0f);
  return strong;
}

namespace {

// A planner plus the flow companions of some of its views: the same plans,
// views followed by the "<view>_flow" views.
class FlowPlanner : public SamplePlanner {
 public:
  FlowPlanner(std::unique_ptr<SamplePlanner> base, std::vector<ViewShape> views, FlowViews flow)
      : base_(std::move(base)), views_(std::move(views)), flow_(std::move(flow)) {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    return base_->Plan(n, rng);
  }
  const FlowViews* flow() const override { return &flow_; }

 private:
  const std::unique_ptr<SamplePlanner> base_;
  const std::vector<ViewShape> views_;
  const FlowViews flow_;
};

absl::StatusOr<std::unique_ptr<SamplePlanner>> CreateRgbPlanner(const SamplerConfig& sampler,
                                                                const DatasetConfig& dataset);

// Which of `views` the companion list `names` (empty = all) selects; an
// unknown name is an error naming `field`.
absl::StatusOr<std::vector<bool>> CompanionsWanted(
    const std::vector<ViewShape>& views,
    const google::protobuf::RepeatedPtrField<std::string>& names, const std::string& field) {
  std::vector<std::string> all;
  for (const ViewShape& v : views) all.push_back(v.name);
  std::vector<bool> wanted(views.size(), names.empty());
  for (const std::string& name : names) {
    auto it = std::find(all.begin(), all.end(), name);
    if (it == all.end()) {
      return absl::InvalidArgumentError(absl::StrCat("config field ", field, ": no view '", name,
                                                     "' in this sampler (views: ",
                                                     absl::StrJoin(all, ", "), ")"));
    }
    wanted[it - all.begin()] = true;
  }
  return wanted;
}

// A planner plus the actor-mask companions of some of its views: the same
// plans (and flow companions), views followed by the "<view>_actor" views.
class ActorMaskPlanner : public SamplePlanner {
 public:
  ActorMaskPlanner(std::unique_ptr<SamplePlanner> base, std::vector<ViewShape> views,
                   ActorMaskViews masks)
      : base_(std::move(base)), views_(std::move(views)), masks_(std::move(masks)) {}
  const std::vector<ViewShape>& views() const override { return views_; }
  std::vector<ClipPlan> Plan(int64_t n, RngStream* rng) const override {
    return base_->Plan(n, rng);
  }
  const FlowViews* flow() const override { return base_->flow(); }
  const ActorMaskViews* actor_masks() const override { return &masks_; }

 private:
  const std::unique_ptr<SamplePlanner> base_;
  const std::vector<ViewShape> views_;
  const ActorMaskViews masks_;
};

absl::StatusOr<std::unique_ptr<SamplePlanner>> AddActorMaskViews(
    std::unique_ptr<SamplePlanner> base, const ActorMaskOptions& options) {
  std::vector<ViewShape> views = base->views();
  ASSIGN_OR_RETURN(const std::vector<bool> wanted,
                   CompanionsWanted(views, options.views(), "sampler.actor_masks.views"));
  ActorMaskViews masks;
  masks.score_threshold = options.score_threshold();
  const size_t count = views.size();
  masks.companion.assign(count, -1);
  for (size_t v = 0; v < count; ++v) {
    // Flow companions ("<view>_flow") get no mask of their own.
    if (!wanted[v] || views[v].channels != 3) continue;
    masks.companion[v] = static_cast<int>(views.size());
    ViewShape shape = views[v];
    shape.name += "_actor";
    shape.channels = 1;
    views.push_back(shape);
  }
  masks.companion.resize(views.size(), -1);
  return std::unique_ptr<SamplePlanner>(
      new ActorMaskPlanner(std::move(base), std::move(views), std::move(masks)));
}

absl::StatusOr<std::unique_ptr<SamplePlanner>> AddFlowViews(std::unique_ptr<SamplePlanner> base,
                                                            const FlowViewOptions& options,
                                                            const DatasetConfig& dataset) {
  std::vector<ViewShape> views = base->views();
  ASSIGN_OR_RETURN(const std::vector<bool> wanted,
                   CompanionsWanted(views, options.views(), "sampler.flow.views"));
  ASSIGN_OR_RETURN(const std::string dir, DatasetFlowDir(dataset));
  FlowViews flow;
  ASSIGN_OR_RETURN(flow.store, FlowStore::Open(dir));
  flow.normalize = options.normalize();
  const size_t rgb_views = views.size();
  flow.companion.assign(rgb_views, -1);
  for (size_t v = 0; v < rgb_views; ++v) {
    if (!wanted[v]) continue;
    flow.companion[v] = static_cast<int>(views.size());
    ViewShape shape = views[v];
    shape.name += "_flow";
    shape.channels = 2;
    views.push_back(shape);
  }
  flow.companion.resize(views.size(), -1);
  return std::unique_ptr<SamplePlanner>(
      new FlowPlanner(std::move(base), std::move(views), std::move(flow)));
}

}  // namespace

absl::StatusOr<std::string> DatasetFlowDir(const DatasetConfig& dataset) {
  if (!dataset.flow_dir().empty()) return dataset.flow_dir();
  if (dataset.has_manifest()) {
    const std::filesystem::path folder =
        std::filesystem::path(dataset.manifest().path()).parent_path();
    return (folder.empty() ? std::filesystem::path("flow") : folder / "flow").string();
  }
  return absl::InvalidArgumentError(
      "config field dataset.flow_dir: required for the flow views of a dataset that is not "
      "read from a manifest (the folder //tools:compute_flow --out wrote)");
}

absl::StatusOr<std::unique_ptr<SamplePlanner>> CreateSamplePlanner(
    const SamplerConfig& sampler, const DatasetConfig& dataset) {
  RETURN_IF_ERROR(ValidateSampler(sampler, "sampler"));
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner, CreateRgbPlanner(sampler, dataset));
  if (sampler.has_flow()) {
    ASSIGN_OR_RETURN(planner, AddFlowViews(std::move(planner), sampler.flow(), dataset));
  }
  if (sampler.has_actor_masks()) {
    ASSIGN_OR_RETURN(planner, AddActorMaskViews(std::move(planner), sampler.actor_masks()));
  }
  return planner;
}

namespace {

absl::StatusOr<std::unique_ptr<SamplePlanner>> CreateRgbPlanner(const SamplerConfig& sampler,
                                                                const DatasetConfig& dataset) {
  switch (sampler.kind_case()) {
    case SamplerConfig::kTclr:
      return std::unique_ptr<SamplePlanner>(new TclrPlanner(sampler.tclr(), dataset));
    case SamplerConfig::kRho:
      return std::unique_ptr<SamplePlanner>(new RhoPlanner(sampler.rho(), dataset));
    case SamplerConfig::kVtdl:
      return std::unique_ptr<SamplePlanner>(new VtdlPlanner(sampler.vtdl(), dataset));
    case SamplerConfig::kSpread:
      return std::unique_ptr<SamplePlanner>(new SpreadPlanner(sampler.spread(), dataset));
    case SamplerConfig::kWeakStrong:
      return std::unique_ptr<SamplePlanner>(new WeakStrongPlanner(sampler.weak_strong(), dataset));
    case SamplerConfig::kTwoSpeed:
      return std::unique_ptr<SamplePlanner>(new TwoSpeedPlanner(sampler.two_speed(), dataset));
    case SamplerConfig::kClip:
    case SamplerConfig::KIND_NOT_SET:
      if (!sampler.clip().has_augmentation()) {
        RETURN_IF_ERROR(ValidateAugmentation(dataset.augmentation(), "dataset.augmentation"));
      }
      return std::unique_ptr<SamplePlanner>(new ClipPlanner(sampler.clip(), dataset));
  }
  return absl::InternalError("unhandled sampler kind");
}

}  // namespace

absl::Status ValidateSamplerOptions(const SamplerConfig& s, const std::string& options_path) {
  const std::string& p = options_path;
  auto bad = [&](const std::string& field, double value, const std::string& rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field ", p, ".", field, " = ", value, ": ", rule));
  };
  if (s.has_clip()) {
    const ClipSamplerOptions& c = s.clip();
    if (c.has_num_frames() && (c.num_frames() < 1 || c.num_frames() > 512)) {
      return bad("num_frames", c.num_frames(), "must be in [1, 512]");
    }
    if (c.has_stride() && (c.stride() < 1 || c.stride() > 64)) {
      return bad("stride", c.stride(), "must be in [1, 64]");
    }
    if (c.has_augmentation()) {
      RETURN_IF_ERROR(ValidateAugmentation(c.augmentation(), p + ".augmentation"));
    }
  }
  if (s.has_tclr()) {
    if (s.tclr().num_dense() < 1 || s.tclr().num_dense() > 16) {
      return bad("num_dense", s.tclr().num_dense(), "must be in [1, 16]");
    }
    if (s.tclr().augmentations() < 1 || s.tclr().augmentations() > 8) {
      return bad("augmentations", s.tclr().augmentations(), "must be in [1, 8]");
    }
    if (s.tclr().dense_stride() < 1 || s.tclr().dense_stride() > 16) {
      return bad("dense_stride", s.tclr().dense_stride(), "must be in [1, 16]");
    }
    if (s.tclr().has_augmentation()) {
      RETURN_IF_ERROR(ValidateAugmentation(s.tclr().augmentation(), p + ".augmentation"));
    }
  }
  if (s.has_rho()) {
    if (s.rho().rho() < 1 || s.rho().rho() > 16) {
      return bad("rho", s.rho().rho(), "must be in [1, 16]");
    }
    if (s.rho().has_augmentation()) {
      RETURN_IF_ERROR(ValidateAugmentation(s.rho().augmentation(), p + ".augmentation"));
    }
  }
  if (s.has_vtdl()) {
    if (!(s.vtdl().max_mixup() >= 0 && s.vtdl().max_mixup() <= 1)) {
      return bad("max_mixup", s.vtdl().max_mixup(), "must be in [0, 1]");
    }
    if (s.vtdl().has_augmentation()) {
      RETURN_IF_ERROR(ValidateAugmentation(s.vtdl().augmentation(), p + ".augmentation"));
    }
  }
  if (s.has_spread()) {
    if (s.spread().num_clips() < 1 || s.spread().num_clips() > 64) {
      return bad("num_clips", s.spread().num_clips(), "must be in [1, 64]");
    }
    if (!(s.spread().crop_fraction() > 0 && s.spread().crop_fraction() <= 1)) {
      return bad("crop_fraction", s.spread().crop_fraction(), "must be in (0, 1]");
    }
  }
  if (s.has_weak_strong()) {
    const WeakStrongSamplerOptions& w = s.weak_strong();
    if (w.strong_clips() < 1 || w.strong_clips() > 8) {
      return bad("strong_clips", w.strong_clips(), "must be in [1, 8]");
    }
    if (w.has_weak()) RETURN_IF_ERROR(ValidateAugmentation(w.weak(), p + ".weak"));
    if (w.has_strong()) RETURN_IF_ERROR(ValidateAugmentation(w.strong(), p + ".strong"));
  }
  if (s.has_actor_masks()) {
    const float t = s.actor_masks().score_threshold();
    if (!(t >= 0 && t <= 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field sampler.actor_masks.score_threshold = ", t, ": must be in [0, 1]"));
    }
  }
  if (s.has_two_speed()) {
    const TwoSpeedSamplerOptions& t = s.two_speed();
    if (t.speed_ratio() < 2 || t.speed_ratio() > 8) {
      return bad("speed_ratio", t.speed_ratio(), "must be in [2, 8]");
    }
    if (t.has_augmentation()) {
      RETURN_IF_ERROR(ValidateAugmentation(t.augmentation(), p + ".augmentation"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSampler(const SamplerConfig& s, const std::string& path) {
  const google::protobuf::FieldDescriptor* kind = s.GetReflection()->GetOneofFieldDescriptor(
      s, SamplerConfig::descriptor()->FindOneofByName("kind"));
  if (kind == nullptr) return absl::OkStatus();
  return ValidateSamplerOptions(s, path + "." + kind->name());
}

namespace {

// Adds the time from construction (or the last Next()) to `*sink` at
// Next() and at destruction; nothing when `sink` is null.
class PartTimer {
 public:
  explicit PartTimer(double* sink) : sink_(sink), start_(std::chrono::steady_clock::now()) {}
  ~PartTimer() { Next(nullptr); }
  // Ends the current part and starts timing into `next_sink`.
  void Next(double* next_sink) {
    const auto now = std::chrono::steady_clock::now();
    if (sink_ != nullptr) *sink_ += std::chrono::duration<double>(now - start_).count();
    sink_ = next_sink;
    start_ = now;
  }

 private:
  double* sink_;
  std::chrono::steady_clock::time_point start_;
};

// The dequantised fields the flow companions of `plans` need, each read
// once.
struct FlowFields {
  int height = 0, width = 0;
  float scale = 1;  // 1 / bound when normalising
  std::map<int64_t, std::vector<float>> field;  // field index -> [2, H, W]
};

absl::StatusOr<FlowFields> ReadFlowFields(const std::string& video_path, int64_t n,
                                          const FlowViews& flow,
                                          const std::vector<ClipPlan>& plans) {
  ASSIGN_OR_RETURN(const std::string flow_path, flow.store->FlowPathFor(video_path));
  ASSIGN_OR_RETURN(std::unique_ptr<FlowFile> file, FlowFile::Open(flow_path));
  const FlowFileHeader& h = file->header();
  if (h.frame_count() != n) {
    return absl::DataLossError(absl::StrCat(
        "flow file ", flow_path, " was computed for ", h.frame_count(), " frames but ",
        video_path, " has ", n, " (stale: rerun //tools:compute_flow with --overwrite)"));
  }
  if (n < 2) {
    return absl::DataLossError(absl::StrCat("flow file ", flow_path, " has no field: ", video_path,
                                            " has a single frame"));
  }
  FlowFields out;
  out.height = h.height();
  out.width = h.width();
  if (flow.normalize) out.scale = 1.0f / h.settings().quantization().bound();
  const size_t floats = 2 * static_cast<size_t>(out.height) * out.width;
  for (const ClipPlan& p : plans) {
    if (flow.companion[p.view] < 0) continue;
    for (int64_t t : p.frames) {
      const int64_t f = FlowFieldOfFrame(t, n);
      if (out.field.count(f) > 0) continue;
      std::vector<float>& xy = out.field[f];
      xy.resize(floats);
      RETURN_IF_ERROR(file->ReadFieldFloat(f, xy.data()));
    }
  }
  return out;
}

}  // namespace

absl::Status DecodeSample(const std::string& path, const SamplePlanner& planner,
                          const ClipGeometry& g, RngStream* rng,
                          const std::vector<float*>& outputs, SampleTimings* timings) {
  const std::vector<ViewShape>& views = planner.views();
  if (outputs.size() != views.size()) {
    return absl::InternalError(absl::StrCat("DecodeSample: ", outputs.size(),
                                            " output buffers for ", views.size(), " views"));
  }
  PartTimer timer(timings != nullptr ? &timings->decode_seconds : nullptr);
  int64_t n = 0;
  std::vector<ClipPlan> plans;
  ASSIGN_OR_RETURN(FrameUnion frames, ReadFrameUnion(path, g, [&](int64_t frame_count) {
                     n = frame_count;
                     plans = planner.Plan(n, rng);
                     std::vector<std::vector<int64_t>> lists;
                     for (const ClipPlan& p : plans) {
                       lists.push_back(p.frames);
                       if (p.mixup_frame >= 0) lists.push_back({p.mixup_frame});
                     }
                     return lists;
                   }));
  const FlowViews* flow = planner.flow();
  FlowFields fields;
  if (flow != nullptr) {
    ASSIGN_OR_RETURN(fields, ReadFlowFields(path, n, *flow, plans));
  }
  const ActorMaskViews* masks = planner.actor_masks();
  ActorBoxes actor_boxes;
  if (masks != nullptr) {
    ASSIGN_OR_RETURN(actor_boxes,
                     ReadActorBoxes(ActorBoxesPathFor(path), masks->score_threshold));
  }
  timer.Next(timings != nullptr ? &timings->augment_seconds : nullptr);
  const size_t frame_bytes = frames.frame_bytes();
  const int s = g.crop_size;
  const size_t plane = static_cast<size_t>(s) * s;
  const std::array<float, 3> zero{0.0f, 0.0f, 0.0f}, one{1.0f, 1.0f, 1.0f};
  std::vector<uint8_t> rgb;
  std::vector<float> mix;
  for (const ClipPlan& p : plans) {
    const int t_count = static_cast<int>(p.frames.size());
    const bool mixup = p.mixup_frame >= 0;
    rgb.resize(frame_bytes * (t_count + (mixup ? 1 : 0)));
    frames.Gather(p.frames, rgb.data());
    if (mixup) frames.Gather({p.mixup_frame}, rgb.data() + t_count * frame_bytes);
    const CropBox box = p.augmentation != nullptr
                            ? RandomResizedCropBox(frames.height(), frames.width(), *p.augmentation,
                                                   rng)
                            : CenterCropBox(frames.height(), frames.width(), p.centre_fraction);
    if (flow != nullptr && flow->companion[p.view] >= 0) {
      std::vector<const float*> clip_fields;
      for (int64_t t : p.frames) {
        clip_fields.push_back(fields.field.at(FlowFieldOfFrame(t, n)).data());
      }
      CropResizeFlowClip(clip_fields, fields.height, fields.width,
                         MapCropBoxToField(box, frames.height(), frames.width(), fields.height,
                                           fields.width),
                         s, fields.scale,
                         outputs[flow->companion[p.view]] +
                             static_cast<size_t>(p.slot) * 2 * t_count * plane);
    }
    if (masks != nullptr && masks->companion[p.view] >= 0) {
      RenderActorMask(actor_boxes, p.frames, frames.height(), frames.width(), box, s,
                      outputs[masks->companion[p.view]] +
                          static_cast<size_t>(p.slot) * t_count * plane);
    }
    float* out = outputs[p.view] + static_cast<size_t>(p.slot) * 3 * t_count * plane;
    // [0, 1] values first; photometric ops; then normalisation and erasing.
    CropResizeNormalize(rgb.data(), t_count, frames.height(), frames.width(), box, s, zero, one,
                        out);
    if (mixup) {
      mix.resize(3 * plane);
      CropResizeNormalize(rgb.data() + t_count * frame_bytes, 1, frames.height(), frames.width(),
                          box, s, zero, one, mix.data());
      const float w = p.mixup_weight;
      for (int c = 0; c < 3; ++c) {
        for (int t = 0; t < t_count; ++t) {
          float* f = out + (static_cast<size_t>(c) * t_count + t) * plane;
          const float* m = mix.data() + c * plane;
          for (size_t i = 0; i < plane; ++i) f[i] = (1 - w) * f[i] + w * m[i];
        }
      }
    }
    // Crop, colour operations, RandAugment, normalisation, erasing, cutout.
    ClipOps ops;
    if (p.augmentation != nullptr) {
      ops = DrawClipOps(*p.augmentation, s, rng);
      ApplyColorOps(ops, t_count, s, out);
      ApplyRandAugment(ops.randaugment, t_count, s, out);
    }
    NormalizeClip(g.mean, g.std, t_count, s, out);
    ApplyErase(ops.erase, t_count, s, 0.0f, out);
    ApplyErase(ops.cutout, t_count, s, NormalizedGrey(g.mean, g.std), out);
  }
  return absl::OkStatus();
}

}  // namespace tb
