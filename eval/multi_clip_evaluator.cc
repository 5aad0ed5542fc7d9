#include "eval/multi_clip_evaluator.h"

#include <algorithm>
#include <chrono>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/ordered_prefetcher.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/video_clips.h"
#include "eval/frozen_forward.h"

namespace tb {

VideoAccuracy AccuracyFromProbabilities(const torch::Tensor& probabilities,
                                        const std::vector<int>& labels, int num_classes) {
  VideoAccuracy acc;
  const int64_t n = static_cast<int64_t>(labels.size());
  acc.num_videos = n;
  acc.per_class_count.assign(num_classes, 0);
  acc.per_class_top1.assign(num_classes, -1);
  acc.confusion.assign(num_classes, std::vector<int64_t>(num_classes, 0));
  if (n == 0) return acc;
  const int k = std::min(5, num_classes);
  const torch::Tensor topk = std::get<1>(probabilities.topk(k, 1)).to(torch::kCPU);
  auto idx = topk.accessor<int64_t, 2>();
  std::vector<int64_t> correct(num_classes, 0);
  int64_t top1 = 0, top5 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int y = labels[i];
    ++acc.per_class_count[y];
    ++acc.confusion[y][idx[i][0]];
    if (idx[i][0] == y) {
      ++top1;
      ++correct[y];
    }
    for (int j = 0; j < k; ++j) {
      if (idx[i][j] == y) {
        ++top5;
        break;
      }
    }
  }
  acc.top1 = static_cast<double>(top1) / n;
  acc.top5 = static_cast<double>(top5) / n;
  for (int c = 0; c < num_classes; ++c) {
    if (acc.per_class_count[c] > 0) {
      acc.per_class_top1[c] = static_cast<double>(correct[c]) / acc.per_class_count[c];
    }
  }
  return acc;
}

std::string EvaluationProtocol(const EvaluationConfig& e) {
  const int crops = NumEvaluationCrops(e);
  return absl::StrFormat("%d clips x %s (%.2f of the short side)", e.num_clips(),
                         crops == 1 ? "1 centre crop" : absl::StrCat(crops, " crops"),
                         e.crop_fraction());
}

int NumEvaluationCrops(const EvaluationConfig& evaluation) {
  return evaluation.crops() == EvaluationConfig::THREE ? 3 : 1;
}

namespace {

absl::StatusOr<VideoAccuracy> Evaluate(const FrozenForward& model,
                                       const std::vector<LabeledVideo>& videos, int num_classes,
                                       const DatasetConfig& dataset,
                                       const EvaluationConfig& evaluation,
                                       Collectives* collectives) {
  const auto start = std::chrono::steady_clock::now();
  const ClipGeometry geometry = ClipGeometryFromConfig(dataset);
  const int num_clips = evaluation.num_clips();
  const int num_crops = NumEvaluationCrops(evaluation);
  const int num_views = num_clips * num_crops;
  const int64_t n = static_cast<int64_t>(videos.size());
  // This rank's videos: mine[k] (every video with one rank).
  const int64_t rank = IsDistributed(collectives) ? collectives->rank() : 0;
  const int64_t world = IsDistributed(collectives) ? collectives->world_size() : 1;
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < n; i += world) mine.push_back(i);
  const int64_t count = static_cast<int64_t>(mine.size());
  using Item = absl::StatusOr<torch::Tensor>;
  OrderedPrefetcher<Item> clips(
      [&](int64_t k) -> Item {
        const int64_t i = mine[k];
        torch::Tensor t = torch::empty(
            {num_views, 3, geometry.num_frames, geometry.crop_size, geometry.crop_size});
        RETURN_IF_ERROR(DecodeEvaluationClips(videos[i].path, geometry, num_clips,
                                              evaluation.crop_fraction(), t.data_ptr<float>(),
                                              num_crops));
        return t;
      },
      dataset.loader().num_workers(), 2 * dataset.loader().num_workers() + 2, 0, count);

  torch::Tensor probabilities = torch::zeros({n, num_classes});
  std::vector<int> labels;
  for (const LabeledVideo& v : videos) labels.push_back(v.label);
  // Views of several videos are batched together up to evaluation.batch_size.
  std::vector<torch::Tensor> pending;
  std::vector<int64_t> pending_videos;
  int64_t pending_clips = 0;
  auto flush = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(const torch::Tensor batch,
                     CallTorch("evaluation batch", [&] { return torch::cat(pending); }));
    ASSIGN_OR_RETURN(torch::Tensor probs, model.Probabilities(batch));
    if (probs.size(1) != num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("model has ", probs.size(1),
                                                     " outputs but the dataset ", num_classes,
                                                     " classes"));
    }
    int64_t row = 0;
    for (int64_t v : pending_videos) {
      probabilities[v] = probs.narrow(0, row, num_views).mean(0);
      row += num_views;
    }
    pending.clear();
    pending_videos.clear();
    pending_clips = 0;
    return absl::OkStatus();
  };
  for (int64_t k = 0; k < count; ++k) {
    ASSIGN_OR_RETURN(torch::Tensor t, clips.Next());
    pending.push_back(t);
    pending_videos.push_back(mine[k]);
    pending_clips += num_views;
    if (pending_clips >= evaluation.batch_size()) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(flush());
  if (world > 1) {
    RETURN_IF_ERROR(CallTorch("gathering the ranks' evaluation",
                              [&] { collectives->AllReduceSum({probabilities}); }));
  }
  VideoAccuracy acc = AccuracyFromProbabilities(probabilities, labels, num_classes);
  acc.num_clips = num_clips;
  acc.num_crops = num_crops;
  acc.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return acc;
}

}  // namespace

absl::StatusOr<VideoAccuracy> EvaluateMultiClip(VideoBackbone& model,
                                                const std::vector<LabeledVideo>& videos,
                                                int num_classes, const DatasetConfig& dataset,
                                                const EvaluationConfig& evaluation,
                                                const torch::Device& device, Precision precision,
                                                Collectives* collectives) {
  return Evaluate(FrozenForward(model, device, precision), videos, num_classes, dataset,
                  evaluation, collectives);
}

absl::StatusOr<VideoAccuracy> EvaluateMultiClip(InferenceModel& model,
                                                const std::vector<LabeledVideo>& videos,
                                                int num_classes, const DatasetConfig& dataset,
                                                const EvaluationConfig& evaluation,
                                                Collectives* collectives) {
  return Evaluate(FrozenForward(model), videos, num_classes, dataset, evaluation, collectives);
}

VideoAccuracyRecord VideoAccuracyToRecord(const VideoAccuracy& a,
                                          const std::vector<std::string>& class_names) {
  VideoAccuracyRecord r;
  r.set_videos(static_cast<int32_t>(a.num_videos));
  r.set_clips_per_video(a.num_clips);
  r.set_crops_per_clip(a.num_crops);
  r.set_top1(a.top1);
  r.set_top5(a.top5);
  r.set_seconds(a.seconds);
  for (size_t c = 0; c < a.per_class_top1.size(); ++c) {
    ClassResult* entry = r.add_per_class();
    entry->set_class_name(c < class_names.size() ? class_names[c] : absl::StrCat(c));
    entry->set_top1(a.per_class_top1[c]);
    entry->set_videos(static_cast<int32_t>(a.per_class_count[c]));
  }
  for (const auto& row : a.confusion) {
    ConfusionRow* out = r.add_confusion();
    for (int64_t n : row) out->add_predicted(static_cast<int32_t>(n));
  }
  return r;
}

}  // namespace tb
