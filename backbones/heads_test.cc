#include "backbones/heads.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace tb {
namespace {

TEST(TemporalSlicePool, AveragesEqualTemporalSlices) {
  // [1, 1, 8, 2, 2]: frame t has value t everywhere; 4 slices of 2 frames.
  torch::Tensor x = torch::arange(8, torch::kFloat).view({1, 1, 8, 1, 1}).expand({1, 1, 8, 2, 2});
  torch::Tensor s = TemporalSlicePool(x.contiguous(), 4);
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{1, 1, 4}));
  EXPECT_TRUE(torch::allclose(s.flatten(), torch::tensor({0.5f, 2.5f, 4.5f, 6.5f})));
  // 4 temporal positions into 4 slices is the identity over time.
  torch::Tensor y = torch::randn({2, 3, 4, 3, 3});
  EXPECT_TRUE(torch::allclose(TemporalSlicePool(y, 4), y.mean({3, 4})));
}

TEST(ProjectionHead, NormalisedOutputAndSharedWeightsOverSlices) {
  torch::manual_seed(0);
  ProjectionHeadOptions options(16, 8);
  ProjectionHead head(options);
  head->eval();  // BN with running statistics: per-sample, so slices are independent
  torch::Tensor pooled = torch::randn({5, 16});
  torch::Tensor z = head->forward(pooled);
  ASSERT_EQ(z.sizes(), (std::vector<int64_t>{5, 8}));
  EXPECT_TRUE(torch::allclose(z.norm(2, 1), torch::ones({5}), 1e-5, 1e-5));
  torch::Tensor sliced = torch::randn({3, 16, 4});
  torch::Tensor zs = head->forward(sliced);
  ASSERT_EQ(zs.sizes(), (std::vector<int64_t>{3, 8, 4}));
  // Slice s of sample b equals the head applied to that slice's vector alone.
  for (int s = 0; s < 4; ++s) {
    torch::Tensor alone = head->forward(sliced.select(2, s));
    EXPECT_TRUE(torch::allclose(zs.select(2, s), alone, 1e-5, 1e-6)) << "slice " << s;
  }
  // Layer structure: Linear(16,16,no bias), BN, ReLU, Linear(16,8).
  EXPECT_EQ(head->named_parameters().size(), 5u);
}

// TCLR's head (models/mlp.py): Linear, BN, ReLU, Linear without bias, BN,
// L2 normalisation. In train mode the last BN centres every output feature
// over the batch before the normalisation.
TEST(ProjectionHead, FinalBatchNorm) {
  torch::manual_seed(1);
  ProjectionHeadOptions options(16, 8);
  options.final_batch_norm = true;
  options.normalize = false;
  ProjectionHead head(options);
  // Linear(16,16,no bias): 1, BN(16): 2, ReLU, Linear(16,8,no bias): 1, BN(8): 2.
  EXPECT_EQ(head->named_parameters().size(), 6u);
  for (const auto& p : head->named_parameters()) {
    EXPECT_EQ(p.key().find("3.bias"), std::string::npos) << p.key();
  }
  head->train();
  const torch::Tensor z = head->forward(torch::randn({6, 16}));
  EXPECT_TRUE(torch::allclose(z.mean(0), torch::zeros({8}), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(z.var(0, /*unbiased=*/false), torch::ones({8}), 1e-3, 1e-3));
}

// LTG's ContrastHead: three linear layers without bias, the last BatchNorm
// without scale and shift, so the outputs stay standardised during training.
TEST(ProjectionHead, FinalBatchNormWithoutAffine) {
  torch::manual_seed(2);
  ProjectionHeadOptions options(16, 8);
  options.num_layers = 3;
  options.final_batch_norm = true;
  options.final_batch_norm_affine = false;
  options.normalize = false;
  ProjectionHead head(options);
  // Linear: 1, BN(16): 2, ReLU, Linear: 1, BN(16): 2, ReLU, Linear: 1, BN(8): 0.
  EXPECT_EQ(head->named_parameters().size(), 7u);
  head->train();
  for (int i = 0; i < 3; ++i) {
    torch::optim::SGD sgd(head->parameters(), 0.5);
    const torch::Tensor z = head->forward(torch::randn({6, 16}));
    EXPECT_TRUE(torch::allclose(z.mean(0), torch::zeros({8}), 1e-5, 1e-5));
    sgd.zero_grad();
    (z * torch::arange(8).to(z.dtype())).pow(3).sum().backward();
    sgd.step();
  }
}

TEST(ClassifierHead, Shapes) {
  ClassifierHead head(32, 7, 0.5);
  head->eval();
  EXPECT_EQ(head->forward(torch::randn({4, 32})).sizes(), (std::vector<int64_t>{4, 7}));
}

}  // namespace
}  // namespace tb
