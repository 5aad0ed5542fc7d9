#include "backbones/r2plus1d.h"

#include <cmath>
#include <map>
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

BackboneConfig R2plus1dConfig(int depth, float width, int num_classes, float dropout = 0.0f) {
  BackboneConfig config;
  config.mutable_r2plus1d()->set_depth(depth);
  config.mutable_r2plus1d()->set_width_multiplier(width);
  config.set_num_classes(num_classes);
  config.set_dropout(dropout);
  return config;
}

std::shared_ptr<VideoBackbone> Build(const BackboneConfig& config) {
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

TEST(R2plus1dTest, DefaultsAreDepth18WidthOne) {
  const R2plus1dOptions options;
  EXPECT_EQ(options.depth(), 18);
  EXPECT_EQ(options.width_multiplier(), 1.0f);
}

TEST(R2plus1dTest, ChannelWidths) {
  R2plus1dWidths w = R2plus1dChannelWidths(1.0f);
  EXPECT_EQ(w.stem_mid, 45);
  EXPECT_THAT(w.stages, ElementsAre(64, 128, 256, 512));
  w = R2plus1dChannelWidths(0.125f);
  EXPECT_EQ(w.stem_mid, 6);  // round(5.625)
  EXPECT_THAT(w.stages, ElementsAre(8, 16, 32, 64));
  w = R2plus1dChannelWidths(0.001f);
  EXPECT_EQ(w.stem_mid, 1);
  EXPECT_THAT(w.stages, ElementsAre(1, 1, 1, 1));
}

TEST(R2plus1dTest, MidplanesFollowTorchvision) {
  // torchvision BasicBlock: (in * out * 27) // (9 * in + 3 * out).
  EXPECT_EQ(R2plus1dMidplanes(64, 64), 144);
  EXPECT_EQ(R2plus1dMidplanes(64, 128), 230);
  EXPECT_EQ(R2plus1dMidplanes(128, 128), 288);
  EXPECT_EQ(R2plus1dMidplanes(128, 256), 460);
  EXPECT_EQ(R2plus1dMidplanes(256, 256), 576);
  EXPECT_EQ(R2plus1dMidplanes(256, 512), 921);
  EXPECT_EQ(R2plus1dMidplanes(512, 512), 1152);
  EXPECT_EQ(R2plus1dMidplanes(8, 16), 28);
  EXPECT_EQ(R2plus1dMidplanes(1, 1), 2);
}

TEST(R2plus1dTest, BlocksPerStage) {
  EXPECT_THAT(R2plus1dBlocksPerStage(18), ElementsAre(2, 2, 2, 2));
  EXPECT_THAT(R2plus1dBlocksPerStage(34), ElementsAre(3, 4, 6, 3));
}

TEST(R2plus1dTest, OutputShapesAtWidthOneEighth) {
  for (int depth : {18, 34}) {
    SCOPED_TRACE(depth);
    torch::manual_seed(0);
    auto model = Build(R2plus1dConfig(depth, 0.125f, 7));
    ASSERT_NE(model, nullptr);
    model->eval();
    EXPECT_EQ(model->feature_dim(), 64);
    EXPECT_EQ(model->num_classes(), 7);
    torch::NoGradGuard no_grad;
    const torch::Tensor clip = torch::randn({2, 3, 8, 32, 32});
    // Time is halved by stages 2-4 (8 -> 1), space by the stem too (32 -> 2).
    EXPECT_EQ(model->FeatureMap(clip).sizes(), (std::vector<int64_t>{2, 64, 1, 2, 2}));
    const torch::Tensor features = model->Features(clip);
    EXPECT_EQ(features.sizes(), (std::vector<int64_t>{2, 64}));
    EXPECT_EQ(model->Logits(features).sizes(), (std::vector<int64_t>{2, 7}));
    EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{2, 7}));
  }
}

TEST(R2plus1dTest, LongerClipKeepsMoreTime) {
  torch::manual_seed(0);
  auto model = Build(R2plus1dConfig(18, 0.125f, 3));
  ASSERT_NE(model, nullptr);
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->FeatureMap(torch::randn({1, 3, 16, 56, 56})).sizes(),
            (std::vector<int64_t>{1, 64, 2, 4, 4}));
}

TEST(R2plus1dTest, ParameterCountsMatchTorchvision) {
  // torchvision.models.video.r2plus1d_18(num_classes=400).
  auto r18 = Build(R2plus1dConfig(18, 1.0f, 400));
  ASSERT_NE(r18, nullptr);
  EXPECT_EQ(CountParameters(*r18), 31505325);
  // torchvision VideoResNet(block=BasicBlock, conv_makers=[Conv2Plus1D] * 4,
  // layers=[3, 4, 6, 3], stem=R2Plus1dStem, num_classes=101).
  auto r34 = Build(R2plus1dConfig(34, 1.0f, 101));
  ASSERT_NE(r34, nullptr);
  EXPECT_EQ(CountParameters(*r34), 61678274);
  // Width 1/8 (stem 3 -> 6 -> 8, stages 8/16/32/64), 10 classes; counted by a
  // Python replica of the construction that reproduces both numbers above.
  auto tiny18 = Build(R2plus1dConfig(18, 0.125f, 10));
  ASSERT_NE(tiny18, nullptr);
  EXPECT_EQ(CountParameters(*tiny18), 492568);
  auto tiny34 = Build(R2plus1dConfig(34, 0.125f, 10));
  ASSERT_NE(tiny34, nullptr);
  EXPECT_EQ(CountParameters(*tiny34), 969056);
}

TEST(R2plus1dTest, NamesMatchTorchvision) {
  auto model = Build(R2plus1dConfig(18, 0.125f, 10));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  // len(torchvision r2plus1d_18().state_dict()).
  EXPECT_EQ(state.size(), 224u);
  for (const char* name :
       {"stem.0.weight", "stem.1.running_mean", "stem.3.weight", "stem.4.num_batches_tracked",
        "layer1.0.conv1.0.0.weight", "layer1.0.conv1.0.1.running_var", "layer1.0.conv1.0.3.weight",
        "layer1.0.conv1.1.weight", "layer1.1.conv2.0.3.weight", "layer1.1.conv2.1.bias",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.conv2.1.bias", "fc.weight", "fc.bias"}) {
    EXPECT_EQ(state.count(name), 1u) << name;
  }
  EXPECT_EQ(state.count("layer1.0.downsample.0.weight"), 0u);
  EXPECT_EQ(state.at("stem.0.weight").sizes(), (std::vector<int64_t>{6, 3, 1, 7, 7}));
  EXPECT_EQ(state.at("stem.3.weight").sizes(), (std::vector<int64_t>{8, 6, 3, 1, 1}));
  // Block 8 -> 16: midplanes 28 for both Conv2Plus1D of the block.
  EXPECT_EQ(state.at("layer2.0.conv1.0.0.weight").sizes(), (std::vector<int64_t>{28, 8, 1, 3, 3}));
  EXPECT_EQ(state.at("layer2.0.conv1.0.3.weight").sizes(),
            (std::vector<int64_t>{16, 28, 3, 1, 1}));
  EXPECT_EQ(state.at("layer2.0.conv2.0.0.weight").sizes(),
            (std::vector<int64_t>{28, 16, 1, 3, 3}));
  EXPECT_EQ(state.at("layer2.0.downsample.0.weight").sizes(),
            (std::vector<int64_t>{16, 8, 1, 1, 1}));
  EXPECT_EQ(state.at("stem.1.num_batches_tracked").scalar_type(), torch::kLong);

  auto deep = Build(R2plus1dConfig(34, 0.125f, 10));
  ASSERT_NE(deep, nullptr);
  const auto deep_state = ModuleStateDict(*deep);
  EXPECT_EQ(deep_state.size(), 416u);
  EXPECT_EQ(deep_state.count("layer3.5.conv2.0.3.weight"), 1u);
  EXPECT_EQ(deep_state.count("layer3.6.conv1.0.0.weight"), 0u);
  EXPECT_EQ(deep_state.count("layer4.2.conv2.1.running_var"), 1u);
}

TEST(R2plus1dTest, InitialisationFollowsTorchvision) {
  torch::manual_seed(1);
  auto model = Build(R2plus1dConfig(18, 1.0f, 400));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  EXPECT_TRUE(torch::all(state.at("layer3.0.conv1.0.1.weight") == 1).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer3.0.conv1.1.bias") == 0).item<bool>());
  EXPECT_TRUE(torch::all(state.at("fc.bias") == 0).item<bool>());
  EXPECT_NEAR(state.at("fc.weight").std().item<double>(), 0.01, 0.001);
  // kaiming_normal_, fan_out, relu: std = sqrt(2 / (out * kT * kH * kW)).
  EXPECT_NEAR(state.at("layer4.1.conv2.0.0.weight").std().item<double>(),
              std::sqrt(2.0 / (1152 * 9)), 0.0005);
  EXPECT_NEAR(state.at("layer4.1.conv2.0.3.weight").std().item<double>(),
              std::sqrt(2.0 / (512 * 3)), 0.001);
}

TEST(R2plus1dTest, BackwardReachesEveryParameter) {
  torch::manual_seed(0);
  auto model = Build(R2plus1dConfig(18, 0.125f, 5, 0.5f));
  ASSERT_NE(model, nullptr);
  model->train();
  const torch::Tensor clip = torch::randn({2, 3, 4, 32, 32});
  const torch::Tensor loss =
      torch::nn::functional::cross_entropy(model->forward(clip), torch::tensor({1, 3}));
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  EXPECT_GT(model->named_parameters()["stem.0.weight"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_EQ(ModuleStateDict(*model).at("stem.4.num_batches_tracked").item<int64_t>(), 1);
}

TEST(R2plus1dTest, RegistryCreatesR2plus1d) {
  EXPECT_TRUE(BackboneRegistry().Contains("r2plus1d"));
  auto model = CreateBackbone(R2plus1dConfig(34, 0.125f, 3));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_classes(), 3);
  // The options field name picks the factory through CreateBackbone too.
  BackboneConfig config;
  config.mutable_r2plus1d();
  config.set_num_classes(4);
  config.mutable_r2plus1d()->set_width_multiplier(0.125f);
  auto created = CreateBackbone(config);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ((*created)->num_classes(), 4);
}

TEST(R2plus1dTest, BadDepthNamesTheField) {
  for (int depth : {0, 10, 19, 50, -18}) {
    auto model = CreateBackbone(R2plus1dConfig(depth, 0.125f, 3));
    ASSERT_FALSE(model.ok()) << depth;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.r2plus1d.depth"));
  }
  auto model = CreateBackbone(R2plus1dConfig(50, 0.125f, 3));
  EXPECT_THAT(model.status().message(), HasSubstr("50"));
}

TEST(R2plus1dTest, BadWidthNamesTheField) {
  for (float w : {0.0f, -1.0f, 8.5f, std::nanf("")}) {
    auto model = CreateBackbone(R2plus1dConfig(18, w, 3));
    ASSERT_FALSE(model.ok()) << w;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.r2plus1d.width_multiplier"));
  }
  auto model = CreateBackbone(R2plus1dConfig(34, 8.5f, 3));
  EXPECT_THAT(model.status().message(), HasSubstr("8.5"));
}

TEST(R2plus1dTest, BadDropoutAndClassesNameTheField) {
  auto model = CreateBackbone(R2plus1dConfig(18, 0.125f, 3, 1.0f));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.dropout"));
  model = CreateBackbone(R2plus1dConfig(18, 0.125f, 0));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.num_classes"));
}

TEST(R2plus1dTest, LoadStateDictRoundTrips) {
  torch::manual_seed(0);
  auto a = Build(R2plus1dConfig(18, 0.125f, 4));
  torch::manual_seed(1);
  auto b = Build(R2plus1dConfig(18, 0.125f, 4));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(LoadStateDict(*b, ModuleStateDict(*a), /*strict=*/true).ok());
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({1, 3, 4, 16, 16});
  EXPECT_TRUE(torch::equal(a->forward(clip), b->forward(clip)));
  // A depth-18 state dict does not fit depth 34 (missing layer*.2+ blocks).
  auto deep = Build(R2plus1dConfig(34, 0.125f, 4));
  ASSERT_NE(deep, nullptr);
  EXPECT_FALSE(LoadStateDict(*deep, ModuleStateDict(*a), /*strict=*/true).ok());
}

}  // namespace
}  // namespace tb
