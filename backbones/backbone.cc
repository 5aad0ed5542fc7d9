#include "backbones/backbone.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backbones/sync_batch_norm.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

torch::Tensor VideoBackbone::Features(const torch::Tensor& clip) {
  return FeatureMap(clip).mean({2, 3, 4});
}

BackboneRegistryType& BackboneRegistry() {
  static auto* registry = new BackboneRegistryType("backbone", "kind");
  return *registry;
}

void CheckWidthMultiplier(float width_multiplier, FieldChecker* checker) {
  constexpr float kMaxWidthMultiplier = 8.0f;
  // The negated comparison also rejects NaN.
  checker->Require(width_multiplier > 0.0f && width_multiplier <= kMaxWidthMultiplier,
                   "width_multiplier", width_multiplier,
                   absl::StrCat("must be in (0, ", kMaxWidthMultiplier, "]"));
}

int64_t ScaledWidth(int64_t base, double width_multiplier) {
  return std::max<int64_t>(1, std::llround(base * width_multiplier));
}

absl::Status ValidateBackbone(const BackboneConfig& config, const std::string& path) {
  FieldChecker c(path);
  c.Require(config.num_classes() >= 0, "num_classes", config.num_classes(),
            "must be >= 0 (0 = from the dataset)");
  c.Require(config.dropout() >= 0.0f && config.dropout() < 1.0f, "dropout", config.dropout(),
            "must be in [0, 1)");
  c.Require(config.input_channels() >= 1 && config.input_channels() <= 64, "input_channels",
            config.input_channels(), "must be in [1, 64] (3 = RGB, 2 = optical flow)");
  if (!c.ok()) return c.status();
  return BackboneRegistry().Validate(config, {path});
}

absl::StatusOr<std::shared_ptr<VideoBackbone>> CreateBackbone(const BackboneConfig& config) {
  RETURN_IF_ERROR(ValidateBackbone(config, "backbone"));
  if (config.num_classes() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field backbone.num_classes = ", config.num_classes(),
        ": must be > 0 when the backbone is built (0 is resolved from the dataset first)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoBackbone> model, BackboneRegistry().Create(config, config));
  if (config.channels_last()) ToChannelsLast(*model);
  return std::shared_ptr<VideoBackbone>(std::move(model));
}

BasicBlockImpl::BasicBlockImpl(torch::nn::Sequential conv1_in, torch::nn::Sequential conv2_in,
                               torch::nn::Sequential downsample_in) {
  conv1 = register_module("conv1", conv1_in);
  conv2 = register_module("conv2", conv2_in);
  if (downsample_in) downsample = register_module("downsample", downsample_in);
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor out = conv2->forward(conv1->forward(x));
  out += downsample ? downsample->forward(x) : x;
  return torch::relu_(out);
}

torch::Tensor RunStages(torch::Tensor x, std::array<torch::nn::Sequential, 4>& stages,
                        std::vector<torch::Tensor>* outputs) {
  for (auto& stage : stages) {
    x = stage->forward(x);
    if (outputs != nullptr) outputs->push_back(x);
  }
  return x;
}

void InitVideoResNetWeights(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv3d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else if (auto* bn = m->as<SyncBatchNormImpl>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    } else if (auto* plain_bn = m->as<torch::nn::BatchNorm3d>()) {
      torch::nn::init::ones_(plain_bn->weight);
      torch::nn::init::zeros_(plain_bn->bias);
    } else if (auto* fc = m->as<torch::nn::Linear>()) {
      torch::nn::init::normal_(fc->weight, 0.0, 0.01);
      torch::nn::init::zeros_(fc->bias);
    }
  }
}

void ToChannelsLast(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  auto convert = [](torch::Tensor& t) {
    if (t.dim() == 5) {
      t.set_data(t.data().contiguous(at::MemoryFormat::ChannelsLast3d));
    } else if (t.dim() == 4) {
      t.set_data(t.data().contiguous(at::MemoryFormat::ChannelsLast));
    }
  };
  for (auto& p : module.parameters()) convert(p);
  for (auto& b : module.buffers()) convert(b);
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

namespace {

// Long lists (a wrong architecture misses every name) are cut so the error
// stays readable; the count says how much was left out.
std::string JoinCapped(const std::vector<std::string>& items) {
  constexpr size_t kMax = 20;
  if (items.size() <= kMax) return absl::StrJoin(items, ", ");
  std::vector<std::string> head(items.begin(), items.begin() + kMax);
  return absl::StrCat(absl::StrJoin(head, ", "), ", ... (", items.size() - kMax, " more)");
}

std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

}  // namespace

std::map<std::string, torch::Tensor> ModuleStateDict(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    state[item.key()] = item.value();
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    state[item.key()] = item.value();
  }
  return state;
}

absl::Status LoadStateDict(torch::nn::Module& module,
                           const std::map<std::string, torch::Tensor>& state, bool strict) {
  const std::map<std::string, torch::Tensor> own = ModuleStateDict(module);
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, target] : own) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
    } else if (!it->second.defined() || it->second.sizes() != target.sizes()) {
      mismatched.push_back(absl::StrCat(
          name, " (module ", ShapeString(target), ", state dict ",
          it->second.defined() ? ShapeString(it->second) : std::string("undefined"), ")"));
    }
  }
  for (const auto& [name, unused] : state) {
    if (own.count(name) == 0) unexpected.push_back(name);
  }
  const bool fail = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
  if (fail) {
    std::vector<std::string> parts;
    if (!missing.empty()) {
      parts.push_back(absl::StrCat("missing ", missing.size(), ": ", JoinCapped(missing)));
    }
    if (!unexpected.empty()) {
      parts.push_back(absl::StrCat("unexpected ", unexpected.size(), ": ", JoinCapped(unexpected)));
    }
    if (!mismatched.empty()) {
      parts.push_back(
          absl::StrCat("shape mismatch ", mismatched.size(), ": ", JoinCapped(mismatched)));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("state dict does not fit the module: ", absl::StrJoin(parts, "; ")));
  }
  return CallTorch("loading state dict", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& [name, target] : own) {
      auto it = state.find(name);
      if (it != state.end()) target.copy_(it->second);
    }
  });
}

}  // namespace tb
