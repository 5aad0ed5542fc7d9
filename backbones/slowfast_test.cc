#include "backbones/slowfast.h"

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

// What pytorchvideo's create_slowfast (model_depth 50, model_num_class 400,
// defaults) builds, counted from its source: see FormulaParams. Commonly
// quoted as "34.57M" (pytorchvideo model zoo). The figure 34,566,984 that
// was quoted to us differs by 496 and could not be reproduced from either
// pytorchvideo's or PySlowFast's definition.
constexpr int64_t kSlowFastR50Params400 = 34566488;

BackboneConfig SlowFastConfig(float width, int num_classes, float dropout = 0.0f) {
  BackboneConfig config;
  config.mutable_slowfast_r50()->set_width_multiplier(width);
  config.set_num_classes(num_classes);
  config.set_dropout(dropout);
  return config;
}

std::shared_ptr<VideoBackbone> Build(const BackboneConfig& config) {
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

// Parameter count of the architecture, from its definition (width 1): convs
// have no bias, every BatchNorm has gamma and beta, fc has a bias.
int64_t FormulaParams(int64_t num_classes, int64_t beta_inv = 8, int64_t ratio = 2,
                      int64_t fusion_kernel = 7) {
  const int64_t blocks[4] = {3, 4, 6, 3};
  const int64_t slow_inner[4] = {64, 128, 256, 512};
  const int64_t slow_kt[4] = {1, 1, 3, 3};
  int64_t fast_inner[4];
  for (int s = 0; s < 4; ++s) fast_inner[s] = slow_inner[s] / beta_inv;
  auto stage = [&](int64_t in, int64_t c, int64_t n_blocks, int64_t kt) {
    int64_t n = 0;
    const int64_t out = 4 * c;
    for (int b = 0; b < n_blocks; ++b) {
      n += in * c * kt + 2 * c;             // conv1 (kt x 1 x 1) + bn1
      n += c * c * 9 + 2 * c;               // conv2 (1 x 3 x 3) + bn2
      n += c * out + 2 * out;               // conv3 (1 x 1 x 1) + bn3
      if (b == 0) n += in * out + 2 * out;  // projection shortcut + bn
      in = out;
    }
    return n;
  };
  // Lateral: conv (c -> ratio * c, k x 1 x 1) + bn.
  auto fuse = [&](int64_t c) { return c * ratio * c * fusion_kernel + 2 * ratio * c; };

  const int64_t slow_stem = slow_inner[0], fast_stem = fast_inner[0];
  int64_t n = 3 * slow_stem * 1 * 7 * 7 + 2 * slow_stem;  // slow stem 1x7x7 + bn
  n += 3 * fast_stem * 5 * 7 * 7 + 2 * fast_stem;         // fast stem 5x7x7 + bn
  n += fuse(fast_stem);
  int64_t slow_in = slow_stem + ratio * fast_stem, fast_in = fast_stem;
  for (int s = 0; s < 4; ++s) {
    n += stage(slow_in, slow_inner[s], blocks[s], slow_kt[s]);
    n += stage(fast_in, fast_inner[s], blocks[s], 3);
    const int64_t slow_out = 4 * slow_inner[s], fast_out = 4 * fast_inner[s];
    if (s < 3) {
      n += fuse(fast_out);
      slow_in = slow_out + ratio * fast_out;
    }
    fast_in = fast_out;
  }
  const int64_t d = 4 * slow_inner[3] + 4 * fast_inner[3];  // 2304
  return n + d * num_classes + num_classes;                 // fc
}

TEST(SlowFastTest, Widths) {
  SlowFastOptions options;
  SlowFastWidths w = SlowFastR50Widths(options);
  EXPECT_EQ(w.slow_stem, 64);
  EXPECT_EQ(w.fast_stem, 8);
  EXPECT_THAT(w.slow_inner, ElementsAre(64, 128, 256, 512));
  EXPECT_THAT(w.fast_inner, ElementsAre(8, 16, 32, 64));
  EXPECT_EQ(w.feature_dim, 2304);
  options.set_width_multiplier(0.25f);
  w = SlowFastR50Widths(options);
  EXPECT_THAT(w.slow_inner, ElementsAre(16, 32, 64, 128));
  EXPECT_THAT(w.fast_inner, ElementsAre(2, 4, 8, 16));
  EXPECT_EQ(w.feature_dim, 576);
  options.set_width_multiplier(0.01f);
  w = SlowFastR50Widths(options);
  EXPECT_THAT(w.fast_inner, ElementsAre(1, 1, 1, 1));
}

TEST(SlowFastTest, OutputShapesAtWidthOneQuarter) {
  torch::manual_seed(0);
  auto model = Build(SlowFastConfig(0.25f, 7));
  ASSERT_NE(model, nullptr);
  model->eval();
  EXPECT_EQ(model->feature_dim(), 512 + 64);
  EXPECT_EQ(model->num_classes(), 7);
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 16, 64, 64});
  // Slow 16 / 8 = 2 frames; space /32 (64 -> 2); channels 2048w + 256w.
  const torch::Tensor map = model->FeatureMap(clip);
  EXPECT_EQ(map.sizes(), (std::vector<int64_t>{2, 576, 2, 2, 2}));
  const torch::Tensor features = model->Features(clip);
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{2, 576}));
  EXPECT_EQ(model->Logits(features).sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{2, 7}));
  // The pooled features are the concatenated global averages of the two
  // pathways; the fast part has had its 16 frames pooled to 2 first, which
  // leaves the global average unchanged.
  EXPECT_TRUE(torch::allclose(features, map.mean({2, 3, 4})));
}

TEST(SlowFastTest, OtherAlphaAndClipLengthCheck) {
  torch::manual_seed(0);
  BackboneConfig config = SlowFastConfig(0.125f, 3);
  config.mutable_slowfast_r50()->set_alpha(4);
  auto model = Build(config);
  ASSERT_NE(model, nullptr);
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->FeatureMap(torch::randn({1, 3, 8, 32, 32})).sizes(),
            (std::vector<int64_t>{1, 256 + 32, 2, 1, 1}));
  try {
    model->FeatureMap(torch::randn({1, 3, 10, 32, 32}));
    FAIL() << "expected an error for T = 10, alpha = 4";
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("clip length T = 10"));
    EXPECT_THAT(e.what(), HasSubstr("backbone.slowfast_r50.alpha = 4"));
  }
}

TEST(SlowFastTest, ParameterCountMatchesFormula) {
  auto model = Build(SlowFastConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(FormulaParams(400), kSlowFastR50Params400);
  EXPECT_EQ(CountParameters(*model), FormulaParams(400));
  // The head is Linear(2304, 400).
  EXPECT_EQ(ModuleStateDict(*model).at("fc.weight").sizes(), (std::vector<int64_t>{400, 2304}));
}

TEST(SlowFastTest, ModuleNamesAndLateralShapes) {
  auto model = Build(SlowFastConfig(1.0f, 10));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  // Lateral convs: 8 -> 16, 32 -> 64, 64 -> 128, 128 -> 256, 7x1x1.
  EXPECT_EQ(state.at("fuse_stem.conv.weight").sizes(), (std::vector<int64_t>{16, 8, 7, 1, 1}));
  EXPECT_EQ(state.at("fuse_layer1.conv.weight").sizes(),
            (std::vector<int64_t>{64, 32, 7, 1, 1}));
  EXPECT_EQ(state.at("fuse_layer3.conv.weight").sizes(),
            (std::vector<int64_t>{256, 128, 7, 1, 1}));
  EXPECT_EQ(state.count("fuse_layer4.conv.weight"), 0u);
  EXPECT_EQ(state.count("fuse_stem.bn.running_mean"), 1u);
  // Slow stages read the concatenation: 80, 320, 640, 1280 channels.
  EXPECT_EQ(state.at("slow_layer1.0.conv1.weight").sizes(),
            (std::vector<int64_t>{64, 80, 1, 1, 1}));
  EXPECT_EQ(state.at("slow_layer1.0.downsample.0.weight").sizes(),
            (std::vector<int64_t>{256, 80, 1, 1, 1}));
  EXPECT_EQ(state.at("slow_layer2.0.conv1.weight").sizes(),
            (std::vector<int64_t>{128, 320, 1, 1, 1}));
  EXPECT_EQ(state.at("slow_layer3.0.conv1.weight").sizes(),
            (std::vector<int64_t>{256, 640, 3, 1, 1}));
  EXPECT_EQ(state.at("slow_layer4.0.conv1.weight").sizes(),
            (std::vector<int64_t>{512, 1280, 3, 1, 1}));
  EXPECT_EQ(state.at("slow_layer2.1.conv1.weight").sizes(),
            (std::vector<int64_t>{128, 512, 1, 1, 1}));
  // Fast: temporal kernel 5 in the stem, 3 in every conv1.
  EXPECT_EQ(state.at("fast_stem.conv.weight").sizes(), (std::vector<int64_t>{8, 3, 5, 7, 7}));
  EXPECT_EQ(state.at("slow_stem.conv.weight").sizes(), (std::vector<int64_t>{64, 3, 1, 7, 7}));
  EXPECT_EQ(state.at("fast_layer1.0.conv1.weight").sizes(),
            (std::vector<int64_t>{8, 8, 3, 1, 1}));
  EXPECT_EQ(state.at("fast_layer4.2.conv3.weight").sizes(),
            (std::vector<int64_t>{256, 64, 1, 1, 1}));
  EXPECT_EQ(state.at("fast_layer4.0.conv2.weight").sizes(),
            (std::vector<int64_t>{64, 64, 1, 3, 3}));
}

TEST(SlowFastTest, BackwardReachesBothPathways) {
  torch::manual_seed(0);
  auto model = Build(SlowFastConfig(0.125f, 5, 0.5f));
  ASSERT_NE(model, nullptr);
  // bn3 is zero-initialised (residual branches start at zero); give it a
  // value so every path carries gradient.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      if (p.key().find("bn3.weight") != std::string::npos) p.value().fill_(0.5);
    }
  }
  model->train();
  const torch::Tensor clip = torch::randn({2, 3, 16, 32, 32});
  const torch::Tensor loss =
      torch::nn::functional::cross_entropy(model->forward(clip), torch::tensor({1, 3}));
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_TRUE(torch::isfinite(p.value().grad()).all().item<bool>()) << p.key();
  }
  auto params = model->named_parameters();
  for (const char* name :
       {"slow_stem.conv.weight", "fast_stem.conv.weight", "slow_layer1.0.conv1.weight",
        "fast_layer1.0.conv1.weight", "slow_layer4.2.conv2.weight", "fast_layer4.2.conv2.weight",
        "fuse_stem.conv.weight", "fuse_layer1.conv.weight", "fuse_layer3.conv.weight",
        "fc.weight"}) {
    EXPECT_GT(params[name].grad().abs().sum().item<double>(), 0.0) << name;
  }
}

TEST(SlowFastTest, Registered) {
  EXPECT_TRUE(BackboneRegistry().Contains("slowfast_r50"));
  auto model = CreateBackbone(SlowFastConfig(0.125f, 3));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_classes(), 3);
  EXPECT_EQ((*model)->feature_dim(), 256 + 32);
}

TEST(SlowFastTest, BadOptionsNameTheField) {
  for (float w : {0.0f, -1.0f, 8.5f, std::nanf("")}) {
    auto model = CreateBackbone(SlowFastConfig(w, 3));
    ASSERT_FALSE(model.ok()) << w;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.slowfast_r50.width_multiplier"));
  }
  struct Case {
    const char* field;
    void (SlowFastOptions::*set)(int32_t);
    int32_t value;
  };
  for (const Case& c : {Case{"alpha", &SlowFastOptions::set_alpha, 0},
                        Case{"alpha", &SlowFastOptions::set_alpha, 65},
                        Case{"beta_inv", &SlowFastOptions::set_beta_inv, 0},
                        Case{"fusion_conv_channel_ratio",
                             &SlowFastOptions::set_fusion_conv_channel_ratio, 0},
                        Case{"fusion_kernel", &SlowFastOptions::set_fusion_kernel, 0},
                        Case{"fusion_kernel", &SlowFastOptions::set_fusion_kernel, 6}}) {
    BackboneConfig config = SlowFastConfig(0.125f, 3);
    (config.mutable_slowfast_r50()->*c.set)(c.value);
    auto model = CreateBackbone(config);
    ASSERT_FALSE(model.ok()) << c.field << " = " << c.value;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(),
                HasSubstr(std::string("backbone.slowfast_r50.") + c.field));
  }
  auto model = CreateBackbone(SlowFastConfig(0.25f, 3, 1.0f));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.dropout"));
  model = CreateBackbone(SlowFastConfig(0.25f, 0));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.num_classes"));
}

}  // namespace
}  // namespace tb
