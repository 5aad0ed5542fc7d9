// Parity with torchvision: the Python helper saves a seeded r2plus1d_18 (and
// the [3, 4, 6, 3] VideoResNet with Conv2Plus1D, i.e. R(2+1)D-34) with
// randomised BatchNorm statistics, an input clip and torchvision's outputs;
// loading those weights by name into our R(2+1)D must reproduce the outputs.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "backbones/r2plus1d.h"
#include "backbones/state_dict_io.h"
#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

class R2plus1dParityTest : public ::testing::Test {
 protected:
  // Runs the exporter once for the whole suite (it writes both depths).
  static void SetUpTestSuite() {
    const auto exported = testing::RunPythonReference("backbones/testdata/export_r2plus1d.py",
                                                      {OutDir()}, {"torch", "torchvision"});
    if (!exported.ok()) setup_error_ = new std::string(exported.status().ToString());
  }

  static std::string OutDir() { return testing::TmpPath(""); }

  // Loads torchvision's depth-`depth` weights strictly, runs the saved input
  // and compares features and logits within `logit_tolerance`.
  static void CheckDepth(int depth, double logit_tolerance) {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    const std::string prefix = absl::StrCat(OutDir(), "/r2plus1d", depth);
    auto weights = ReadPyTorchStateDict(prefix + "_weights.pt");
    ASSERT_TRUE(weights.ok()) << weights.status();
    auto io = ReadPyTorchStateDict(prefix + "_io.pt");
    ASSERT_TRUE(io.ok()) << io.status();

    BackboneConfig config;
    config.mutable_r2plus1d()->set_depth(depth);
    config.mutable_r2plus1d()->set_width_multiplier(1.0f);
    config.set_num_classes(10);
    auto model = CreateBackbone(config);
    ASSERT_TRUE(model.ok()) << model.status();
    const absl::Status loaded = LoadStateDict(**model, *weights, /*strict=*/true);
    ASSERT_TRUE(loaded.ok()) << loaded;
    (*model)->eval();

    torch::NoGradGuard no_grad;
    const torch::Tensor& input = io->at("input");
    ASSERT_EQ(input.sizes(), (std::vector<int64_t>{1, 3, 8, 56, 56}));
    const torch::Tensor features = (*model)->Features(input);
    const torch::Tensor logits = (*model)->Logits(features);
    ASSERT_EQ(logits.sizes(), io->at("logits").sizes());
    const double feature_diff = (features - io->at("features")).abs().max().item<double>();
    const double logit_diff = (logits - io->at("logits")).abs().max().item<double>();
    const double logit_max = io->at("logits").abs().max().item<double>();
    std::cout << "r2plus1d depth " << depth << ": max |features - torchvision| = " << feature_diff
              << " (max |features| = " << io->at("features").abs().max().item<double>()
              << "), max |logits - torchvision| = " << logit_diff
              << " (max |logits| = " << logit_max << ")\n";
    EXPECT_LT(feature_diff, logit_tolerance);
    EXPECT_LT(logit_diff, logit_tolerance);
    // A trivially passing comparison (all-zero logits) would not test anything.
    EXPECT_GT(logit_max, 1e-2);
  }

  static std::string* setup_error_;
};

std::string* R2plus1dParityTest::setup_error_ = nullptr;

TEST_F(R2plus1dParityTest, MatchesTorchvisionR2plus1d18) { CheckDepth(18, 1e-4); }

// Logits of the untrained 34-layer model reach ~30 in magnitude, so the
// absolute tolerance is looser (still ~1e-5 relative).
TEST_F(R2plus1dParityTest, MatchesTorchvisionStyleR2plus1d34) { CheckDepth(34, 5e-4); }

}  // namespace
}  // namespace tb
