#include "core/registry.h"

#include <gtest/gtest.h>

#include "core/config_check.h"
#include "core/registry_test.pb.h"

namespace tb {
namespace {

using registry_test::CircleOptions;
using registry_test::ShapeConfig;
using registry_test::SquareOptions;

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Square : Shape {
  explicit Square(double side) : side(side) {}
  double area() const override { return side * side; }
  double side;
};
struct Circle : Shape {
  explicit Circle(double r) : r(r) {}
  double area() const override { return 3.0 * r * r; }
  double r;
};

// The context of Create: a scale applied to every shape.
struct Scale {
  double factor = 1;
};

using ShapeRegistry = ComponentRegistry<Shape, ConfigScope, Scale>;

absl::Status ValidateSquare(const SquareOptions& o, const ConfigScope& scope) {
  return FieldChecker(scope.path).Require(o.side() > 0, "side", o.side(), "must be > 0").status();
}
absl::StatusOr<std::unique_ptr<Shape>> CreateSquare(const SquareOptions& o, const Scale& s) {
  return std::unique_ptr<Shape>(new Square(o.side() * s.factor));
}
absl::Status ValidateCircle(const CircleOptions& o, const ConfigScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.radius() > 0, "radius", o.radius(), "must be > 0");
  c.Require(o.radius() < 100, "radius", o.radius(), "must be < 100");
  return c.status();
}
absl::StatusOr<std::unique_ptr<Shape>> CreateCircle(const CircleOptions& o, const Scale& s) {
  return std::unique_ptr<Shape>(new Circle(o.radius() * s.factor));
}

ShapeRegistry& MakeRegistry() {
  static ShapeRegistry* registry = [] {
    auto* r = new ShapeRegistry("shape", "kind");
    r->Register("square", ValidateSquare, CreateSquare, {"side: 2"});
    r->Register("circle", ValidateCircle, CreateCircle);
    return r;
  }();
  return *registry;
}

TEST(ComponentRegistry, ValidatesWithTheFullPathThenCreates) {
  ShapeConfig config;
  config.mutable_square()->set_side(3);
  EXPECT_TRUE(MakeRegistry().Validate(config, {"scene.shape"}).ok());
  auto square = MakeRegistry().Create(config, Scale{2});
  ASSERT_TRUE(square.ok()) << square.status();
  EXPECT_EQ((*square)->area(), 36);

  config.mutable_circle()->set_radius(-1);
  const absl::Status bad = MakeRegistry().Validate(config, {"scene.shape"});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "config field scene.shape.circle.radius = -1: must be > 0");
  // The first failure wins.
  config.mutable_circle()->set_radius(200);
  EXPECT_EQ(MakeRegistry().Validate(config, {""}).message(),
            "config field circle.radius = 200: must be < 100");
}

TEST(ComponentRegistry, UnsetAndUnknownKindsListTheChoices) {
  ShapeConfig config;
  const absl::Status unset = MakeRegistry().Validate(config, {"scene.shape"});
  EXPECT_EQ(unset.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unset.message(),
            "config field scene.shape: no kind set; set one of: square, circle, unregistered");
  config.mutable_unregistered();
  const absl::Status unknown = MakeRegistry().Validate(config, {"scene.shape"});
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.message(), "unknown shape 'unregistered'; registered: circle, square");
  EXPECT_EQ(MakeRegistry().Create(config, Scale{}).status().code(), absl::StatusCode::kNotFound);
}

TEST(ComponentRegistry, NamesAndExamples) {
  EXPECT_EQ(MakeRegistry().Names(), (std::vector<std::string>{"circle", "square"}));
  EXPECT_TRUE(MakeRegistry().Contains("square"));
  EXPECT_FALSE(MakeRegistry().Contains("unregistered"));
  EXPECT_EQ(MakeRegistry().Examples("square"), (std::vector<std::string>{"side: 2"}));
  EXPECT_TRUE(MakeRegistry().Examples("circle").empty());
}

TEST(ComponentRegistry, DuplicateRegistrationIsFatal) {
  ShapeRegistry registry("shape", "kind");
  registry.Register("square", ValidateSquare, CreateSquare);
  EXPECT_DEATH(registry.Register("square", ValidateSquare, CreateSquare),
               "duplicate shape registration: 'square'");
}

TEST(ConfigPath, Join) {
  EXPECT_EQ(JoinConfigPath("", "a"), "a");
  EXPECT_EQ(JoinConfigPath("a.b", "c"), "a.b.c");
  EXPECT_EQ(JoinConfigPath("a", ""), "a");
}

TEST(FieldChecker, RequiredAndFreeFormMessages) {
  EXPECT_EQ(FieldChecker("trainer.x").RequireSet(false, "teacher", "a checkpoint").status().message(),
            "config field trainer.x.teacher is required: a checkpoint");
  EXPECT_EQ(FieldChecker("").Fail(true, "dataset", "has no videos").status().message(),
            "config field dataset: has no videos");
  FieldChecker merged("x");
  merged.Merge(absl::NotFoundError("missing"));
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FieldChecker("x").Require(true, "y", 1, "never").ok());
}

}  // namespace
}  // namespace tb
