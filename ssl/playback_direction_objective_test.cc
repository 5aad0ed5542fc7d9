// The worked example objective (docs/EXTENDING.md): its loss against a
// computation by hand, the property that motionless clips cannot be
// classified, and its option check.
#include <cmath>
#include <memory>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "google/protobuf/text_format.h"
#include "ssl/objective.h"

namespace tb {
namespace {

struct Built {
  std::shared_ptr<VideoBackbone> backbone;
  std::unique_ptr<SslObjective> objective;
};

Built Build(const std::string& options) {
  torch::manual_seed(3);
  BackboneConfig b;
  b.mutable_r3d18()->set_width_multiplier(0.0625f);
  b.set_num_classes(4);
  Built built;
  built.backbone = *CreateBackbone(b);
  SslObjectiveConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "playback_direction { " + options + " }", &config));
  SslContext context;
  context.backbone = b;
  context.feature_dim = built.backbone->feature_dim();
  auto objective = CreateSslObjective(config, context);
  EXPECT_TRUE(objective.ok()) << objective.status();
  built.objective = std::move(*objective);
  return built;
}

TEST(PlaybackDirection, LossIsTheCrossEntropyOfForwardAndReversedClips) {
  for (const std::string& options : {std::string(""), std::string("hidden: 8")}) {
    SCOPED_TRACE(options);
    Built m = Build(options);
    m.backbone->eval();  // BatchNorm statistics then do not depend on the batch
    m.objective->eval();
    const torch::Tensor x = torch::randn({3, 3, 4, 16, 16});
    auto loss = m.objective->Loss(*m.backbone, {{"clip", x.unsqueeze(1)}});
    ASSERT_TRUE(loss.ok()) << loss.status();
    // By hand: each direction separately, -log softmax at its label.
    torch::NoGradGuard no_grad;
    auto head = m.objective->named_children()["direction_head"];
    auto logits = [&](const torch::Tensor& clips) {
      return head->as<torch::nn::SequentialImpl>()->forward(m.backbone->Features(clips));
    };
    const torch::Tensor forward = torch::log_softmax(logits(x), 1).select(1, 0);
    const torch::Tensor reversed = torch::log_softmax(logits(x.flip({2})), 1).select(1, 1);
    const double expected = -(forward.sum() + reversed.sum()).item<double>() / 6;
    EXPECT_NEAR(loss->loss.item<double>(), expected, 1e-5);
    EXPECT_NEAR(loss->metrics.at("loss_direction"), expected, 1e-5);
  }
}

TEST(PlaybackDirection, MotionlessClipsCannotBeClassified) {
  Built m = Build("hidden: 8");
  m.backbone->eval();
  m.objective->eval();
  // Every frame the same: forward and reversed are the same clip.
  const torch::Tensor x = torch::randn({4, 3, 1, 16, 16}).expand({4, 3, 4, 16, 16});
  auto loss = m.objective->Loss(*m.backbone, {{"clip", x.unsqueeze(1)}});
  ASSERT_TRUE(loss.ok());
  EXPECT_GE(loss->loss.item<double>(), std::log(2.0) - 1e-6);
  EXPECT_DOUBLE_EQ(loss->metrics.at("direction_top1"), 0.5);
}

TEST(PlaybackDirection, ValidateNamesTheField) {
  SslObjectiveConfig config;
  config.mutable_playback_direction()->set_hidden(-1);
  EXPECT_EQ(ValidateSslObjective(config, "trainer.ssl.objective").message(),
            "config field trainer.ssl.objective.playback_direction.hidden = -1: must be >= 0 "
            "(0 = a linear head)");
}

}  // namespace
}  // namespace tb
