#include "train/fused_adam.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace tb {
namespace {

using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

// The per-step scalars, as ATen's kernels receive them: computed in double,
// used in float.
struct AdamScalars {
  float weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias_correction2,
      eps, neg_step_size;
};

// Elements [begin, end) of one parameter. Each line is the ATen kernel
// torch::optim::Adam runs, in its order of operations, including where its
// AVX2/AVX-512 kernels use fused multiply-adds (add with alpha and addcmul
// are FMAs; the divisions are true divisions), so the results are bitwise
// those of torch::optim::Adam on a machine where ATen runs those kernels.
__attribute__((target("avx2,fma"))) void AdamUpdate(const AdamScalars& k, int64_t begin,
                                                    int64_t end, float* p, const float* grad,
                                                    float* m, float* v) {
  const __m256 wd = _mm256_set1_ps(k.weight_decay), b1 = _mm256_set1_ps(k.beta1),
               omb1 = _mm256_set1_ps(k.one_minus_beta1), b2 = _mm256_set1_ps(k.beta2),
               omb2 = _mm256_set1_ps(k.one_minus_beta2),
               sbc2 = _mm256_set1_ps(k.sqrt_bias_correction2), eps = _mm256_set1_ps(k.eps),
               step = _mm256_set1_ps(k.neg_step_size);
  const bool decay = k.weight_decay != 0;
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 pi = _mm256_loadu_ps(p + i);
    __m256 g = _mm256_loadu_ps(grad + i);
    if (decay) g = _mm256_fmadd_ps(pi, wd, g);                      // grad.add(p, wd)
    const __m256 mi = _mm256_fmadd_ps(g, omb1, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
    const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(omb2, g), g,      // mul_(b2).addcmul_(
                                      _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));  // g, g, 1-b2)
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sbc2), eps);
    _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(step, mi), denom)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
  }
  for (; i < end; ++i) {  // the same operations, one element at a time
    float g = grad[i];
    if (decay) g = __builtin_fmaf(p[i], k.weight_decay, g);
    const float mi = __builtin_fmaf(g, k.one_minus_beta1, m[i] * k.beta1);
    const float vi = __builtin_fmaf(k.one_minus_beta2 * g, g, v[i] * k.beta2);
    const float denom = __builtin_sqrtf(vi) / k.sqrt_bias_correction2 + k.eps;
    p[i] = p[i] + k.neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

// Whether ATen runs its FMA kernels here (AVX2 or AVX-512, chosen by CPU
// and by ATEN_CPU_CAPABILITY): only then is the fused update bitwise Adam's.
bool FmaKernelsInUse() {
  static const bool in_use = [] {
    const char* forced = std::getenv("ATEN_CPU_CAPABILITY");
    if (forced != nullptr && std::strcmp(forced, "default") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return in_use;
}

bool Fusable(const torch::Tensor& p) {
  const torch::Tensor& g = p.grad();
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat && p.is_contiguous() &&
         !g.is_sparse() && g.device().is_cpu() && g.scalar_type() == torch::kFloat &&
         g.is_contiguous();
}

}  // namespace

torch::Tensor FusedAdam::step(LossClosure closure) {
  bool fusable = FmaKernelsInUse();
  for (const auto& group : param_groups()) {
    if (static_cast<const AdamOptions&>(group.options()).amsgrad()) fusable = false;
    for (const torch::Tensor& p : group.params()) {
      if (p.grad().defined() && !Fusable(p)) fusable = false;
    }
  }
  last_step_fused_ = fusable;
  if (!fusable) return torch::optim::Adam::step(std::move(closure));

  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& options = static_cast<const AdamOptions&>(group.options());
    const double beta1 = std::get<0>(options.betas());
    const double beta2 = std::get<1>(options.betas());
    for (torch::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto fresh = std::make_unique<AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(fresh)).first;
      }
      auto& state = static_cast<AdamParamState&>(*it->second);
      state.step(state.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      const AdamScalars k{static_cast<float>(options.weight_decay()),
                          static_cast<float>(beta1),
                          static_cast<float>(1 - beta1),
                          static_cast<float>(beta2),
                          static_cast<float>(1 - beta2),
                          static_cast<float>(std::sqrt(bias_correction2)),
                          static_cast<float>(options.eps()),
                          static_cast<float>(-(options.lr() / bias_correction1))};
      float* param = p.data_ptr<float>();
      const float* grad = p.grad().data_ptr<float>();
      float* m = state.exp_avg().data_ptr<float>();
      float* v = state.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
        AdamUpdate(k, begin, end, param, grad, m, v);
      });
    }
  }
  return loss;
}

}  // namespace tb
