#include "backbones/r3d.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "backbones/state_dict_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

BackboneConfig R3dConfig(float width, int num_classes, float dropout = 0.0f) {
  BackboneConfig config;
  config.mutable_r3d18()->set_width_multiplier(width);
  config.set_num_classes(num_classes);
  config.set_dropout(dropout);
  return config;
}

std::shared_ptr<VideoBackbone> Build(const BackboneConfig& config) {
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? *model : nullptr;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

TEST(R3dTest, ChannelsLastIsTheSameModelInAnotherLayout) {
  BackboneConfig config = R3dConfig(0.125f, 5);
  torch::manual_seed(3);
  auto plain = Build(config);
  config.set_channels_last(true);
  torch::manual_seed(3);
  auto last = Build(config);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(last, nullptr);
  plain->eval();
  last->eval();
  for (const auto& [name, tensor] : ModuleStateDict(*last)) {
    if (tensor.dim() == 5) {
      EXPECT_TRUE(tensor.is_contiguous(at::MemoryFormat::ChannelsLast3d)) << name;
    }
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 8, 32, 32});
  const torch::Tensor a = plain->forward(clip);
  const torch::Tensor b = last->forward(clip);
  EXPECT_LT((a - b).abs().max().item<float>(), 1e-4f);
  EXPECT_GT(a.abs().max().item<float>(), 1e-3f);  // the comparison is not of zeros
}

TEST(R3dTest, StageWidths) {
  EXPECT_THAT(R3dStageWidths(1.0f), ElementsAre(64, 128, 256, 512));
  EXPECT_THAT(R3dStageWidths(0.125f), ElementsAre(8, 16, 32, 64));
  EXPECT_THAT(R3dStageWidths(0.001f), ElementsAre(1, 1, 1, 1));
}

TEST(R3dTest, OutputShapesAtWidthOneEighth) {
  torch::manual_seed(0);
  auto model = Build(R3dConfig(0.125f, 7));
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

TEST(R3dTest, ParameterCountMatchesTorchvision) {
  auto model = Build(R3dConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  // torchvision.models.video.r3d_18(num_classes=400).
  EXPECT_EQ(CountParameters(*model), 33371472);
  auto tiny = Build(R3dConfig(0.125f, 10));
  ASSERT_NE(tiny, nullptr);
  EXPECT_EQ(CountParameters(*tiny), 523010);
}

// torchvision.models.video.resnet.VideoResNet(BasicBlock, [Conv3DSimple] * 4,
// [3, 4, 6, 3], BasicStem, num_classes=101), counted with torch 1.13 /
// torchvision 0.14: sum(p.numel() for p in m.parameters()); its state_dict()
// has 218 entries.
constexpr int64_t kTorchvisionR3d34Params101 = 63527717;

TEST(R3dTest, Depth34ParameterCountMatchesTorchvision) {
  BackboneConfig config = R3dConfig(1.0f, 101);
  config.mutable_r3d18()->set_depth(34);
  auto model = Build(config);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(CountParameters(*model), kTorchvisionR3d34Params101);
  EXPECT_EQ(ModuleStateDict(*model).size(), 218u);
  EXPECT_EQ(ModuleStateDict(*model).count("layer3.5.conv2.1.running_var"), 1u);
  EXPECT_EQ(model->feature_dim(), 512);
  // TCLR's layer4 change adds no parameters.
  config.mutable_r3d18()->set_tclr_temporal_layer4(true);
  auto tclr = Build(config);
  ASSERT_NE(tclr, nullptr);
  EXPECT_EQ(CountParameters(*tclr), kTorchvisionR3d34Params101);
}

TEST(R3dTest, BlocksPerStage) {
  EXPECT_THAT(R3dBlocksPerStage(18), ElementsAre(2, 2, 2, 2));
  EXPECT_THAT(R3dBlocksPerStage(34), ElementsAre(3, 4, 6, 3));
  BackboneConfig depth50;
  depth50.mutable_r3d18()->set_depth(50);
  depth50.set_num_classes(3);
  EXPECT_EQ(CreateBackbone(depth50).status().message(),
            "config field backbone.r3d18.depth = 50: must be 18 (R3D-18) or 34 (R3D-34)");
}

TEST(R3dTest, TclrLayer4KeepsTemporalResolution) {
  BackboneConfig plain_config = R3dConfig(0.125f, 10);
  BackboneConfig tclr_config = plain_config;
  tclr_config.mutable_r3d18()->set_tclr_temporal_layer4(true);
  torch::manual_seed(0);
  auto plain = Build(plain_config);
  torch::manual_seed(0);
  auto tclr = Build(tclr_config);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(tclr, nullptr);
  plain->eval();
  tclr->eval();
  EXPECT_EQ(CountParameters(*tclr), CountParameters(*plain));
  // Same names and shapes: TCLR checkpoints and r3d_18 ones load into either.
  const auto plain_state = ModuleStateDict(*plain);
  const auto tclr_state = ModuleStateDict(*tclr);
  ASSERT_EQ(tclr_state.size(), plain_state.size());
  for (const auto& [name, t] : plain_state) {
    ASSERT_EQ(tclr_state.count(name), 1u) << name;
    EXPECT_EQ(tclr_state.at(name).sizes(), t.sizes()) << name;
  }
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 16, 112, 112});
  // 16 frames: layer2 -> 8, layer3 -> 4, layer4 -> 2 (plain) or 4 (TCLR).
  EXPECT_EQ(plain->FeatureMap(clip).sizes(), (std::vector<int64_t>{2, 64, 2, 7, 7}));
  EXPECT_EQ(tclr->FeatureMap(clip).sizes(), (std::vector<int64_t>{2, 64, 4, 7, 7}));
  EXPECT_EQ(tclr->forward(clip).sizes(), (std::vector<int64_t>{2, 10}));
}

TEST(R3dTest, BadDepthNamesTheField) {
  for (int depth : {0, 10, 50, -18}) {
    BackboneConfig config = R3dConfig(0.125f, 3);
    config.mutable_r3d18()->set_depth(depth);
    auto model = CreateBackbone(config);
    ASSERT_FALSE(model.ok()) << depth;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.r3d18.depth"));
    EXPECT_THAT(model.status().message(), HasSubstr(absl::StrCat(depth)));
  }
}

// Not a benchmark, but the log records what the CPU demo model costs.
TEST(R3dTest, ForwardTimeAtWidthOneEighth) {
  torch::manual_seed(0);
  auto model = Build(R3dConfig(0.125f, 10));
  ASSERT_NE(model, nullptr);
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({4, 3, 8, 64, 64});
  model->forward(clip);  // warm-up: first-call allocations and kernel selection
  constexpr int kRuns = 5;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRuns; ++i) {
    EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{4, 10}));
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      kRuns;
  std::cout << "r3d18 w=0.125 forward [4,3,8,64,64]: " << ms << " ms (" << torch::get_num_threads()
            << " threads)\n";
}

TEST(R3dTest, NamesMatchTorchvision) {
  auto model = Build(R3dConfig(0.125f, 10));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  // 62 parameters + 60 BatchNorm buffers, as in torchvision's state_dict().
  EXPECT_EQ(state.size(), 122u);
  for (const char* name :
       {"stem.0.weight", "stem.1.weight", "stem.1.bias", "stem.1.running_mean",
        "stem.1.running_var", "stem.1.num_batches_tracked", "layer1.0.conv1.0.weight",
        "layer1.0.conv1.1.running_var", "layer1.1.conv2.0.weight", "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked", "layer4.1.conv2.1.bias", "fc.weight",
        "fc.bias"}) {
    EXPECT_EQ(state.count(name), 1u) << name;
  }
  EXPECT_EQ(state.count("layer1.0.downsample.0.weight"), 0u);
  EXPECT_EQ(state.at("stem.0.weight").sizes(), (std::vector<int64_t>{8, 3, 3, 7, 7}));
  EXPECT_EQ(state.at("stem.1.num_batches_tracked").scalar_type(), torch::kLong);
}

TEST(R3dTest, InitialisationFollowsTorchvision) {
  torch::manual_seed(1);
  auto model = Build(R3dConfig(1.0f, 400));
  ASSERT_NE(model, nullptr);
  const auto state = ModuleStateDict(*model);
  EXPECT_TRUE(torch::all(state.at("layer3.0.conv1.1.weight") == 1).item<bool>());
  EXPECT_TRUE(torch::all(state.at("layer3.0.conv1.1.bias") == 0).item<bool>());
  EXPECT_TRUE(torch::all(state.at("fc.bias") == 0).item<bool>());
  EXPECT_NEAR(state.at("fc.weight").std().item<double>(), 0.01, 0.001);
  // kaiming_normal_, fan_out, relu: std = sqrt(2 / (out * 3 * 3 * 3)).
  const torch::Tensor w = state.at("layer4.1.conv2.0.weight");
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / (512 * 27)), 0.0005);
}

TEST(R3dTest, BackwardReachesEveryParameter) {
  torch::manual_seed(0);
  auto model = Build(R3dConfig(0.125f, 5, 0.5f));
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
  // Training mode updates the running statistics.
  EXPECT_EQ(ModuleStateDict(*model).at("stem.1.num_batches_tracked").item<int64_t>(), 1);
}

TEST(R3dTest, RegistryCreatesR3d18) {
  EXPECT_TRUE(BackboneRegistry().Contains("r3d18"));
  auto model = CreateBackbone(R3dConfig(0.125f, 3));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->num_classes(), 3);
}

TEST(R3dTest, UnsetKindListsOptions) {
  BackboneConfig config;
  config.set_num_classes(3);
  auto model = CreateBackbone(config);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.status().message(), HasSubstr("r3d18"));
}

TEST(R3dTest, BadWidthNamesTheField) {
  for (float w : {0.0f, -1.0f, 8.5f, std::nanf("")}) {
    auto model = CreateBackbone(R3dConfig(w, 3));
    ASSERT_FALSE(model.ok()) << w;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(model.status().message(), HasSubstr("backbone.r3d18.width_multiplier"));
  }
  auto model = CreateBackbone(R3dConfig(8.5f, 3));
  EXPECT_THAT(model.status().message(), HasSubstr("8.5"));
}

TEST(R3dTest, BadDropoutAndClassesNameTheField) {
  auto model = CreateBackbone(R3dConfig(0.125f, 3, 1.0f));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.dropout"));
  model = CreateBackbone(R3dConfig(0.125f, 0));
  ASSERT_FALSE(model.ok());
  EXPECT_THAT(model.status().message(), HasSubstr("backbone.num_classes"));
}

TEST(LoadStateDictTest, RoundTripsBetweenModels) {
  torch::manual_seed(0);
  auto a = Build(R3dConfig(0.125f, 4));
  torch::manual_seed(1);
  auto b = Build(R3dConfig(0.125f, 4));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(LoadStateDict(*b, ModuleStateDict(*a), /*strict=*/true).ok());
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({1, 3, 4, 16, 16});
  EXPECT_TRUE(torch::equal(a->forward(clip), b->forward(clip)));
}

TEST(LoadStateDictTest, ReportsMissingUnexpectedAndShapes) {
  auto model = Build(R3dConfig(0.125f, 4));
  ASSERT_NE(model, nullptr);
  auto state = ModuleStateDict(*model);
  const torch::Tensor fc_before = state.at("fc.weight").clone();
  std::map<std::string, torch::Tensor> bad;
  for (const auto& [name, t] : state) bad[name] = t.clone();
  bad.erase("stem.1.running_mean");
  bad["head.weight"] = torch::zeros({1});
  bad["fc.weight"] = torch::zeros({5, 64});
  bad["fc.bias"] = torch::full({4}, 3.0);

  absl::Status s = LoadStateDict(*model, bad, /*strict=*/true);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("missing 1: stem.1.running_mean"));
  EXPECT_THAT(s.message(), HasSubstr("unexpected 1: head.weight"));
  EXPECT_THAT(s.message(), HasSubstr("fc.weight (module [4, 64], state dict [5, 64])"));
  // Nothing was copied.
  EXPECT_TRUE(torch::equal(ModuleStateDict(*model).at("fc.bias"), torch::zeros({4})));

  // Non-strict tolerates missing and unexpected names, never wrong shapes.
  EXPECT_FALSE(LoadStateDict(*model, bad, /*strict=*/false).ok());
  bad.erase("fc.weight");
  ASSERT_TRUE(LoadStateDict(*model, bad, /*strict=*/false).ok());
  EXPECT_TRUE(torch::equal(ModuleStateDict(*model).at("fc.bias"), torch::full({4}, 3.0)));
  EXPECT_TRUE(torch::equal(ModuleStateDict(*model).at("fc.weight"), fc_before));
}

TEST(StateDictIoTest, WriteThenRead) {
  std::map<std::string, torch::Tensor> state = {
      {"a.weight", torch::arange(12, torch::kFloat32).reshape({3, 4}).t()},
      {"a.num_batches_tracked", torch::tensor(5, torch::kLong)},
  };
  const std::string path = TempPath("roundtrip.pt");
  ASSERT_TRUE(WritePyTorchStateDict(path, state).ok());
  auto read = ReadPyTorchStateDict(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_TRUE(torch::equal(read->at("a.weight"), state.at("a.weight")));
  EXPECT_EQ(read->at("a.num_batches_tracked").item<int64_t>(), 5);
}

TEST(StateDictIoTest, Errors) {
  auto missing = ReadPyTorchStateDict(TempPath("does_not_exist.pt"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  const std::string garbage = TempPath("garbage.pt");
  std::FILE* f = std::fopen(garbage.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("not a zip file", f);
  std::fclose(f);
  auto bad = ReadPyTorchStateDict(garbage);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr(garbage));
}

TEST(R3dTest, StageFeatureMapsEndWithFeatureMap) {
  auto model = CreateBackbone(R3dConfig(0.125f, 3));
  ASSERT_TRUE(model.ok());
  (*model)->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor clip = torch::randn({2, 3, 8, 32, 32});
  const auto stages = (*model)->StageFeatureMaps(clip);
  ASSERT_EQ(stages.size(), 4u);
  // Widths 8, 16, 32, 64; each stage after the first halves T, H and W.
  EXPECT_EQ(stages[0].sizes(), (std::vector<int64_t>{2, 8, 8, 16, 16}));
  EXPECT_EQ(stages[1].sizes(), (std::vector<int64_t>{2, 16, 4, 8, 8}));
  EXPECT_EQ(stages[2].sizes(), (std::vector<int64_t>{2, 32, 2, 4, 4}));
  EXPECT_TRUE(torch::equal(stages[3], (*model)->FeatureMap(clip)));
}

}  // namespace
}  // namespace tb
