// report: one self-contained HTML page of runs (train/report.h).
//
//   bazel run //tools:report -- RUN_DIR [RUN_DIR...] --out=report.html [--title=...]
//
// A RUN_DIR is an experiment's or a pipeline's --run_dir, a comparison's
// --out folder, or a regression suite's out folder (runs/regress/<suite>).
// The page needs no network: styles, pictures (SVG) and its one check
// script are inline. Exit codes: 0 written, 1 a file that cannot be read or
// parsed, 2 bad flags or a folder that is not a run.
#include <gflags/gflags.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/cli.h"
#include "core/file_util.h"
#include "train/report.h"

DEFINE_string(out, "", "Where to write the HTML page. Required.");
DEFINE_string(title, "TimeBalance report", "The page's title.");

int main(int argc, char** argv) {
  constexpr char kTool[] = "report";
  std::vector<std::string> dirs;
  const int init = tb::InitTool(
      kTool,
      "Writes one self-contained HTML page of runs.\n"
      "  report RUN_DIR [RUN_DIR...] --out=report.html [--title=TEXT]\n"
      "RUN_DIR: an experiment or pipeline run, a comparison's out folder, or a regression "
      "suite's out folder.",
      &argc, &argv, &dirs);
  if (init != 0) return init;
  if (FLAGS_out.empty()) return tb::ToolError(kTool, tb::kExitUsageError, "--out is required");
  if (dirs.empty()) {
    return tb::ToolError(kTool, tb::kExitUsageError, "give at least one run folder");
  }
  tb::ReportOptions options;
  options.run_dirs = dirs;
  options.title = FLAGS_title;
  absl::StatusOr<std::string> html = tb::RenderReport(options);
  if (!html.ok()) {
    return tb::ToolError(kTool, tb::ExitCodeFor(html.status()), html.status());
  }
  if (absl::Status s = tb::WriteFileAtomically(FLAGS_out, *html); !s.ok()) {
    return tb::ToolError(kTool, tb::kExitDataError, s);
  }
  std::printf("report: %zu run folder%s -> %s (%zu KiB)\n", dirs.size(),
              dirs.size() == 1 ? "" : "s", FLAGS_out.c_str(), html->size() / 1024);
  return 0;
}
