#include "backbones/sync_batch_norm.h"

#include <vector>

#include <torch/nn/functional/batchnorm.h>
#include <torch/torch.h>

namespace tb {

torch::Tensor SyncBatchNormForward(const torch::Tensor& input, const torch::Tensor& weight,
                                   const torch::Tensor& bias, torch::Tensor running_mean,
                                   torch::Tensor running_var, double momentum, double eps,
                                   Collectives& collectives) {
  const int64_t channels = input.size(1);
  std::vector<int64_t> reduce = {0};
  for (int64_t d = 2; d < input.dim(); ++d) reduce.push_back(d);
  const torch::Tensor x = input.to(torch::kFloat64);
  const torch::Tensor local_count =
      torch::full({1}, static_cast<double>(input.numel() / channels), x.options());
  // [sum (C), sum of squares (C), count (1)], summed over ranks.
  const torch::Tensor stats = AllReduceSumWithGradient(
      torch::cat({x.sum(reduce), (x * x).sum(reduce), local_count}), collectives);
  const torch::Tensor count = stats.narrow(0, 2 * channels, 1);
  const torch::Tensor mean = stats.narrow(0, 0, channels) / count;
  const torch::Tensor var = stats.narrow(0, channels, channels) / count - mean * mean;
  {
    torch::NoGradGuard no_grad;
    const double n = count.item<double>();
    if (running_mean.defined()) {
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()), momentum);
    }
    if (running_var.defined()) {
      const torch::Tensor unbiased = var * (n / std::max(1.0, n - 1));
      running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype()), momentum);
    }
  }
  std::vector<int64_t> shape(input.dim(), 1);
  shape[1] = channels;
  torch::Tensor y = (x - mean.view(shape)) * torch::rsqrt(var.view(shape) + eps);
  y = y.to(input.scalar_type());
  if (weight.defined()) y = y * weight.view(shape);
  if (bias.defined()) y = y + bias.view(shape);
  return y;
}

SyncBatchNormImpl::SyncBatchNormImpl(int dims, const torch::nn::BatchNormOptions& options)
    : dims(dims), options(options) {
  TORCH_CHECK(dims >= 1 && dims <= 3, "SyncBatchNorm: dims must be 1, 2 or 3, got ", dims);
  reset();
}

// As torch::nn::BatchNormImplBase::reset: the same names, order and values.
void SyncBatchNormImpl::reset() {
  const int64_t n = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::empty({n}));
    bias = register_parameter("bias", torch::empty({n}));
  } else {
    weight = register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({n}));
    running_var = register_buffer("running_var", torch::ones({n}));
    num_batches_tracked =
        register_buffer("num_batches_tracked", torch::tensor(0, torch::dtype(torch::kLong)));
  } else {
    running_mean = register_buffer("running_mean", torch::Tensor());
    running_var = register_buffer("running_var", torch::Tensor());
    num_batches_tracked = register_buffer("num_batches_tracked", torch::Tensor());
  }
  reset_parameters();
}

void SyncBatchNormImpl::reset_running_stats() {
  if (options.track_running_stats()) {
    running_mean.zero_();
    running_var.fill_(1);
    num_batches_tracked.zero_();
  }
}

void SyncBatchNormImpl::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    torch::NoGradGuard no_grad;
    weight.fill_(1);
    bias.zero_();
  }
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& input) {
  if (dims == 1) {
    TORCH_CHECK(input.dim() == 2 || input.dim() == 3, "BatchNorm1d: expected 2D or 3D input (got ",
                input.dim(), "D input)");
  } else {
    TORCH_CHECK(input.dim() == dims + 2, "BatchNorm", dims, "d: expected ", dims + 2,
                "D input (got ", input.dim(), "D input)");
  }
  // LibTorch's momentum handling (BatchNormImplBase::forward).
  double momentum = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats() && num_batches_tracked.defined()) {
    num_batches_tracked += 1;
    if (!options.momentum().has_value()) {
      momentum = 1.0 / num_batches_tracked.item<double>();
    }
  }
  if (is_training() && IsDistributed(collectives_.get())) {
    return SyncBatchNormForward(input, weight, bias,
                                options.track_running_stats() ? running_mean : torch::Tensor(),
                                options.track_running_stats() ? running_var : torch::Tensor(),
                                momentum, options.eps(), *collectives_);
  }
  return torch::nn::functional::detail::batch_norm(
      input, running_mean, running_var, weight, bias,
      is_training() || !options.track_running_stats(), momentum, options.eps());
}

void SyncBatchNormImpl::pretty_print(std::ostream& stream) const {
  stream << "tb::SyncBatchNorm" << dims << "d(" << options.num_features()
         << ", eps=" << options.eps() << ", momentum=";
  if (options.momentum().has_value()) {
    stream << *options.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << std::boolalpha << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << ")";
}

SyncBatchNorm SyncBatchNorm1d(const torch::nn::BatchNormOptions& options) {
  return SyncBatchNorm(1, options);
}
SyncBatchNorm SyncBatchNorm2d(const torch::nn::BatchNormOptions& options) {
  return SyncBatchNorm(2, options);
}
SyncBatchNorm SyncBatchNorm3d(const torch::nn::BatchNormOptions& options) {
  return SyncBatchNorm(3, options);
}

int SetBatchNormCollectives(torch::nn::Module& root, std::shared_ptr<Collectives> collectives) {
  int count = 0;
  if (auto* self = dynamic_cast<SyncBatchNormImpl*>(&root)) {
    self->set_collectives(collectives);
    ++count;
  }
  for (const std::shared_ptr<torch::nn::Module>& m : root.modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<SyncBatchNormImpl*>(m.get())) {
      bn->set_collectives(collectives);
      ++count;
    }
  }
  return count;
}

bool HasSynchronizedBatchNorm(const torch::nn::Module& root) {
  if (auto* self = dynamic_cast<const SyncBatchNormImpl*>(&root)) {
    if (self->synchronized()) return true;
  }
  for (const std::shared_ptr<torch::nn::Module>& m : root.modules(/*include_self=*/false)) {
    if (auto* bn = dynamic_cast<const SyncBatchNormImpl*>(m.get())) {
      if (bn->synchronized()) return true;
    }
  }
  return false;
}

}  // namespace tb
