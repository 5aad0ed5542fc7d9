#include "eval/representation.h"

#include <algorithm>
#include <chrono>

#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/ordered_prefetcher.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "eval/frozen_forward.h"

namespace tb {
namespace {

torch::Tensor L2Normalize(const torch::Tensor& x) {
  return x / x.norm(2, -1, true).clamp_min(1e-12);
}

torch::Tensor LabelTensor(const std::vector<int>& labels) {
  std::vector<int64_t> v(labels.begin(), labels.end());
  return torch::tensor(v, torch::kInt64);
}

ClassAccuracy AccuracyOf(const torch::Tensor& predicted, const std::vector<int>& labels,
                         int num_classes) {
  ClassAccuracy acc;
  acc.per_class.assign(num_classes, 0.0);
  acc.per_class_count.assign(num_classes, 0);
  std::vector<int64_t> correct(num_classes, 0);
  const auto p = predicted.accessor<int64_t, 1>();
  int64_t total = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    ++acc.per_class_count[labels[i]];
    if (p[i] == labels[i]) {
      ++correct[labels[i]];
      ++total;
    }
  }
  acc.top1 = labels.empty() ? 0.0 : static_cast<double>(total) / labels.size();
  for (int c = 0; c < num_classes; ++c) {
    if (acc.per_class_count[c] > 0) {
      acc.per_class[c] = static_cast<double>(correct[c]) / acc.per_class_count[c];
    }
  }
  return acc;
}

}  // namespace

namespace {

absl::StatusOr<torch::Tensor> Extract(const FrozenForward& model,
                                      const std::vector<LabeledVideo>& videos,
                                      const DatasetConfig& dataset,
                                      const RepresentationEvalConfig& config) {
  SamplerConfig sampler;
  sampler.mutable_spread()->set_num_clips(config.num_clips());
  sampler.mutable_spread()->set_crop_fraction(config.crop_fraction());
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner, CreateSamplePlanner(sampler, dataset));
  const ClipGeometry geometry = ClipGeometryFromConfig(dataset);
  const int n = config.num_clips();
  const int64_t v = static_cast<int64_t>(videos.size());
  const int64_t per_batch = std::max(1, config.batch_videos());
  const int64_t batches = (v + per_batch - 1) / per_batch;
  const int64_t s = geometry.crop_size;
  using Item = absl::StatusOr<torch::Tensor>;
  OrderedPrefetcher<Item> clips(
      [&](int64_t batch) -> Item {
        const int64_t first = batch * per_batch;
        const int64_t count = std::min(per_batch, v - first);
        torch::Tensor t = torch::empty({count, n, 3, geometry.num_frames, s, s});
        const int64_t sample_floats = static_cast<int64_t>(n) * 3 * geometry.num_frames * s * s;
        for (int64_t j = 0; j < count; ++j) {
          RngStream unused(0, 0, 0, 0, 0);  // the spread sampler draws nothing
          RETURN_IF_ERROR(DecodeSample(videos[first + j].path, *planner, geometry, &unused,
                                       {t.data_ptr<float>() + j * sample_floats}));
        }
        return t;
      },
      dataset.loader().num_workers(), 2 * dataset.loader().num_workers() + 2, 0, batches);
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < batches; ++b) {
    ASSIGN_OR_RETURN(torch::Tensor t, clips.Next());
    const int64_t count = t.size(0);
    ASSIGN_OR_RETURN(torch::Tensor f, model.Features(t.flatten(0, 1)));
    out.push_back(f.view({count, n, -1}));
  }
  if (out.empty()) return torch::empty({0, n, model.feature_dim()});
  return torch::cat(out);
}

}  // namespace

absl::StatusOr<torch::Tensor> ExtractClipFeatures(VideoBackbone& model,
                                                  const std::vector<LabeledVideo>& videos,
                                                  const DatasetConfig& dataset,
                                                  const RepresentationEvalConfig& config,
                                                  const torch::Device& device,
                                                  Precision precision) {
  return Extract(FrozenForward(model, device, precision), videos, dataset, config);
}

absl::StatusOr<torch::Tensor> ExtractClipFeatures(InferenceModel& model,
                                                  const std::vector<LabeledVideo>& videos,
                                                  const DatasetConfig& dataset,
                                                  const RepresentationEvalConfig& config) {
  return Extract(FrozenForward(model), videos, dataset, config);
}

ClassAccuracy KnnClassify(const torch::Tensor& train, const std::vector<int>& train_labels,
                          const torch::Tensor& test, const std::vector<int>& test_labels,
                          int num_classes, int k, double temperature) {
  torch::NoGradGuard no_grad;
  const torch::Tensor sim = torch::matmul(L2Normalize(test), L2Normalize(train).t());
  const int64_t kk = std::min<int64_t>(k, train.size(0));
  auto [values, indices] = sim.topk(kk, 1);
  const torch::Tensor neighbour_labels = LabelTensor(train_labels).index({indices});  // [M, k]
  const torch::Tensor weights = (values / temperature).exp();
  torch::Tensor votes = torch::zeros({test.size(0), num_classes});
  votes.scatter_add_(1, neighbour_labels, weights);
  return AccuracyOf(votes.argmax(1), test_labels, num_classes);
}

std::map<int, double> ClipRetrievalRecall(const torch::Tensor& train,
                                          const std::vector<int>& train_labels,
                                          const torch::Tensor& test,
                                          const std::vector<int>& test_labels,
                                          const std::vector<int>& ks) {
  torch::NoGradGuard no_grad;
  const int64_t n_train = train.size(1), n_test = test.size(1);
  const torch::Tensor db = L2Normalize(train.flatten(0, 1));
  const torch::Tensor queries = L2Normalize(test.flatten(0, 1));
  const torch::Tensor db_labels = LabelTensor(train_labels).repeat_interleave(n_train);
  const torch::Tensor query_labels = LabelTensor(test_labels).repeat_interleave(n_test);
  const int max_k = std::min<int64_t>(*std::max_element(ks.begin(), ks.end()), db.size(0));
  const torch::Tensor nearest = std::get<1>(torch::matmul(queries, db.t()).topk(max_k, 1));
  const torch::Tensor hit = db_labels.index({nearest}).eq(query_labels.unsqueeze(1));
  std::map<int, double> recall;
  for (int k : ks) {
    const int64_t kk = std::min<int64_t>(k, max_k);
    recall[k] = hit.slice(1, 0, kk).any(1).to(torch::kFloat).mean().item<double>();
  }
  return recall;
}

ClassAccuracy LinearProbe(const torch::Tensor& train, const std::vector<int>& train_labels,
                          const torch::Tensor& test, const std::vector<int>& test_labels,
                          int num_classes, const RepresentationEvalConfig& config) {
  const int64_t d = train.size(2);
  const torch::Tensor x = L2Normalize(train.flatten(0, 1)).detach();
  const torch::Tensor y = LabelTensor(train_labels).repeat_interleave(train.size(1));
  // Seeded local initialisation so the probe is deterministic and does not
  // touch the global generator.
  torch::Generator generator = at::detail::createCPUGenerator(1234);
  torch::Tensor weight = (torch::randn({num_classes, d}, generator) * 0.01).requires_grad_(true);
  torch::Tensor bias = torch::zeros({num_classes}).requires_grad_(true);
  torch::optim::Adam optimizer(
      {weight, bias},
      torch::optim::AdamOptions(config.probe_lr()).weight_decay(config.probe_weight_decay()));
  for (int step = 0; step < config.probe_steps(); ++step) {
    optimizer.zero_grad();
    const torch::Tensor loss =
        torch::nn::functional::cross_entropy(torch::addmm(bias, x, weight.t()), y);
    loss.backward();
    optimizer.step();
  }
  torch::NoGradGuard no_grad;
  const int64_t m = test.size(0), n = test.size(1);
  const torch::Tensor logits = torch::addmm(bias, L2Normalize(test.flatten(0, 1)), weight.t());
  const torch::Tensor probabilities = torch::softmax(logits, 1).view({m, n, num_classes}).mean(1);
  return AccuracyOf(probabilities.argmax(1), test_labels, num_classes);
}

torch::Tensor VideoTemporalSimilarity(const torch::Tensor& clip_features) {
  torch::NoGradGuard no_grad;
  const int64_t n = clip_features.size(1);
  CHECK_GE(n, 2) << "temporal similarity needs at least 2 clips per video";
  const torch::Tensor z = L2Normalize(clip_features);
  const torch::Tensor sim = torch::matmul(z, z.transpose(1, 2));  // [V, n, n]
  const torch::Tensor trace = sim.diagonal(0, 1, 2).sum(1);
  return (sim.sum({1, 2}) - trace) / static_cast<double>(n * (n - 1));
}

torch::Tensor OrderedVideoFeatures(const torch::Tensor& clip_features) {
  torch::NoGradGuard no_grad;
  return L2Normalize(clip_features).flatten(1);
}

double CrossVideoSimilarity(const torch::Tensor& clip_features) {
  torch::NoGradGuard no_grad;
  const int64_t v = clip_features.size(0), n = clip_features.size(1);
  CHECK_GE(v, 2) << "cross-video similarity needs at least 2 videos";
  const torch::Tensor z = L2Normalize(clip_features.to(torch::kDouble));
  // Sum over all clip pairs = |sum of z|^2; minus the within-video pairs.
  const double all = z.sum(std::vector<int64_t>{0, 1}).pow(2).sum().item<double>();
  const double within = z.sum(1).pow(2).sum().item<double>();
  return (all - within) / static_cast<double>(v * n * (v - 1) * n);
}

torch::Tensor CenterFeatures(const torch::Tensor& clip_features) {
  torch::NoGradGuard no_grad;
  return clip_features - clip_features.mean(std::vector<int64_t>{0, 1}, /*keepdim=*/true);
}

namespace {

// Mean of `values` [V] per label; classes without videos get 0.
std::vector<double> MeanPerClass(const torch::Tensor& values, const std::vector<int>& labels,
                                 int num_classes) {
  std::vector<double> sums(num_classes, 0.0);
  std::vector<int64_t> counts(num_classes, 0);
  const torch::Tensor cpu = values.to(torch::kDouble).contiguous();
  const double* data = cpu.data_ptr<double>();
  for (size_t i = 0; i < labels.size(); ++i) {
    sums[labels[i]] += data[i];
    ++counts[labels[i]];
  }
  for (int c = 0; c < num_classes; ++c) {
    if (counts[c] > 0) sums[c] /= counts[c];
  }
  return sums;
}

}  // namespace

namespace {

absl::StatusOr<RepresentationReport> Evaluate(const FrozenForward& model,
                                              const std::vector<LabeledVideo>& train,
                                              const std::vector<LabeledVideo>& test,
                                              int num_classes, const DatasetConfig& dataset,
                                              const RepresentationEvalConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  if (config.num_clips() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field representation_eval.num_clips = ", config.num_clips(),
        ": must be >= 2 (the temporal-similarity diagnostic compares clips)"));
  }
  if (train.empty() || test.empty()) {
    return absl::InvalidArgumentError("representation evaluation needs train and test videos");
  }
  ASSIGN_OR_RETURN(torch::Tensor train_f, Extract(model, train, dataset, config));
  ASSIGN_OR_RETURN(torch::Tensor test_f, Extract(model, test, dataset, config));
  std::vector<int> train_labels, test_labels;
  for (const auto& v : train) train_labels.push_back(v.label);
  for (const auto& v : test) test_labels.push_back(v.label);
  RepresentationReport report;
  report.knn = KnnClassify(train_f.mean(1), train_labels, test_f.mean(1), test_labels,
                           num_classes, config.knn_k(), config.knn_temperature());
  report.knn_ordered =
      KnnClassify(OrderedVideoFeatures(train_f), train_labels, OrderedVideoFeatures(test_f),
                  test_labels, num_classes, config.knn_k(), config.knn_temperature());
  std::vector<int> ks(config.retrieval_k().begin(), config.retrieval_k().end());
  if (ks.empty()) ks = {1, 5, 10, 20};
  report.retrieval = ClipRetrievalRecall(train_f, train_labels, test_f, test_labels, ks);
  report.probe.top1 = -1;
  if (config.probe_steps() > 0) {
    report.probe =
        LinearProbe(train_f, train_labels, test_f, test_labels, num_classes, config);
  }
  const torch::Tensor similarity = VideoTemporalSimilarity(train_f);
  report.temporal_similarity = similarity.mean().item<double>();
  report.temporal_similarity_per_class = MeanPerClass(similarity, train_labels, num_classes);
  const torch::Tensor centered = VideoTemporalSimilarity(CenterFeatures(train_f));
  report.centered_temporal_similarity = centered.mean().item<double>();
  report.centered_temporal_similarity_per_class =
      MeanPerClass(centered, train_labels, num_classes);
  if (train_f.size(0) >= 2) report.cross_video_similarity = CrossVideoSimilarity(train_f);
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace

absl::StatusOr<RepresentationReport> EvaluateRepresentation(
    VideoBackbone& model, const std::vector<LabeledVideo>& train,
    const std::vector<LabeledVideo>& test, int num_classes, const DatasetConfig& dataset,
    const RepresentationEvalConfig& config, const torch::Device& device, Precision precision) {
  return Evaluate(FrozenForward(model, device, precision), train, test, num_classes, dataset,
                  config);
}

absl::StatusOr<RepresentationReport> EvaluateRepresentation(
    InferenceModel& model, const std::vector<LabeledVideo>& train,
    const std::vector<LabeledVideo>& test, int num_classes, const DatasetConfig& dataset,
    const RepresentationEvalConfig& config) {
  return Evaluate(FrozenForward(model), train, test, num_classes, dataset, config);
}

RepresentationRecord RepresentationReportToRecord(const RepresentationReport& r,
                                                  const std::vector<std::string>& class_names) {
  RepresentationRecord out;
  out.set_knn_top1(r.knn.top1);
  out.set_knn_ordered_top1(r.knn_ordered.top1);
  out.set_probe_top1(r.probe.top1);
  for (const auto& [k, recall] : r.retrieval) {
    RetrievalRecall* entry = out.add_retrieval();
    entry->set_k(k);
    entry->set_recall(recall);
  }
  out.set_temporal_similarity(r.temporal_similarity);
  out.set_centered_temporal_similarity(r.centered_temporal_similarity);
  out.set_cross_video_similarity(r.cross_video_similarity);
  out.set_seconds(r.seconds);
  auto at = [](const std::vector<double>& v, size_t c, double missing) {
    return c < v.size() ? v[c] : missing;
  };
  for (size_t c = 0; c < class_names.size(); ++c) {
    ClassRepresentation* entry = out.add_per_class();
    entry->set_class_name(class_names[c]);
    entry->set_knn_top1(at(r.knn.per_class, c, 0.0));
    entry->set_knn_ordered_top1(at(r.knn_ordered.per_class, c, 0.0));
    entry->set_probe_top1(at(r.probe.per_class, c, -1.0));
    entry->set_temporal_similarity(at(r.temporal_similarity_per_class, c, 0.0));
    entry->set_centered_temporal_similarity(at(r.centered_temporal_similarity_per_class, c, 0.0));
  }
  return out;
}

}  // namespace tb
