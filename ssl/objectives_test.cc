// Every registered objective on tiny random views: the loss is finite and
// reaches the backbone and the objective's own trainable parameters, each
// term is reported, the sampler matches the views, and stateful parts (EMA
// encoders, queues, prototypes, step counters) follow their update rules and
// survive a save/load round trip.
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "backbones/heads.h"
#include "core/testing/test_util.h"
#include "google/protobuf/text_format.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

constexpr int kT = 4, kS = 16, kB = 3;

BackboneConfig TinyBackbone() {
  BackboneConfig b;
  b.mutable_r3d18()->set_width_multiplier(0.0625f);
  b.set_num_classes(5);
  return b;
}

std::unique_ptr<SslObjective> Make(const std::string& text, std::shared_ptr<VideoBackbone>* bb,
                                   int64_t steps_per_epoch = 0) {
  SslObjectiveConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  auto backbone = CreateBackbone(TinyBackbone());
  EXPECT_TRUE(backbone.ok());
  *bb = *backbone;
  SslContext context;
  context.backbone = TinyBackbone();
  context.feature_dim = (*bb)->feature_dim();
  context.total_steps = 10;
  context.steps_per_epoch = steps_per_epoch;
  auto objective = CreateSslObjective(config, context);
  EXPECT_TRUE(objective.ok()) << objective.status();
  return objective.ok() ? std::move(*objective) : nullptr;
}

// Random views with the shapes the objective's sampler produces.
ViewTensors ViewsFor(const SamplerConfig& s) {
  ViewTensors v;
  auto view = [](int k) { return torch::randn({kB, k, 3, kT, kS, kS}); };
  if (s.has_tclr()) {
    const int a = s.tclr().augmentations(), d = s.tclr().num_dense();
    v["sparse"] = view(a);
    v["dense"] = view(a * d);
  } else if (s.has_rho()) {
    v["clips"] = view(s.rho().rho());
  } else if (s.has_vtdl()) {
    v["anchor"] = view(1);
    v["positive"] = view(1);
    v["negative"] = view(1);
  } else {
    // The clip sampler's own length when the objective sets one (MemDPC).
    const int t = s.has_clip() && s.clip().has_num_frames() ? s.clip().num_frames() : kT;
    v["clip"] = torch::randn({kB, 1, 3, t, kS, kS});
  }
  return v;
}

struct Case {
  std::string text;
  std::vector<std::string> terms;
};

std::vector<Case> Cases() {
  return {
      {"instance_contrastive { num_slices: 2 projection { out: 8 } }", {"loss_ic"}},
      {"tclr { num_slices: 2 projection { out: 8 } }", {"loss_ic", "loss_ll", "loss_gl"}},
      {"tclr { ic_weight: 0 num_slices: 2 projection { out: 8 } }", {"loss_ll", "loss_gl"}},
      {"vtdl { queue_size: 16 triplet_weight: 0.5 projection { out: 8 } }",
       {"loss_infonce", "loss_triplet"}},
      {"rho_simclr { rho: 3 projection { out: 8 } }", {"loss_ntxent"}},
      {"rho_moco { rho: 2 queue_size: 16 projection { out: 8 } }", {"loss_infonce"}},
      {"rho_byol { projection { out: 8 } predictor { out: 8 } }", {"loss_byol"}},
      {"rho_swav { num_prototypes: 6 projection { out: 8 } }", {"loss_swav"}},
      {"rotation {}", {"loss_rotation", "rotation_top1"}},
      {"memdpc { seq_len: 2 num_seq: 3 pred_step: 1 mem_size: 8 }",
       {"loss_dpc_forward", "loss_dpc_backward", "dpc_top1_forward"}},
  };
}

// Derived from the registry and the proto: a new objective is covered here
// without editing this file.
TEST(SslObjectives, EveryKindIsRegisteredAndTrainsFromItsExamples) {
  const auto* kind = SslObjectiveConfig::descriptor()->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  EXPECT_EQ(SslObjectiveRegistry().Names().size(), static_cast<size_t>(kind->field_count()));
  for (int i = 0; i < kind->field_count(); ++i) {
    const std::string name = kind->field(i)->name();
    SCOPED_TRACE(name);
    ASSERT_TRUE(SslObjectiveRegistry().Contains(name));
    const std::vector<std::string> examples = SslObjectiveRegistry().Examples(name);
    EXPECT_FALSE(examples.empty());
    for (const std::string& example : examples) {
      torch::manual_seed(0);
      std::shared_ptr<VideoBackbone> backbone;
      auto objective = Make(name + " { " + example + " }", &backbone);
      ASSERT_NE(objective, nullptr);
      auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
      ASSERT_TRUE(loss.ok()) << loss.status();
      EXPECT_TRUE(std::isfinite(loss->loss.item<double>()));
      loss->loss.backward();
    }
  }
}

TEST(SslObjectives, ValidateNamesTheFullPath) {
  SslObjectiveConfig config;
  config.mutable_tclr()->set_temperature(-1);
  EXPECT_EQ(ValidateSslObjective(config, "timebalance.pretrain_distinctive.trainer.ssl.objective")
                .message(),
            "config field timebalance.pretrain_distinctive.trainer.ssl.objective.tclr.temperature "
            "= -1: must be > 0");
  config.mutable_rho_moco()->set_queue_size(0);
  EXPECT_EQ(ValidateSslObjective(config, "objective").message(),
            "config field objective.rho_moco.queue_size = 0: must be >= 1");
  config.mutable_vtdl()->mutable_sampler()->set_max_mixup(2);
  EXPECT_EQ(ValidateSslObjective(config, "objective").message(),
            "config field objective.vtdl.sampler.max_mixup = 2: must be in [0, 1]");
}

TEST(SslObjectives, LossIsFiniteReportsTermsAndReachesEveryTrainedPart) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.text);
    torch::manual_seed(0);
    std::shared_ptr<VideoBackbone> backbone;
    auto objective = Make(c.text, &backbone);
    ASSERT_NE(objective, nullptr);
    backbone->train();
    objective->train();
    auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
    ASSERT_TRUE(loss.ok()) << loss.status();
    ASSERT_TRUE(std::isfinite(loss->loss.item<double>()));
    for (const auto& term : c.terms) EXPECT_EQ(loss->metrics.count(term), 1u) << term;
    loss->loss.backward();
    // The stem convolution gets a gradient.
    const auto params = backbone->named_parameters();
    ASSERT_TRUE(params.contains("stem.0.weight"));
    EXPECT_TRUE(params["stem.0.weight"].grad().defined());
    EXPECT_GT(params["stem.0.weight"].grad().abs().sum().item<double>(), 0.0);
    for (const auto& p : objective->named_parameters()) {
      if (!p.value().requires_grad()) continue;
      EXPECT_TRUE(p.value().grad().defined()) << p.key();
    }
  }
}

TEST(SslObjectives, UnsetWeightsOfInstanceContrastiveAreZero) {
  std::shared_ptr<VideoBackbone> backbone;
  auto objective = Make("instance_contrastive { num_slices: 2 ll_weight: 0.5 }", &backbone);
  auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(loss->metrics.count("loss_ll"), 1u);  // explicitly set: used
  EXPECT_EQ(loss->metrics.count("loss_gl"), 0u);  // unset: 0 for this objective
}

// loss_reduction on the same weights and views: REFERENCE (default) sums
// L_LL over the kB videos, MEAN averages it; L_GL's divisor is 2 under
// REFERENCE and num_slices under MEAN (different at 4 slices); L_IC and the
// invariant objective do not depend on it.
TEST(SslObjectives, TclrLossReductionScalesLocalLocalAndGlobalLocal) {
  std::map<std::string, std::map<std::string, double>> metrics;
  for (const std::string reduction : {"REFERENCE", "MEAN"}) {
    for (const std::string kind : {"tclr", "instance_contrastive"}) {
      torch::manual_seed(7);
      std::shared_ptr<VideoBackbone> backbone;
      auto objective = Make(kind + " { num_slices: 4 loss_reduction: " + reduction + " }",
                            &backbone);
      ASSERT_NE(objective, nullptr);
      backbone->eval();  // BatchNorm with running statistics: the same features
      objective->eval();
      torch::manual_seed(8);
      auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
      ASSERT_TRUE(loss.ok()) << loss.status();
      metrics[kind + reduction] = loss->metrics;
      metrics[kind + reduction]["loss"] = loss->loss.item<double>();
    }
  }
  const auto& ref = metrics["tclrREFERENCE"];
  const auto& mean = metrics["tclrMEAN"];
  EXPECT_NEAR(ref.at("loss_ic"), mean.at("loss_ic"), 1e-9);
  EXPECT_NEAR(ref.at("loss_ll"), kB * mean.at("loss_ll"), 1e-4);
  EXPECT_NEAR(ref.at("loss_gl"), 2.0 * mean.at("loss_gl"), 1e-4);  // S / 2 = 2
  EXPECT_NEAR(metrics["instance_contrastiveREFERENCE"].at("loss"),
              metrics["instance_contrastiveMEAN"].at("loss"), 1e-9);
}

// batch_norm_groups only changes which clips share BatchNorm statistics: in
// eval mode (running statistics, per-clip arithmetic) PER_CLIP_GROUP and
// ONE_BATCH give the same terms, so the grouping keeps every clip in place;
// in train mode they differ.
TEST(SslObjectives, TclrBatchNormGroupsOnlyChangeTheStatistics) {
  for (const bool training : {false, true}) {
    SCOPED_TRACE(training ? "train" : "eval");
    std::map<std::string, std::map<std::string, double>> metrics;
    for (const std::string groups : {"PER_CLIP_GROUP", "ONE_BATCH"}) {
      torch::manual_seed(9);
      std::shared_ptr<VideoBackbone> backbone;
      auto objective = Make("tclr { num_slices: 2 projection { out: 8 } batch_norm_groups: " +
                                groups + " }",
                            &backbone);
      ASSERT_NE(objective, nullptr);
      backbone->train(training);
      objective->train(training);
      torch::manual_seed(10);
      auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
      ASSERT_TRUE(loss.ok()) << loss.status();
      metrics[groups] = loss->metrics;
    }
    for (const std::string term : {"loss_ic", "loss_ll", "loss_gl"}) {
      const double grouped = metrics["PER_CLIP_GROUP"].at(term);
      const double joint = metrics["ONE_BATCH"].at(term);
      if (training) {
        EXPECT_GT(std::abs(grouped - joint), 1e-4) << term;
      } else {
        EXPECT_NEAR(grouped, joint, 1e-5) << term;
      }
    }
  }
}

TEST(SslObjectives, WrongViewsAreAnErrorNamingTheView) {
  std::shared_ptr<VideoBackbone> backbone;
  auto objective = Make("rho_simclr {}", &backbone);
  ViewTensors views;
  views["clip"] = torch::randn({2, 1, 3, kT, kS, kS});
  auto loss = objective->Loss(*backbone, views);
  ASSERT_FALSE(loss.ok());
  EXPECT_NE(loss.status().message().find("no view \"clips\""), std::string::npos);
}

TEST(SslObjectives, MocoKeyEncoderFollowsTheEmaRuleAndQueueAdvances) {
  torch::manual_seed(1);
  std::shared_ptr<VideoBackbone> backbone;
  auto objective = Make("rho_moco { rho: 2 queue_size: 8 base_momentum: 0.9 }", &backbone);
  const ViewTensors views = ViewsFor(objective->Sampler());
  auto named = objective->named_parameters();
  const std::string key_name = "key_encoder.backbone.stem.0.weight";
  ASSERT_TRUE(named.contains(key_name));
  ASSERT_FALSE(named[key_name].requires_grad());
  ASSERT_TRUE(objective->Loss(*backbone, views).ok());
  // First call: the key encoder is a copy of the online backbone.
  const torch::Tensor online = backbone->named_parameters()["stem.0.weight"];
  EXPECT_TRUE(torch::equal(named[key_name], online));
  auto buffers = objective->named_buffers();
  EXPECT_EQ(buffers["queue.pointer"].item<int64_t>(), 6);  // 2 clips x 3 videos enqueued
  const torch::Tensor key_before = named[key_name].clone();
  {
    torch::NoGradGuard no_grad;
    online.add_(1.0);  // stands in for an optimizer step
  }
  objective->AfterOptimizerStep(*backbone, 5);  // cosine momentum at 5/10: 0.95
  ASSERT_TRUE(objective->Loss(*backbone, views).ok());
  const double m = 1 - (1 - 0.9) * (std::cos(M_PI * 0.5) + 1) / 2;
  EXPECT_NEAR(m, 0.95, 1e-12);
  EXPECT_TRUE(torch::allclose(named[key_name], m * key_before + (1 - m) * online, 1e-6, 1e-6));
  EXPECT_EQ(buffers["queue.pointer"].item<int64_t>(), 4);  // 12 keys into 8 slots

  // Round trip of the whole objective state.
  const std::string path = testing::TmpPath("moco_objective.pt");
  {
    torch::serialize::OutputArchive archive;
    objective->save(archive);
    archive.save_to(path);
  }
  std::shared_ptr<VideoBackbone> other_backbone;
  torch::manual_seed(2);
  auto restored = Make("rho_moco { rho: 2 queue_size: 8 base_momentum: 0.9 }", &other_backbone);
  {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    restored->load(archive);
  }
  auto restored_buffers = restored->named_buffers();
  for (const auto& b : buffers) {
    EXPECT_TRUE(torch::equal(b.value(), restored_buffers[b.key()])) << b.key();
  }
  auto restored_params = restored->named_parameters();
  for (const auto& p : named) {
    EXPECT_TRUE(torch::equal(p.value(), restored_params[p.key()])) << p.key();
  }
}

TEST(SslObjectives, SwavPrototypesStayNormalisedAndFreeze) {
  torch::manual_seed(3);
  std::shared_ptr<VideoBackbone> backbone;
  auto objective = Make("rho_swav { num_prototypes: 5 freeze_prototypes_steps: 1 }", &backbone);
  auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
  ASSERT_TRUE(loss.ok());
  loss->loss.backward();
  torch::Tensor prototypes = objective->named_parameters()["prototypes"];
  // Frozen at step 0: no gradient reaches the prototypes.
  EXPECT_TRUE(!prototypes.grad().defined() || prototypes.grad().abs().sum().item<double>() == 0);
  {
    torch::NoGradGuard no_grad;
    prototypes.mul_(3.0);
  }
  objective->AfterOptimizerStep(*backbone, 1);
  EXPECT_TRUE(torch::allclose(prototypes.norm(2, 1), torch::ones({5}), 1e-5, 1e-5));
  auto after = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
  ASSERT_TRUE(after.ok());
  after->loss.backward();
  EXPECT_GT(prototypes.grad().abs().sum().item<double>(), 0.0);
}

// VTDL's loss on its first call (the key encoder is then a copy of the online
// weights) equals InfoNCE recomputed from separate forward passes: q from the
// anchor batch, k from the positive batch, and the temporal negative from the
// negative batch through the online encoder (ONLINE, the official code) or
// the key encoder (KEY). Only ONLINE sends a gradient into the negative clips.
TEST(SslObjectives, VtdlTemporalNegativeEncoder) {
  for (const std::string mode : {"ONLINE", "KEY"}) {
    SCOPED_TRACE(mode);
    torch::manual_seed(4);
    std::shared_ptr<VideoBackbone> backbone;
    auto objective = Make("vtdl { queue_size: 8 projection { out: 8 } temporal_negative_encoder: " +
                              mode + " }",
                          &backbone);
    ASSERT_NE(objective, nullptr);
    backbone->train();
    objective->train();
    ViewTensors views = ViewsFor(objective->Sampler());
    views["negative"].requires_grad_(true);
    const torch::Tensor queue = objective->named_buffers()["queue.keys"].clone();
    auto loss = objective->Loss(*backbone, views);
    ASSERT_TRUE(loss.ok()) << loss.status();
    loss->loss.backward();

    auto modules = objective->named_children();
    auto projection = modules["projection"];
    auto online = [&](const torch::Tensor& clips) {
      return projection->as<ProjectionHeadImpl>()->forward(backbone->Features(clips.squeeze(1)));
    };
    const torch::Tensor q = online(views["anchor"].detach());
    torch::Tensor k, n;
    if (mode == "ONLINE") {
      k = online(views["positive"].detach()).detach();
      n = online(views["negative"].detach());
    } else {
      // The key encoder embeds positives and negatives in one batch.
      const torch::Tensor both =
          online(torch::cat({views["positive"].detach(), views["negative"].detach()})).detach();
      k = both.slice(0, 0, kB);
      n = both.slice(0, kB);
    }
    const torch::Tensor expected = ssl::InfoNce(q, k, queue, 0.07, n.unsqueeze(1));
    EXPECT_NEAR(loss->loss.item<double>(), expected.item<double>(), 1e-5);
    const torch::Tensor grad = views["negative"].grad();
    if (mode == "ONLINE") {
      ASSERT_TRUE(grad.defined());
      EXPECT_GT(grad.abs().sum().item<double>(), 0.0);
    } else {
      EXPECT_TRUE(!grad.defined() || grad.abs().sum().item<double>() == 0.0);
    }
  }
}

// Unset freeze_prototypes_steps freezes the prototypes for one epoch
// (PySlowFast's contrastive_parameter_surgery): steps 0 and 1 of a 2-step
// epoch get no prototype gradient, step 2 does.
TEST(SslObjectives, SwavFreezesPrototypesForTheFirstEpochByDefault) {
  torch::manual_seed(5);
  std::shared_ptr<VideoBackbone> backbone;
  auto objective = Make("rho_swav { num_prototypes: 5 }", &backbone, /*steps_per_epoch=*/2);
  ASSERT_NE(objective, nullptr);
  torch::Tensor prototypes = objective->named_parameters()["prototypes"];
  for (int64_t step : {0, 1, 2}) {
    if (step > 0) objective->AfterOptimizerStep(*backbone, step);
    if (prototypes.grad().defined()) prototypes.grad().zero_();
    auto loss = objective->Loss(*backbone, ViewsFor(objective->Sampler()));
    ASSERT_TRUE(loss.ok()) << loss.status();
    loss->loss.backward();
    const double g = prototypes.grad().defined() ? prototypes.grad().abs().sum().item<double>() : 0;
    if (step < 2) {
      EXPECT_EQ(g, 0.0) << "step " << step;
    } else {
      EXPECT_GT(g, 0.0) << "step " << step;
    }
  }
}

}  // namespace
}  // namespace tb
