// File: train/report.h
//
// One self-contained HTML page (no network, no external scripts or styles)
// of finished or running runs, written by //tools:report. Each folder given
// is recognised by what it holds:
//
//   - an experiment run (results.json of an ExperimentResults, metrics.jsonl,
//     config.pbtxt): the resolved config, learning curves (loss terms, lr,
//     clips/s, data wait, mask and pseudo-label rates) as inline SVG, the
//     results table, per-class accuracy and the confusion matrix;
//   - a TimeBalance pipeline run (stages/<stage>/, results.json of a
//     PipelineResults): the same per stage, the models' table, the stage
//     timeline and the two fine-tuned teachers' per-class difference;
//   - a comparison (//tools:compare's out folder: cells/*/*/cell_done.pbtxt):
//     the paper-layout table (mean ± sample std of video top-1 over seeds,
//     one row per method, one column per labeled fraction) and the same as
//     dots with error bars;
//   - a regression suite's out folder (history.jsonl of //tools:regress):
//     each entry's latest verdict and its measured history against its band.
//
//   ASSIGN_OR_RETURN(std::string html, RenderReport({.run_dirs = {"runs/demo_tb"}}));
//
// Every picture is drawn here from the numbers in the files (no charting
// library); a small inline script checks, when the page loads, that every
// picture has a size and reports a problem on the console
// (//tests:report_browser_test loads the page in headless Chromium).
#ifndef TIMEBALANCE_TRAIN_REPORT_H_
#define TIMEBALANCE_TRAIN_REPORT_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

enum class RunKind { kExperiment, kPipeline, kComparison, kRegression };
const char* RunKindName(RunKind kind);

// What `dir` holds (see the file comment). NotFound when `dir` does not
// exist; InvalidArgument naming it when it holds none of the above.
absl::StatusOr<RunKind> DetectRunKind(const std::string& dir);

struct ReportOptions {
  std::vector<std::string> run_dirs;
  // The page's title and heading.
  std::string title = "TimeBalance report";
};

// The HTML page. A folder that is not a run, or a file that does not parse,
// is an error naming it (nothing is skipped silently).
absl::StatusOr<std::string> RenderReport(const ReportOptions& options);

// --- Building blocks (exposed for tests).

// `text` with &, <, >, " and ' escaped.
std::string HtmlEscape(const std::string& text);

// About `target` round tick values (1, 2 or 5 x 10^k steps) covering
// [low, high]; low < high.
std::vector<double> NiceTicks(double low, double high, int target);

struct ChartSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x increasing
};

// A band drawn under a line chart: at each x, [low, high].
struct ChartBand {
  std::vector<double> x, low, high;
};

// Line chart with axes, ticks and a legend; empty series are left out.
// "" when no series has a point.
std::string LineChartSvg(const std::string& title, const std::string& x_label,
                         const std::vector<ChartSeries>& series, const ChartBand* band = nullptr);

// Horizontal bars, one per label; `signed_values` centres the axis on 0
// (differences). Values are shown next to the bars with `format` (printf).
std::string BarChartSvg(const std::string& title, const std::vector<std::string>& labels,
                        const std::vector<double>& values, bool signed_values,
                        const char* format);

// Confusion matrix: rows true class, columns predicted class, shaded by the
// row's fraction, counts written in the cells.
std::string ConfusionSvg(const std::string& title, const std::vector<std::string>& labels,
                         const std::vector<std::vector<int>>& counts);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_REPORT_H_
