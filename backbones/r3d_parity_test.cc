// Parity with torchvision: the Python helper saves a seeded r3d_18 with
// randomised BatchNorm statistics, an input clip and torchvision's outputs;
// loading those weights by name into our R3D must reproduce the outputs.
#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "backbones/r3d.h"
#include "backbones/state_dict_io.h"
#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

TEST(R3dParityTest, MatchesTorchvisionR3d18) {
  const std::string out_dir = testing::TmpPath("");
  const auto exported = testing::RunPythonReference("backbones/testdata/export_torchvision.py",
                                                    {out_dir}, {"torch", "torchvision"});
  ASSERT_TRUE(exported.ok()) << exported.status();

  auto weights = ReadPyTorchStateDict(out_dir + "/r3d18_weights.pt");
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto io = ReadPyTorchStateDict(out_dir + "/r3d18_io.pt");
  ASSERT_TRUE(io.ok()) << io.status();

  BackboneConfig config;
  config.mutable_r3d18()->set_width_multiplier(1.0f);
  config.set_num_classes(10);
  auto model = CreateBackbone(config);
  ASSERT_TRUE(model.ok()) << model.status();
  const absl::Status loaded = LoadStateDict(**model, *weights, /*strict=*/true);
  ASSERT_TRUE(loaded.ok()) << loaded;
  (*model)->eval();

  torch::NoGradGuard no_grad;
  const torch::Tensor features = (*model)->Features(io->at("input"));
  const torch::Tensor logits = (*model)->Logits(features);
  ASSERT_EQ(logits.sizes(), io->at("logits").sizes());
  const double feature_diff = (features - io->at("features")).abs().max().item<double>();
  const double logit_diff = (logits - io->at("logits")).abs().max().item<double>();
  std::cout << "max |features - torchvision| = " << feature_diff
            << " (max |features| = " << io->at("features").abs().max().item<double>() << ")\n"
            << "max |logits - torchvision| = " << logit_diff << "\n";
  EXPECT_LT(feature_diff, 1e-4);
  EXPECT_LT(logit_diff, 1e-4);
  // A trivially passing comparison (all-zero logits) would not test anything.
  EXPECT_GT(io->at("logits").abs().max().item<double>(), 1e-2);

  // `torch.save(model.state_dict())` is what people usually write; the reader
  // must say how to re-save it rather than fail obscurely.
  auto ordered = ReadPyTorchStateDict(out_dir + "/ordered_dict.pt");
  ASSERT_FALSE(ordered.ok());
  EXPECT_EQ(ordered.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ordered.status().message().find("dict(model.state_dict())"), std::string::npos)
      << ordered.status();
}

}  // namespace
}  // namespace tb
