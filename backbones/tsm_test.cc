#include "backbones/tsm.h"

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "backbones/state_dict_io.h"
#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

BackboneConfig TsmConfig(float width, int num_classes, float dropout = 0.0f) {
  BackboneConfig config;
  config.mutable_tsm_r18()->set_width_multiplier(width);
  config.set_num_classes(num_classes);
  config.set_dropout(dropout);
  return config;
}

std::shared_ptr<VideoBackbone> Build(const BackboneConfig& config) {
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

TEST(TemporalShiftTest, HandBuiltTensor) {
  // One clip, 3 frames, 4 channels, 1x1 pixels; x[t][c] = 10 t + c + 1 so
  // that the zero padding is distinguishable. shift_div 4: fold = 1.
  const torch::Tensor x = torch::tensor({1.f, 2.f, 3.f, 4.f,     //
                                         11.f, 12.f, 13.f, 14.f,  //
                                         21.f, 22.f, 23.f, 24.f})
                              .reshape({3, 4, 1, 1});
  // Channel 0 takes frame t+1 (zero at the end), channel 1 frame t-1 (zero
  // at the start), channels 2 and 3 are unchanged.
  const torch::Tensor expected = torch::tensor({11.f, 0.f, 3.f, 4.f,    //
                                                21.f, 2.f, 13.f, 14.f,  //
                                                0.f, 12.f, 23.f, 24.f})
                                     .reshape({3, 4, 1, 1});
  const torch::Tensor out = TemporalShift(x, /*num_frames=*/3, /*shift_div=*/4);
  EXPECT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(torch::equal(out, expected)) << out.flatten();
  // Out of place: the input is untouched.
  EXPECT_EQ(x[0][0].item<float>(), 1.f);
}

TEST(TemporalShiftTest, TwoClipsDoNotMixAndMatchLoopReference) {
  // 2 clips x 5 frames, 16 channels, 2x3 pixels, shift_div 8: fold = 2.
  const int64_t clips = 2, frames = 5, c = 16, fold = 2;
  const torch::Tensor x =
      torch::arange(clips * frames * c * 6, torch::kFloat32).add_(1).reshape({clips * frames, c, 2, 3});
  torch::Tensor expected = torch::zeros_like(x);
  for (int64_t n = 0; n < clips; ++n) {
    for (int64_t t = 0; t < frames; ++t) {
      const int64_t i = n * frames + t;
      for (int64_t ch = 0; ch < c; ++ch) {
        if (ch < fold) {
          if (t + 1 < frames) expected[i][ch] = x[i + 1][ch];
        } else if (ch < 2 * fold) {
          if (t > 0) expected[i][ch] = x[i - 1][ch];
        } else {
          expected[i][ch] = x[i][ch];
        }
      }
    }
  }
  EXPECT_TRUE(torch::equal(TemporalShift(x, frames, 8), expected));
  // shift_div 4: channels [4, 16) unchanged, [0, 8) all changed.
  const torch::Tensor div4 = TemporalShift(x, frames, 4);
  EXPECT_TRUE(torch::equal(div4.slice(1, 8, c), x.slice(1, 8, c)));
  EXPECT_TRUE(torch::all(div4.slice(1, 0, 8) != x.slice(1, 0, 8)).item<bool>());
}

TEST(TemporalShiftTest, EdgeCases) {
  const torch::Tensor x = torch::randn({6, 8, 2, 2});
  // fold = 8 / 16 = 0: nothing is shifted.
  EXPECT_TRUE(torch::equal(TemporalShift(x, 3, 16), x));
  // One frame per clip: shifted channels are all zero, the rest unchanged.
  const torch::Tensor single = TemporalShift(x, 1, 4);
  EXPECT_TRUE(torch::equal(single.slice(1, 0, 4), torch::zeros({6, 4, 2, 2})));
  EXPECT_TRUE(torch::equal(single.slice(1, 4, 8), x.slice(1, 4, 8)));
  // Frames not a multiple of num_frames, and shift_div < 2, are errors.
  EXPECT_THROW(TemporalShift(x, 4, 8), c10::Error);
  EXPECT_THROW(TemporalShift(x, 3, 1), c10::Error);
}

TEST(TemporalShiftTest, GradientIsTheTransposedShift) {
  const torch::Tensor x = torch::randn({4, 8, 1, 1}, torch::requires_grad());
  const torch::Tensor weight = torch::randn({4, 8, 1, 1});
  (TemporalShift(x, 4, 4) * weight).sum().backward();
  // fold 2. d/dx of sum(w * shift(x)): channels [0, 2) of frame t feed frame
  // t-1, so receive its weight; channels [2, 4) feed frame t+1; the rest their
  // own frame.
  torch::Tensor expected = torch::zeros({4, 8, 1, 1});
  for (int t = 0; t < 4; ++t) {
    for (int ch = 0; ch < 8; ++ch) {
      if (ch < 2) {
        if (t > 0) expected[t][ch] = weight[t - 1][ch];
      } else if (ch < 4) {
        if (t < 3) expected[t][ch] = weight[t + 1][ch];
      } else {
        expected[t][ch] = weight[t][ch];
      }
    }
  }
  EXPECT_TRUE(torch::equal(x.grad(), expected));
}

TEST(TsmTest, StageWidths) {
  EXPECT_THAT(TsmStageWidths(1.0f), ElementsAre(64, 128, 256, 512));
  EXPECT_THAT(TsmStageWidths(0.125f), ElementsAre(8, 16, 32, 64));
  EXPECT_THAT(TsmStageWidths(0.001f), ElementsAre(1, 1, 1, 1));
}

TEST(TsmTest, OutputShapesKeepEveryFrame) {
  torch::manual_seed(0);
  auto model = Build(TsmConfig(0.125f, 7));
  ASSERT_NE(model, nullptr);
  model->eval();
  EXPECT_EQ(model->feature_dim(), 64);
  EXPECT_EQ(model->num_classes(), 7);
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 8, 64, 64});
  // No temporal pooling; space is reduced 32x (stem 2, max pool 2, stages 2-4).
  const torch::Tensor map = model->FeatureMap(clip);
  EXPECT_EQ(map.sizes(), (std::vector<int64_t>{2, 64, 8, 2, 2}));
  const torch::Tensor features = model->Features(clip);
  EXPECT_EQ(features.sizes(), (std::vector<int64_t>{2, 64}));
  EXPECT_EQ(model->Logits(features).sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{2, 7}));
  // A single-frame clip works too (shifted channels see zeros).
  EXPECT_EQ(model->FeatureMap(torch::randn({1, 3, 1, 32, 32})).sizes(),
            (std::vector<int64_t>{1, 64, 1, 1, 1}));
}

TEST(TsmTest, FramesOfDifferentClipsDoNotInteract) {
  torch::manual_seed(0);
  auto model = Build(TsmConfig(0.125f, 5));
  ASSERT_NE(model, nullptr);
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clips = torch::randn({3, 3, 4, 32, 32});
  const torch::Tensor batched = model->forward(clips);
  for (int64_t b = 0; b < 3; ++b) {
    EXPECT_TRUE(torch::allclose(model->forward(clips.slice(0, b, b + 1)), batched.slice(0, b, b + 1),
                                1e-5, 1e-5))
        << b;
  }
  // ...while frames of one clip do: changing frame 3 changes frame 2's features.
  torch::Tensor changed = clips.clone();
  changed.select(2, 3).add_(1.0);
  const torch::Tensor before = model->FeatureMap(clips).select(2, 2);
  const torch::Tensor after = model->FeatureMap(changed).select(2, 2);
  EXPECT_GT((before - after).abs().max().item<double>(), 1e-4);
}

TEST(TsmTest, ParameterCountMatchesTorchvisionResnet18) {
  // torchvision.models.resnet18(num_classes=400) with torch 1.13 /
  // torchvision 0.14: 11,689,512 - 600 * 513 (1000 -> 400 classes).
  auto model = Build(TsmConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(CountParameters(*model), 11381712);
  // torchvision.models.resnet18(num_classes=10).
  auto ten = Build(TsmConfig(1.0f, 10));
  ASSERT_NE(ten, nullptr);
  EXPECT_EQ(CountParameters(*ten), 11181642);
  // The shift adds no parameters at any shift_div.
  BackboneConfig div4 = TsmConfig(1.0f, 400);
  div4.mutable_tsm_r18()->set_shift_div(4);
  EXPECT_EQ(CountParameters(*Build(div4)), 11381712);
}

TEST(TsmTest, NamesMatchTorchvision) {
  auto model = Build(TsmConfig(0.125f, 10));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  // 62 parameters + 60 BatchNorm buffers, as torchvision resnet18's state_dict().
  EXPECT_EQ(state.size(), 122u);
  for (const char* name :
       {"conv1.weight", "bn1.weight", "bn1.running_mean", "bn1.num_batches_tracked",
        "layer1.0.conv1.weight", "layer1.0.bn1.running_var", "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.bn2.bias", "fc.weight", "fc.bias"}) {
    EXPECT_EQ(state.count(name), 1u) << name;
  }
  EXPECT_EQ(state.count("layer1.0.downsample.0.weight"), 0u);
  EXPECT_EQ(state.at("conv1.weight").sizes(), (std::vector<int64_t>{8, 3, 7, 7}));
}

TEST(TsmTest, InitialisationFollowsTorchvision) {
  torch::manual_seed(1);
  auto model = Build(TsmConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  EXPECT_TRUE(torch::all(state.at("layer3.0.bn1.weight") == 1).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer3.0.bn1.bias") == 0).item<bool>());
  // kaiming_normal_, fan_out, relu: std = sqrt(2 / (out * 3 * 3)).
  EXPECT_NEAR(state.at("layer4.1.conv2.weight").std().item<double>(), std::sqrt(2.0 / (512 * 9)),
              0.0005);
  // fc keeps nn.Linear's default init: U(-1/sqrt(512), 1/sqrt(512)).
  EXPECT_LE(state.at("fc.weight").abs().max().item<double>(), 1.0 / std::sqrt(512.0));
}

TEST(TsmTest, BackwardReachesEveryParameter) {
  torch::manual_seed(0);
  auto model = Build(TsmConfig(0.125f, 5, 0.5f));
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
  EXPECT_GT(model->named_parameters()["conv1.weight"].grad().abs().sum().item<double>(), 0.0);
  EXPECT_EQ(ModuleStateDict(*model).at("bn1.num_batches_tracked").item<int64_t>(), 1);
}

TEST(TsmTest, RegistryCreatesTsmR18) {
  EXPECT_TRUE(BackboneRegistry().Contains("tsm_r18"));
  auto model = CreateBackbone(TsmConfig(0.125f, 3));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_classes(), 3);
  // Defaults: width 1, shift_div 8.
  BackboneConfig config;
  config.mutable_tsm_r18();
  EXPECT_EQ(config.tsm_r18().width_multiplier(), 1.0f);
  EXPECT_EQ(config.tsm_r18().shift_div(), 8);
}

TEST(TsmTest, BadOptionsNameTheField) {
  for (float w : {0.0f, -1.0f, 8.5f, std::nanf("")}) {
    auto model = CreateBackbone(TsmConfig(w, 3));
    ASSERT_FALSE(model.ok()) << w;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.tsm_r18.width_multiplier"));
  }
  for (int div : {1, 0, -8}) {
    BackboneConfig config = TsmConfig(0.125f, 3);
    config.mutable_tsm_r18()->set_shift_div(div);
    auto model = CreateBackbone(config);
    ASSERT_FALSE(model.ok()) << div;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.tsm_r18.shift_div"));
    EXPECT_THAT(model.status().message(), HasSubstr(absl::StrCat(div)));
  }
  auto model = CreateBackbone(TsmConfig(0.125f, 3, 1.0f));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.dropout"));
  model = CreateBackbone(TsmConfig(0.125f, 0));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.num_classes"));
}

// Parity with torchvision resnet18 plus TSM's official residual shift, both
// run by /usr/bin/python3 (testdata/export_tsm.py).
class TsmParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const auto exported = tb::testing::RunPythonReference(
        "backbones/testdata/export_tsm.py", {OutDir()}, {"torch", "torchvision"});
    if (!exported.ok()) setup_error_ = new std::string(exported.status().ToString());
  }

  static std::string OutDir() { return tb::testing::TmpPath(""); }

  // Our model with torchvision's weights loaded strictly, in eval mode.
  static std::shared_ptr<VideoBackbone> Load(int shift_div) {
    auto weights = ReadPyTorchStateDict(OutDir() + "/tsm_r18_weights.pt");
    EXPECT_TRUE(weights.ok()) << weights.status();
    if (!weights.ok()) return nullptr;
    BackboneConfig config = TsmConfig(1.0f, 10);
    config.mutable_tsm_r18()->set_shift_div(shift_div);
    auto model = Build(config);
    if (model == nullptr) return nullptr;
    const absl::Status loaded = LoadStateDict(*model, *weights, /*strict=*/true);
    EXPECT_TRUE(loaded.ok()) << loaded;
    if (!loaded.ok()) return nullptr;
    model->eval();
    return model;
  }

  static std::map<std::string, torch::Tensor> Io() {
    auto io = ReadPyTorchStateDict(OutDir() + "/tsm_r18_io.pt");
    EXPECT_TRUE(io.ok()) << io.status();
    return io.ok() ? *io : std::map<std::string, torch::Tensor>{};
  }

  static std::string* setup_error_;
};

std::string* TsmParityTest::setup_error_ = nullptr;

TEST_F(TsmParityTest, MatchesTorchvisionResnet18WithResidualShift) {
  ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
  auto model = Load(8);
  ASSERT_NE(model, nullptr);
  const auto io = Io();
  ASSERT_EQ(io.count("logits"), 1u);
  torch::NoGradGuard no_grad;
  const torch::Tensor& input = io.at("input");
  ASSERT_EQ(input.sizes(), (std::vector<int64_t>{1, 3, 4, 64, 64}));
  const torch::Tensor map = model->FeatureMap(input);
  ASSERT_EQ(map.sizes(), io.at("feature_map").sizes());
  const torch::Tensor features = model->Features(input);
  const torch::Tensor logits = model->Logits(features);
  ASSERT_EQ(logits.sizes(), io.at("logits").sizes());
  const double map_diff = (map - io.at("feature_map")).abs().max().item<double>();
  const double feature_diff = (features - io.at("features")).abs().max().item<double>();
  const double logit_diff = (logits - io.at("logits")).abs().max().item<double>();
  const double logit_max = io.at("logits").abs().max().item<double>();
  const double shift_effect = (logits - io.at("logits_noshift")).abs().max().item<double>();
  std::cout << "tsm_r18 shift_div 8: max |feature map - ref| = " << map_diff
            << ", max |features - ref| = " << feature_diff << ", max |logits - ref| = " << logit_diff
            << " (max |logits| = " << logit_max << "), max |logits - unshifted ref| = "
            << shift_effect << "\n";
  EXPECT_LT(map_diff, 1e-4);
  EXPECT_LT(feature_diff, 1e-4);
  EXPECT_LT(logit_diff, 1e-4);
  // Neither trivially passing (all-zero logits) nor insensitive to the shift.
  EXPECT_GT(logit_max, 1e-2);
  EXPECT_GT(shift_effect, 1e-2);
}

TEST_F(TsmParityTest, MatchesAtShiftDiv4) {
  ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
  auto model = Load(4);
  ASSERT_NE(model, nullptr);
  const auto io = Io();
  ASSERT_EQ(io.count("logits_div4"), 1u);
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = model->forward(io.at("input"));
  const double diff = (logits - io.at("logits_div4")).abs().max().item<double>();
  std::cout << "tsm_r18 shift_div 4: max |logits - ref| = " << diff << "\n";
  EXPECT_LT(diff, 1e-4);
  EXPECT_GT((logits - io.at("logits")).abs().max().item<double>(), 1e-2);
}

}  // namespace
}  // namespace tb
