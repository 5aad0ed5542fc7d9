// Checks every registered backbone through the common interface, each in
// the small configurations its registration lists as examples (so a new
// backbone is covered without editing this file): output shapes at two input
// sizes, stage feature maps, bf16 autocast forward close to fp32,
// channels-last equal to contiguous; and that every kind of the
// BackboneConfig oneof has a registered component with an example.
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "core/autocast.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

struct Case {
  std::string text;  // BackboneConfig text proto
  int frames_a = 16, size_a = 32, frames_b = 8, size_b = 48;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (const std::string& name : BackboneRegistry().Names()) {
    for (const std::string& example : BackboneRegistry().Examples(name)) {
      Case c;
      c.text = absl::StrCat(name, " { ", example, " }");
      cases.push_back(c);
    }
  }
  return cases;
}

TEST(AllBackbones, EveryKindIsRegisteredWithAnExample) {
  const auto* kind = BackboneConfig::descriptor()->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  for (int i = 0; i < kind->field_count(); ++i) {
    const std::string name = kind->field(i)->name();
    EXPECT_TRUE(BackboneRegistry().Contains(name)) << name;
    EXPECT_FALSE(BackboneRegistry().Examples(name).empty()) << name;
  }
  EXPECT_EQ(BackboneRegistry().Names().size(), static_cast<size_t>(kind->field_count()));
}

std::shared_ptr<VideoBackbone> Build(const Case& c, int num_classes, bool channels_last) {
  BackboneConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(c.text, &config)) << c.text;
  config.set_num_classes(num_classes);
  config.set_channels_last(channels_last);
  auto model = CreateBackbone(config);
  EXPECT_TRUE(model.ok()) << c.text << ": " << model.status();
  return model.ok() ? *model : nullptr;
}

TEST(AllBackbones, ShapesAtTwoInputSizes) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.text);
    torch::manual_seed(0);
    auto model = Build(c, 11, false);
    ASSERT_NE(model, nullptr);
    model->eval();
    torch::NoGradGuard no_grad;
    for (auto [frames, size] : {std::pair{c.frames_a, c.size_a}, std::pair{c.frames_b, c.size_b}}) {
      SCOPED_TRACE(absl::StrCat(frames, "x", size, "x", size));
      const torch::Tensor clip = torch::randn({2, 3, frames, size, size});
      const torch::Tensor map = model->FeatureMap(clip);
      ASSERT_EQ(map.dim(), 5);
      EXPECT_EQ(map.size(0), 2);
      EXPECT_EQ(map.size(1), model->feature_dim());
      const auto stages = model->StageFeatureMaps(clip);
      ASSERT_FALSE(stages.empty());
      EXPECT_TRUE(torch::allclose(stages.back(), map, 1e-5, 1e-5));
      EXPECT_EQ(model->Features(clip).sizes(), (std::vector<int64_t>{2, model->feature_dim()}));
      EXPECT_EQ(model->forward(clip).sizes(), (std::vector<int64_t>{2, 11}));
    }
  }
}

// BackboneConfig.input_channels: a flow model (2 channels) takes [B, 2, T,
// H, W] clips, rejects RGB ones with an error naming the sizes, and differs
// from the RGB model only in the stem's first weight.
TEST(AllBackbones, InputChannelsChangeOnlyTheFirstConvolution) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.text);
    BackboneConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(c.text, &config));
    config.set_num_classes(5);
    auto rgb = CreateBackbone(config);
    config.set_input_channels(2);
    auto flow = CreateBackbone(config);
    ASSERT_TRUE(rgb.ok() && flow.ok()) << rgb.status() << flow.status();
    (*flow)->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ((*flow)->forward(torch::randn({2, 2, c.frames_a, c.size_a, c.size_a})).sizes(),
              (std::vector<int64_t>{2, 5}));
    EXPECT_THROW((*flow)->forward(torch::randn({2, 3, c.frames_a, c.size_a, c.size_a})),
                 c10::Error);
    const auto rgb_params = (*rgb)->named_parameters();
    const auto flow_params = (*flow)->named_parameters();
    ASSERT_EQ(rgb_params.size(), flow_params.size());
    int differing = 0;
    for (const auto& p : rgb_params) {
      const torch::Tensor* q = flow_params.find(p.key());
      ASSERT_NE(q, nullptr) << p.key();
      if (p.value().sizes() == q->sizes()) continue;
      ++differing;
      EXPECT_EQ(p.value().size(1), 3) << p.key();
      EXPECT_EQ(q->size(1), 2) << p.key();
    }
    // One stem convolution (SlowFast: one per pathway).
    EXPECT_EQ(differing, c.text.rfind("slowfast", 0) == 0 ? 2 : 1);
  }
  BackboneConfig bad;
  bad.mutable_r3d18();
  bad.set_num_classes(5);
  bad.set_input_channels(0);
  const absl::Status status = CreateBackbone(bad).status();
  EXPECT_NE(std::string(status.message()).find("backbone.input_channels = 0"), std::string::npos)
      << status;
}

TEST(AllBackbones, Bf16AutocastForwardIsCloseToFp32) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.text);
    torch::manual_seed(1);
    auto model = Build(c, 7, false);
    ASSERT_NE(model, nullptr);
    model->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor clip = torch::randn({2, 3, c.frames_a, c.size_a, c.size_a});
    const torch::Tensor reference = model->Features(clip);
    torch::Tensor bf16;
    {
      AutocastScope autocast(torch::Device(torch::kCPU), Precision::kBf16);
      bf16 = model->Features(clip);
    }
    // bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); errors of
    // a few steps accumulate through the network.
    const double relative =
        ((bf16.to(torch::kFloat) - reference).norm() / reference.norm()).item<double>();
    EXPECT_LT(relative, 0.05);
    EXPECT_GT(reference.norm().item<double>(), 0.0);
  }
}

TEST(AllBackbones, ChannelsLastMatchesContiguous) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.text);
    torch::manual_seed(2);
    auto plain = Build(c, 5, false);
    torch::manual_seed(2);
    auto last = Build(c, 5, true);
    ASSERT_NE(plain, nullptr);
    ASSERT_NE(last, nullptr);
    plain->eval();
    last->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor clip = torch::randn({2, 3, c.frames_a, c.size_a, c.size_a});
    const torch::Tensor a = plain->Features(clip);
    const torch::Tensor b = last->Features(clip);
    EXPECT_LT(((a - b).norm() / a.norm()).item<double>(), 1e-4);
  }
}

}  // namespace
}  // namespace tb
