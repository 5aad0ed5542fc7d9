#include "core/registry.h"

#include <gtest/gtest.h>

#include "backbones/backbones.pb.h"

namespace tb {
namespace {

struct Shape {
  virtual ~Shape() = default;
  virtual int sides() const = 0;
};
struct Square : Shape {
  int sides() const override { return 4; }
};

using ShapeRegistry = Registry<Shape, int>;

TEST(Registry, CreatesByNameAndListsNamesOnUnknown) {
  ShapeRegistry registry("shape");
  registry.Register("square", [](int) -> absl::StatusOr<std::unique_ptr<Shape>> {
    return std::unique_ptr<Shape>(new Square);
  });
  registry.Register("bad", [](int n) -> absl::StatusOr<std::unique_ptr<Shape>> {
    return absl::InvalidArgumentError("bad " + std::to_string(n));
  });
  auto square = registry.Create("square", 0);
  ASSERT_TRUE(square.ok());
  EXPECT_EQ((*square)->sides(), 4);
  EXPECT_EQ(registry.Create("bad", 7).status().message(), "bad 7");
  auto unknown = registry.Create("circle", 0);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(), "unknown shape 'circle'; registered: bad, square");
  EXPECT_EQ(registry.Names(), (std::vector<std::string>{"bad", "square"}));
}

TEST(Registry, DuplicateRegistrationIsFatal) {
  ShapeRegistry registry("shape");
  auto factory = [](int) -> absl::StatusOr<std::unique_ptr<Shape>> {
    return std::unique_ptr<Shape>(new Square);
  };
  registry.Register("square", factory);
  EXPECT_DEATH(registry.Register("square", factory), "duplicate shape registration: 'square'");
}

TEST(Registry, SetOneofField) {
  BackboneConfig config;
  auto unset = SetOneofField(config, "kind", "backbone");
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.status().message(),
            "backbone: no kind set; set one of: r3d18, slow_r50, r2plus1d, tsm_r18, slowfast_r50");
  config.mutable_r3d18();
  EXPECT_EQ(*SetOneofField(config, "kind", "backbone"), "r3d18");
}

}  // namespace
}  // namespace tb
