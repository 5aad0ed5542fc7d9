#include "train/fused_adam.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <sstream>
#include <vector>

#include "gtest/gtest.h"

namespace tb {
namespace {

// Parameters of awkward sizes (one spans several parallel_for chunks of
// 32768 elements, one is smaller than a vector register) and a fixed
// sequence of gradients, the same for every optimiser.
std::vector<torch::Tensor> Params(torch::Dtype dtype = torch::kFloat) {
  torch::manual_seed(3);
  return {torch::randn({70001}, dtype).set_requires_grad(true),
          torch::randn({37, 5}, dtype).set_requires_grad(true),
          torch::randn({3}, dtype).set_requires_grad(true)};
}

void SetGrads(std::vector<torch::Tensor>& params, int step) {
  torch::manual_seed(100 + step);
  for (torch::Tensor& p : params) {
    // Gradients of mixed scales, some exactly zero.
    p.mutable_grad() = torch::randn_like(p) * std::pow(10.0, step % 5 - 2) *
                       (torch::rand_like(p) > 0.1).to(p.scalar_type());
  }
}

// Max |a - b| over all parameters, relative to the largest total movement
// of a parameter over the run (what the updates added up to).
double RelativeDifference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b,
                          const std::vector<torch::Tensor>& start) {
  double diff = 0, moved = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, (a[i] - b[i]).abs().max().item<double>());
    moved = std::max(moved, (a[i] - start[i]).abs().max().item<double>());
  }
  return diff / moved;
}

class FusedAdamTest : public ::testing::TestWithParam<double> {};

// The same trajectory as torch::optim::Adam over 60 steps, with and without
// L2 weight decay, bit for bit (this machine has AVX2 and FMA; the test
// says so when it does not).
TEST_P(FusedAdamTest, FollowsTorchAdam) {
  const auto options = torch::optim::AdamOptions(1e-2).weight_decay(GetParam()).eps(1e-8);
  std::vector<torch::Tensor> ref = Params(), fused = Params();
  std::vector<torch::Tensor> start;
  for (const auto& p : ref) start.push_back(p.detach().clone());
  torch::optim::Adam reference(ref, options);
  FusedAdam candidate(fused, options);
  for (int step = 0; step < 60; ++step) {
    SetGrads(ref, step);
    SetGrads(fused, step);
    reference.step();
    candidate.step();
    ASSERT_TRUE(candidate.last_step_fused()) << "no AVX2/FMA here: FusedAdam falls back";
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_TRUE(torch::equal(ref[i], fused[i]))
        << "parameter " << i << ": relative difference "
        << RelativeDifference({ref[i]}, {fused[i]}, {start[i]});
  }
  // The moments too.
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto key = [](const torch::Tensor& p) {
      return c10::guts::to_string(p.unsafeGetTensorImpl());
    };
    const auto& rs =
        static_cast<const torch::optim::AdamParamState&>(*reference.state().at(key(ref[i])));
    const auto& fs =
        static_cast<const torch::optim::AdamParamState&>(*candidate.state().at(key(fused[i])));
    EXPECT_EQ(rs.step(), fs.step());
    EXPECT_TRUE(torch::equal(rs.exp_avg(), fs.exp_avg())) << i;
    EXPECT_TRUE(torch::equal(rs.exp_avg_sq(), fs.exp_avg_sq())) << i;
  }
  // The parameters did move (the comparison is not of two idle runs).
  EXPECT_GT((ref[0] - start[0]).abs().max().item<double>(), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(WeightDecay, FusedAdamTest, ::testing::Values(0.0, 0.05));

// A checkpoint of one resumes with the other: the state is Adam's.
TEST(FusedAdam, StateIsInterchangeableWithTorchAdam) {
  const auto options = torch::optim::AdamOptions(1e-2);
  std::vector<torch::Tensor> a = Params(), b = Params();
  FusedAdam fused(a, options);
  for (int step = 0; step < 5; ++step) {
    SetGrads(a, step);
    fused.step();
  }
  torch::serialize::OutputArchive out;
  fused.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  for (size_t i = 0; i < a.size(); ++i) {
    torch::NoGradGuard no_grad;
    b[i].copy_(a[i]);
  }
  torch::optim::Adam plain(b, options);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  plain.load(in);
  SetGrads(a, 5);
  SetGrads(b, 5);
  fused.step();
  plain.step();
  // Step 6 of both, from the same moments: bias corrections agree only if
  // the step counts came across.
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i], b[i])) << i;
  }
}

// What one pass cannot take runs torch::optim::Adam's step: bit-identical.
TEST(FusedAdam, FallsBackForDoubleParametersAndAmsgrad) {
  for (const bool amsgrad : {false, true}) {
    const auto options = torch::optim::AdamOptions(1e-2).amsgrad(amsgrad);
    const torch::Dtype dtype = amsgrad ? torch::kFloat : torch::kDouble;
    std::vector<torch::Tensor> ref = Params(dtype), fused = Params(dtype);
    torch::optim::Adam reference(ref, options);
    FusedAdam candidate(fused, options);
    for (int step = 0; step < 4; ++step) {
      SetGrads(ref, step);
      SetGrads(fused, step);
      reference.step();
      candidate.step();
      EXPECT_FALSE(candidate.last_step_fused());
    }
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(torch::equal(ref[i], fused[i])) << i;
  }
}

// A parameter without a gradient is left alone, as by Adam (no state).
TEST(FusedAdam, SkipsParametersWithoutGradient) {
  std::vector<torch::Tensor> params = Params();
  const torch::Tensor before = params[1].detach().clone();
  FusedAdam fused(params, torch::optim::AdamOptions(1e-2));
  SetGrads(params, 0);
  params[1].mutable_grad() = torch::Tensor();
  fused.step();
  EXPECT_TRUE(fused.last_step_fused());
  EXPECT_TRUE(torch::equal(params[1], before));
  EXPECT_EQ(fused.state().size(), 2u);
}

}  // namespace
}  // namespace tb
