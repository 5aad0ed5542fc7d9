#include "backbones/slow_r50.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "backbones/backbone.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// pytorchvideo.models.resnet.create_resnet defaults as used by slow_r50
// (hub slow_r50, model_num_class=400): 32,454,096 parameters.
constexpr int64_t kPytorchvideoSlowR50Params400 = 32454096;

BackboneConfig SlowConfig(float width, int num_classes, float dropout = 0.0f) {
  BackboneConfig config;
  config.mutable_slow_r50()->set_width_multiplier(width);
  config.set_num_classes(num_classes);
  config.set_dropout(dropout);
  return config;
}

std::shared_ptr<VideoBackbone> Build(const BackboneConfig& config) {
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

// Parameter count of the architecture, from its definition: convs have no
// bias, every BatchNorm has gamma and beta, fc has a bias.
int64_t FormulaParams(int64_t num_classes) {
  const int64_t blocks[4] = {3, 4, 6, 3};
  const int64_t inner[4] = {64, 128, 256, 512};
  const int64_t kt[4] = {1, 1, 3, 3};
  int64_t n = 3 * 64 * 1 * 7 * 7 + 2 * 64;  // stem conv + bn
  int64_t in = 64;
  for (int s = 0; s < 4; ++s) {
    for (int b = 0; b < blocks[s]; ++b) {
      const int64_t c = inner[s], out = 4 * inner[s];
      n += in * c * kt[s] + 2 * c;  // conv1 (kt x 1 x 1) + bn1
      n += c * c * 9 + 2 * c;       // conv2 (1 x 3 x 3) + bn2
      n += c * out + 2 * out;       // conv3 (1 x 1 x 1) + bn3
      if (b == 0) n += in * out + 2 * out;  // projection shortcut + bn
      in = out;
    }
  }
  return n + 2048 * num_classes + num_classes;  // fc
}

TEST(SlowR50Test, InnerWidths) {
  EXPECT_THAT(SlowR50InnerWidths(1.0f), ElementsAre(64, 128, 256, 512));
  EXPECT_THAT(SlowR50InnerWidths(0.25f), ElementsAre(16, 32, 64, 128));
  EXPECT_THAT(SlowR50InnerWidths(0.001f), ElementsAre(1, 1, 1, 1));
}

TEST(SlowR50Test, OutputShapesAtWidthOneQuarter) {
  torch::manual_seed(0);
  auto model = Build(SlowConfig(0.25f, 7));
  ASSERT_NE(model, nullptr);
  model->eval();
  EXPECT_EQ(model->feature_dim(), 512);
  EXPECT_EQ(model->num_classes(), 7);
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 8, 64, 64});
  // Time is never strided (8 -> 8); space: stem conv and pool /4, layer2..4
  // /8 (64 -> 2).
  EXPECT_EQ(model->FeatureMap(clip).sizes(), (std::vector<int64_t>{2, 2048 / 4, 8, 2, 2}));
  const torch::Tensor features = model->Features(clip);
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{2, 512}));
  EXPECT_EQ(model->Logits(features).sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{2, 7}));
}

TEST(SlowR50Test, ParameterCountMatchesFormulaAndPytorchvideo) {
  auto model = Build(SlowConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(FormulaParams(400), kPytorchvideoSlowR50Params400);
  EXPECT_EQ(CountParameters(*model), FormulaParams(400));
  EXPECT_EQ(CountParameters(*model), kPytorchvideoSlowR50Params400);
}

TEST(SlowR50Test, ModuleNames) {
  auto model = Build(SlowConfig(0.25f, 10));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  // 53 convs + 53 BNs (2 params, 3 buffers each) + fc (2): 161 params, 159 buffers.
  EXPECT_EQ(model->named_parameters().size(), 161u);
  EXPECT_EQ(state.size(), 161u + 159u);
  for (const char* name :
       {"stem.conv.weight", "stem.bn.weight", "stem.bn.running_var", "layer1.0.conv1.weight",
        "layer1.0.bn1.bias", "layer1.0.conv2.weight", "layer1.0.conv3.weight",
        "layer1.0.bn3.running_mean", "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.num_batches_tracked", "layer2.0.downsample.0.weight",
        "layer3.5.conv1.weight", "layer4.2.bn3.weight", "fc.weight", "fc.bias"}) {
    EXPECT_EQ(state.count(name), 1u) << name;
  }
  EXPECT_EQ(state.count("layer1.1.downsample.0.weight"), 0u);
  EXPECT_EQ(state.count("layer4.3.conv1.weight"), 0u);
  EXPECT_EQ(state.at("stem.conv.weight").sizes(), (std::vector<int64_t>{16, 3, 1, 7, 7}));
  // Temporal kernel 1 in layer1/layer2, 3 in layer3/layer4; conv2 is 1x3x3.
  EXPECT_EQ(state.at("layer2.1.conv1.weight").sizes(), (std::vector<int64_t>{32, 128, 1, 1, 1}));
  EXPECT_EQ(state.at("layer3.0.conv1.weight").sizes(), (std::vector<int64_t>{64, 128, 3, 1, 1}));
  EXPECT_EQ(state.at("layer4.0.conv2.weight").sizes(), (std::vector<int64_t>{128, 128, 1, 3, 3}));
  EXPECT_EQ(state.at("layer4.0.downsample.0.weight").sizes(),
            (std::vector<int64_t>{512, 256, 1, 1, 1}));
  EXPECT_EQ(state.at("fc.weight").sizes(), (std::vector<int64_t>{10, 512}));
}

TEST(SlowR50Test, InitialisationFollowsPytorchvideo) {
  torch::manual_seed(1);
  auto model = Build(SlowConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  EXPECT_TRUE(torch::all(state.at("layer3.0.bn1.weight") == 1).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer3.0.downsample.1.weight") == 1).item<bool>());
  // block_final_bn: the residual branch starts at zero.
  EXPECT_TRUE(torch::all(state.at("layer3.0.bn3.weight") == 0).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer1.2.bn3.weight") == 0).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer3.0.bn3.bias") == 0).item<bool>());
  EXPECT_TRUE(torch::all(state.at("fc.bias") == 0).item<bool>());
  EXPECT_NEAR(state.at("fc.weight").std().item<double>(), 0.01, 0.001);
  // kaiming_normal_, fan_out, relu: std = sqrt(2 / (out * 1 * 3 * 3)).
  EXPECT_NEAR(state.at("layer4.1.conv2.weight").std().item<double>(), std::sqrt(2.0 / (512 * 9)),
              0.0005);
}

TEST(SlowR50Test, BackwardReachesEveryParameter) {
  torch::manual_seed(0);
  auto model = Build(SlowConfig(0.125f, 5, 0.5f));
  ASSERT_NE(model, nullptr);
  // With bn3 zero-initialised, the inner convs of a block get no gradient at
  // initialisation; give the gammas a value so every path is exercised.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.key().find("bn3.weight") != std::string::npos) p.value().fill_(0.5);
    }
  }
  model->train();
  const torch::Tensor clip = torch::randn({2, 3, 4, 32, 32});
  const torch::Tensor loss =
      torch::nn::functional::cross_entropy(model->forward(clip), torch::tensor({1, 3}));
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  EXPECT_GT(model->named_parameters()["stem.conv.weight"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(model->named_parameters()["layer3.1.conv1.weight"].grad().abs().sum().item<double>(),
            0.0);
  EXPECT_EQ(ModuleStateDict(*model).at("stem.bn.num_batches_tracked").item<int64_t>(), 1);
}

TEST(SlowR50Test, Registered) {
  EXPECT_TRUE(BackboneRegistry().Contains("slow_r50"));
  auto model = CreateBackbone(SlowConfig(0.125f, 3));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_classes(), 3);
  EXPECT_EQ((*model)->feature_dim(), 256);
}

TEST(SlowR50Test, BadOptionsNameTheField) {
  for (float w : {0.0f, -1.0f, 8.5f, std::nanf("")}) {
    auto model = CreateBackbone(SlowConfig(w, 3));
    ASSERT_FALSE(model.ok()) << w;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.slow_r50.width_multiplier"));
  }
  auto model = CreateBackbone(SlowConfig(0.25f, 3, 1.0f));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.dropout"));
  model = CreateBackbone(SlowConfig(0.25f, 0));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.num_classes"));
}

}  // namespace
}  // namespace tb
