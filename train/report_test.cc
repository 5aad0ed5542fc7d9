#include "train/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/file_util.h"
#include "core/records.h"
#include "core/results.pb.h"

namespace tb {
namespace {
namespace fs = std::filesystem;

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("report_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void Write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  static VideoAccuracyRecord Accuracy(double a, double b) {
    VideoAccuracyRecord r;
    r.set_videos(4);
    r.set_clips_per_video(2);
    r.set_crops_per_clip(1);
    r.set_top1((a + b) / 2);
    r.set_top5(1);
    ClassResult* c = r.add_per_class();
    c->set_class_name("Bounce<Square>");
    c->set_top1(a);
    c->set_videos(2);
    c = r.add_per_class();
    c->set_class_name("Spin");
    c->set_top1(b);
    c->set_videos(2);
    ConfusionRow* row = r.add_confusion();
    row->add_predicted(1);
    row->add_predicted(1);
    row = r.add_confusion();
    row->add_predicted(0);
    row->add_predicted(2);
    return r;
  }
  void WriteExperiment(const fs::path& dir) {
    ExperimentResults r;
    r.set_experiment("supervised_tiny");
    r.set_labeled_videos(3);
    r.set_train_videos(12);
    r.set_labeled_fraction(0.25f);
    r.set_steps(4);
    r.set_model_sha256("abc123");
    *r.mutable_test() = Accuracy(0.5, 1.0);
    Write(dir / "results.json", ToJson(r));
    Write(dir / "metrics.jsonl",
          "{\"step\": 2, \"lr\": 0.01, \"loss_ce\": 2.5, \"clips_per_s\": 10.5, "
          "\"data_wait_s\": 0.1, \"mask_rate\": 0.25}\n"
          "{\"step\": 4, \"lr\": 0.005, \"loss_ce\": 1.5, \"clips_per_s\": 11.0, "
          "\"data_wait_s\": 0.0, \"mask_rate\": 0.5}\n");
    Write(dir / "config.pbtxt", "name: \"a <b> & c\"\n");
  }
  fs::path dir_;
};

TEST(HtmlEscapeTest, EscapesMarkup) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(HtmlEscape("plain"), "plain");
}

TEST(NiceTicksTest, RoundSteps) {
  const std::vector<double> t = NiceTicks(0, 1, 5);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_DOUBLE_EQ(t[0], 0);
  EXPECT_DOUBLE_EQ(t[1], 0.2);
  EXPECT_DOUBLE_EQ(t[5], 1);
  const std::vector<double> u = NiceTicks(3.2, 47, 5);  // 8.76 a tick: step 10
  EXPECT_DOUBLE_EQ(u.front(), 0);
  EXPECT_DOUBLE_EQ(u.back(), 50);
  EXPECT_DOUBLE_EQ(u[1] - u[0], 10);
  EXPECT_TRUE(NiceTicks(1, 1, 4).empty());
}

TEST(ChartsTest, LineChart) {
  EXPECT_EQ(LineChartSvg("t", "step", {}), "");
  EXPECT_EQ(LineChartSvg("t", "step", {{"empty", {}}}), "");
  const std::string svg =
      LineChartSvg("loss <terms>", "step", {{"loss_ce", {{1, 2.0}, {2, 1.0}}}, {"b", {}}});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("loss &lt;terms&gt;"), std::string::npos);
  EXPECT_EQ(Count(svg, "<polyline"), 1);
  EXPECT_EQ(Count(svg, "<circle"), 2);
  EXPECT_NE(svg.find("loss_ce = 1.00"), std::string::npos);  // legend: last value
  ChartBand band{{1, 2}, {0.5, 0.5}, {1.5, 2.5}};
  EXPECT_NE(LineChartSvg("h", "invocation", {{"m", {{1, 1}, {2, 2}}}}, &band).find("<polygon"),
            std::string::npos);
}

TEST(ChartsTest, BarsAndConfusion) {
  const std::string bars = BarChartSvg("diff", {"a", "b"}, {10, -20}, true, "%+.0f");
  EXPECT_NE(bars.find("+10"), std::string::npos);
  EXPECT_NE(bars.find("-20"), std::string::npos);
  EXPECT_EQ(Count(bars, "#ff7f0e"), 1);  // one negative bar
  EXPECT_EQ(BarChartSvg("x", {"a"}, {1, 2}, false, "%g"), "");
  const std::string conf = ConfusionSvg("c", {"a", "b"}, {{3, 1}, {0, 4}});
  EXPECT_EQ(Count(conf, "<rect"), 4);
  EXPECT_NE(conf.find("true a, predicted b: 1 of 4"), std::string::npos);
  // The diagonal of row b is fully shaded (4 of 4).
  EXPECT_NE(conf.find("rgb(0,0,255)"), std::string::npos);
}

TEST_F(ReportTest, DetectsKinds) {
  EXPECT_EQ(DetectRunKind((dir_ / "missing").string()).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<RunKind> empty = DetectRunKind(dir_.string());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(empty.status().message().find(dir_.string()), std::string::npos);
  WriteExperiment(dir_ / "exp");
  EXPECT_EQ(*DetectRunKind((dir_ / "exp").string()), RunKind::kExperiment);
  fs::create_directories(dir_ / "pipe" / "stages");
  EXPECT_EQ(*DetectRunKind((dir_ / "pipe").string()), RunKind::kPipeline);
  fs::create_directories(dir_ / "cmp" / "cells");
  EXPECT_EQ(*DetectRunKind((dir_ / "cmp").string()), RunKind::kComparison);
  Write(dir_ / "reg" / "history.jsonl", "");
  EXPECT_EQ(*DetectRunKind((dir_ / "reg").string()), RunKind::kRegression);
}

TEST_F(ReportTest, ExperimentPage) {
  WriteExperiment(dir_ / "exp");
  absl::StatusOr<std::string> html = RenderReport({{(dir_ / "exp").string()}, "My <report>"});
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_NE(html->find("<title>My &lt;report&gt;</title>"), std::string::npos);
  EXPECT_NE(html->find("75.0 / 100.0"), std::string::npos);  // top-1 / top-5
  EXPECT_NE(html->find("Bounce&lt;Square&gt;"), std::string::npos);
  EXPECT_NE(html->find("name: &quot;a &lt;b&gt; &amp; c&quot;"), std::string::npos);  // config
  EXPECT_NE(html->find("abc123"), std::string::npos);
  // Curves: losses, lr, clips/s, data wait, mask rate; bars; confusion.
  EXPECT_EQ(Count(*html, "<svg"), 7);
  EXPECT_NE(html->find("mask, pseudo-label and accuracy rates"), std::string::npos);
  // Self-contained: nothing loaded from elsewhere.
  EXPECT_EQ(html->find("<link"), std::string::npos);
  EXPECT_EQ(html->find(" src="), std::string::npos);
  EXPECT_EQ(Count(*html, "http"), Count(*html, "xmlns=\"http://www.w3.org/2000/svg\""));
}

TEST_F(ReportTest, BadFilesAreNamed) {
  Write(dir_ / "exp" / "results.json", "{\"test\": ");
  absl::StatusOr<std::string> html = RenderReport({{(dir_ / "exp").string()}});
  ASSERT_FALSE(html.ok());
  EXPECT_NE(html.status().message().find("results.json"), std::string::npos) << html.status();
  Write(dir_ / "exp2" / "metrics.jsonl", "{\"step\": 1, \"loss\": 1}\nnot json\n");
  html = RenderReport({{(dir_ / "exp2").string()}});
  ASSERT_FALSE(html.ok());
  EXPECT_NE(html.status().message().find("metrics.jsonl"), std::string::npos) << html.status();
  EXPECT_FALSE(RenderReport({{(dir_ / "nothing").string()}}).ok());
  EXPECT_FALSE(RenderReport({}).ok());
}

TEST_F(ReportTest, PipelinePage) {
  const fs::path run = dir_ / "pipe";
  PipelineResults r;
  r.set_labeled_videos(3);
  r.set_train_videos(12);
  r.set_labeled_fraction(0.25f);
  *r.mutable_student() = Accuracy(1.0, 0.5);
  *r.mutable_invariant_teacher() = Accuracy(1.0, 0.0);
  *r.mutable_distinctive_teacher() = Accuracy(0.5, 0.5);
  for (const char* s : {"pretrain_invariant", "score", "distill"}) {
    StageTime* t = r.add_stages();
    t->set_stage(s);
    t->set_seconds(10);
  }
  r.mutable_stages(1)->set_skipped(true);
  Write(run / "results.json", ToJson(r));
  WriteExperiment(run / "stages" / "distill");
  ScoreResults sr;
  sr.set_videos(9);
  ClassWeight* w = sr.add_per_class();
  w->set_class_name("Spin");
  w->set_mean_weight(0.75);
  Write(run / "stages" / "score" / "results.json", ToJson(sr));
  absl::StatusOr<std::string> html = RenderReport({{run.string()}});
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_NE(html->find("stage timeline (30s in all"), std::string::npos) << *html;
  EXPECT_NE(html->find("(reused)"), std::string::npos);
  // invariant - distinctive: +50 for Bounce<Square>, -50 for Spin.
  EXPECT_NE(html->find("invariant minus distinctive"), std::string::npos);
  EXPECT_NE(html->find(">+50<"), std::string::npos);
  EXPECT_NE(html->find(">-50<"), std::string::npos);
  EXPECT_NE(html->find("9 unlabeled videos scored"), std::string::npos);
  EXPECT_NE(html->find("<details open><summary>stage distill"), std::string::npos);
}

TEST_F(ReportTest, ComparisonTableWithErrorBars) {
  const fs::path out = dir_ / "cmp";
  auto cell = [&](const std::string& method, int seed, double top1) {
    CellRecord c;
    c.set_method(method);
    c.set_labeled_fraction(0.1f);
    c.set_seed(seed);
    c.set_top1(top1);
    Write(out / "cells" / method / ("f0.1_s" + std::to_string(seed)) / "cell_done.pbtxt",
          ToTextProto(c));
  };
  cell("Supervised", 0, 0.30);
  cell("Supervised", 1, 0.50);
  cell("FixMatch", 0, 0.60);
  Write(out / "comparison.csv", "method,backbone\n\"Supervised\",\"r3d\"\n\"FixMatch\",\"r3d\"\n");
  absl::StatusOr<std::string> html = RenderReport({{out.string()}});
  ASSERT_TRUE(html.ok()) << html.status();
  // mean 40, sample std sqrt(200) = 14.1.
  EXPECT_NE(html->find("40.0 ± 14.1 (2)"), std::string::npos);
  EXPECT_NE(html->find("60.0 (1)"), std::string::npos);
  EXPECT_LT(html->find("<td>Supervised</td>"), html->find("<td>FixMatch</td>"));
  EXPECT_NE(html->find("10% labeled"), std::string::npos);
}

TEST_F(ReportTest, RegressionHistory) {
  const fs::path out = dir_ / "reg";
  Write(out / "history.jsonl",
        "{\"time\": \"t1\", \"suite\": \"ci\", \"entry\": \"sup.top1\", \"kind\": "
        "\"deterministic\", \"expected\": 50, \"band_low\": 49, \"band_high\": 51, \"measured\": "
        "50, \"verdict\": \"pass\"}\n"
        "{\"time\": \"t2\", \"suite\": \"ci\", \"entry\": \"sup.top1\", \"kind\": "
        "\"deterministic\", \"expected\": 50, \"band_low\": 49, \"band_high\": 51, \"measured\": "
        "55, \"verdict\": \"improvement\"}\n"
        "{\"time\": \"t2\", \"suite\": \"ci\", \"entry\": \"sup.sha\", \"kind\": "
        "\"deterministic\", \"expected_text\": \"aa\", \"measured_text\": \"aa\", \"verdict\": "
        "\"pass\"}\n");
  absl::StatusOr<std::string> html = RenderReport({{out.string()}});
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_NE(html->find("3 measurements of 2 entries"), std::string::npos);
  EXPECT_NE(html->find("<td>improvement</td>"), std::string::npos);
  EXPECT_EQ(Count(*html, "<polygon"), 1);  // the numeric entry's band
  Write(out / "history.jsonl", "{\"entry\": 1\n");
  html = RenderReport({{out.string()}});
  ASSERT_FALSE(html.ok());
  EXPECT_NE(html.status().message().find("history.jsonl:1"), std::string::npos) << html.status();
}

}  // namespace
}  // namespace tb
