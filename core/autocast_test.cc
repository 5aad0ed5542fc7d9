#include "core/autocast.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tb {
namespace {

TEST(AutocastScope, Bf16OnCpuAndRestored) {
  const torch::Device cpu(torch::kCPU);
  torch::Tensor a = torch::randn({4, 8}), b = torch::randn({8, 3});
  {
    AutocastScope scope(cpu, Precision::kBf16);
    EXPECT_TRUE(at::autocast::is_cpu_enabled());
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      AutocastScope off(cpu, Precision::kFp32);  // no-op, stays on
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  // The bf16 product is close to the fp32 one (bf16 has an 8-bit mantissa).
  torch::Tensor exact = torch::mm(a, b), low;
  {
    AutocastScope scope(cpu, Precision::kBf16);
    low = torch::mm(a, b).to(torch::kFloat);
  }
  EXPECT_LT((exact - low).abs().max().item<float>(), 0.1f * exact.abs().max().item<float>());
}

}  // namespace
}  // namespace tb
