// Unit tests of the regression suite's rules (bands, verdicts, --update and
// the in-place rewrite) and of the JSON paths metrics are read with. The
// whole tool on a real run: //tests:regress_tool_test.
#include "train/regress.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/records.h"
#include "train/json_path.h"

namespace tb {
namespace {

RegressionEntry Entry(const std::string& text) {
  RegressionEntry e;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &e)) << text;
  return e;
}

Measured Values(std::vector<double> v) {
  Measured m;
  m.per_seed = std::move(v);
  Summarize(&m);
  return m;
}

TEST(RegressRulesTest, SummarizeUsesSampleStd) {
  const Measured m = Values({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_NEAR(m.std, 1.2909944487, 1e-9);  // sqrt(5/3)
  EXPECT_DOUBLE_EQ(Values({7}).std, 0);
}

TEST(RegressRulesTest, DeterministicBand) {
  RegressionEntry e = Entry(
      "kind: DETERMINISTIC tolerance { abs: 0.5 rel: 0.1 } expected { value: 20 } "
      "metric { higher_is_better: true }");
  EXPECT_DOUBLE_EQ(BandHalfWidth(e, e.expected()), 2.0);  // max(0.5, 0.1 x 20)
  EXPECT_EQ(Judge(e, Values({21.9})), Verdict::kPass);
  EXPECT_EQ(Judge(e, Values({22.1})), Verdict::kImprovement);
  EXPECT_EQ(Judge(e, Values({17.9})), Verdict::kRegression);
  e.mutable_metric()->set_higher_is_better(false);  // a loss
  EXPECT_EQ(Judge(e, Values({22.1})), Verdict::kRegression);
  EXPECT_EQ(Judge(e, Values({17.9})), Verdict::kImprovement);
  RegressionEntry exact = Entry("kind: DETERMINISTIC expected { value: 1.25 }");
  EXPECT_DOUBLE_EQ(BandHalfWidth(exact, exact.expected()), 0);
  EXPECT_EQ(Judge(exact, Values({1.25})), Verdict::kPass);
  EXPECT_NE(Judge(exact, Values({1.2500001})), Verdict::kPass);
}

TEST(RegressRulesTest, StatisticalBandUsesRecordedStd) {
  RegressionEntry e = Entry(
      "kind: STATISTICAL tolerance { abs: 1 std_multiplier: 2 } expected { value: 40 std: 3 }");
  EXPECT_DOUBLE_EQ(BandHalfWidth(e, e.expected()), 6);  // max(1, 2 x 3)
  EXPECT_EQ(Judge(e, Values({35, 36})), Verdict::kPass);  // mean 35.5
  EXPECT_EQ(Judge(e, Values({30, 32})), Verdict::kRegression);
  e.mutable_expected()->set_std(0.1);
  EXPECT_DOUBLE_EQ(BandHalfWidth(e, e.expected()), 1);
}

TEST(RegressRulesTest, PerformanceRatioHigherIsFaster) {
  RegressionEntry e = Entry(
      "kind: PERFORMANCE performance { repeats: 1 } tolerance { rel: 0.25 } expected { value: 2 }");
  EXPECT_EQ(Judge(e, Values({2.4})), Verdict::kPass);
  EXPECT_EQ(Judge(e, Values({2.6})), Verdict::kImprovement);
  EXPECT_EQ(Judge(e, Values({1.4})), Verdict::kRegression);
}

TEST(RegressRulesTest, TextMustMatchExactly) {
  RegressionEntry e = Entry("kind: DETERMINISTIC expected { text: \"ab12\" }");
  Measured m;
  m.is_text = true;
  m.text = "ab12";
  EXPECT_EQ(Judge(e, m), Verdict::kPass);
  m.text = "ab13";
  EXPECT_EQ(Judge(e, m), Verdict::kChanged);
}

TEST(RegressRulesTest, UpdateRefusesToWidenABand) {
  RegressionEntry e = Entry(
      "name: \"s\" kind: STATISTICAL tolerance { std_multiplier: 2 } "
      "expected { value: 40 std: 1 per_seed: [39, 40, 41] }");
  Provenance p;
  p.set_commit("c0ffee");
  absl::StatusOr<Expected> narrower = UpdatedExpected(e, Values({40, 41}), p, false);
  ASSERT_TRUE(narrower.ok()) << narrower.status();  // std 0.707 < 1
  EXPECT_DOUBLE_EQ(narrower->value(), 40.5);
  EXPECT_EQ(narrower->per_seed_size(), 2);
  EXPECT_EQ(narrower->provenance().commit(), "c0ffee");
  absl::StatusOr<Expected> wider = UpdatedExpected(e, Values({30, 50}), p, false);
  ASSERT_FALSE(wider.ok());
  EXPECT_EQ(wider.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(wider.status().message().find("\"s\""), std::string::npos);
  EXPECT_NE(wider.status().message().find("--allow_wider_bands"), std::string::npos);
  EXPECT_TRUE(UpdatedExpected(e, Values({30, 50}), p, true).ok());
  // A first recording has no band to widen.
  RegressionEntry fresh = Entry(
      "name: \"f\" kind: STATISTICAL tolerance { std_multiplier: 2 } "
      "expected { not_recorded: true }");
  EXPECT_TRUE(UpdatedExpected(fresh, Values({30, 50}), p, false).ok());
  // Nor has a published value before the suite's own runs.
  RegressionEntry published = Entry(
      "name: \"p\" kind: STATISTICAL tolerance { abs: 2 std_multiplier: 2 } "
      "expected { value: 60 published: true }");
  EXPECT_TRUE(UpdatedExpected(published, Values({30, 50}), p, false).ok());
}

TEST(RegressRulesTest, PublishedValuesAreKept) {
  RegressionEntry e = Entry(
      "kind: STATISTICAL tolerance { abs: 3 } expected { value: 61.2 published: true "
      "provenance { source: \"TimeBalance paper, Table 2\" } }");
  absl::StatusOr<Expected> x = UpdatedExpected(e, Values({50, 52}), Provenance(), false);
  ASSERT_TRUE(x.ok());
  EXPECT_DOUBLE_EQ(x->value(), 61.2);
  EXPECT_TRUE(x->published());
  EXPECT_EQ(x->provenance().source(), "TimeBalance paper, Table 2");
  EXPECT_EQ(x->per_seed_size(), 2);
}

TEST(RegressRulesTest, DeterministicValuesPerMachineKind) {
  RegressionEntry e = Entry(
      "name: \"d\" kind: DETERMINISTIC expected { value: 1 provenance { machine_kind: \"A\" } "
      "other_machines { value: 2 provenance { machine_kind: \"B\" } } }");
  ASSERT_NE(ExpectedFor(e, "A"), nullptr);
  EXPECT_DOUBLE_EQ(ExpectedFor(e, "A")->value(), 1);
  ASSERT_NE(ExpectedFor(e, "B"), nullptr);
  EXPECT_DOUBLE_EQ(ExpectedFor(e, "B")->value(), 2);
  EXPECT_EQ(ExpectedFor(e, "C"), nullptr);
  // A record without a kind (hand-written) applies everywhere.
  RegressionEntry any = Entry("kind: DETERMINISTIC expected { value: 3 }");
  ASSERT_NE(ExpectedFor(any, "C"), nullptr);
  // --update on kind B replaces B's value and keeps A's.
  Provenance p;
  p.set_machine_kind("B");
  absl::StatusOr<Expected> x = UpdatedExpected(e, Values({5}), p, false);
  ASSERT_TRUE(x.ok());
  EXPECT_DOUBLE_EQ(x->value(), 5);
  ASSERT_EQ(x->other_machines_size(), 1);
  EXPECT_EQ(x->other_machines(0).provenance().machine_kind(), "A");
  EXPECT_DOUBLE_EQ(x->other_machines(0).value(), 1);
  // ... and on a new kind C keeps both.
  p.set_machine_kind("C");
  x = UpdatedExpected(e, Values({7}), p, false);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->other_machines_size(), 2);
  EXPECT_NE(CurrentMachineKind().find("LibTorch"), std::string::npos);
}

constexpr char kSuite[] = R"(# a comment that must survive
name: "t"
entries {
  name: "a"   # trailing comment
  kind: DETERMINISTIC
  seeds: [0]
  expected { not_recorded: true }
}
entries { name: "b" kind: DETERMINISTIC seeds: [0] }
entries {
  name: "c"
  kind: DETERMINISTIC
  seeds: [0]
  expected {
    value: 3
  }
  # after
}
)";

TEST(RegressRewriteTest, ReplacesOnlyExpectedBlocks) {
  Expected a, b, c;
  a.set_value(1.5);
  a.mutable_provenance()->set_commit("abc");
  b.set_text("deadbeef");
  c.set_value(4);
  absl::StatusOr<std::string> out = RewriteExpected(kSuite, "suite", {{0, a}, {1, b}, {2, c}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("# a comment that must survive"), std::string::npos);
  EXPECT_NE(out->find("name: \"a\"   # trailing comment"), std::string::npos);
  EXPECT_NE(out->find("# after"), std::string::npos);
  EXPECT_EQ(out->find("not_recorded"), std::string::npos);
  RegressionSuite parsed;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(*out, &parsed)) << *out;
  EXPECT_DOUBLE_EQ(parsed.entries(0).expected().value(), 1.5);
  EXPECT_EQ(parsed.entries(0).expected().provenance().commit(), "abc");
  EXPECT_EQ(parsed.entries(1).expected().text(), "deadbeef");
  EXPECT_DOUBLE_EQ(parsed.entries(2).expected().value(), 4);
  // Rewriting again with the same values changes nothing.
  absl::StatusOr<std::string> again = RewriteExpected(*out, "suite", {{0, a}, {1, b}, {2, c}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *out);
  EXPECT_FALSE(RewriteExpected(kSuite, "suite", {{7, a}}).ok());
}

TEST(JsonPathTest, ResolvesKeysIndicesAndSelectors) {
  absl::StatusOr<google::protobuf::Value> root = ParseJsonValue(
      R"({"test": {"top1": 0.25, "per_class": [{"class_name": "a", "top1": 1}]},
          "stages": [{"stage": "distill", "seconds": 12.5}], "steps": "40", "sha": "ab"})",
      "x");
  ASSERT_TRUE(root.ok()) << root.status();
  double v;
  ASSERT_TRUE(JsonNumber(*ResolveJsonPath(*root, "test.top1"), &v));
  EXPECT_DOUBLE_EQ(v, 0.25);
  ASSERT_TRUE(JsonNumber(*ResolveJsonPath(*root, "test.per_class[0].top1"), &v));
  EXPECT_DOUBLE_EQ(v, 1);
  ASSERT_TRUE(JsonNumber(*ResolveJsonPath(*root, "stages[stage=distill].seconds"), &v));
  EXPECT_DOUBLE_EQ(v, 12.5);
  ASSERT_TRUE(JsonNumber(*ResolveJsonPath(*root, "steps"), &v));  // int64 as a string
  EXPECT_DOUBLE_EQ(v, 40);
  EXPECT_FALSE(JsonNumber(*ResolveJsonPath(*root, "sha"), &v));
  absl::StatusOr<google::protobuf::Value> missing = ResolveJsonPath(*root, "test.top5");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("top5"), std::string::npos);
  EXPECT_EQ(ResolveJsonPath(*root, "stages[stage=score].seconds").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(CheckJsonPath("a..b").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckJsonPath("a[").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckJsonPath("a.b[2].c[k=v]").ok());
}

TEST(RegressValidateTest, NamesTheEntryAndField) {
  const std::string root = std::filesystem::path(::testing::TempDir()) / "regress_validate";
  std::filesystem::create_directories(root);
  auto check = [&](const std::string& text) {
    RegressionSuite s;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &s)) << text;
    return ValidateRegressionSuite(s, root);
  };
  absl::Status s = check(
      "entries { name: \"x\" kind: DETERMINISTIC seeds: [0, 1] "
      "experiment { config: \"c.pbtxt\" } metric { cell: \"top1\" } }");
  EXPECT_NE(s.message().find("entry \"x\": a deterministic entry has exactly one seed"),
            std::string::npos)
      << s;
  s = check(
      "entries { name: \"gone\" kind: DETERMINISTIC seeds: [0] "
      "experiment { config: \"configs/nope.pbtxt\" } metric { cell: \"top1\" } }");
  EXPECT_NE(s.message().find("configs/nope.pbtxt does not exist"), std::string::npos) << s;
  s = check(
      "entries { name: \"p\" kind: DETERMINISTIC seeds: [0] "
      "experiment { config: \"c.pbtxt\" } metric { json { path: \"a..b\" } } }");
  EXPECT_NE(s.message().find("entry \"p\""), std::string::npos) << s;
  s = check(
      "entries { name: \"s\" kind: STATISTICAL seeds: [0, 1] "
      "experiment { config: \"c.pbtxt\" } metric { cell: \"top1\" } }");
  EXPECT_NE(s.message().find("std_multiplier or tolerance.abs"), std::string::npos) << s;
  s = check(
      "entries { name: \"r\" kind: PERFORMANCE tolerance { rel: 0.1 } performance { "
      "numerator { calibration { op: MATMUL } } denominator { command { argv: \"{tool:nope}\" "
      "regex: \"(x)\" } } } }");
  EXPECT_NE(s.message().find("tool \"nope\" not found"), std::string::npos) << s;
  s = check("entries { name: \"a b\" kind: DETERMINISTIC }");
  EXPECT_NE(s.message().find("letters, digits"), std::string::npos) << s;
  s = check("data { name: \"d\" } data { name: \"d\" }");
  EXPECT_NE(s.message().find("\"d\" is used twice"), std::string::npos) << s;
}

// The code fingerprint that decides whether finished runs are reused: a
// throwaway git repository with code, docs and a suite.
TEST(RegressCodeFingerprintTest, ChangesWithCodeOnly) {
  namespace fs = std::filesystem;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path repo = fs::path(tmp != nullptr ? tmp : "/tmp") / "fingerprint_repo";
  fs::remove_all(repo);
  fs::create_directories(repo / "docs");
  fs::create_directories(repo / "benchmarks");
  const auto write = [&](const std::string& path, const std::string& text) {
    std::ofstream(repo / path) << text;
  };
  const auto git = [&](const std::string& args) {
    const std::string cmd = "git -C '" + repo.string() +
                            "' -c user.name=t -c user.email=t@t -c init.defaultBranch=main " +
                            args + " >/dev/null 2>&1";
    return std::system(cmd.c_str());
  };
  EXPECT_EQ(CodeFingerprint(repo.string()), "") << "not a repository yet";
  write("a.cc", "int a = 1;\n");
  write("docs/n.md", "notes\n");
  write("README.md", "readme\n");
  write("benchmarks/s.pbtxt", "name: \"s\"\n");
  ASSERT_EQ(git("init -q"), 0);
  ASSERT_EQ(git("add -A"), 0);
  ASSERT_EQ(git("commit -q -m first"), 0);
  const std::string f0 = CodeFingerprint(repo.string());
  ASSERT_EQ(f0.size(), 64u);
  // Documentation and suites, edited or committed: the same code.
  write("docs/n.md", "more notes\n");
  write("README.md", "readme 2\n");
  write("benchmarks/s.pbtxt", "name: \"s2\"\n");
  EXPECT_EQ(CodeFingerprint(repo.string()), f0);
  ASSERT_EQ(git("commit -q -a -m docs"), 0);
  EXPECT_EQ(CodeFingerprint(repo.string()), f0);
  // A code change, uncommitted and then committed: different code.
  write("a.cc", "int a = 2;\n");
  const std::string f1 = CodeFingerprint(repo.string());
  EXPECT_NE(f1, f0);
  ASSERT_EQ(git("commit -q -a -m code"), 0);
  const std::string f2 = CodeFingerprint(repo.string());
  EXPECT_NE(f2, f0);
  // Back to the first code, committed: the first fingerprint again.
  write("a.cc", "int a = 1;\n");
  ASSERT_EQ(git("commit -q -a -m revert"), 0);
  EXPECT_EQ(CodeFingerprint(repo.string()), f0);
}

}  // namespace
}  // namespace tb
