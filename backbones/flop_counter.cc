#include "backbones/flop_counter.h"

#include <algorithm>
#include <cstring>

#include <ATen/record_function.h>
#include <glog/logging.h>

namespace tb {
namespace {

// One counter per thread at a time (the callback is thread-local).
thread_local double t_flops = 0;
thread_local int64_t t_convolutions = 0;
thread_local bool t_active = false;
thread_local int t_matmul_depth = 0;

int64_t Numel(c10::IntArrayRef sizes) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  return n;
}

// aten::convolution(input, weight, bias, stride, padding, dilation,
// transposed, output_padding, groups).
void CountConvolution(const at::RecordFunction& fn) {
  const auto inputs = fn.inputs();
  if (inputs.size() < 9 || !inputs[0].isTensor() || !inputs[1].isTensor()) return;
  const at::Tensor& input = inputs[0].toTensor();
  const at::Tensor& weight = inputs[1].toTensor();
  const auto stride = inputs[3].toIntVector();
  const auto padding = inputs[4].toIntVector();
  const auto dilation = inputs[5].toIntVector();
  const bool transposed = inputs[6].toBool();
  const int64_t groups = inputs[8].toInt();
  const int64_t spatial = input.dim() - 2;
  if (transposed || spatial <= 0) return;
  // Output elements: batch x out_channels x prod(output spatial sizes).
  int64_t out = input.size(0) * weight.size(0);
  for (int64_t d = 0; d < spatial; ++d) {
    const int64_t k = dilation[d] * (weight.size(2 + d) - 1) + 1;
    out *= (input.size(2 + d) + 2 * padding[d] - k) / stride[d] + 1;
  }
  const int64_t per_output = (input.size(1) / groups) * Numel(weight.sizes().slice(2));
  t_flops += 2.0 * static_cast<double>(out) * per_output;
  ++t_convolutions;
}

// Linear layers run aten::addmm(bias, a, b) (2-D input) or aten::matmul(a,
// b), which itself calls mm/bmm on reshaped views (whose inputs the observer
// cannot always see). matmul is counted at its own level and the products it
// calls are skipped; a bare mm/bmm is counted directly.
void CountMatmul(const at::RecordFunction& fn, size_t first) {
  const auto inputs = fn.inputs();
  if (inputs.size() < first + 2 || !inputs[first].isTensor() || !inputs[first + 1].isTensor()) {
    return;
  }
  const at::Tensor& a = inputs[first].toTensor();
  const at::Tensor& b = inputs[first + 1].toTensor();
  // a: [..., M, K] (broadcast batch), b: [..., K, N].
  const int64_t batch_b = b.dim() > 2 ? b.numel() / (b.size(-2) * b.size(-1)) : 1;
  const int64_t batch_a = a.dim() > 2 ? a.numel() / (a.size(-2) * a.size(-1)) : 1;
  const int64_t rows = a.dim() == 1 ? 1 : a.size(-2);
  const int64_t k = a.size(-1);
  t_flops += 2.0 * static_cast<double>(std::max(batch_a, batch_b)) * rows * k * b.size(-1);
}

void Count(const at::RecordFunction& fn) {
  const char* name = fn.name();
  if (std::strcmp(name, "aten::convolution") == 0) {
    CountConvolution(fn);
  } else if (std::strcmp(name, "aten::matmul") == 0) {
    if (t_matmul_depth++ == 0) CountMatmul(fn, 0);
  } else if (t_matmul_depth > 0) {
    // Products inside a counted matmul.
  } else if (std::strcmp(name, "aten::addmm") == 0) {
    CountMatmul(fn, 1);
  } else if (std::strcmp(name, "aten::mm") == 0 || std::strcmp(name, "aten::bmm") == 0) {
    CountMatmul(fn, 0);
  }
}

std::unique_ptr<at::ObserverContext> OnStart(const at::RecordFunction& fn) {
  if (t_active) Count(fn);
  return nullptr;
}

void OnEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  if (t_active && t_matmul_depth > 0 && std::strcmp(fn.name(), "aten::matmul") == 0) {
    --t_matmul_depth;
  }
}

}  // namespace

FlopCounter::FlopCounter() {
  CHECK(!t_active) << "one FlopCounter per thread at a time";
  t_flops = 0;
  t_convolutions = 0;
  t_matmul_depth = 0;
  t_active = true;
  handle_ = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&OnStart, &OnEnd).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
}

FlopCounter::~FlopCounter() {
  at::removeCallback(handle_);
  t_active = false;
}

double FlopCounter::flops() const { return t_flops; }
int64_t FlopCounter::convolutions() const { return t_convolutions; }
FlopCount CountForwardFlops(const std::function<void()>& forward) {
  FlopCounter counter;
  forward();
  return FlopCount{counter.flops(), counter.convolutions()};
}

}  // namespace tb
