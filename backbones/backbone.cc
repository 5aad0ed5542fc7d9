#include "backbones/backbone.h"

#include <torch/nn/functional/pooling.h>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

torch::Tensor VideoBackbone::Features(const torch::Tensor& clip) {
  return FeatureMap(clip).mean({2, 3, 4});
}

BackboneRegistryType& BackboneRegistry() {
  static auto* registry = new BackboneRegistryType("backbone");
  return *registry;
}

absl::StatusOr<std::shared_ptr<VideoBackbone>> CreateBackbone(const BackboneConfig& config) {
  ASSIGN_OR_RETURN(std::string kind, SetOneofField(config, "kind", "backbone"));
  if (config.num_classes() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone.num_classes must be > 0, got ", config.num_classes()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoBackbone> model,
                   BackboneRegistry().Create(kind, config));
  return std::shared_ptr<VideoBackbone>(std::move(model));
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

}  // namespace tb
