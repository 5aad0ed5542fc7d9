#include "core/testing/batch_norm_stats.h"

#include <torch/torch.h>

#include "absl/strings/match.h"

namespace tb::testing {

void RandomizeBatchNormStatistics(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_buffers()) {
    if (absl::EndsWith(item.key(), "running_mean")) item.value().uniform_(-0.5, 0.5);
    if (absl::EndsWith(item.key(), "running_var")) item.value().uniform_(0.5, 2.0);
  }
}

}  // namespace tb::testing
