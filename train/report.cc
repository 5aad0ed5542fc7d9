#include "train/report.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"
#include "core/format.h"
#include "core/records.h"
#include "core/results.pb.h"
#include "core/status_macros.h"
#include "train/json_path.h"
#include "train/regress.pb.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                    "#9467bd", "#8c564b", "#e377c2", "#17becf"};
constexpr int kPaletteSize = 8;

// Stages of the TimeBalance pipeline in the order they run
// (train/pipeline.h), for a run whose results.json is not written yet.
constexpr const char* kStageOrder[] = {"pretrain_invariant",   "pretrain_distinctive", "score",
                                       "finetune_invariant",   "finetune_distinctive", "distill",
                                       "supervised"};

std::string Num(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  if (a >= 1e5 || a < 1e-3) return absl::StrFormat("%.2g", v);
  if (a >= 100) return absl::StrFormat("%.0f", v);
  if (a >= 10) return absl::StrFormat("%.1f", v);
  if (a >= 1) return absl::StrFormat("%.2f", v);
  return absl::StrFormat("%.3g", v);
}

std::string Percent(double fraction) { return absl::StrFormat("%.1f", 100.0 * fraction); }

bool Exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

bool IsDir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// Parses a results.json written by this project into `message`; fields
// this build does not know (a newer run) are ignored.
absl::Status ReadResultsJson(const std::string& path, google::protobuf::Message* message) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const auto status = google::protobuf::util::JsonStringToMessage(text, message, options);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": not a ", message->GetDescriptor()->name(),
                                            " JSON record: ", std::string(status.message())));
  }
  return absl::OkStatus();
}

// A file's text, or "" when it does not exist.
absl::StatusOr<std::string> OptionalFile(const fs::path& path) {
  if (!Exists(path)) return std::string();
  return ReadFileToString(path.string());
}

// An anchor id from a folder and a suffix.
std::string Anchor(const std::string& text) {
  std::string s = "r";
  for (char c : text) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  return s;
}

// --- Page pieces.

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::string html = "<table><thead><tr>";
  for (const std::string& h : header) absl::StrAppend(&html, "<th>", HtmlEscape(h), "</th>");
  html += "</tr></thead><tbody>";
  for (const auto& row : rows) {
    html += "<tr>";
    for (const std::string& cell : row) absl::StrAppend(&html, "<td>", HtmlEscape(cell), "</td>");
    html += "</tr>";
  }
  return html + "</tbody></table>\n";
}

std::string Details(const std::string& summary, const std::string& body, bool open = false) {
  return absl::StrCat("<details", open ? " open" : "", "><summary>", HtmlEscape(summary),
                      "</summary>\n", body, "</details>\n");
}

std::string Pre(const std::string& text) { return absl::StrCat("<pre>", HtmlEscape(text), "</pre>\n"); }

std::string Figures(const std::vector<std::string>& svgs) {
  std::string html;
  for (const std::string& s : svgs) {
    if (!s.empty()) absl::StrAppend(&html, "<figure>", s, "</figure>\n");
  }
  return html.empty() ? html : absl::StrCat("<div class=\"figs\">", html, "</div>\n");
}

// --- Learning curves from metrics.jsonl: one chart per group of keys.

struct CurveGroup {
  std::string title;
  std::vector<std::string> keys;
};

std::vector<CurveGroup> GroupKeys(const std::set<std::string>& keys) {
  CurveGroup losses{"loss terms", {}}, lr{"learning rate", {}}, speed{"clips/s", {}},
      wait{"data wait (s per step)", {}}, rates{"mask, pseudo-label and accuracy rates", {}},
      loader{"loader ms per clip", {}}, other{"other", {}};
  for (const std::string& k : keys) {
    if (k == "step") continue;
    if (absl::StartsWith(k, "loss")) {
      losses.keys.push_back(k);
    } else if (k == "lr") {
      lr.keys.push_back(k);
    } else if (k == "clips_per_s") {
      speed.keys.push_back(k);
    } else if (k == "data_wait_s") {
      wait.keys.push_back(k);
    } else if (absl::StrContains(k, "mask") || absl::StrContains(k, "acc") ||
               absl::StrContains(k, "top1")) {
      rates.keys.push_back(k);
    } else if (absl::EndsWith(k, "_ms_per_clip")) {
      loader.keys.push_back(k);
    } else {
      other.keys.push_back(k);
    }
  }
  std::vector<CurveGroup> out;
  for (CurveGroup* g : {&losses, &lr, &speed, &wait, &rates, &loader, &other}) {
    if (!g->keys.empty()) out.push_back(*g);
  }
  return out;
}

absl::StatusOr<std::string> LearningCurves(const fs::path& metrics_path) {
  if (!Exists(metrics_path)) return std::string();
  ASSIGN_OR_RETURN(std::vector<MetricsLine> lines, ReadMetricsJsonl(metrics_path.string()));
  if (lines.empty()) return std::string("<p class=\"note\">metrics.jsonl is empty</p>\n");
  std::set<std::string> keys;
  for (const MetricsLine& l : lines) {
    for (const auto& kv : l.values) keys.insert(kv.first);
  }
  std::vector<std::string> svgs;
  for (const CurveGroup& g : GroupKeys(keys)) {
    std::vector<ChartSeries> series;
    for (const std::string& k : g.keys) {
      ChartSeries s{k, {}};
      for (const MetricsLine& l : lines) {
        auto it = l.values.find(k);
        if (it != l.values.end() && std::isfinite(it->second)) {
          s.points.push_back({static_cast<double>(l.step), it->second});
        }
      }
      series.push_back(std::move(s));
    }
    svgs.push_back(LineChartSvg(g.title, "step", series));
  }
  return absl::StrCat("<h4>Learning curves</h4>\n",
                      "<p class=\"note\">", lines.size(),
                      " log windows of metrics.jsonl (each point: the mean over its window)</p>\n",
                      Figures(svgs));
}

// --- Evaluation records.

std::string AccuracySection(const std::string& name, const VideoAccuracyRecord& r) {
  std::string html = absl::StrFormat(
      "<p><b>%s</b>: top-1 %s%%, top-5 %s%% on %d videos (%d clip%s x %d crop%s each)</p>\n",
      HtmlEscape(name), Percent(r.top1()), Percent(r.top5()), r.videos(), r.clips_per_video(),
      r.clips_per_video() == 1 ? "" : "s", r.crops_per_clip(), r.crops_per_clip() == 1 ? "" : "s");
  std::vector<std::string> labels;
  std::vector<double> values;
  for (const ClassResult& c : r.per_class()) {
    labels.push_back(c.class_name());
    values.push_back(100.0 * c.top1());
  }
  std::vector<std::string> svgs;
  if (!labels.empty()) {
    svgs.push_back(BarChartSvg(name + ": per-class top-1 (%)", labels, values, false, "%.0f"));
  }
  if (r.confusion_size() > 0 && r.confusion_size() == static_cast<int>(labels.size())) {
    std::vector<std::vector<int>> counts;
    for (const ConfusionRow& row : r.confusion()) {
      counts.emplace_back(row.predicted().begin(), row.predicted().end());
    }
    svgs.push_back(ConfusionSvg(name + ": confusion (rows true, columns predicted)", labels, counts));
  }
  return html + Figures(svgs);
}

std::string RepresentationSection(const std::string& name, const RepresentationRecord& r) {
  std::vector<std::vector<std::string>> rows = {
      {"kNN top-1 (%)", Percent(r.knn_top1())},
      {"kNN top-1, clips in time order (%)", Percent(r.knn_ordered_top1())},
      {"linear probe top-1 (%)", r.has_probe_top1() ? Percent(r.probe_top1()) : "-"},
      {"temporal similarity", Num(r.temporal_similarity())},
      {"centred temporal similarity", Num(r.centered_temporal_similarity())},
      {"cross-video similarity", Num(r.cross_video_similarity())}};
  for (const RetrievalRecall& rr : r.retrieval()) {
    rows.push_back({absl::StrCat("retrieval recall@", rr.k(), " (%)"), Percent(rr.recall())});
  }
  std::string html = absl::StrCat("<p><b>", HtmlEscape(name), "</b> (frozen features)</p>\n",
                                  Table({"measure", "value"}, rows));
  std::vector<std::string> labels;
  std::vector<double> knn;
  for (const ClassRepresentation& c : r.per_class()) {
    labels.push_back(c.class_name());
    knn.push_back(100.0 * c.knn_top1());
  }
  if (!labels.empty()) {
    html += Figures({BarChartSvg(name + ": per-class kNN top-1 (%)", labels, knn, false, "%.0f")});
  }
  return html;
}

std::string ExperimentTable(const ExperimentResults& r) {
  std::vector<std::vector<std::string>> rows = {
      {"experiment", r.experiment()},
      {"split", r.split()},
      {"labeled / train videos",
       absl::StrCat(r.labeled_videos(), " / ", r.train_videos(), " (",
                    absl::StrFormat("%g", 100.0 * r.labeled_fraction()), "%)")},
      {"labeled list SHA-256", r.labeled_list_sha256()},
      {"steps", absl::StrCat(r.steps())},
      {"training time", FormatDuration(r.train_seconds())},
      {"training clips/s", Num(r.train_clips_per_s())},
      {"checkpoint", r.checkpoint()},
      {"model SHA-256", r.model_sha256()},
      {"protocol", r.protocol()}};
  if (r.has_test()) {
    rows.insert(rows.begin() + 1, {"video top-1 / top-5 (%)",
                                   absl::StrCat(Percent(r.test().top1()), " / ",
                                                Percent(r.test().top5()))});
  }
  rows.erase(std::remove_if(rows.begin(), rows.end(),
                            [](const std::vector<std::string>& r) { return r[1].empty(); }),
             rows.end());
  return Table({"", ""}, rows);
}

absl::StatusOr<std::string> ExperimentBody(const fs::path& dir, const std::string& title,
                                           bool with_config) {
  std::string html;
  const fs::path results_path = dir / "results.json";
  if (Exists(results_path)) {
    ExperimentResults r;
    RETURN_IF_ERROR(ReadResultsJson(results_path.string(), &r));
    html += ExperimentTable(r);
    if (r.has_test()) html += AccuracySection(title, r.test());
    if (r.has_representation()) html += RepresentationSection(title, r.representation());
  } else {
    html += "<p class=\"note\">no results.json yet (the run has not finished)</p>\n";
  }
  ASSIGN_OR_RETURN(std::string curves, LearningCurves(dir / "metrics.jsonl"));
  html += curves;
  if (with_config) {
    ASSIGN_OR_RETURN(std::string config, OptionalFile(dir / "config.pbtxt"));
    if (!config.empty()) html += Details("resolved config (config.pbtxt)", Pre(config));
  }
  return html;
}

// --- Pipelines.

std::string Timeline(const std::vector<StageTime>& stages) {
  double total = 0;
  for (const StageTime& s : stages) total += std::max(0.0, s.seconds());
  if (stages.empty() || total <= 0) return "";
  const int label_w = 150, bar_w = 480, row_h = 20, top = 26;
  const int width = label_w + bar_w + 90, height = top + row_h * static_cast<int>(stages.size()) + 24;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\"><text x=\"4\" y=\"16\" class=\"t\">stage timeline (%s in all; stages run one "
      "after another)</text>",
      width, height, width, height, HtmlEscape(FormatDuration(total)));
  double start = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageTime& s = stages[i];
    const double secs = std::max(0.0, s.seconds());
    const double x = label_w + bar_w * start / total;
    const double w = std::max(1.0, bar_w * secs / total);
    const int y = top + row_h * static_cast<int>(i);
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>"
                          "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                          "<title>%s: %s%s</title></rect>"
                          "<text x=\"%.1f\" y=\"%d\">%s%s</text>",
                          label_w - 6, y + 14, HtmlEscape(s.stage()), x, y + 3, w, row_h - 6,
                          s.skipped() ? "#bbbbbb" : kPalette[i % kPaletteSize],
                          HtmlEscape(s.stage()), HtmlEscape(FormatDuration(secs)),
                          s.skipped() ? " (reused)" : "", x + w + 4, y + 14,
                          HtmlEscape(FormatDuration(secs)), s.skipped() ? " reused" : "");
    start += secs;
  }
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"ax\"/></svg>",
                        label_w, top - 2, label_w, height - 22);
  return svg;
}

// invariant - distinctive per class, matched by class name.
std::string TeacherDifference(const PipelineResults& r) {
  if (!r.has_invariant_teacher() || !r.has_distinctive_teacher()) return "";
  std::map<std::string, double> distinctive;
  for (const ClassResult& c : r.distinctive_teacher().per_class()) {
    distinctive[c.class_name()] = c.top1();
  }
  std::vector<std::string> labels;
  std::vector<double> diff;
  for (const ClassResult& c : r.invariant_teacher().per_class()) {
    auto it = distinctive.find(c.class_name());
    if (it == distinctive.end()) continue;
    labels.push_back(c.class_name());
    diff.push_back(100.0 * (c.top1() - it->second));
  }
  if (labels.empty()) return "";
  return BarChartSvg(
      "fine-tuned teachers: invariant minus distinctive per-class top-1 (points)", labels, diff,
      true, "%+.0f");
}

absl::StatusOr<std::string> PipelineBody(const fs::path& dir) {
  std::string html;
  PipelineResults r;
  const bool finished = Exists(dir / "results.json");
  if (finished) RETURN_IF_ERROR(ReadResultsJson((dir / "results.json").string(), &r));
  std::vector<std::string> stage_names;
  std::vector<StageTime> times(r.stages().begin(), r.stages().end());
  for (const StageTime& s : times) stage_names.push_back(s.stage());
  if (stage_names.empty()) {
    // Not finished: the stages on disk, in pipeline order.
    std::set<std::string> on_disk;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir / "stages", ec)) {
      if (e.is_directory()) on_disk.insert(e.path().filename().string());
    }
    for (const char* s : kStageOrder) {
      if (on_disk.erase(s)) stage_names.push_back(s);
    }
    stage_names.insert(stage_names.end(), on_disk.begin(), on_disk.end());
    for (const std::string& s : stage_names) {
      const fs::path done = dir / "stages" / s / "stage_done.pbtxt";
      if (!Exists(done)) continue;
      ASSIGN_OR_RETURN(StageRecord rec, ReadTextRecord<StageRecord>(done.string()));
      StageTime t;
      t.set_stage(s);
      t.set_seconds(rec.seconds());
      times.push_back(t);
    }
  }
  if (finished) {
    std::vector<std::vector<std::string>> rows;
    auto add = [&](const char* name, bool has, const VideoAccuracyRecord& v) {
      if (has) rows.push_back({name, Percent(v.top1()), Percent(v.top5())});
    };
    add("supervised (labeled videos only)", r.has_supervised(), r.supervised());
    add("invariant teacher (fine-tuned)", r.has_invariant_teacher(), r.invariant_teacher());
    add("distinctive teacher (fine-tuned)", r.has_distinctive_teacher(), r.distinctive_teacher());
    add("TimeBalance student", r.has_student(), r.student());
    absl::StrAppend(
        &html,
        absl::StrFormat("<p>%s; %d labeled of %d training videos (%g%%); student initialised "
                        "from %s; scores: %s; protocol: %s</p>\n",
                        HtmlEscape(r.split()), r.labeled_videos(), r.train_videos(),
                        100.0 * r.labeled_fraction(), HtmlEscape(r.student_init()),
                        HtmlEscape(r.score_rule()), HtmlEscape(r.protocol())),
        Table({"model", "video top-1 (%)", "top-5 (%)"}, rows));
  } else {
    html += "<p class=\"note\">no results.json yet: the pipeline has not finished; the "
            "finished stages follow</p>\n";
  }
  html += Figures({Timeline(times), finished ? TeacherDifference(r) : ""});
  if (finished && r.has_student()) html += AccuracySection("TimeBalance student", r.student());
  for (const std::string& s : stage_names) {
    const fs::path sdir = dir / "stages" / s;
    if (!IsDir(sdir)) continue;
    std::string body;
    if (s == "score") {
      const fs::path score_results = sdir / "results.json";
      if (Exists(score_results)) {
        ScoreResults sr;
        RETURN_IF_ERROR(ReadResultsJson(score_results.string(), &sr));
        std::vector<std::string> labels;
        std::vector<double> weights;
        for (const ClassWeight& c : sr.per_class()) {
          labels.push_back(c.class_name());
          weights.push_back(c.mean_weight());
        }
        body += absl::StrFormat("<p>%d unlabeled videos scored</p>\n", sr.videos());
        if (!labels.empty()) {
          body += Figures({BarChartSvg("mean temporal-similarity weight per class", labels, weights,
                                       false, "%.2f")});
        }
      }
    } else {
      ASSIGN_OR_RETURN(body, ExperimentBody(sdir, s, /*with_config=*/false));
    }
    ASSIGN_OR_RETURN(std::string config, OptionalFile(sdir / "config.pbtxt"));
    if (!config.empty()) body += Details("resolved config (config.pbtxt)", Pre(config));
    html += Details(absl::StrCat("stage ", s), body, /*open=*/s == "distill");
  }
  return html;
}

// --- Comparisons.

struct CellKey {
  std::string method;
  int64_t fraction;  // 1e-4 units
};

absl::StatusOr<std::string> ComparisonBody(const fs::path& dir) {
  std::vector<CellRecord> cells;
  std::error_code ec;
  std::vector<fs::path> done_files;
  for (const auto& method_dir : fs::directory_iterator(dir / "cells", ec)) {
    if (!method_dir.is_directory()) continue;
    for (const auto& cell_dir : fs::directory_iterator(method_dir.path(), ec)) {
      const fs::path done = cell_dir.path() / "cell_done.pbtxt";
      if (Exists(done)) done_files.push_back(done);
    }
  }
  std::sort(done_files.begin(), done_files.end());
  for (const fs::path& p : done_files) {
    ASSIGN_OR_RETURN(CellRecord c, ReadTextRecord<CellRecord>(p.string()));
    cells.push_back(c);
  }
  // Row order: comparison.csv's (the config's), then any other method.
  std::vector<std::string> methods;
  ASSIGN_OR_RETURN(std::string csv, OptionalFile(dir / "comparison.csv"));
  for (absl::string_view line : absl::StrSplit(csv, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "method,")) continue;
    std::string name(line.substr(0, line.find(',')));
    name = std::string(absl::StripSuffix(absl::StripPrefix(name, "\""), "\""));
    if (!name.empty() && std::find(methods.begin(), methods.end(), name) == methods.end()) {
      methods.push_back(name);
    }
  }
  std::set<int64_t> fractions;
  std::map<std::pair<std::string, int64_t>, std::vector<double>> top1;
  for (const CellRecord& c : cells) {
    if (std::find(methods.begin(), methods.end(), c.method()) == methods.end()) {
      methods.push_back(c.method());
    }
    const int64_t f = std::llround(c.labeled_fraction() * 1e4);
    fractions.insert(f);
    top1[{c.method(), f}].push_back(100.0 * c.top1());
  }
  std::string html = absl::StrFormat("<p>%d finished cells of %d methods</p>\n", cells.size(),
                                     methods.size());
  if (cells.empty()) return html;
  std::vector<std::string> header = {"method"};
  for (int64_t f : fractions) header.push_back(absl::StrFormat("%g%% labeled", f / 100.0));
  std::vector<std::vector<std::string>> rows;
  struct Stat {
    double mean = 0, std = 0;
    int n = 0;
  };
  std::map<std::pair<std::string, int64_t>, Stat> stats;
  for (const std::string& m : methods) {
    std::vector<std::string> row = {m};
    for (int64_t f : fractions) {
      auto it = top1.find({m, f});
      if (it == top1.end()) {
        row.push_back("-");
        continue;
      }
      Stat s;
      s.n = static_cast<int>(it->second.size());
      for (double x : it->second) s.mean += x / s.n;
      if (s.n > 1) {
        double ss = 0;
        for (double x : it->second) ss += (x - s.mean) * (x - s.mean);
        s.std = std::sqrt(ss / (s.n - 1));
      }
      stats[{m, f}] = s;
      row.push_back(s.n > 1 ? absl::StrFormat("%.1f ± %.1f (%d)", s.mean, s.std, s.n)
                            : absl::StrFormat("%.1f (1)", s.mean));
    }
    rows.push_back(row);
  }
  html += Table(header, rows);
  html += "<p class=\"note\">video top-1 (%), mean ± sample std over seeds (n)</p>\n";
  // Dots with error bars: one panel per fraction, one row per method.
  std::vector<std::string> svgs;
  for (int64_t f : fractions) {
    const int label_w = 150, plot_w = 300, row_h = 20, top = 26;
    const int height = top + row_h * static_cast<int>(methods.size()) + 30;
    const int width = label_w + plot_w + 20;
    double lo = 100, hi = 0;
    for (const std::string& m : methods) {
      auto it = stats.find({m, f});
      if (it == stats.end()) continue;
      lo = std::min(lo, it->second.mean - it->second.std);
      hi = std::max(hi, it->second.mean + it->second.std);
    }
    if (!(hi > lo)) {
      lo -= 1;
      hi += 1;
    }
    const std::vector<double> ticks = NiceTicks(lo, hi, 5);
    lo = std::min(lo, ticks.front());
    hi = std::max(hi, ticks.back());
    auto X = [&](double v) { return label_w + plot_w * (v - lo) / (hi - lo); };
    std::string svg = absl::StrFormat(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d "
        "%d\" role=\"img\"><text x=\"4\" y=\"16\" class=\"t\">%g%% labeled: video top-1 (%%), "
        "mean ± std</text>",
        width, height, width, height, f / 100.0);
    const int axis_y = top + row_h * static_cast<int>(methods.size());
    for (double t : ticks) {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
                            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                            X(t), top, X(t), axis_y, X(t), axis_y + 14, Num(t));
    }
    for (size_t i = 0; i < methods.size(); ++i) {
      const int y = top + row_h * static_cast<int>(i) + row_h / 2;
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>",
                            label_w - 6, y + 4, HtmlEscape(methods[i]));
      auto it = stats.find({methods[i], f});
      if (it == stats.end()) continue;
      const Stat& s = it->second;
      const char* colour = kPalette[i % kPaletteSize];
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
                            "stroke-width=\"2\"/><circle cx=\"%.1f\" cy=\"%d\" r=\"4\" "
                            "fill=\"%s\"><title>%s: %.1f ± %.1f (n=%d)</title></circle>",
                            X(s.mean - s.std), y, X(s.mean + s.std), y, colour, X(s.mean), y,
                            colour, HtmlEscape(methods[i]), s.mean, s.std, s.n);
    }
    absl::StrAppendFormat(&svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"ax\"/></svg>",
                          label_w, axis_y, label_w + plot_w, axis_y);
    svgs.push_back(svg);
  }
  html += Figures(svgs);
  ASSIGN_OR_RETURN(std::string md, OptionalFile(dir / "comparison.md"));
  if (!md.empty()) html += Details("comparison.md (as written by //tools:compare)", Pre(md));
  return html;
}

// --- Regression suites.

absl::StatusOr<std::string> RegressionBody(const fs::path& dir) {
  const std::string path = (dir / "history.jsonl").string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<RegressionHistoryRecord> records;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    RegressionHistoryRecord r;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    const auto status = google::protobuf::util::JsonStringToMessage(std::string(line), &r, options);
    if (!status.ok()) {
      return absl::DataLossError(absl::StrCat(path, ":", line_no, ": not a history record: ",
                                              std::string(status.message())));
    }
    records.push_back(r);
  }
  // (suite, entry) in first-seen order; their records in file order.
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<const RegressionHistoryRecord*>> by_entry;
  for (const RegressionHistoryRecord& r : records) {
    auto key = std::make_pair(r.suite(), r.entry());
    if (!by_entry.count(key)) order.push_back(key);
    by_entry[key].push_back(&r);
  }
  std::string html = absl::StrFormat("<p>%d measurements of %d entries in history.jsonl</p>\n",
                                     records.size(), order.size());
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> svgs;
  for (const auto& key : order) {
    const auto& list = by_entry[key];
    const RegressionHistoryRecord& last = *list.back();
    const bool text_metric = last.has_measured_text() || last.has_expected_text();
    std::string expected = text_metric ? last.expected_text().substr(0, 16)
                                       : (last.has_expected() ? Num(last.expected()) : "-");
    std::string band = text_metric ? "exact text"
                       : last.has_band_low()
                           ? absl::StrCat("[", Num(last.band_low()), ", ", Num(last.band_high()), "]")
                           : "-";
    std::string measured = text_metric ? last.measured_text().substr(0, 16)
                                       : (last.has_measured() ? Num(last.measured()) : "-");
    rows.push_back({key.first, key.second, last.kind(), last.metric(), expected, measured, band,
                    last.verdict(), last.time(), last.commit().substr(0, 12)});
    if (text_metric) continue;
    ChartSeries s{"measured", {}};
    ChartBand b;
    for (size_t i = 0; i < list.size(); ++i) {
      const RegressionHistoryRecord& r = *list[i];
      if (r.has_measured()) s.points.push_back({static_cast<double>(i + 1), r.measured()});
      if (r.has_band_low()) {
        b.x.push_back(static_cast<double>(i + 1));
        b.low.push_back(r.band_low());
        b.high.push_back(r.band_high());
      }
    }
    svgs.push_back(LineChartSvg(absl::StrCat(key.second, " (", last.kind(), ")"), "invocation",
                                {s}, b.x.empty() ? nullptr : &b));
  }
  html += Table({"suite", "entry", "kind", "metric", "expected", "latest", "band", "verdict",
                 "time", "commit"},
                rows);
  html += "<p class=\"note\">each chart: the measured value per invocation (points) against the "
          "band recorded at that time (shaded)</p>\n";
  return html + Figures(svgs);
}

constexpr char kStyle[] = R"(
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h4{margin:16px 0 4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f4f4f4}.note{color:#666;font-size:12px}
.figs{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;border:1px solid #eee;padding:4px}
pre{background:#f8f8f8;padding:8px;overflow:auto;max-height:400px;font-size:12px}
summary{cursor:pointer;font-weight:600;margin:6px 0}
svg text{font:11px sans-serif;fill:#333}svg text.t{font-weight:600;font-size:12px}
svg .ax{stroke:#444;stroke-width:1}svg .grid{stroke:#e4e4e4;stroke-width:1}
)";

// Runs when the page loads: every picture must have a size; a problem is
// reported on the console (what //tests:report_browser_test watches) and
// shown at the top of the page.
constexpr char kCheckScript[] = R"(
(function(){
  var details=document.querySelectorAll('details'),was=[];
  for(var d=0;d<details.length;d++){was.push(details[d].open);details[d].open=true;}
  var pics=document.querySelectorAll('svg'),bad=[];
  for(var i=0;i<pics.length;i++){var b=pics[i].getBBox();if(!(b.width>0&&b.height>0&&pics[i].childElementCount>0))bad.push(i);}
  for(var d=0;d<details.length;d++)details[d].open=was[d];
  var out=document.getElementById('check');
  if(bad.length){console.error('report: '+bad.length+' of '+pics.length+' pictures have no size: '+bad.join(','));out.textContent='check: '+bad.length+' empty pictures';}
  else{out.textContent='check: '+pics.length+' pictures drawn';}
  document.body.setAttribute('data-pictures',pics.length);document.body.setAttribute('data-bad',bad.length);
})();
)";

}  // namespace

const char* RunKindName(RunKind kind) {
  switch (kind) {
    case RunKind::kExperiment: return "experiment";
    case RunKind::kPipeline: return "TimeBalance pipeline";
    case RunKind::kComparison: return "comparison";
    case RunKind::kRegression: return "regression suite";
  }
  return "?";
}

absl::StatusOr<RunKind> DetectRunKind(const std::string& dir_text) {
  const fs::path dir(dir_text);
  if (!IsDir(dir)) return absl::NotFoundError(absl::StrCat(dir_text, ": no such folder"));
  if (Exists(dir / "history.jsonl")) return RunKind::kRegression;
  if (IsDir(dir / "cells")) return RunKind::kComparison;
  if (IsDir(dir / "stages")) return RunKind::kPipeline;
  if (Exists(dir / "results.json") || Exists(dir / "metrics.jsonl")) return RunKind::kExperiment;
  return absl::InvalidArgumentError(absl::StrCat(
      dir_text, ": not a run folder (no results.json or metrics.jsonl, no stages/ or cells/, no "
                "history.jsonl)"));
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double low, double high, int target) {
  std::vector<double> ticks;
  if (!(high > low) || !std::isfinite(low) || !std::isfinite(high) || target < 1) return ticks;
  const double raw = (high - low) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  const double first = std::floor(low / step) * step;
  for (int i = 0;; ++i) {
    const double t = first + i * step;
    // Clean values like 0.30000000000000004.
    ticks.push_back(std::round(t / step) * step);
    if (t >= high - 1e-12 * std::abs(step)) break;
    if (i > 1000) break;
  }
  return ticks;
}

std::string LineChartSvg(const std::string& title, const std::string& x_label,
                         const std::vector<ChartSeries>& series, const ChartBand* band) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  int drawn = 0;
  for (const ChartSeries& s : series) {
    for (const auto& [x, y] : s.points) {
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
    drawn += s.points.empty() ? 0 : 1;
  }
  if (drawn == 0) return "";
  if (band != nullptr) {
    for (size_t i = 0; i < band->x.size(); ++i) {
      y0 = std::min(y0, band->low[i]);
      y1 = std::max(y1, band->high[i]);
    }
  }
  if (!(x1 > x0)) {
    x0 -= 1;
    x1 += 1;
  }
  if (!(y1 > y0)) {
    const double pad = y0 == 0 ? 1 : std::abs(y0) * 0.05;
    y0 -= pad;
    y1 += pad;
  }
  const std::vector<double> yt = NiceTicks(y0, y1, 4);
  y0 = std::min(y0, yt.front());
  y1 = std::max(y1, yt.back());
  const std::vector<double> xt = NiceTicks(x0, x1, 5);
  const int legend_rows = (drawn + 2) / 3;
  const int W = 440, left = 56, right = 12, top = 22 + 14 * legend_rows, bottom = 34;
  const int H = top + 150 + bottom;
  const double pw = W - left - right, ph = H - top - bottom;
  auto X = [&](double x) { return left + pw * (x - x0) / (x1 - x0); };
  auto Y = [&](double y) { return top + ph * (1 - (y - y0) / (y1 - y0)); };
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\"><text x=\"4\" y=\"14\" class=\"t\">%s</text>",
      W, H, W, H, HtmlEscape(title));
  for (double t : yt) {
    if (t < y0 - 1e-12 || t > y1 + 1e-12) continue;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                          "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
                          left, Y(t), W - right, Y(t), left - 4, Y(t) + 4, Num(t));
  }
  for (double t : xt) {
    if (t < x0 - 1e-12 || t > x1 + 1e-12) continue;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"ax\"/>"
                          "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                          X(t), H - bottom, X(t), H - bottom + 4, X(t), H - bottom + 16, Num(t));
  }
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"ax\"/>"
                        "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"ax\"/>"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                        left, top, left, H - bottom, left, H - bottom, W - right, H - bottom,
                        left + pw / 2, H - 4, HtmlEscape(x_label));
  if (band != nullptr && !band->x.empty()) {
    std::string pts;
    for (size_t i = 0; i < band->x.size(); ++i) {
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", X(band->x[i]), Y(band->high[i]));
    }
    for (size_t i = band->x.size(); i-- > 0;) {
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", X(band->x[i]), Y(band->low[i]));
    }
    if (band->x.size() == 1) {
      // A single invocation: a short horizontal bar.
      pts.clear();
      const double cx = X(band->x[0]);
      absl::StrAppendFormat(&pts, "%.1f,%.1f %.1f,%.1f %.1f,%.1f %.1f,%.1f", cx - 8,
                            Y(band->high[0]), cx + 8, Y(band->high[0]), cx + 8, Y(band->low[0]),
                            cx - 8, Y(band->low[0]));
    }
    absl::StrAppendFormat(&svg,
                          "<polygon points=\"%s\" fill=\"#2ca02c\" fill-opacity=\"0.18\" "
                          "stroke=\"#2ca02c\" stroke-opacity=\"0.5\"><title>band</title></polygon>",
                          pts);
  }
  int k = 0, legend = 0;
  for (const ChartSeries& s : series) {
    if (s.points.empty()) continue;
    const char* colour = kPalette[k++ % kPaletteSize];
    std::string pts;
    for (const auto& [x, y] : s.points) absl::StrAppendFormat(&pts, "%.1f,%.1f ", X(x), Y(y));
    absl::StrAppendFormat(&svg,
                          "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" "
                          "stroke-width=\"1.5\"><title>%s</title></polyline>",
                          pts, colour, HtmlEscape(s.name));
    if (s.points.size() <= 40) {
      for (const auto& [x, y] : s.points) {
        absl::StrAppendFormat(&svg,
                              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>%s "
                              "at %s: %s</title></circle>",
                              X(x), Y(y), colour, HtmlEscape(s.name), Num(x), Num(y));
      }
    }
    const int lx = 8 + 144 * (legend % 3), ly = 30 + 14 * (legend / 3);
    ++legend;
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"3\" fill=\"%s\"/>"
                          "<text x=\"%d\" y=\"%d\">%s = %s</text>",
                          lx, ly - 5, colour, lx + 14, ly,
                          HtmlEscape(s.name.size() > 14 ? s.name.substr(0, 13) + "…" : s.name),
                          Num(s.points.back().second));
  }
  return svg + "</svg>";
}

std::string BarChartSvg(const std::string& title, const std::vector<std::string>& labels,
                        const std::vector<double>& values, bool signed_values, const char* format) {
  if (labels.empty() || labels.size() != values.size()) return "";
  const int label_w = 170, plot_w = 260, row_h = 16, top = 24, value_w = 34;
  // Wide enough for the title (about 7 px a character at 12 px bold).
  const int W = std::max(label_w + plot_w + 50, 8 + 7 * static_cast<int>(title.size()));
  const int H = top + row_h * static_cast<int>(labels.size()) + 8;
  double hi = 0;
  for (double v : values) hi = std::max(hi, std::abs(v));
  if (hi <= 0) hi = 1;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\"><text x=\"4\" y=\"14\" class=\"t\">%s</text>",
      W, H, W, H, HtmlEscape(title));
  // Room for the value's text beyond the longest bar on either side.
  const double zero = signed_values ? label_w + plot_w / 2.0 : label_w;
  const double scale = signed_values ? (plot_w / 2.0 - value_w) / hi : plot_w / hi;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double v = values[i];
    const int y = top + row_h * static_cast<int>(i);
    const double x = v >= 0 ? zero : zero + v * scale;
    const double w = std::max(0.5, std::abs(v) * scale);
    char buf[40];
    std::snprintf(buf, sizeof(buf), format, v);  // formats are the callers' literals
    const std::string value = buf;
    const std::string label =
        labels[i].size() > 26 ? labels[i].substr(0, 25) + "…" : labels[i];
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>"
                          "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
                          "<title>%s: %s</title></rect>"
                          "<text x=\"%.1f\" y=\"%d\"%s>%s</text>",
                          label_w - 6, y + 12, HtmlEscape(label), x, y + 2, w, row_h - 4,
                          v >= 0 ? "#1f77b4" : "#ff7f0e", HtmlEscape(labels[i]), value,
                          v >= 0 ? x + w + 3 : x - 3, y + 12,
                          v >= 0 ? "" : " text-anchor=\"end\"", value);
  }
  absl::StrAppendFormat(&svg, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"ax\"/></svg>",
                        zero, top, zero, H - 6);
  return svg;
}

std::string ConfusionSvg(const std::string& title, const std::vector<std::string>& labels,
                         const std::vector<std::vector<int>>& counts) {
  const int n = static_cast<int>(labels.size());
  if (n == 0 || static_cast<int>(counts.size()) != n) return "";
  const int cell = std::max(8, std::min(28, 420 / n));
  const int label_w = 170, top = 24;
  const int W = label_w + cell * n + 10, H = top + cell * n + 40;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\"><text x=\"4\" y=\"14\" class=\"t\">%s</text>",
      W, H, W, H, HtmlEscape(title));
  for (int r = 0; r < n; ++r) {
    int total = 0;
    for (int c : counts[r]) total += c;
    const std::string label = labels[r].size() > 26 ? labels[r].substr(0, 25) + "…" : labels[r];
    absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>",
                          label_w - 4, top + cell * r + cell / 2 + 4, HtmlEscape(label));
    for (int c = 0; c < n && c < static_cast<int>(counts[r].size()); ++c) {
      const int v = counts[r][c];
      const double f = total > 0 ? static_cast<double>(v) / total : 0;
      const int shade = static_cast<int>(std::lround(255 * (1 - f)));
      const char* ink = f > 0.55 ? "#fff" : "#333";
      absl::StrAppendFormat(&svg,
                            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                            "fill=\"rgb(%d,%d,255)\" stroke=\"#ddd\"><title>true %s, predicted "
                            "%s: %d of %d</title></rect>",
                            label_w + cell * c, top + cell * r, cell, cell, shade, shade,
                            HtmlEscape(labels[r]), HtmlEscape(labels[c]), v, total);
      if (v > 0 && cell >= 14) {
        absl::StrAppendFormat(&svg,
                              "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                              "style=\"fill:%s\">%d</text>",
                              label_w + cell * c + cell / 2, top + cell * r + cell / 2 + 4, ink, v);
      }
    }
  }
  absl::StrAppendFormat(&svg,
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">predicted class (columns "
                        "in the rows' order)</text></svg>",
                        label_w + cell * n / 2, top + cell * n + 18);
  return svg;
}

absl::StatusOr<std::string> RenderReport(const ReportOptions& options) {
  if (options.run_dirs.empty()) return absl::InvalidArgumentError("no run folder given");
  std::string nav, sections;
  std::set<std::string> anchors;
  for (const std::string& dir : options.run_dirs) {
    ASSIGN_OR_RETURN(RunKind kind, DetectRunKind(dir));
    std::string body;
    absl::StatusOr<std::string> rendered;
    switch (kind) {
      case RunKind::kExperiment: rendered = ExperimentBody(dir, "test", /*with_config=*/true); break;
      case RunKind::kPipeline: rendered = PipelineBody(dir); break;
      case RunKind::kComparison: rendered = ComparisonBody(dir); break;
      case RunKind::kRegression: rendered = RegressionBody(dir); break;
    }
    if (!rendered.ok()) {
      return absl::Status(rendered.status().code(),
                          absl::StrCat(dir, " (", RunKindName(kind), "): ", rendered.status().message()));
    }
    std::string anchor = Anchor(dir);
    while (!anchors.insert(anchor).second) anchor += "x";
    absl::StrAppend(&nav, "<li><a href=\"#", anchor, "\">", HtmlEscape(dir), "</a> (",
                    RunKindName(kind), ")</li>");
    absl::StrAppend(&sections, "<section id=\"", anchor, "\"><h2>", HtmlEscape(dir), " <small>(",
                    RunKindName(kind), ")</small></h2>\n", *rendered, "</section>\n");
  }
  return absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>",
                      HtmlEscape(options.title), "</title>\n<style>", kStyle,
                      "</style></head>\n<body>\n<h1>", HtmlEscape(options.title), "</h1>\n",
                      "<p class=\"note\" id=\"check\">check: not run (scripts disabled?)</p>\n<ul>",
                      nav, "</ul>\n", sections, "<script>", kCheckScript, "</script>\n</body></html>\n");
}

}  // namespace tb
