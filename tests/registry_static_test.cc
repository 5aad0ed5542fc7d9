// Links the registered components statically, as the binaries do, and
// checks that every registration survived the link (a component library
// without alwayslink silently drops its static initialiser).
#include <gtest/gtest.h>

#include "backbones/backbone.h"
#include "semisup/trainer.h"
#include "reweighting/scorer.h"
#include "ssl/objective.h"

namespace tb {
namespace {

TEST(RegistryStaticLink, AllComponentsRegistered) {
  EXPECT_EQ(BackboneRegistry().Names(),
            (std::vector<std::string>{"r2plus1d", "r3d18", "slow_r50", "slowfast_r50", "tsm_r18"}));
  EXPECT_EQ(TrainerRegistry().Names(),
            (std::vector<std::string>{"cmpl", "fixmatch", "mean_teacher", "mvpl", "pseudo_label",
                                      "s4l", "self_distillation", "ssl", "supervised",
                                      "tg_fixmatch", "timebalance"}));
  EXPECT_EQ(MixingRuleRegistry().Names(),
            (std::vector<std::string>{"distinctive_only", "fixed_weight", "invariant_only",
                                      "temporal_similarity"}));
  EXPECT_EQ(SslObjectiveRegistry().Names(),
            (std::vector<std::string>{"instance_contrastive", "rho_byol", "rho_moco", "rho_simclr",
                                      "rho_swav", "rotation", "tclr", "vtdl"}));
}

TEST(RegistryStaticLink, EveryOneofFieldHasAComponent) {
  // A config field without a registered component would fail only at run time.
  const auto* backbone = BackboneConfig::descriptor()->FindOneofByName("kind");
  for (int i = 0; i < backbone->field_count(); ++i) {
    EXPECT_TRUE(BackboneRegistry().Contains(backbone->field(i)->name()))
        << backbone->field(i)->name();
  }
  const auto* trainer = TrainerConfig::descriptor()->FindOneofByName("kind");
  for (int i = 0; i < trainer->field_count(); ++i) {
    EXPECT_TRUE(TrainerRegistry().Contains(trainer->field(i)->name()))
        << trainer->field(i)->name();
  }
  const auto* rule = ReweightingConfig::descriptor()->FindOneofByName("rule");
  for (int i = 0; i < rule->field_count(); ++i) {
    EXPECT_TRUE(MixingRuleRegistry().Contains(rule->field(i)->name())) << rule->field(i)->name();
  }
  const auto* objective = SslObjectiveConfig::descriptor()->FindOneofByName("kind");
  for (int i = 0; i < objective->field_count(); ++i) {
    EXPECT_TRUE(SslObjectiveRegistry().Contains(objective->field(i)->name()))
        << objective->field(i)->name();
  }
}

TEST(RegistryStaticLink, UnknownNameListsRegistered) {
  BackboneConfig config;
  auto made = BackboneRegistry().Create("r3d99", config);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(made.status().message().find("registered: r2plus1d, r3d18, slow_r50, slowfast_r50, tsm_r18"),
            std::string::npos)
      << made.status().message();
  auto unset = CreateBackbone(config);
  ASSERT_FALSE(unset.ok());
  EXPECT_NE(unset.status().message().find("set one of: r3d18, slow_r50, r2plus1d, tsm_r18, slowfast_r50"),
            std::string::npos)
      << unset.status().message();
}

}  // namespace
}  // namespace tb
