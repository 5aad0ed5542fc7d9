// MemDPC (ssl/memdpc_objective.h): the dense contrastive loss and the
// prediction head against testdata/memdpc_reference.py (float64, values and
// gradients), the block layout of the objective (its loss equals the head's
// on block feature maps computed clip by clip), its sampler, the tiny
// R3D-18's 2x2 maps at crop 32, and the option and geometry checks.
#include "ssl/memdpc_objective.h"

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "core/testing/reference_tensors.h"
#include "google/protobuf/text_format.h"
#include "ssl/objective.h"

namespace tb {
namespace {

constexpr double kTol = 1e-5;

void ExpectClose(const torch::Tensor& actual, const torch::Tensor& expected,
                 const std::string& what, double tol = kTol) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double diff =
      (actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>();
  EXPECT_LT(diff, tol) << what << ": max |diff| = " << diff;
}

class MemDpcReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static auto* refs = new absl::StatusOr<std::map<std::string, torch::Tensor>>(
        tb::testing::RunReferenceTensors("ssl/testdata/memdpc_reference.py", "memdpc.txt"));
    ASSERT_TRUE(refs->ok()) << refs->status();
    refs_ = &**refs;
  }
  torch::Tensor Ref(const std::string& name) const {
    auto it = refs_->find(name);
    TORCH_CHECK(it != refs_->end(), "no reference tensor '", name, "'");
    return it->second;
  }
  torch::Tensor Leaf(const std::string& name) const {
    return Ref(name).clone().requires_grad_(true);
  }
  // A float64 head with the reference's parameters (gru_dropout 0).
  MemDpcHead Head(bool bidirectional) const {
    MemDpcHead head(3, 5, 0.0, bidirectional);
    head->to(torch::kDouble);
    std::map<std::string, torch::Tensor> state;
    for (const auto& [name, t] : *refs_) {
      if (name.rfind("param.", 0) != 0) continue;
      const std::string key = name.substr(6);
      if (!bidirectional && key.rfind("aggregate_backward.", 0) == 0) continue;
      state[key] = t;
    }
    const absl::Status loaded = LoadStateDict(*head, state, /*strict=*/true);
    EXPECT_TRUE(loaded.ok()) << loaded;
    return head;
  }

 private:
  const std::map<std::string, torch::Tensor>* refs_ = nullptr;
};

TEST_F(MemDpcReferenceTest, DenseContrastiveLossValueTop1AndGradients) {
  const torch::Tensor pred = Leaf("dense_pred"), target = Leaf("dense_target");
  double top1 = -1;
  const torch::Tensor loss = ssl::DenseContrastiveLoss(pred, target, nullptr, &top1);
  ExpectClose(loss, Ref("dense_loss"), "loss");
  EXPECT_NEAR(top1, Ref("dense_top1").item<double>(), 1e-12);
  loss.backward();
  ExpectClose(pred.grad(), Ref("dense_grad_pred"), "grad pred");
  ExpectClose(target.grad(), Ref("dense_grad_target"), "grad target (targets not detached)");
}

TEST_F(MemDpcReferenceTest, HeadPredictionsLossesAndGradients) {
  MemDpcHead head = Head(/*bidirectional=*/true);
  head->train();  // dropout 0: training mode changes nothing
  const int64_t k = static_cast<int64_t>(Ref("head_k").item<double>());
  const torch::Tensor feats = Leaf("head_features");
  ExpectClose(head->Predict(feats, k, false), Ref("head_pred_forward"), "forward predictions");
  ExpectClose(head->Predict(feats, k, true), Ref("head_pred_backward"), "backward predictions");
  const MemDpcHeadImpl::Terms terms = head->Loss(feats, k);
  ExpectClose(terms.forward, Ref("head_forward"), "forward loss");
  ExpectClose(terms.backward, Ref("head_backward"), "backward loss");
  ExpectClose(terms.loss, Ref("head_loss"), "total loss");
  EXPECT_NEAR(terms.forward_top1, Ref("head_top1_forward").item<double>(), 1e-12);
  EXPECT_NEAR(terms.backward_top1, Ref("head_top1_backward").item<double>(), 1e-12);
  terms.loss.backward();
  ExpectClose(feats.grad(), Ref("head_grad_features"), "grad features");
  int checked = 0;
  for (const auto& p : head->named_parameters()) {
    ExpectClose(p.value().grad(), Ref("grad." + p.key()), "grad " + p.key());
    ++checked;
  }
  EXPECT_EQ(checked, 6 * 2 + 4 + 1);  // 2 aggregators x 3 gates x (w, b), predictor, memory
}

TEST_F(MemDpcReferenceTest, ForwardOnlyHeadIsTheForwardTerm) {
  MemDpcHead head = Head(/*bidirectional=*/false);
  const int64_t k = static_cast<int64_t>(Ref("head_k").item<double>());
  const torch::Tensor feats = Leaf("head_features");
  const MemDpcHeadImpl::Terms terms = head->Loss(feats, k);
  EXPECT_FALSE(terms.backward.defined());
  ExpectClose(terms.loss, Ref("head_forward"), "forward-only loss");
  terms.loss.backward();
  ExpectClose(feats.grad(), Ref("forward_only_grad_features"), "forward-only grad features");
}

// ---------------------------------------------------------------------------
// The objective on the tiny R3D-18.

BackboneConfig TinyBackbone() {
  BackboneConfig b;
  b.mutable_r3d18()->set_width_multiplier(0.0625f);
  b.set_num_classes(4);
  return b;
}

struct Built {
  std::shared_ptr<VideoBackbone> backbone;
  std::unique_ptr<SslObjective> objective;
};

Built Build(const std::string& options) {
  torch::manual_seed(5);
  Built built;
  auto backbone = CreateBackbone(TinyBackbone());
  EXPECT_TRUE(backbone.ok()) << backbone.status();
  built.backbone = *backbone;
  SslObjectiveConfig config;
  EXPECT_TRUE(
      google::protobuf::TextFormat::ParseFromString("memdpc { " + options + " }", &config));
  SslContext context;
  context.backbone = TinyBackbone();
  context.feature_dim = built.backbone->feature_dim();
  auto objective = CreateSslObjective(config, context);
  EXPECT_TRUE(objective.ok()) << objective.status();
  if (objective.ok()) built.objective = std::move(*objective);
  return built;
}

MemDpcHeadImpl* HeadOf(SslObjective& objective) {
  return objective.named_children()["memdpc_head"]->as<MemDpcHeadImpl>();
}

// The clip [B, 1, 3, N * T, S, S] is cut into N consecutive blocks of T
// frames: the loss equals the head's on each block's feature map computed
// on its own, averaged over time. Crop 32 gives the tiny R3D-18 2x2 maps.
TEST(MemDpcObjective, BlocksAreConsecutiveFrameRangesAndMapsAre2x2AtCrop32) {
  Built m = Build("seq_len: 3 num_seq: 4 pred_step: 2 mem_size: 16 gru_dropout: 0");
  ASSERT_NE(m.objective, nullptr);
  m.backbone->eval();  // BatchNorm with running statistics: per-clip results
  m.objective->eval();
  const torch::Tensor clip = torch::randn({2, 1, 3, 12, 32, 32});
  auto loss = m.objective->Loss(*m.backbone, {{"clip", clip}});
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_TRUE(std::isfinite(loss->loss.item<double>()));
  for (const char* metric : {"loss_dpc_forward", "loss_dpc_backward", "dpc_top1_forward",
                             "dpc_top1_backward"}) {
    EXPECT_EQ(loss->metrics.count(metric), 1u) << metric;
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> blocks;
  for (int j = 0; j < 4; ++j) {
    const torch::Tensor map =
        m.backbone->FeatureMap(clip.select(1, 0).slice(2, 3 * j, 3 * (j + 1)));
    ASSERT_EQ(map.size(3), 2);
    ASSERT_EQ(map.size(4), 2);
    blocks.push_back(map.mean(2));
  }
  const MemDpcHeadImpl::Terms terms = HeadOf(*m.objective)->Loss(torch::stack(blocks, 1), 2);
  EXPECT_NEAR(loss->loss.item<double>(), terms.loss.item<double>(), 1e-5);
  EXPECT_NEAR(loss->metrics.at("loss_dpc_forward"), terms.forward.item<double>(), 1e-5);
  // A different block order gives a different loss (the layout matters).
  std::swap(blocks[0], blocks[3]);
  EXPECT_GT(std::abs(HeadOf(*m.objective)->Loss(torch::stack(blocks, 1), 2).loss.item<double>() -
                     terms.loss.item<double>()),
            1e-4);
}

TEST(MemDpcObjective, TrainsTheBackboneAndEveryHeadParameter) {
  Built m = Build("seq_len: 2 num_seq: 3 pred_step: 1 mem_size: 8");
  ASSERT_NE(m.objective, nullptr);
  m.backbone->train();
  m.objective->train();
  auto loss = m.objective->Loss(*m.backbone, {{"clip", torch::randn({2, 1, 3, 6, 32, 32})}});
  ASSERT_TRUE(loss.ok()) << loss.status();
  loss->loss.backward();
  EXPECT_GT(m.backbone->named_parameters()["stem.0.weight"].grad().abs().sum().item<double>(), 0);
  for (const auto& p : m.objective->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
  }
}

TEST(MemDpcObjective, SamplerCutsOneClipOfTheWholeSequence) {
  Built m = Build("seq_len: 5 num_seq: 8 frame_stride: 3");
  ASSERT_NE(m.objective, nullptr);
  const SamplerConfig s = m.objective->Sampler();
  ASSERT_TRUE(s.has_clip());
  EXPECT_EQ(s.clip().num_frames(), 40);
  EXPECT_EQ(s.clip().stride(), 3);
  // Unset augmentation: the official transform (crop area U(0.5, 1), colour
  // jitter 0.5 / 0.5 / 0.5 / 0.25 with p 1, grayscale p 0.25).
  EXPECT_FLOAT_EQ(s.clip().augmentation().min_crop_scale(), 0.5f);
  EXPECT_FLOAT_EQ(s.clip().augmentation().brightness().probability(), 1.0f);
  EXPECT_FLOAT_EQ(s.clip().augmentation().max_hue_shift(), 0.25f);
  EXPECT_FLOAT_EQ(s.clip().augmentation().grayscale_probability(), 0.25f);
  Built c = Build("augmentation { min_crop_scale: 0.8 flip_probability: 0 }");
  ASSERT_NE(c.objective, nullptr);
  EXPECT_FLOAT_EQ(c.objective->Sampler().clip().augmentation().min_crop_scale(), 0.8f);
  EXPECT_FLOAT_EQ(c.objective->Sampler().clip().augmentation().grayscale_probability(), 0.0f);
  // The defaults are the official code's.
  const MemDpcOptions defaults;
  EXPECT_EQ(defaults.seq_len(), 5);
  EXPECT_EQ(defaults.num_seq(), 8);
  EXPECT_EQ(defaults.pred_step(), 3);
  EXPECT_EQ(defaults.mem_size(), 1024);
  EXPECT_EQ(defaults.frame_stride(), 3);
  EXPECT_FLOAT_EQ(defaults.gru_dropout(), 0.1f);
  EXPECT_TRUE(defaults.bidirectional());
}

TEST(MemDpcObjective, WrongFrameCountAndTooFewRowsAreErrors) {
  Built m = Build("seq_len: 2 num_seq: 3 pred_step: 1 mem_size: 8");
  ASSERT_NE(m.objective, nullptr);
  auto wrong = m.objective->Loss(*m.backbone, {{"clip", torch::randn({2, 1, 3, 8, 32, 32})}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("the clip has 8 frames but num_seq * seq_len = 3 * 2 = 6"),
            std::string::npos)
      << wrong.status();
  // One video, pred_step 1 and a 1x1 map (crop 16): a single class.
  auto single = m.objective->Loss(*m.backbone, {{"clip", torch::randn({1, 1, 3, 6, 16, 16})}});
  ASSERT_FALSE(single.ok());
  EXPECT_NE(single.status().message().find("at least 2 (video, block, location) rows"),
            std::string::npos)
      << single.status();
}

TEST(MemDpcObjective, ValidationNamesTheFieldAndValue) {
  auto message = [](const std::string& options) {
    SslObjectiveConfig config;
    EXPECT_TRUE(
        google::protobuf::TextFormat::ParseFromString("memdpc { " + options + " }", &config));
    return std::string(ValidateSslObjective(config, "trainer.ssl.objective").message());
  };
  EXPECT_EQ(message(""), "");
  EXPECT_EQ(message("pred_step: 8"),
            "config field trainer.ssl.objective.memdpc.pred_step = 8: must be in [1, num_seq - "
            "1] = [1, 7] (at least one context block to predict from)");
  EXPECT_EQ(message("num_seq: 2 pred_step: 0"),
            "config field trainer.ssl.objective.memdpc.pred_step = 0: must be in [1, num_seq - "
            "1] = [1, 1] (at least one context block to predict from)");
  EXPECT_EQ(message("num_seq: 1"),
            "config field trainer.ssl.objective.memdpc.num_seq = 1: must be >= 2 (at least one "
            "context block and one predicted block)");
  EXPECT_EQ(message("seq_len: 0"),
            "config field trainer.ssl.objective.memdpc.seq_len = 0: must be >= 1 (frames per "
            "block)");
  EXPECT_EQ(message("seq_len: 100 num_seq: 6"),
            "config field trainer.ssl.objective.memdpc.num_seq = 6: num_seq * seq_len = 600 "
            "frames must be <= 512 (the clip sampler's limit)");
  EXPECT_EQ(message("mem_size: 0"),
            "config field trainer.ssl.objective.memdpc.mem_size = 0: must be >= 1");
  EXPECT_EQ(message("frame_stride: 0"),
            "config field trainer.ssl.objective.memdpc.frame_stride = 0: must be in [1, 64]");
  EXPECT_EQ(message("gru_dropout: 1"),
            "config field trainer.ssl.objective.memdpc.gru_dropout = 1: must be in [0, 1)");
  EXPECT_NE(message("augmentation { flip_probability: 2 }")
                .find("trainer.ssl.objective.memdpc.augmentation.flip_probability"),
            std::string::npos)
      << message("augmentation { flip_probability: 2 }");
}

}  // namespace
}  // namespace tb
