// //tools:compare's library without training: every shipped comparison
// config validates, bad configs name the culprit, the table's numbers
// (mean and sample std over seeds, "-" for missing cells) are right, and
// --jobs plans the selected cells as a graph (names, inputs, selection and
// shards).
#include <gtest/gtest.h>

#include <filesystem>

#include "google/protobuf/text_format.h"
#include "train/compare.h"

namespace tb {
namespace {

TEST(Compare, ShippedConfigsValidate) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator("configs/compare")) {
    if (entry.path().extension() != ".pbtxt") continue;
    SCOPED_TRACE(entry.path().string());
    auto config = LoadCompareConfig(entry.path().string());
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_TRUE(ValidateCompareConfig(*config).ok()) << ValidateCompareConfig(*config);
    EXPECT_GE(config->methods_size(), 11);
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

CompareConfig Parse(const std::string& text) {
  CompareConfig c;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &c)) << text;
  return c;
}

constexpr char kBase[] = R"pb(
  name: "t"
  base {
    dataset { ucf101 { root: "data" } }
    backbone { r3d18 { width_multiplier: 0.5 } }
    trainer { supervised {} }
    optimizer { adam {} }
    schedule { steps: 7 }
  }
  labeled_fractions: [ 0.1, 0.2 ]
  seeds: [ 0, 1 ]
)pb";

TEST(Compare, BadConfigsNameTheCulprit) {
  auto expect = [](const std::string& extra, const std::string& needle) {
    const absl::Status s = ValidateCompareConfig(Parse(kBase + extra));
    EXPECT_FALSE(s.ok()) << extra;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  expect(R"pb(methods { name: "A" }
              methods { name: "A" })pb", "\"A\" is used twice");
  expect(R"pb(methods {
                name: "SD"
                override { trainer { self_distillation {} } }
                teacher_from: "Sup"
              })pb",
         "teacher_from \"Sup\" must name a method listed before it");
  expect(R"pb(methods { name: "Sup" }
              methods { name: "X" teacher_from: "Sup" })pb",
         "teacher_from needs trainer { self_distillation");
  expect(R"pb(methods {
                name: "F"
                override { trainer { fixmatch { pseudo_label { threshold: 2 } } } }
              })pb",
         "trainer.fixmatch.pseudo_label.threshold = 2");
  expect(R"pb(labeled_fractions: 1.5
              methods { name: "A" })pb", "1.5 is not in (0, 1]");
  expect(R"pb(methods { name: "MT" override { trainer { mean_teacher {} } } }
              methods { name: "SD" override { trainer { self_distillation {} } }
                        teacher_from: "MT" })pb",
         "evaluates its EMA teacher");
}

// "Pretrain, then fine-tune" rows (CompareMethod.pretrain).
constexpr char kPretrained[] = R"pb(
  methods { name: "Sup" }
  methods {
    name: "MemDPC"
    pretrain {
      trainer { ssl { objective { memdpc { seq_len: 2 num_seq: 3 pred_step: 1 } } } }
      schedule { steps: 5 }
    }
  }
)pb";

TEST(Compare, PretrainIsValidatedAndNamesTheCulprit) {
  EXPECT_TRUE(ValidateCompareConfig(Parse(std::string(kBase) + kPretrained)).ok())
      << ValidateCompareConfig(Parse(std::string(kBase) + kPretrained));
  auto expect = [](const std::string& extra, const std::string& needle) {
    const absl::Status s = ValidateCompareConfig(Parse(kBase + extra));
    EXPECT_FALSE(s.ok()) << extra;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  expect(R"pb(methods {
                name: "M"
                pretrain { trainer { ssl { objective { memdpc { num_seq: 3 pred_step: 3 } } } } }
              })pb",
         "method \"M\", pretrain, 10% labels, seed 0: config field "
         "trainer.ssl.objective.memdpc.pred_step = 3");
  expect(R"pb(methods {
                name: "M"
                override { init_checkpoint: "x.pt" }
                pretrain { trainer { ssl { objective { memdpc {} } } } }
              })pb",
         "method \"M\": pretrain sets the main run's init_checkpoint");
  expect(R"pb(methods {
                name: "M"
                pretrain {
                  backbone { r3d18 { width_multiplier: 0.25 } }
                  trainer { ssl { objective { memdpc {} } } }
                }
              })pb",
         "method \"M\": pretrain changes the backbone");
  expect(R"pb(methods {
                name: "M"
                override { timebalance {} }
                pretrain { trainer { ssl { objective { memdpc {} } } } }
              })pb",
         "method \"M\": pretrain cannot be combined with a timebalance pipeline");
}

// The pretraining run is part of the cell's key: changing it gives a new
// cell, other methods' keys do not change, and neither do run_dir or
// num_threads matter.
TEST(Compare, PretrainIsPartOfTheCellFingerprint) {
  const CompareConfig with = Parse(std::string(kBase) + kPretrained);
  const CompareConfig alone = Parse(std::string(kBase) + R"pb(methods { name: "Sup" })pb");
  auto key = [](const CompareConfig& c, int method) {
    absl::StatusOr<std::string> k = CellFingerprint(c, c.methods(method), 0.1f, 0, "");
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? *k : std::string();
  };
  EXPECT_EQ(key(with, 0), key(alone, 0));
  // MemDPC's fine-tuning run alone is Sup's; the pretraining run tells them apart.
  CompareConfig no_pretrain = with;
  no_pretrain.mutable_methods(1)->clear_pretrain();
  no_pretrain.mutable_methods(1)->set_name("Sup");
  EXPECT_NE(key(with, 1), key(no_pretrain, 1));
  CompareConfig longer = with;
  longer.mutable_methods(1)->mutable_pretrain()->mutable_schedule()->set_steps(6);
  EXPECT_NE(key(with, 1), key(longer, 1));
  CompareConfig elsewhere = with;
  elsewhere.mutable_methods(1)->mutable_pretrain()->set_run_dir("/somewhere");
  elsewhere.mutable_methods(1)->mutable_pretrain()->set_num_threads(3);
  elsewhere.mutable_base()->set_run_dir("/elsewhere");
  EXPECT_EQ(key(with, 1), key(elsewhere, 1));
  EXPECT_NE(key(with, 1), *CellFingerprint(with, with.methods(1), 0.2f, 0, ""));
  EXPECT_NE(key(with, 1), *CellFingerprint(with, with.methods(1), 0.1f, 1, ""));
}

// The Steps column counts the pretraining run's steps too (7 + 5).
TEST(Compare, PretrainStepsAreInTheBudget) {
  const std::string md =
      ComparisonMarkdown(Parse(std::string(kBase) + kPretrained), std::vector<CellRecord>());
  EXPECT_NE(md.find("| Sup | r3d18 (width 0.5) | - | 8 | 7 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| MemDPC | r3d18 (width 0.5) | - | 8 | 12 |"), std::string::npos) << md;
}

TEST(Compare, TableHasMeanAndSampleStdPerFraction) {
  const CompareConfig c = Parse(std::string(kBase) + R"pb(methods { name: "Sup" }
                                                          methods { name: "Other" })pb");
  std::vector<CellRecord> cells;
  for (auto [seed, top1] : {std::pair<int, double>{0, 0.30}, {1, 0.40}}) {
    CellRecord r;
    r.set_method("Sup");
    r.set_labeled_fraction(0.1f);
    r.set_seed(seed);
    r.set_top1(top1);
    r.set_seconds(60 + 60 * seed);
    r.set_parameters(2500000);
    r.set_labeled_list_sha256("abcdef0123456789ffff");
    cells.push_back(r);
  }
  const std::string md = ComparisonMarkdown(c, cells);
  // mean 35, sample std sqrt(50) = 7.07; the 20% column has no cell.
  EXPECT_NE(md.find("| Sup | r3d18 (width 0.5) | 2.50 | 8 | 7 | 35.0 ± 7.1 (2) | - | 1m30s |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| Other | r3d18 (width 0.5) | - | 8 | 7 | - | - | - |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("10%/seed 0 `abcdef0123456789`"), std::string::npos) << md;
  const std::string csv = ComparisonCsv(c, cells);
  EXPECT_NE(csv.find("\"Sup\",\"r3d18 (width 0.5)\",2500000,8,7,35.00,7.07,2,,,0,90.0"),
            std::string::npos)
      << csv;
  // A single seed has no sample std: the value alone, the CSV std empty.
  CellRecord one = cells[0];
  one.set_method("Other");
  one.set_labeled_fraction(0.2f);
  cells.push_back(one);
  const std::string md1 = ComparisonMarkdown(c, cells);
  EXPECT_NE(md1.find("| Other | r3d18 (width 0.5) | 2.50 | 8 | 7 | - | 30.0 (1) | 1m00s |"),
            std::string::npos)
      << md1;
  EXPECT_NE(ComparisonCsv(c, cells).find("\"Other\",\"r3d18 (width 0.5)\",2500000,8,7,,,0,30.00,,1"),
            std::string::npos)
      << ComparisonCsv(c, cells);
}

// A teacher_from chain Sup <- SD <- SD2 and an independent method, over
// kBase's 2 fractions x 2 seeds.
constexpr char kChain[] = R"pb(
  methods { name: "Sup" }
  methods {
    name: "SD"
    override { trainer { self_distillation {} } }
    teacher_from: "Sup"
  }
  methods {
    name: "SD2"
    override { trainer { self_distillation {} } }
    teacher_from: "SD"
  }
  methods {
    name: "FixMatch (ours)"
    override { trainer { fixmatch {} } }
  }
)pb";

// "name<-input" per task, in plan order.
std::vector<std::string> Plan(const CompareConfig& c, const CompareOptions& options) {
  absl::StatusOr<std::vector<StageTask>> tasks = PlanCells(c, options);
  EXPECT_TRUE(tasks.ok()) << tasks.status();
  std::vector<std::string> out;
  if (!tasks.ok()) return out;
  for (const StageTask& t : *tasks) {
    EXPECT_EQ(t.threads, 1) << t.name;
    EXPECT_LE(t.inputs.size(), 1u) << t.name;
    out.push_back(t.inputs.empty() ? t.name : t.name + "<-" + t.inputs[0]);
  }
  return out;
}

TEST(Compare, PlanCellsIsTheMatrixWithTeachersAsInputs) {
  const CompareConfig c = Parse(std::string(kBase) + kChain);
  CompareOptions options;
  options.out_dir = "unused";
  const std::vector<std::string> all = Plan(c, options);
  ASSERT_EQ(all.size(), 16u);
  // Matrix order: fraction, seed, method.
  EXPECT_EQ(std::vector<std::string>(all.begin(), all.begin() + 5),
            (std::vector<std::string>{"sup_f10_s0", "sd_f10_s0<-sup_f10_s0",
                                      "sd2_f10_s0<-sd_f10_s0", "fixmatch_ours_f10_s0",
                                      "sup_f10_s1"}));
  EXPECT_EQ(all.back(), "fixmatch_ours_f20_s1");
  EXPECT_EQ(all[13], "sd_f20_s1<-sup_f20_s1");

  // --fractions and --seeds.
  options.fractions = {0.2f};
  options.seeds = {1};
  EXPECT_EQ(Plan(c, options),
            (std::vector<std::string>{"sup_f20_s1", "sd_f20_s1<-sup_f20_s1",
                                      "sd2_f20_s1<-sd_f20_s1", "fixmatch_ours_f20_s1"}));
  // --methods: a cell waits for the nearest planned cell up its chain, and
  // for none when no cell of its chain is planned.
  options.methods = {"Sup", "SD2"};
  EXPECT_EQ(Plan(c, options), (std::vector<std::string>{"sup_f20_s1", "sd2_f20_s1<-sup_f20_s1"}));
  options.methods = {"SD2"};
  EXPECT_EQ(Plan(c, options), (std::vector<std::string>{"sd2_f20_s1"}));
  // --collect runs nothing.
  CompareOptions collect;
  collect.out_dir = "unused";
  collect.collect = true;
  EXPECT_TRUE(Plan(c, collect).empty());
  // The selection is checked as RunComparison checks it.
  options.methods = {"Nope"};
  EXPECT_NE(PlanCells(c, options).status().message().find("no method named \"Nope\""),
            std::string::npos);
}

// --shard=i/N: the shards' plans split the cells, a cell and its teachers
// in one shard (the groups round-robin: the Sup chains of each fraction and
// seed to shard 0, FixMatch to shard 1).
TEST(Compare, PlanCellsKeepsToTheShard) {
  const CompareConfig c = Parse(std::string(kBase) + kChain);
  CompareOptions options;
  options.out_dir = "unused";
  options.shard_count = 2;
  std::vector<std::string> shard0 = Plan(c, options);
  options.shard_index = 1;
  const std::vector<std::string> shard1 = Plan(c, options);
  EXPECT_EQ(shard0.size(), 12u);
  EXPECT_EQ(shard1, (std::vector<std::string>{"fixmatch_ours_f10_s0", "fixmatch_ours_f10_s1",
                                              "fixmatch_ours_f20_s0", "fixmatch_ours_f20_s1"}));
  EXPECT_EQ(shard0[2], "sd2_f10_s0<-sd_f10_s0");
  options.shard_index = 2;
  EXPECT_NE(PlanCells(c, options).status().message().find("is not i/N"), std::string::npos);
}

// Cell names are file names and unique; fractions equal to 0.1% would give
// two cells one name (and one log).
TEST(Compare, PlanCellsRefusesTwoCellsWithOneName) {
  CompareConfig c = Parse(std::string(kBase) + kChain);
  c.add_labeled_fractions(0.1001f);
  CompareOptions options;
  options.out_dir = "unused";
  const absl::Status s = PlanCells(c, options).status();
  EXPECT_NE(s.message().find("two cells are named sup_f10_s0"), std::string::npos) << s;
}

TEST(Compare, CellThreadsSplitTheBudget) {
  EXPECT_EQ(CellThreads(2, 2), 1);
  EXPECT_EQ(CellThreads(8, 2), 4);
  EXPECT_EQ(CellThreads(8, 3), 2);
  EXPECT_EQ(CellThreads(2, 3), 1);
  EXPECT_EQ(CellThreads(1, 1), 1);
}

}  // namespace
}  // namespace tb
