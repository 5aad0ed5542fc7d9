#include "eval/precise_bn.h"

#include <algorithm>
#include <chrono>

#include <torch/nn/modules/batchnorm.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/sync_batch_norm.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"

namespace tb {
namespace {

constexpr uint64_t kPreciseBnSeedSalt = 0x9bec15e0b7a1c3d5ULL;

// One BatchNorm layer, whatever its class: its statistics buffers and its
// momentum option.
struct BnLayer {
  torch::Tensor running_mean, running_var, num_batches_tracked;
  c10::optional<double>* momentum = nullptr;
  SyncBatchNormImpl* sync = nullptr;  // null for LibTorch's BatchNorm
};

template <typename Impl>
BnLayer LayerOf(Impl* bn) {
  return {bn->running_mean, bn->running_var, bn->num_batches_tracked, &bn->options.momentum(),
          nullptr};
}

// `model` and every module below it, parents first (as modules() lists
// them; the model itself need not be held by a shared_ptr).
std::vector<torch::nn::Module*> AllModules(torch::nn::Module& model) {
  std::vector<torch::nn::Module*> all = {&model};
  for (const std::shared_ptr<torch::nn::Module>& m : model.modules(/*include_self=*/false)) {
    all.push_back(m.get());
  }
  return all;
}

bool IsBatchNorm(torch::nn::Module* m) {
  return m->as<SyncBatchNormImpl>() || m->as<torch::nn::BatchNorm1d>() ||
         m->as<torch::nn::BatchNorm2d>() || m->as<torch::nn::BatchNorm3d>();
}

// Every BatchNorm layer below `model` that tracks running statistics.
std::vector<BnLayer> FindBatchNormLayers(torch::nn::Module& model) {
  std::vector<BnLayer> layers;
  for (torch::nn::Module* m : AllModules(model)) {
    BnLayer layer;
    if (auto* s = m->as<SyncBatchNormImpl>()) {
      layer = LayerOf(s);
      layer.sync = s;
    } else if (auto* b1 = m->as<torch::nn::BatchNorm1d>()) {
      layer = LayerOf(b1);
    } else if (auto* b2 = m->as<torch::nn::BatchNorm2d>()) {
      layer = LayerOf(b2);
    } else if (auto* b3 = m->as<torch::nn::BatchNorm3d>()) {
      layer = LayerOf(b3);
    } else {
      continue;
    }
    if (layer.running_mean.defined() && layer.running_var.defined()) layers.push_back(layer);
  }
  return layers;
}

// Every module's train/eval flag, restored (parents first, as Module::train
// recurses) when this goes.
class TrainingFlags {
 public:
  explicit TrainingFlags(torch::nn::Module& model) {
    for (torch::nn::Module* m : AllModules(model)) flags_.push_back({m, m->is_training()});
  }
  ~TrainingFlags() {
    for (auto& [m, training] : flags_) m->train(training);
  }

 private:
  std::vector<std::pair<torch::nn::Module*, bool>> flags_;
};

// BatchNorm layers only in training mode: eval() everything, then train()
// each BatchNorm module (leaves: train() does not recurse further).
void TrainOnlyBatchNorm(torch::nn::Module& model) {
  model.eval();
  for (torch::nn::Module* m : AllModules(model)) {
    if (IsBatchNorm(m)) m->train(true);
  }
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int CountBatchNormLayers(torch::nn::Module& model) {
  return static_cast<int>(FindBatchNormLayers(model).size());
}

absl::StatusOr<PreciseBnReport> RecomputeBatchNormStatistics(
    VideoBackbone& model, int num_batches, const PreciseBnBatches& next,
    const torch::Device& device, Precision precision,
    const std::shared_ptr<Collectives>& collectives) {
  return RecomputeBatchNormStatistics(
      model, [&model](const torch::Tensor& clips) { model.forward(clips); }, num_batches, next,
      device, precision, collectives);
}

absl::StatusOr<PreciseBnReport> RecomputeBatchNormStatistics(
    torch::nn::Module& model, const std::function<void(const torch::Tensor&)>& forward,
    int num_batches, const PreciseBnBatches& next, const torch::Device& device,
    Precision precision, const std::shared_ptr<Collectives>& collectives) {
  const auto start = std::chrono::steady_clock::now();
  PreciseBnReport report;
  std::vector<BnLayer> layers = FindBatchNormLayers(model);
  if (layers.empty() || num_batches <= 0) return report;
  const bool distributed = IsDistributed(collectives.get());
  TrainingFlags flags(model);
  TrainOnlyBatchNorm(model);
  std::vector<c10::optional<double>> momenta;
  std::vector<bool> synchronized;
  std::vector<torch::Tensor> tracked;
  for (BnLayer& l : layers) {
    momenta.push_back(*l.momentum);
    *l.momentum = 1.0;
    synchronized.push_back(l.sync != nullptr && l.sync->synchronized());
    if (distributed && l.sync != nullptr) l.sync->set_collectives(collectives);
    tracked.push_back(l.num_batches_tracked.defined() ? l.num_batches_tracked.clone()
                                                      : torch::Tensor());
  }
  // Puts momenta, num_batches_tracked and synchronisation back, also on an
  // error (the statistics themselves are the caller's: see the guard).
  struct Restore {
    std::vector<BnLayer>& layers;
    std::vector<c10::optional<double>>& momenta;
    std::vector<bool>& synchronized;
    std::vector<torch::Tensor>& tracked;
    const std::shared_ptr<Collectives>& collectives;
    ~Restore() {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < layers.size(); ++i) {
        *layers[i].momentum = momenta[i];
        if (layers[i].sync != nullptr) {
          layers[i].sync->set_collectives(synchronized[i] ? collectives : nullptr);
        }
        if (tracked[i].defined()) layers[i].num_batches_tracked.copy_(tracked[i]);
      }
    }
  } restore{layers, momenta, synchronized, tracked, collectives};

  std::vector<torch::Tensor> mean_sums, var_sums;
  for (const BnLayer& l : layers) {
    mean_sums.push_back(torch::zeros_like(l.running_mean, torch::kFloat64));
    var_sums.push_back(torch::zeros_like(l.running_var, torch::kFloat64));
  }
  for (int b = 0; b < num_batches; ++b) {
    ASSIGN_OR_RETURN(torch::Tensor clips, next());
    report.clips += clips.size(0);
    RETURN_IF_ERROR(CallTorch("precise BatchNorm statistics", [&] {
      torch::NoGradGuard no_grad;
      {
        AutocastScope autocast(device, precision);
        forward(clips.to(device));
      }
      // With momentum 1 each layer now holds this batch's statistics.
      for (size_t i = 0; i < layers.size(); ++i) {
        mean_sums[i].add_(layers[i].running_mean.to(torch::kFloat64));
        var_sums[i].add_(layers[i].running_var.to(torch::kFloat64));
      }
    }));
    ++report.batches;
  }
  RETURN_IF_ERROR(CallTorch("precise BatchNorm statistics", [&] {
    torch::NoGradGuard no_grad;
    if (distributed) {
      // Synchronised layers already agree on every rank; the others are
      // averaged over the ranks.
      std::vector<torch::Tensor> local;
      for (size_t i = 0; i < layers.size(); ++i) {
        if (layers[i].sync == nullptr) {
          local.push_back(mean_sums[i]);
          local.push_back(var_sums[i]);
        }
      }
      if (!local.empty()) {
        collectives->AllReduceSum(local);
        for (torch::Tensor& t : local) t.div_(collectives->world_size());
      }
    }
    for (size_t i = 0; i < layers.size(); ++i) {
      layers[i].running_mean.copy_(mean_sums[i] / report.batches);
      layers[i].running_var.copy_(var_sums[i] / report.batches);
    }
  }));
  report.layers = static_cast<int>(layers.size());
  report.seconds = SecondsSince(start);
  return report;
}

PreciseBnPlan PlanPreciseBn(const PreciseBnConfig& config, int64_t num_videos,
                            int default_batches, int labeled_batch_size, uint64_t seed) {
  PreciseBnPlan plan;
  plan.batch_size = config.batch_size() > 0 ? config.batch_size() : labeled_batch_size;
  plan.seed = seed ^ kPreciseBnSeedSalt;
  const int requested = config.has_num_batches() ? config.num_batches() : default_batches;
  if (requested <= 0 || num_videos <= 0 || plan.batch_size <= 0) return plan;
  // One epoch of the loader: at least one batch (a batch of fewer videos
  // than batch_size repeats videos, as the training loader does).
  const int64_t epoch = std::max<int64_t>(1, num_videos / plan.batch_size);
  plan.num_batches = static_cast<int>(std::min<int64_t>(requested, epoch));
  return plan;
}

absl::StatusOr<PreciseBnReport> PreciseBatchNorm(
    VideoBackbone& model, const PreciseBnConfig& config, const PreciseBnPlan& plan,
    const std::vector<LabeledVideo>& videos, const DatasetConfig& dataset,
    const torch::Device& device, Precision precision,
    const std::shared_ptr<Collectives>& collectives) {
  if (plan.num_batches <= 0 || videos.empty()) return PreciseBnReport();
  LoaderShard shard;
  if (IsDistributed(collectives.get())) {
    shard.index = collectives->rank();
    shard.count = collectives->world_size();
    if (plan.batch_size % shard.count != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field evaluation.precise_bn.batch_size: ", plan.batch_size,
          " clips per batch is not a multiple of the ", shard.count,
          " ranks (each rank forwards an equal slice of every batch; 0 = "
          "trainer.labeled_batch_size)"));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner,
                   CreateSamplePlanner(config.sampler(), dataset));
  std::vector<std::string> rgb_views;
  for (const ViewShape& v : planner->views()) {
    if (v.channels != 3) continue;
    if (!rgb_views.empty() && v.frames != planner->views().front().frames) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field evaluation.precise_bn.sampler: its views have clips of different "
          "lengths (view ", v.name, ": ", v.frames, " frames), which cannot form one batch"));
    }
    rgb_views.push_back(v.name);
  }
  ClipLoader loader(videos, dataset, plan.batch_size, plan.seed, /*first_batch=*/0,
                    std::move(planner), SlowVideoOptions(), shard);
  const PreciseBnBatches next = [&]() -> absl::StatusOr<torch::Tensor> {
    ASSIGN_OR_RETURN(ClipBatch batch, loader.Next());
    std::vector<torch::Tensor> clips;
    for (const std::string& name : rgb_views) {
      const torch::Tensor& v = batch.views.at(name);  // [B, K, 3, T, S, S]
      clips.push_back(v.flatten(0, 1));
    }
    return torch::cat(clips);
  };
  return RecomputeBatchNormStatistics(model, plan.num_batches, next, device, precision,
                                      collectives);
}

BatchNormStatisticsGuard::BatchNormStatisticsGuard(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (const BnLayer& l : FindBatchNormLayers(model)) {
    for (const torch::Tensor& t : {l.running_mean, l.running_var, l.num_batches_tracked}) {
      if (t.defined()) saved_.emplace_back(t, t.clone());
    }
  }
}

BatchNormStatisticsGuard::~BatchNormStatisticsGuard() {
  torch::NoGradGuard no_grad;
  for (auto& [buffer, copy] : saved_) buffer.copy_(copy);
}

}  // namespace tb
