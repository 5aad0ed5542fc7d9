// Links the registered components statically, as the binaries do, and
// checks that every registration survived the link (a component library
// without alwayslink silently drops its static initialiser): every field of
// every component oneof has a registered component, and nothing else is
// registered. The lists come from the protos, so a new component needs no
// edit here.
#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include "absl/strings/str_join.h"
#include "backbones/backbone.h"
#include "reweighting/scorer.h"
#include "semisup/semisup.pb.h"
#include "ssl/objective.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

template <typename Registry>
void ExpectRegistryMatchesOneof(const Registry& registry,
                                const google::protobuf::Descriptor* family,
                                const std::string& oneof_name) {
  SCOPED_TRACE(family->full_name());
  const auto* oneof = family->FindOneofByName(oneof_name);
  ASSERT_NE(oneof, nullptr);
  std::vector<std::string> fields;
  for (int i = 0; i < oneof->field_count(); ++i) fields.push_back(oneof->field(i)->name());
  std::sort(fields.begin(), fields.end());
  EXPECT_EQ(registry.Names(), fields);
}

TEST(RegistryStaticLink, EveryOneofFieldHasExactlyOneComponent) {
  ExpectRegistryMatchesOneof(BackboneRegistry(), BackboneConfig::descriptor(), "kind");
  ExpectRegistryMatchesOneof(TrainerRegistry(), TrainerConfig::descriptor(), "kind");
  ExpectRegistryMatchesOneof(SslObjectiveRegistry(), SslObjectiveConfig::descriptor(), "kind");
  ExpectRegistryMatchesOneof(MixingRuleRegistry(), ReweightingConfig::descriptor(), "rule");
}

TEST(RegistryStaticLink, UnsetKindListsTheChoices) {
  BackboneConfig config;
  config.set_num_classes(3);
  auto unset = CreateBackbone(config);
  ASSERT_FALSE(unset.ok());
  std::vector<std::string> fields;
  const auto* kind = BackboneConfig::descriptor()->FindOneofByName("kind");
  for (int i = 0; i < kind->field_count(); ++i) fields.push_back(kind->field(i)->name());
  EXPECT_EQ(unset.status().message(),
            "config field backbone: no kind set; set one of: " + absl::StrJoin(fields, ", "));
}

}  // namespace
}  // namespace tb
