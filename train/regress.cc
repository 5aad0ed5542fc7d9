#include "train/regress.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "configs/config_loader.h"
#include "core/file_util.h"
#include "core/format.h"
#include "core/records.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "core/threads.h"
#include "datasets/formats/experiment_data.h"
#include "datasets/synthetic/synth_actions.h"
#include "train/compare.h"
#include "train/experiment_runner.h"
#include "train/json_path.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// "supervised_r3d18tiny_8x4_synth_ci" from a config path, for folder names.
std::string Slug(const std::string& text) {
  std::string s;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!s.empty() && s.back() != '_') {
      s += '_';
    }
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return s.empty() ? "x" : s.substr(0, 48);
}

std::string Stem(const std::string& path) { return fs::path(path).stem().string(); }

std::string KindName(RegressionEntry::Kind kind) {
  switch (kind) {
    case RegressionEntry::DETERMINISTIC: return "deterministic";
    case RegressionEntry::STATISTICAL: return "statistical";
    case RegressionEntry::PERFORMANCE: return "performance";
    default: return "unspecified";
  }
}

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Six significant digits: the precision of metrics.jsonl.
std::string Num(double v) { return absl::StrFormat("%.6g", v); }

// Runs argv (no shell) with stdout and stderr captured together; the exit
// status (or 128 + signal) in *exit_code.
absl::StatusOr<std::string> RunProgram(const std::vector<std::string>& argv, int* exit_code) {
  if (argv.empty()) return absl::InvalidArgumentError("empty command");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe() failed");
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError("fork() failed");
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return out;
}

std::string Tail(const std::string& text, int lines) {
  std::vector<absl::string_view> all = absl::StrSplit(text, '\n', absl::SkipEmpty());
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + from, all.end(), "\n");
}

// git HEAD (and whether the tree has uncommitted changes, and a digest of
// them) of `root`; empty when git cannot tell.
struct CodeState {
  std::string head;
  bool dirty = false;
  // Of the tracked code (HEAD's tree and the uncommitted diff, without
  // benchmarks/, docs/ and *.md); empty without git.
  std::string fingerprint;
};

// Whether a tracked path counts as code for the fingerprint: suites
// (rewritten by --update) and documentation do not change what runs
// compute, so committing them keeps finished runs reusable.
bool IsCodePath(absl::string_view path) {
  return !absl::StartsWith(path, "benchmarks/") && !absl::StartsWith(path, "docs/") &&
         !absl::EndsWith(path, ".md");
}

}  // namespace

std::string CodeFingerprint(const std::string& root) {
  int rc = 0;
  // HEAD's tree, filtered here: `git ls-tree` takes no ":(exclude)" pathspec
  // (git 2.39 fails with exit 128), which until 2026-12-05 left every
  // fingerprint empty, so finished runs were reused across code changes.
  absl::StatusOr<std::string> tree = RunProgram({"git", "-C", root, "ls-tree", "-r", "HEAD"}, &rc);
  if (!tree.ok() || rc != 0) return "";
  std::string code;
  for (absl::string_view line : absl::StrSplit(*tree, '\n', absl::SkipEmpty())) {
    const size_t tab = line.find('\t');  // "<mode> <type> <object>\t<path>"
    if (tab != absl::string_view::npos && IsCodePath(line.substr(tab + 1))) {
      absl::StrAppend(&code, line, "\n");
    }
  }
  absl::StatusOr<std::string> changes =
      RunProgram({"git", "-C", root, "diff", "HEAD", "--no-ext-diff", "--no-color", "--", ".",
                  ":(exclude)benchmarks", ":(exclude)docs", ":(exclude)*.md"},
                 &rc);
  if (!changes.ok() || rc != 0) return "";
  return Sha256Hex(code + "\n" + *changes);
}

namespace {

CodeState GitState(const std::string& root) {
  CodeState s;
  int rc = 0;
  absl::StatusOr<std::string> head = RunProgram({"git", "-C", root, "rev-parse", "HEAD"}, &rc);
  if (!head.ok() || rc != 0) return s;
  s.head = std::string(absl::StripAsciiWhitespace(*head));
  absl::StatusOr<std::string> quiet =
      RunProgram({"git", "-C", root, "diff", "HEAD", "--quiet", "--no-ext-diff"}, &rc);
  s.dirty = quiet.ok() && rc == 1;
  s.fingerprint = CodeFingerprint(root);
  return s;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "unknown";
}

int CoreCount() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += absl::StartsWith(line, "processor") ? 1 : 0;
  if (n == 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return n;
}

std::string QuoteText(const std::string& s) { return "\"" + absl::CEscape(s) + "\""; }

std::string Resolve(const std::string& root, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(root) / path).string();
}

std::string DataDir(const std::string& out_dir, const std::string& name) {
  return (fs::path(out_dir) / "data" / name).string();
}

// What a metric reads, for lines and the history.
std::string DescribeMetric(const RegressionEntry& e) {
  if (e.has_performance()) {
    if (!e.performance().has_denominator()) return e.performance().numerator().label();
    return absl::StrCat(e.performance().numerator().label(), " / ",
                        e.performance().denominator().label());
  }
  const Metric& m = e.metric();
  std::string s;
  switch (m.source_case()) {
    case Metric::kJson: s = absl::StrCat(m.json().file(), ":", m.json().path()); break;
    case Metric::kJsonl:
      s = absl::StrCat(m.jsonl().file(), "@",
                       m.jsonl().step() < 0 ? "last" : absl::StrCat("step", m.jsonl().step()),
                       ":", m.jsonl().key());
      break;
    case Metric::kCell: s = absl::StrCat("cell_done.pbtxt:", m.cell()); break;
    default: s = "?";
  }
  if (m.scale() != 1) absl::StrAppend(&s, " x", Num(m.scale()));
  return s;
}

// ---------------------------------------------------------------------------
// Resolving sources into configs.

absl::StatusOr<ExperimentConfig> ExperimentFor(const std::string& root, const std::string& config,
                                               const std::vector<std::string>& overrides,
                                               const std::string& data_dir,
                                               const std::string& run_dir) {
  const std::string path = Resolve(root, config);
  if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat("config ", config, " does not exist"));
  std::vector<std::string> all = overrides;
  if (!data_dir.empty()) {
    all.push_back(absl::StrCat("dataset { ucf101 { root: ", QuoteText(data_dir), " } }"));
  }
  all.push_back(absl::StrCat("run_dir: ", QuoteText(run_dir)));
  return LoadExperimentConfig(path, all);
}

absl::StatusOr<CompareConfig> ComparisonFor(const std::string& root, const ComparisonSource& src,
                                            const std::string& data_dir) {
  const std::string path = Resolve(root, src.config());
  if (!fs::exists(path)) {
    return absl::NotFoundError(absl::StrCat("comparison config ", src.config(), " does not exist"));
  }
  ASSIGN_OR_RETURN(CompareConfig c, LoadCompareConfig(path));
  int k = 0;
  for (const std::string& o : src.overrides()) {
    CompareConfig fragment;
    RETURN_IF_ERROR(ParseTextProto(o, absl::StrCat("overrides[", k++, "]"), &fragment));
    c.MergeFrom(fragment);
  }
  if (!data_dir.empty()) {
    c.mutable_base()->mutable_dataset()->mutable_ucf101()->set_root(data_dir);
  }
  return c;
}

const CompareMethod* FindMethod(const CompareConfig& c, const std::string& name) {
  for (const CompareMethod& m : c.methods()) {
    if (m.name() == name) return &m;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Validation.

class SuiteChecker {
 public:
  SuiteChecker(const RegressionSuite& suite, const std::string& root, const std::string& tools_dir,
               const std::string& out_dir)
      : s_(suite), root_(root), tools_dir_(tools_dir), out_dir_(out_dir) {}

  absl::Status Check() {
    std::set<std::string> data_names;
    for (const SuiteData& d : s_.data()) {
      if (d.name().empty()) return Bad("", "a data entry has no name");
      if (!data_names.insert(d.name()).second) {
        return Bad("", absl::StrCat("data name \"", d.name(), "\" is used twice"));
      }
      SynthOptions o = SynthOptionsOf(d);
      if (absl::Status v = ValidateSynthOptions(o); !v.ok()) {
        return Bad("", absl::StrCat("data \"", d.name(), "\": ", v.message()));
      }
    }
    data_names_ = data_names;
    if (s_.num_threads() < 0) return Bad("", "num_threads must be >= 0");
    std::set<std::string> names;
    for (const RegressionEntry& e : s_.entries()) {
      if (e.name().empty()) return Bad("", "an entry has no name");
      for (char c : e.name()) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
          return Bad(e.name(), "name may only hold letters, digits and \"._-\"");
        }
      }
      if (!names.insert(e.name()).second) return Bad(e.name(), "name is used twice");
      RETURN_IF_ERROR(CheckEntry(e));
    }
    return absl::OkStatus();
  }

  static SynthOptions SynthOptionsOf(const SuiteData& d) {
    SynthOptions o;
    if (d.smoke()) {
      o = SmokeTestOptions(d.classes(), d.train_per_class(), d.test_per_class(), d.seed());
    } else {
      o.num_classes = d.classes();
      o.train_per_class = d.train_per_class();
      o.test_per_class = d.test_per_class();
      o.seed = d.seed();
    }
    return o;
  }

 private:
  absl::Status Bad(const std::string& entry, const std::string& what) const {
    return absl::InvalidArgumentError(
        entry.empty() ? absl::StrCat("suite: ", what)
                      : absl::StrCat("entry \"", entry, "\": ", what));
  }

  absl::StatusOr<std::string> DataFor(const std::string& entry, const std::string& name) const {
    if (name.empty()) return std::string();
    if (!data_names_.count(name)) {
      return Bad(entry, absl::StrCat("data \"", name, "\" is not declared in the suite's data"));
    }
    return DataDir(out_dir_, name);
  }

  absl::Status CheckEntry(const RegressionEntry& e) {
    const std::string& n = e.name();
    const Tolerance& t = e.tolerance();
    if (t.abs() < 0 || t.rel() < 0 || t.std_multiplier() < 0) {
      return Bad(n, "tolerance terms must be >= 0");
    }
    if (e.num_threads() < 0) return Bad(n, "num_threads must be >= 0");
    const bool performance = e.kind() == RegressionEntry::PERFORMANCE;
    switch (e.kind()) {
      case RegressionEntry::DETERMINISTIC:
        if (e.seeds_size() != 1) return Bad(n, "a deterministic entry has exactly one seed");
        if (t.std_multiplier() > 0) return Bad(n, "tolerance.std_multiplier is for statistical entries");
        break;
      case RegressionEntry::STATISTICAL:
        if (e.seeds_size() < 2) return Bad(n, "a statistical entry needs two or more seeds");
        if (std::set<uint64_t>(e.seeds().begin(), e.seeds().end()).size() !=
            static_cast<size_t>(e.seeds_size())) {
          return Bad(n, "seeds repeat");
        }
        if (t.std_multiplier() <= 0 && t.abs() <= 0) {
          return Bad(n, "a statistical entry needs tolerance.std_multiplier or tolerance.abs > 0");
        }
        break;
      case RegressionEntry::PERFORMANCE:
        if (t.rel() <= 0 && t.abs() <= 0) {
          return Bad(n, "a performance entry needs tolerance.rel or tolerance.abs > 0 (ratios "
                        "are measured, never exact)");
        }
        if (t.std_multiplier() > 0) return Bad(n, "tolerance.std_multiplier is for statistical entries");
        if (e.seeds_size() > 0) return Bad(n, "a performance entry has no seeds");
        if (e.has_metric()) return Bad(n, "a performance entry's number is its ratio: no metric");
        break;
      default:
        return Bad(n, "kind is required (DETERMINISTIC, STATISTICAL or PERFORMANCE)");
    }
    if (performance != e.has_performance()) {
      return Bad(n, performance ? "a performance entry needs a performance source"
                                : "experiment or comparison source required for this kind");
    }
    if (e.source_case() == RegressionEntry::SOURCE_NOT_SET) {
      return Bad(n, "no source (experiment, comparison or performance)");
    }
    if (!performance) RETURN_IF_ERROR(CheckMetric(e));
    if (e.has_expected()) {
      const Expected& x = e.expected();
      if (!x.not_recorded() && !x.has_value() && !x.has_text()) {
        return Bad(n, "expected has neither value nor text (use not_recorded: true)");
      }
      if (x.has_text() && e.kind() != RegressionEntry::DETERMINISTIC) {
        return Bad(n, "expected.text is for deterministic entries");
      }
    }
    auto where = [&](const absl::Status& s) {
      return Bad(n, std::string(s.message()));
    };
    switch (e.source_case()) {
      case RegressionEntry::kExperiment: {
        const ExperimentSource& src = e.experiment();
        if (src.config().empty()) return Bad(n, "experiment.config is required");
        ASSIGN_OR_RETURN(std::string data, DataFor(n, src.data()));
        absl::StatusOr<ExperimentConfig> c =
            ExperimentFor(root_, src.config(), {src.overrides().begin(), src.overrides().end()},
                          data, "regress_validate");
        if (!c.ok()) return where(c.status());
        const float f = c->dataset().labeled_fraction();
        if (!(f > 0 && f <= 1)) return Bad(n, "the config's labeled_fraction must be in (0, 1]");
        break;
      }
      case RegressionEntry::kComparison: {
        const ComparisonSource& src = e.comparison();
        if (src.config().empty()) return Bad(n, "comparison.config is required");
        ASSIGN_OR_RETURN(std::string data, DataFor(n, src.data()));
        absl::StatusOr<CompareConfig> c = ComparisonFor(root_, src, data);
        if (!c.ok()) return where(c.status());
        if (absl::Status v = ValidateCompareConfig(*c); !v.ok()) return where(v);
        if (FindMethod(*c, src.method()) == nullptr) {
          return Bad(n, absl::StrCat("comparison ", src.config(), " has no method \"",
                                     src.method(), "\""));
        }
        bool fraction = false;
        for (float f : c->labeled_fractions()) {
          fraction |= std::abs(f - src.labeled_fraction()) < 1e-6;
        }
        if (!fraction) {
          return Bad(n, absl::StrCat("comparison ", src.config(), " has no labeled fraction ",
                                     src.labeled_fraction()));
        }
        for (uint64_t seed : e.seeds()) {
          if (std::find(c->seeds().begin(), c->seeds().end(), seed) == c->seeds().end()) {
            return Bad(n, absl::StrCat("comparison ", src.config(), " has no seed ", seed));
          }
        }
        break;
      }
      case RegressionEntry::kPerformance: {
        const PerformanceSource& p = e.performance();
        if (p.repeats() < 1) return Bad(n, "performance.repeats must be >= 1");
        if (!p.has_numerator()) return Bad(n, "performance needs a numerator");
        if (!p.has_denominator() && !p.numerator().has_command()) {
          return Bad(n, "performance needs a denominator unless its numerator is a command "
                        "that prints a ratio");
        }
        RETURN_IF_ERROR(CheckMeasurement(n, "numerator", p.numerator()));
        if (p.has_denominator()) {
          RETURN_IF_ERROR(CheckMeasurement(n, "denominator", p.denominator()));
        }
        break;
      }
      default:
        break;
    }
    return absl::OkStatus();
  }

  absl::Status CheckMetric(const RegressionEntry& e) {
    const std::string& n = e.name();
    const Metric& m = e.metric();
    switch (m.source_case()) {
      case Metric::kJson:
        if (m.json().file().empty()) return Bad(n, "metric.json.file is empty");
        if (absl::Status s = CheckJsonPath(m.json().path()); !s.ok()) {
          return Bad(n, std::string(s.message()));
        }
        break;
      case Metric::kJsonl:
        if (m.jsonl().key().empty()) return Bad(n, "metric.jsonl.key is required");
        break;
      case Metric::kCell:
        if (absl::Status s = CheckJsonPath(m.cell()); !s.ok()) {
          return Bad(n, std::string(s.message()));
        }
        break;
      default:
        return Bad(n, "metric is required (json, jsonl or cell)");
    }
    if (m.scale() == 0) return Bad(n, "metric.scale must not be 0");
    return absl::OkStatus();
  }

  absl::Status CheckMeasurement(const std::string& n, const std::string& which,
                                const Measurement& m) {
    const std::string at = "performance." + which;
    switch (m.kind_case()) {
      case Measurement::kCommand: {
        const CommandMeasurement& c = m.command();
        if (c.argv().empty()) return Bad(n, at + ".command.argv is empty");
        try {
          std::regex re(c.regex());
          if (re.mark_count() < 1) return Bad(n, at + ".command.regex needs a (group)");
        } catch (const std::regex_error& err) {
          return Bad(n, absl::StrCat(at, ".command.regex does not compile: ", err.what()));
        }
        for (const std::string& arg : c.argv()) {
          size_t p = arg.find("{tool:");
          if (p == std::string::npos) continue;
          const size_t close = arg.find('}', p);
          if (close == std::string::npos) return Bad(n, at + ": unclosed {tool:");
          const std::string tool = arg.substr(p + 6, close - p - 6);
          if (ToolPath(tool, root_, tools_dir_).empty()) {
            return Bad(n, absl::StrCat(at, ": tool \"", tool, "\" not found in ",
                                       tools_dir_.empty() ? "" : tools_dir_ + " or ", root_,
                                       "/bazel-bin/tools (build //tools:", tool, ")"));
          }
        }
        break;
      }
      case Measurement::kCalibration:
        if (m.calibration().op() == CalibrationKernel::OP_UNSPECIFIED) {
          return Bad(n, at + ".calibration.op is required (CONV3D or MATMUL)");
        }
        if (m.calibration().iters() < 1 || m.calibration().size() < 1 ||
            m.calibration().batch() < 1 || m.calibration().channels() < 1 ||
            m.calibration().frames() < 1 || m.calibration().warmup() < 0) {
          return Bad(n, at + ".calibration sizes and iters must be >= 1");
        }
        break;
      case Measurement::kTraining: {
        const TrainingThroughput& t = m.training();
        ASSIGN_OR_RETURN(std::string data, DataFor(n, t.data()));
        absl::StatusOr<ExperimentConfig> c =
            ExperimentFor(root_, t.config(), {t.overrides().begin(), t.overrides().end()}, data,
                          "regress_validate");
        if (!c.ok()) return Bad(n, std::string(c.status().message()));
        if (c->has_timebalance()) return Bad(n, at + ".training: a pipeline config is not allowed");
        break;
      }
      default:
        return Bad(n, at + ": command, calibration or training is required");
    }
    return absl::OkStatus();
  }

 public:
  static std::string ToolPath(const std::string& tool, const std::string& root,
                              const std::string& tools_dir) {
    for (const std::string& dir : {tools_dir, root.empty() ? std::string() : root + "/bazel-bin/tools"}) {
      if (dir.empty()) continue;
      const std::string p = dir + "/" + tool;
      if (access(p.c_str(), X_OK) == 0) return p;
    }
    return "";
  }

 private:
  const RegressionSuite& s_;
  const std::string root_, tools_dir_, out_dir_;
  std::set<std::string> data_names_;
};

// ---------------------------------------------------------------------------
// Running.

// A comparison run once for all the entries that read its cells.
struct Group {
  std::string key;
  std::string label;  // the config path, for progress lines
  std::string dir;    // the comparison's out folder
  CompareConfig config;
  std::set<std::string> methods;
  std::vector<float> fractions;
  std::set<uint64_t> seeds;
  int threads = 1;
  bool experiment = false;  // a one-method comparison made from an experiment config
  std::vector<std::string> entries;
  // Results.
  absl::Status status;
  double seconds = 0;
  int ran = 0, reused = 0;
  bool interrupted = false;
  // (method, fraction in 1e-4 units, seed) -> (record, folder).
  std::map<std::tuple<std::string, int64_t, uint64_t>, std::pair<CellRecord, std::string>> cells;
};

int64_t FractionKey(float f) { return std::llround(f * 1e4); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

class Runner {
 public:
  explicit Runner(const RegressOptions& options) : o_(options) {}

  absl::StatusOr<RegressResult> Run() {
    ASSIGN_OR_RETURN(suite_, LoadRegressionSuite(o_.suite_path));
    root_ = o_.root.empty() ? FindWorkspaceRoot(o_.suite_path) : o_.root;
    if (root_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.suite_path, ": no WORKSPACE file above it; pass the workspace root with --root"));
    }
    root_ = fs::absolute(root_).lexically_normal().string();
    out_dir_ = o_.out_dir.empty() ? (fs::path("runs/regress") / Stem(o_.suite_path)).string()
                                  : o_.out_dir;
    out_dir_ = fs::absolute(out_dir_).lexically_normal().string();
    if (o_.jobs < 1) return absl::InvalidArgumentError("--jobs must be >= 1");
    SuiteChecker checker(suite_, root_, o_.tools_dir, out_dir_);
    if (absl::Status s = checker.Check(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(o_.suite_path, ": ", s.message()));
    }
    RETURN_IF_ERROR(SelectEntries());
    // (A child process only runs its group; the parent judges.)
    if (!o_.update && o_.internal_group < 0) {
      std::vector<std::string> missing;
      for (int i : selected_) {
        const RegressionEntry& e = suite_.entries(i);
        if (!e.has_expected() || e.expected().not_recorded()) missing.push_back(e.name());
      }
      if (!missing.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            o_.suite_path, ": ", missing.size(), " entr", missing.size() == 1 ? "y has" : "ies have",
            " no recorded expected value yet (", absl::StrJoin(missing, ", "),
            "); record them on purpose with --update (docs/REGRESSION.md)"));
      }
    }
    result_.out_dir = out_dir_;
    if (o_.check_only) {
      Say(absl::StrFormat("regress: %s: %d entries valid", o_.suite_path, suite_.entries_size()));
      return result_;
    }
    std::error_code ec;
    fs::create_directories(out_dir_, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir_, ": ", ec.message()));
    code_ = GitState(root_);
    const auto start = Clock::now();
    if (o_.internal_group < 0) {
      Say(absl::StrFormat("regress: suite \"%s\" (%s), %d of %d entries, out %s, code %s",
                        suite_.name(), o_.suite_path, selected_.size(), suite_.entries_size(),
                        out_dir_,
                        code_.head.empty() ? "unknown (no git)"
                                           : code_.head.substr(0, 12) + (code_.dirty ? "+dirty" : "")));
      if (code_.fingerprint.empty()) {
        Say(absl::StrCat("regress: warning: git cannot fingerprint the code under ", root_,
                         ", so finished runs in ", out_dir_,
                         " are reused whatever the code; remove them to rerun"));
      }
    }
    if (o_.internal_group >= 0) {
      RETURN_IF_ERROR(BuildGroups());
      if (o_.internal_group >= static_cast<int>(groups_.size())) {
        return absl::InvalidArgumentError(absl::StrCat("--internal_group: no group ", o_.internal_group));
      }
      if (o_.internal_shards < 1 || o_.internal_shard < 0 ||
          o_.internal_shard >= o_.internal_shards) {
        return absl::InvalidArgumentError(absl::StrCat("--internal_shard=", o_.internal_shard,
                                                       " of --internal_shards=",
                                                       o_.internal_shards));
      }
      Group& g = groups_[o_.internal_group];
      RunGroup(&g, o_.internal_group + 1, /*announce=*/true, o_.internal_shard,
               o_.internal_shards);
      result_.interrupted = g.interrupted || Stopped();
      result_.exit_code = g.status.ok()                                                  ? 0
                          : g.status.code() == absl::StatusCode::kInvalidArgument ? 2
                                                                                    : 1;
      return result_;
    }
    RETURN_IF_ERROR(MakeData());
    RETURN_IF_ERROR(BuildGroups());
    RunGroups();
    if (Stopped()) {
      result_.interrupted = true;
      return result_;
    }
    RunPerformance();
    if (Stopped()) {
      result_.interrupted = true;
      return result_;
    }
    RETURN_IF_ERROR(Judge());
    Say(absl::StrFormat("regress: %s in %s", o_.update ? "update" : "run",
                        FormatDuration(SecondsSince(start))));
    Say(absl::StrFormat("%d passed, %d failed%s", result_.passed, result_.failed,
                        result_.skipped > 0
                            ? absl::StrFormat(", %d skipped (no value for this machine kind)",
                                              result_.skipped)
                            : ""));
    return result_;
  }

 private:
  bool Stopped() const { return o_.stop != nullptr && o_.stop->load(); }

  void Say(const std::string& line) {
    std::lock_guard<std::mutex> lock(print_mu_);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  int Threads(const RegressionEntry& e) const {
    return e.num_threads() > 0 ? e.num_threads() : suite_.num_threads();
  }

  absl::Status SelectEntries() {
    std::set<std::string> wanted(o_.entries.begin(), o_.entries.end());
    for (const std::string& name : wanted) {
      bool found = false;
      for (const RegressionEntry& e : suite_.entries()) found |= e.name() == name;
      if (!found) {
        return absl::InvalidArgumentError(
            absl::StrCat("--entries: the suite has no entry \"", name, "\""));
      }
    }
    for (int i = 0; i < suite_.entries_size(); ++i) {
      if (wanted.empty() || wanted.count(suite_.entries(i).name())) selected_.push_back(i);
    }
    return absl::OkStatus();
  }

  absl::Status MakeData() {
    std::set<std::string> used;
    for (int i : selected_) {
      const RegressionEntry& e = suite_.entries(i);
      used.insert(e.experiment().data());
      used.insert(e.comparison().data());
      used.insert(e.performance().numerator().training().data());
      used.insert(e.performance().denominator().training().data());
    }
    for (const SuiteData& d : suite_.data()) {
      if (!used.count(d.name())) continue;
      const std::string dir = DataDir(out_dir_, d.name());
      const SynthOptions options = SuiteChecker::SynthOptionsOf(d);
      std::string difference;
      ASSIGN_OR_RETURN(SynthDirState state, CheckSynthActionsDir(dir, options, &difference));
      if (state == SynthDirState::kUpToDate) continue;
      const auto start = Clock::now();
      if (state == SynthDirState::kStale) {
        std::error_code ec;
        fs::remove_all(dir, ec);
      }
      SynthWriteStats stats;
      RETURN_IF_ERROR(WriteSynthActions(dir, options, 0, &stats));
      Say(absl::StrFormat("regress: data \"%s\": %d SynthActions videos in %s (%.1f s)", d.name(),
                          stats.videos, dir, SecondsSince(start)));
    }
    return absl::OkStatus();
  }

  std::string CodeKey() const { return code_.fingerprint.empty() ? "nogit" : code_.fingerprint; }

  absl::Status BuildGroups() {
    std::map<std::string, int> index;
    for (int i : selected_) {
      const RegressionEntry& e = suite_.entries(i);
      if (e.has_performance()) continue;
      const int threads = Threads(e);
      std::string key, label, dir;
      CompareConfig config;
      std::string method;
      float fraction = 0;
      if (e.has_experiment()) {
        const ExperimentSource& src = e.experiment();
        const std::string data = src.data().empty() ? "" : DataDir(out_dir_, src.data());
        key = absl::StrCat("experiment\n", src.config(), "\n", absl::StrJoin(src.overrides(), "\n"),
                           "\n", data, "\n", threads, "\n", src.seed_labeled_subset());
        label = src.config();
        ASSIGN_OR_RETURN(ExperimentConfig base,
                         ExperimentFor(root_, src.config(),
                                       {src.overrides().begin(), src.overrides().end()}, data,
                                       "regress"));
        base.clear_run_dir();
        base.set_num_threads(threads);
        method = Stem(src.config());
        fraction = base.dataset().labeled_fraction();
        config.set_name(absl::StrCat("regress ", src.config()));
        *config.mutable_base() = base;
        CompareMethod* m = config.add_methods();
        m->set_name(method);
        config.add_labeled_fractions(fraction);
        config.set_seed_labeled_subset(src.seed_labeled_subset());
        dir = (fs::path(out_dir_) / "runs" /
               absl::StrCat(Slug(Stem(src.config())), "_", Sha256Hex(key + CodeKey()).substr(0, 8)))
                  .string();
      } else {
        const ComparisonSource& src = e.comparison();
        const std::string data = src.data().empty() ? "" : DataDir(out_dir_, src.data());
        key = absl::StrCat("comparison\n", src.config(), "\n", absl::StrJoin(src.overrides(), "\n"),
                           "\n", data, "\n", threads, "\n", src.out_dir());
        label = src.config();
        ASSIGN_OR_RETURN(config, ComparisonFor(root_, src, data));
        config.mutable_base()->set_num_threads(threads);
        method = src.method();
        fraction = src.labeled_fraction();
        dir = !src.out_dir().empty()
                  ? Resolve(root_, src.out_dir())
                  : (fs::path(out_dir_) / "compare" /
                     absl::StrCat(Slug(Stem(src.config())), "_",
                                  Sha256Hex(key + CodeKey()).substr(0, 8)))
                        .string();
      }
      auto [it, fresh] = index.emplace(key, static_cast<int>(groups_.size()));
      if (fresh) {
        Group g;
        g.key = key;
        g.label = label;
        g.dir = dir;
        g.config = config;
        g.threads = threads;
        g.experiment = e.has_experiment();
        groups_.push_back(std::move(g));
      }
      Group& g = groups_[it->second];
      g.entries.push_back(e.name());
      entry_group_[i] = it->second;
      // The method and the methods it takes its teacher from.
      for (std::string name = method; !name.empty();) {
        g.methods.insert(name);
        const CompareMethod* m = FindMethod(g.config, name);
        name = m == nullptr ? "" : m->teacher_from();
      }
      bool have = false;
      for (float f : g.fractions) have |= FractionKey(f) == FractionKey(fraction);
      if (!have) g.fractions.push_back(fraction);
      for (uint64_t s : e.seeds()) g.seeds.insert(s);
    }
    // An experiment's comparison has exactly the seeds its entries run.
    for (Group& g : groups_) {
      if (!g.experiment) continue;
      g.config.clear_seeds();
      for (uint64_t s : g.seeds) g.config.add_seeds(s);
    }
    return absl::OkStatus();
  }

  // Runs (or, after child processes ran it, only reads) one group's
  // comparison, or shard `shard` of `shards` of its cells; `announce` prints
  // its start and end lines.
  void RunGroup(Group* g, int number, bool announce, int shard = 0, int shards = 1) {
    ConfigureThreads(g->threads);
    const auto start = Clock::now();
    const std::string part =
        shards > 1 ? absl::StrFormat(" (shard %d/%d)", shard + 1, shards) : std::string();
    if (announce) Say(absl::StrFormat("regress: [%d/%d]%s %s (%s), %d thread%s: %s", number,
                        groups_.size(), part, g->label, absl::StrJoin(g->methods, ", "),
                        g->threads, g->threads == 1 ? "" : "s", absl::StrJoin(g->entries, ", ")));
    CompareOptions co;
    co.shard_index = shard;
    co.shard_count = shards;
    co.out_dir = g->dir;
    co.methods.assign(g->methods.begin(), g->methods.end());
    co.fractions = g->fractions;
    co.seeds.assign(g->seeds.begin(), g->seeds.end());
    co.stop = o_.stop;
    co.quiet = !o_.verbose;
    absl::StatusOr<CompareResult> r = RunComparison(g->config, co);
    g->seconds = SecondsSince(start);
    if (!r.ok()) {
      g->status = r.status();
      if (announce) Say(absl::StrFormat("regress: [%d/%d] %s failed: %s", number, groups_.size(), g->label,
                          r.status().message()));
      return;
    }
    g->ran = r->ran;
    g->reused = r->reused;
    g->interrupted = r->interrupted;
    // Which folder holds which finished cell: the record's fingerprint.
    std::map<std::string, std::string> folder;
    std::error_code ec;
    for (const auto& method_dir : fs::directory_iterator(fs::path(g->dir) / "cells", ec)) {
      for (const auto& cell_dir : fs::directory_iterator(method_dir.path(), ec)) {
        absl::StatusOr<CellRecord> rec =
            ReadTextRecord<CellRecord>((cell_dir.path() / "cell_done.pbtxt").string());
        if (rec.ok()) folder[rec->method() + "\n" + rec->fingerprint()] = cell_dir.path().string();
      }
    }
    for (const CellRecord& c : r->cells) {
      auto it = folder.find(c.method() + "\n" + c.fingerprint());
      if (it == folder.end()) continue;
      g->cells[{c.method(), FractionKey(c.labeled_fraction()), c.seed()}] = {c, it->second};
    }
    if (announce) Say(absl::StrFormat("regress: [%d/%d]%s %s: %d cell%s run, %d reused in %s",
                        number, groups_.size(), part, g->label, g->ran, g->ran == 1 ? "" : "s",
                        g->reused, FormatDuration(g->seconds)));
  }

  // The command line of a child that runs shard `shard` of `shards` of
  // group `index` alone.
  std::vector<std::string> ChildArgv(int index, int shard, int shards) const {
    std::vector<std::string> argv = {o_.self_exe,
                                     "--suite=" + fs::absolute(o_.suite_path).string(),
                                     "--root=" + root_, "--out=" + out_dir_,
                                     absl::StrCat("--internal_group=", index),
                                     absl::StrCat("--internal_shard=", shard),
                                     absl::StrCat("--internal_shards=", shards)};
    std::vector<std::string> names;
    for (int i : selected_) names.push_back(suite_.entries(i).name());
    argv.push_back("--entries=" + absl::StrJoin(names, ","));
    if (o_.verbose) argv.push_back("--verbose");
    return argv;
  }

  static pid_t Spawn(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
      execv(args[0], args.data());
      _exit(127);
    }
    return pid;
  }

  void RunGroups() {
    // Work items: (group, shard, shards). A comparison group of several
    // cells is split into up to 3 x jobs shards (smaller items balance the
    // load: cells take 1-8 minutes); the teacher chains stay together.
    struct Item {
      int group, shard, shards;
    };
    std::vector<Item> items;
    for (size_t i = 0; i < groups_.size(); ++i) {
      const Group& g = groups_[i];
      const int64_t cells =
          static_cast<int64_t>(g.methods.size() * g.fractions.size() * g.seeds.size());
      const int shards =
          g.experiment || o_.jobs < 2 ? 1 : static_cast<int>(std::min<int64_t>(cells, 3 * o_.jobs));
      for (int k = 0; k < std::max(shards, 1); ++k) {
        items.push_back({static_cast<int>(i), k, std::max(shards, 1)});
      }
    }
    const int jobs = std::min<int>(o_.jobs, static_cast<int>(items.size()));
    if (jobs > 1 && !o_.self_exe.empty()) {
      // Child processes, `jobs` at a time; then this process reads every
      // group's finished cells (all reused).
      std::map<pid_t, int> running;
      size_t next = 0;
      while ((next < items.size() && !Stopped()) || !running.empty()) {
        while (running.size() < static_cast<size_t>(jobs) && next < items.size() && !Stopped()) {
          const Item& item = items[next];
          const pid_t pid = Spawn(ChildArgv(item.group, item.shard, item.shards));
          if (pid < 0) {
            groups_[item.group].status = absl::InternalError("fork() failed");
          } else {
            running[pid] = item.group;
          }
          ++next;
        }
        if (running.empty()) break;
        int status = 0;
        const pid_t done = waitpid(-1, &status, 0);
        if (done < 0) {
          if (errno == EINTR) continue;
          break;
        }
        auto it = running.find(done);
        if (it == running.end()) continue;
        const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        Group& g = groups_[it->second];
        if (rc != 0) {
          g.status = rc == 2 ? absl::InvalidArgumentError(absl::StrCat(
                                   "the run of ", g.label, " failed (exit code 2, see above)"))
                             : absl::InternalError(absl::StrCat("the run of ", g.label,
                                                                " failed (exit code ", rc, ", see above)"));
          if (rc >= 128) g.interrupted = true;
        }
        running.erase(it);
      }
      for (size_t i = 0; i < groups_.size() && !Stopped(); ++i) {
        if (groups_[i].status.ok() && !groups_[i].interrupted) {
          RunGroup(&groups_[i], static_cast<int>(i) + 1, /*announce=*/false);
        }
      }
      return;
    }
    for (size_t i = 0; i < groups_.size() && !Stopped(); ++i) {
      RunGroup(&groups_[i], static_cast<int>(i) + 1, /*announce=*/true);
    }
  }

  // --- Performance.

  absl::StatusOr<double> MeasureCommand(const RegressionEntry& e, const CommandMeasurement& c,
                                        int repeat) {
    std::vector<std::string> argv;
    std::string tmp;
    for (const std::string& raw : c.argv()) {
      std::string a = raw;
      for (size_t p; (p = a.find("{tool:")) != std::string::npos;) {
        const size_t close = a.find('}', p);
        const std::string tool = a.substr(p + 6, close - p - 6);
        a.replace(p, close - p + 1, SuiteChecker::ToolPath(tool, root_, o_.tools_dir));
      }
      if (absl::StrContains(a, "{tmp}") && tmp.empty()) {
        tmp = (fs::path(out_dir_) / "tmp" / absl::StrCat("cmd_", ::getpid(), "_", ++tmp_count_))
                  .string();
        std::error_code ec;
        fs::create_directories(tmp, ec);
      }
      a = absl::StrReplaceAll(a, {{"{python}", "/usr/bin/python3"}, {"{root}", root_}, {"{tmp}", tmp}});
      argv.push_back(a);
    }
    const std::string memo_key = absl::StrCat(absl::StrJoin(c.argv(), "\x1f"), "#", repeat);
    std::string output;
    if (auto it = command_memo_.find(memo_key); it != command_memo_.end()) {
      output = it->second;
    } else {
      int rc = 0;
      absl::StatusOr<std::string> out = RunProgram(argv, &rc);
      if (!tmp.empty()) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
      }
      if (!out.ok()) return out.status();
      if (rc != 0) {
        return absl::InternalError(absl::StrFormat("`%s` exited with %d:\n%s",
                                                   absl::StrJoin(argv, " "), rc, Tail(*out, 8)));
      }
      output = *out;
      command_memo_[memo_key] = output;
    }
    std::smatch match;
    const std::regex re(c.regex());
    double v;
    if (!std::regex_search(output, match, re) || !absl::SimpleAtod(match[1].str(), &v)) {
      return absl::NotFoundError(absl::StrFormat(
          "the output of `%s` has no match for regex %s (last lines:\n%s)",
          absl::StrJoin(argv, " "), c.regex(), Tail(output, 6)));
    }
    return v;
  }

  absl::StatusOr<double> MeasureCalibration(const CalibrationKernel& k) {
    torch::NoGradGuard no_grad;
    torch::manual_seed(0);
    std::function<void()> call;
    double flops = 0;
    torch::Tensor a, b;
    if (k.op() == CalibrationKernel::CONV3D) {
      a = torch::randn({k.batch(), k.channels(), k.frames(), k.size(), k.size()});
      b = torch::randn({k.channels(), k.channels(), 3, 3, 3});
      flops = 2.0 * k.batch() * k.channels() * k.channels() * 27.0 * k.frames() * k.size() *
              k.size();
      call = [&] { torch::conv3d(a, b, {}, 1, 1); };
    } else {
      a = torch::randn({k.size(), k.size()});
      b = torch::randn({k.size(), k.size()});
      flops = 2.0 * k.size() * k.size() * k.size();
      call = [&] { torch::mm(a, b); };
    }
    for (int i = 0; i < k.warmup(); ++i) call();
    std::vector<double> times;
    for (int i = 0; i < k.iters(); ++i) {
      const auto start = Clock::now();
      call();
      times.push_back(SecondsSince(start));
    }
    return flops / std::max(1e-12, Median(times)) / 1e9;
  }

  absl::StatusOr<double> MeasureTraining(const TrainingThroughput& t) {
    const std::string dir =
        (fs::path(out_dir_) / "tmp" / absl::StrCat("train_", ::getpid(), "_", ++tmp_count_)).string();
    std::error_code ec;
    fs::remove_all(dir, ec);
    const std::string data = t.data().empty() ? "" : DataDir(out_dir_, t.data());
    ASSIGN_OR_RETURN(ExperimentConfig e,
                     ExperimentFor(root_, t.config(), {t.overrides().begin(), t.overrides().end()},
                                   data, dir));
    ASSIGN_OR_RETURN(ExperimentData d, LoadExperimentData(e.dataset()));
    RETURN_IF_ERROR(ResolveNumClasses(&e, static_cast<int>(d.class_names.size())));
    ASSIGN_OR_RETURN(torch::Device device, ParseDevice(e.device()));
    RunOptions ro;
    ro.quiet = !o_.verbose;
    ro.stop = o_.stop;
    ASSIGN_OR_RETURN(RunResult r, RunExperiment(e, d, device, ro));
    ASSIGN_OR_RETURN(std::vector<MetricsLine> lines, ReadMetricsJsonl(dir + "/metrics.jsonl"));
    fs::remove_all(dir, ec);
    std::vector<double> rates;
    for (size_t i = lines.size() > 1 ? 1 : 0; i < lines.size(); ++i) {
      auto it = lines[i].values.find("clips_per_s");
      if (it != lines[i].values.end()) rates.push_back(it->second);
    }
    if (rates.empty()) {
      return absl::NotFoundError(absl::StrCat(t.config(), ": metrics.jsonl has no clips_per_s"));
    }
    double sum = 0;
    for (double x : rates) sum += x;
    return sum / rates.size();
  }

  absl::StatusOr<double> Measure(const RegressionEntry& e, const Measurement& m, int repeat) {
    switch (m.kind_case()) {
      case Measurement::kCommand: return MeasureCommand(e, m.command(), repeat);
      case Measurement::kCalibration: return MeasureCalibration(m.calibration());
      case Measurement::kTraining: return MeasureTraining(m.training());
      default: return absl::InvalidArgumentError("no measurement");
    }
  }

  void RunPerformance() {
    int count = 0;
    for (int i : selected_) count += suite_.entries(i).has_performance() ? 1 : 0;
    int k = 0;
    for (int i : selected_) {
      const RegressionEntry& e = suite_.entries(i);
      if (!e.has_performance() || Stopped()) continue;
      ++k;
      ConfigureThreads(Threads(e));
      const auto start = Clock::now();
      const PerformanceSource& p = e.performance();
      std::vector<double> ratios;
      absl::Status status;
      for (int r = 0; r < p.repeats() && status.ok() && !Stopped(); ++r) {
        absl::StatusOr<double> num = Measure(e, p.numerator(), r);
        if (!num.ok()) {
          status = num.status();
          break;
        }
        absl::StatusOr<double> den = p.has_denominator() ? Measure(e, p.denominator(), r)
                                                         : absl::StatusOr<double>(1.0);
        if (!den.ok()) {
          status = den.status();
          break;
        }
        if (*den <= 0) {
          status = absl::InternalError(absl::StrCat(p.denominator().label(), " measured ", *den));
          break;
        }
        ratios.push_back(*num / *den);
        perf_parts_[i].push_back({*num, *den});
      }
      if (status.ok() && !Stopped()) {
        Measured m;
        m.per_seed = {Median(ratios)};
        Summarize(&m);
        measured_[i] = m;
        all_ratios_[i] = ratios;
      } else if (!status.ok()) {
        errors_[i] = {1, std::string(status.message())};
      }
      Say(absl::StrFormat("regress: performance [%d/%d] %s: %s in %s", k, count, e.name(),
                          status.ok() ? absl::StrCat("ratios ", absl::StrJoin(ratios, ", ",
                                                                               [](std::string* out, double x) {
                                                                                 absl::StrAppend(out, Num(x));
                                                                               }))
                                      : "error",
                          FormatDuration(SecondsSince(start))));
    }
  }

  // --- Reading numbers and judging.

  absl::StatusOr<std::pair<bool, std::pair<double, std::string>>> ReadMetric(
      const RegressionEntry& e, const std::string& dir, const CellRecord& record) {
    const Metric& m = e.metric();
    google::protobuf::Value value;
    switch (m.source_case()) {
      case Metric::kJson: {
        const std::string path = dir + "/" + m.json().file();
        absl::StatusOr<google::protobuf::Value> root = ReadJsonFile(path);
        if (!root.ok()) {
          return absl::NotFoundError(absl::StrCat(m.json().file(), " in ", dir, ": ",
                                                  root.status().message()));
        }
        absl::StatusOr<google::protobuf::Value> v = ResolveJsonPath(*root, m.json().path());
        if (!v.ok()) {
          return absl::NotFoundError(absl::StrCat("metric path ", m.json().path(), " in ", path,
                                                  ": ", v.status().message()));
        }
        value = *v;
        break;
      }
      case Metric::kJsonl: {
        const std::string path = dir + "/" + m.jsonl().file();
        absl::StatusOr<std::vector<MetricsLine>> lines = ReadMetricsJsonl(path);
        if (!lines.ok()) return absl::NotFoundError(lines.status().message());
        const MetricsLine* line = nullptr;
        if (m.jsonl().step() < 0) {
          if (!lines->empty()) line = &lines->back();
        } else {
          for (const MetricsLine& l : *lines) {
            if (l.step == m.jsonl().step()) line = &l;
          }
        }
        if (line == nullptr) {
          return absl::NotFoundError(
              absl::StrCat(path, " has no line for step ", m.jsonl().step()));
        }
        auto it = line->values.find(m.jsonl().key());
        if (it == line->values.end()) {
          return absl::NotFoundError(absl::StrCat(path, " step ", line->step, " has no key \"",
                                                  m.jsonl().key(), "\""));
        }
        value.set_number_value(it->second);
        break;
      }
      case Metric::kCell: {
        ASSIGN_OR_RETURN(google::protobuf::Value cell,
                         ParseJsonValue(ToJson(record), dir + "/cell_done.pbtxt"));
        absl::StatusOr<google::protobuf::Value> v = ResolveJsonPath(cell, m.cell());
        if (!v.ok()) {
          return absl::NotFoundError(absl::StrCat("metric path ", m.cell(), " in ", dir,
                                                  "/cell_done.pbtxt: ", v.status().message()));
        }
        value = *v;
        break;
      }
      default:
        return absl::InvalidArgumentError("no metric");
    }
    double x;
    if (JsonNumber(value, &x)) return std::make_pair(false, std::make_pair(x * m.scale(), std::string()));
    if (value.kind_case() == google::protobuf::Value::kStringValue) {
      return std::make_pair(true, std::make_pair(0.0, value.string_value()));
    }
    return absl::NotFoundError(absl::StrCat(DescribeMetric(e), " in ", dir,
                                            " is neither a number nor text"));
  }

  void MeasureEntry(int i) {
    const RegressionEntry& e = suite_.entries(i);
    const Group& g = groups_[entry_group_.at(i)];
    if (!g.status.ok()) {
      errors_[i] = {g.status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1,
                    std::string(g.status.message())};
      return;
    }
    const std::string method = e.has_experiment() ? Stem(e.experiment().config()) : e.comparison().method();
    const float fraction = e.has_experiment() ? g.fractions.front() : e.comparison().labeled_fraction();
    Measured m;
    for (uint64_t seed : e.seeds()) {
      auto it = g.cells.find({method, FractionKey(fraction), seed});
      if (it == g.cells.end()) {
        errors_[i] = {1, absl::StrCat("no finished cell for ", method, ", seed ", seed, " in ", g.dir)};
        return;
      }
      auto v = ReadMetric(e, it->second.second, it->second.first);
      if (!v.ok()) {
        errors_[i] = {v.status().code() == absl::StatusCode::kNotFound ? 2 : 1,
                      std::string(v.status().message())};
        return;
      }
      if (v->first) {
        m.is_text = true;
        m.text = v->second.second;
      } else {
        m.per_seed.push_back(v->second.first);
      }
      dirs_[i].push_back(it->second.second);
    }
    if (m.is_text && !m.per_seed.empty()) {
      errors_[i] = {2, "the metric is text for some seeds and a number for others"};
      return;
    }
    if (m.is_text && e.kind() != RegressionEntry::DETERMINISTIC) {
      errors_[i] = {2, absl::StrCat(DescribeMetric(e), " is text (\"", m.text,
                                    "\"): only deterministic entries compare text")};
      return;
    }
    Summarize(&m);
    measured_[i] = m;
  }

  std::string ExpectedText(const RegressionEntry& e) const {
    if (!e.has_expected() || e.expected().not_recorded()) return "(not recorded)";
    const Expected& x = e.expected();
    if (x.has_text()) return x.text().size() > 16 ? x.text().substr(0, 16) + "..." : x.text();
    if (e.kind() == RegressionEntry::STATISTICAL && x.has_std()) {
      return absl::StrCat(Num(x.value()), " ± ", Num(x.std()));
    }
    return Num(x.value());
  }

  std::string MeasuredText(const RegressionEntry& e, const Measured& m) const {
    if (m.is_text) return m.text.size() > 16 ? m.text.substr(0, 16) + "..." : m.text;
    if (e.kind() == RegressionEntry::STATISTICAL) {
      return absl::StrFormat("%s ± %s (n=%d)", Num(m.mean), Num(m.std), m.per_seed.size());
    }
    return Num(m.mean);
  }

  std::string BandText(const RegressionEntry& e) const {
    if (!e.has_expected() || e.expected().not_recorded()) return "-";
    if (e.expected().has_text()) return "exact text";
    const double half = BandHalfWidth(e, e.expected());
    if (half == 0) return "exact";
    return absl::StrFormat("[%s, %s]", Num(e.expected().value() - half),
                           Num(e.expected().value() + half));
  }

  absl::Status Judge() {
    for (int i : selected_) {
      if (!suite_.entries(i).has_performance()) MeasureEntry(i);
    }
    const Provenance provenance = CurrentProvenance(root_);
    std::map<int, Expected> updates;
    std::vector<std::string> refused;
    std::vector<RegressionHistoryRecord> history;
    Say(absl::StrFormat("%-36s %-13s %-22s %-26s %-22s %s", "entry", "kind", "expected",
                        "measured", "band", "verdict"));
    for (int i : selected_) {
      const RegressionEntry& full = suite_.entries(i);
      // The record this machine kind is compared with (deterministic
      // entries keep one per kind).
      const Expected* chosen =
          full.has_expected() ? ExpectedFor(full, provenance.machine_kind()) : nullptr;
      const bool other_kind_only =
          chosen == nullptr && full.has_expected() && !full.expected().not_recorded();
      RegressionEntry view = full;
      if (chosen != nullptr) {
        *view.mutable_expected() = *chosen;
      } else {
        view.mutable_expected()->Clear();
        view.mutable_expected()->set_not_recorded(true);
      }
      const RegressionEntry& e = view;
      EntryOutcome out;
      out.name = e.name();
      RegressionHistoryRecord h;
      h.set_time(provenance.date());
      h.set_suite(suite_.name());
      h.set_entry(e.name());
      h.set_kind(KindName(e.kind()));
      h.set_metric(DescribeMetric(e));
      h.set_commit(provenance.commit());
      const bool recorded = e.has_expected() && !e.expected().not_recorded();
      if (recorded) {
        if (e.expected().has_text()) {
          h.set_expected_text(e.expected().text());
        } else {
          const double half = BandHalfWidth(e, e.expected());
          h.set_expected(e.expected().value());
          h.set_band_low(e.expected().value() - half);
          h.set_band_high(e.expected().value() + half);
        }
      }
      std::string verdict;
      std::string measured_text = "-";
      if (other_kind_only && !o_.update) {
        std::vector<std::string> kinds;
        kinds.push_back(full.expected().provenance().machine_kind());
        for (const Expected& x : full.expected().other_machines()) {
          kinds.push_back(x.provenance().machine_kind());
        }
        out.skipped = true;
        verdict = absl::StrCat("SKIP recorded on ", absl::StrJoin(kinds, "; "),
                               " only; this machine is ", provenance.machine_kind(),
                               " (add its values with --update on it)");
        h.set_verdict("skipped");
        h.set_message(verdict.substr(5));
        if (auto it = measured_.find(i); it != measured_.end()) {
          measured_text = MeasuredText(e, it->second);
          if (it->second.is_text) {
            h.set_measured_text(it->second.text);
          } else {
            h.set_measured(it->second.mean);
          }
        }
      } else if (auto err = errors_.find(i); err != errors_.end()) {
        out.error_exit = err->second.first;
        verdict = absl::StrCat("ERROR ", err->second.second);
        h.set_verdict("error");
        h.set_message(err->second.second);
      } else {
        const Measured& m = measured_.at(i);
        measured_text = MeasuredText(e, m);
        if (m.is_text) {
          h.set_measured_text(m.text);
        } else {
          h.set_measured(m.mean);
          if (e.kind() == RegressionEntry::STATISTICAL) {
            for (double x : m.per_seed) h.add_per_seed(x);
          }
        }
        if (recorded && m.is_text != e.expected().has_text()) {
          out.error_exit = 2;
          verdict = m.is_text ? "ERROR the metric is text but the expected value is a number"
                              : "ERROR the metric is a number but the expected value is text";
          h.set_verdict("error");
          h.set_message(verdict.substr(6));
        } else {
          std::string old;
          if (recorded) {
            const Verdict v = tb::Judge(e, m);
            old = VerdictName(v);
            out.passed = v == Verdict::kPass;
            verdict = out.passed ? "pass"
                      : v == Verdict::kImprovement
                          ? "FAIL improvement beyond the band (update the suite on purpose)"
                          : absl::StrCat("FAIL ", old);
            h.set_verdict(old);
          }
          if (o_.update) {
            absl::StatusOr<Expected> x =
                UpdatedExpected(full, m, provenance, o_.allow_wider_bands);
            if (!x.ok()) {
              refused.push_back(std::string(x.status().message()));
              out.passed = false;
              out.error_exit = 2;
              verdict = absl::StrCat("REFUSED ", x.status().message());
            } else {
              updates[i] = *x;
              out.passed = true;
              verdict = recorded ? absl::StrCat("recorded (was ", ExpectedText(e), ": ", old, ")")
                        : other_kind_only ? "recorded (first value on this machine kind)"
                                          : "recorded (first value)";
              h.set_verdict("recorded");
            }
          }
        }
      }
      out.line = absl::StrFormat("%-36s %-13s %-22s %-26s %-22s %s", e.name(), KindName(e.kind()),
                                 ExpectedText(e), measured_text, BandText(e), verdict);
      if (e.kind() == RegressionEntry::PERFORMANCE && perf_parts_.count(i)) {
        std::vector<std::string> parts;
        for (const auto& [num, den] : perf_parts_.at(i)) {
          parts.push_back(absl::StrCat(Num(num), "/", Num(den)));
        }
        absl::StrAppend(&out.line, "  [", DescribeMetric(e), ": ", absl::StrJoin(parts, ", "),
                        "]");
      }
      Say(out.line);
      if (out.skipped) {
        ++result_.skipped;
      } else if (out.passed) {
        ++result_.passed;
      } else {
        ++result_.failed;
      }
      history.push_back(h);
      result_.entries.push_back(out);
    }
    RETURN_IF_ERROR(AppendHistory(history));
    int exit_code = 0;
    for (const EntryOutcome& out : result_.entries) {
      if (out.error_exit == 2) exit_code = 2;
      if (exit_code == 0 && !out.passed && !out.skipped) exit_code = 1;
    }
    if (o_.update) {
      bool errors = false;
      for (const EntryOutcome& out : result_.entries) errors |= out.error_exit != 0;
      if (errors) {
        Say(absl::StrCat("regress: ", o_.suite_path,
                         " NOT rewritten: fix the errors above (a wider band needs "
                         "--allow_wider_bands or an edit of the entry's tolerance)"));
      } else if (!updates.empty()) {
        ASSIGN_OR_RETURN(std::string text, ReadFileToString(o_.suite_path));
        ASSIGN_OR_RETURN(std::string rewritten, RewriteExpected(text, o_.suite_path, updates));
        RETURN_IF_ERROR(WriteFileAtomically(o_.suite_path, rewritten));
        result_.rewrote_suite = true;
        Say(absl::StrFormat("regress: rewrote %d expected value%s in %s", updates.size(),
                            updates.size() == 1 ? "" : "s", o_.suite_path));
      }
    }
    result_.exit_code = exit_code;
    return absl::OkStatus();
  }

  absl::Status AppendHistory(const std::vector<RegressionHistoryRecord>& records) {
    const std::string path = out_dir_ + "/history.jsonl";
    std::ofstream out(path, std::ios::app);
    if (!out) return absl::InternalError("cannot append to " + path);
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    for (const RegressionHistoryRecord& r : records) {
      std::string line;
      google::protobuf::util::MessageToJsonString(r, &line, options);
      out << line << "\n";
    }
    out.flush();
    if (!out) return absl::InternalError("cannot append to " + path);
    return absl::OkStatus();
  }

  const RegressOptions& o_;
  RegressionSuite suite_;
  std::string root_, out_dir_;
  CodeState code_;
  std::vector<int> selected_;
  std::vector<Group> groups_;
  std::map<int, int> entry_group_;
  std::map<int, Measured> measured_;
  std::map<int, std::pair<int, std::string>> errors_;  // exit code, message
  std::map<int, std::vector<std::string>> dirs_;
  std::map<int, std::vector<std::pair<double, double>>> perf_parts_;
  std::map<int, std::vector<double>> all_ratios_;
  std::map<std::string, std::string> command_memo_;
  int tmp_count_ = 0;
  std::mutex print_mu_;
  RegressResult result_;
};

}  // namespace

absl::StatusOr<RegressionSuite> LoadRegressionSuite(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError("suite not found or unreadable: " + path);
  RegressionSuite suite;
  RETURN_IF_ERROR(ParseTextProto(*text, path, &suite));
  return suite;
}

std::string FindWorkspaceRoot(const std::string& suite_path) {
  fs::path dir = fs::absolute(suite_path).lexically_normal().parent_path();
  for (; !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / "WORKSPACE")) return dir.string();
    if (dir == dir.root_path()) break;
  }
  return "";
}

absl::Status ValidateRegressionSuite(const RegressionSuite& suite, const std::string& root,
                                     const std::string& tools_dir) {
  SuiteChecker checker(suite, root, tools_dir, "regress_out");
  return checker.Check();
}

void Summarize(Measured* m) {
  m->mean = 0;
  m->std = 0;
  if (m->per_seed.empty()) return;
  for (double x : m->per_seed) m->mean += x;
  m->mean /= m->per_seed.size();
  if (m->per_seed.size() > 1) {
    double ss = 0;
    for (double x : m->per_seed) ss += (x - m->mean) * (x - m->mean);
    m->std = std::sqrt(ss / (m->per_seed.size() - 1));
  }
}

double BandHalfWidth(const RegressionEntry& e, const Expected& x) {
  const Tolerance& t = e.tolerance();
  double half = t.abs();
  if (e.kind() != RegressionEntry::STATISTICAL) {
    half = std::max(half, t.rel() * std::abs(x.value()));
  } else {
    half = std::max(half, t.std_multiplier() * x.std());
  }
  return half;
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kPass: return "pass";
    case Verdict::kRegression: return "regression";
    case Verdict::kImprovement: return "improvement";
    case Verdict::kChanged: return "changed";
  }
  return "?";
}

Verdict Judge(const RegressionEntry& e, const Measured& m) {
  const Expected& x = e.expected();
  if (m.is_text || x.has_text()) return m.text == x.text() && m.is_text ? Verdict::kPass : Verdict::kChanged;
  const double half = BandHalfWidth(e, x);
  const double low = x.value() - half, high = x.value() + half;
  if (m.mean >= low && m.mean <= high) return Verdict::kPass;
  const bool above = m.mean > high;
  // Performance entries have no metric: a larger ratio is faster.
  const bool higher_is_better = e.has_performance() || e.metric().higher_is_better();
  return above == higher_is_better ? Verdict::kImprovement : Verdict::kRegression;
}

absl::StatusOr<Expected> UpdatedExpected(const RegressionEntry& e, const Measured& m,
                                         const Provenance& provenance, bool allow_wider_band) {
  Expected x;
  const bool published = e.expected().published();
  if (m.is_text) {
    x.set_text(m.text);
  } else {
    x.set_value(published ? e.expected().value() : m.mean);
    if (e.kind() == RegressionEntry::STATISTICAL) {
      x.set_std(m.std);
      for (double v : m.per_seed) x.add_per_seed(v);
    }
  }
  if (published) x.set_published(true);
  *x.mutable_provenance() = provenance;
  if (e.kind() != RegressionEntry::STATISTICAL && e.has_expected() &&
      !e.expected().not_recorded()) {
    // Keep the values of the other machine kinds.
    auto keep = [&](const Expected& r) {
      const std::string& kind = r.provenance().machine_kind();
      if (kind.empty() || kind == provenance.machine_kind()) return;
      Expected* o = x.add_other_machines();
      *o = r;
      o->clear_other_machines();
    };
    keep(e.expected());
    for (const Expected& r : e.expected().other_machines()) keep(r);
  }
  if (published && !e.expected().provenance().source().empty()) {
    x.mutable_provenance()->set_source(e.expected().provenance().source());
  }
  // A band can only widen once a spread was recorded (a first recording,
  // or a published value without the suite's own runs yet, sets it).
  const bool had_spread = e.has_expected() && !e.expected().not_recorded() &&
                          e.expected().per_seed_size() > 0;
  if (had_spread && !m.is_text && e.kind() == RegressionEntry::STATISTICAL && !allow_wider_band) {
    const double before = BandHalfWidth(e, e.expected());
    const double after = BandHalfWidth(e, x);
    if (after > before * (1 + 1e-9) + 1e-12) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "entry \"%s\": --update would widen its band from ±%s to ±%s (recorded std %s -> %s); "
          "accept with --allow_wider_bands or edit its tolerance",
          e.name(), Num(before), Num(after), Num(e.expected().std()), Num(x.std())));
    }
  }
  return x;
}

absl::StatusOr<std::string> RewriteExpected(const std::string& text, const std::string& source,
                                            const std::map<int, Expected>& updates) {
  using google::protobuf::TextFormat;
  TextFormat::Parser parser;
  TextFormat::ParseInfoTree tree;
  parser.WriteLocationsTo(&tree);
  RegressionSuite suite;
  if (!parser.ParseFromString(text, &suite)) {
    return absl::InvalidArgumentError(source + ": does not parse");
  }
  // Offsets of line starts, to turn (line, column) into a position.
  std::vector<size_t> line_start = {0};
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') line_start.push_back(i + 1);
  }
  auto offset = [&](const TextFormat::ParseLocation& loc) {
    return line_start[static_cast<size_t>(loc.line)] + static_cast<size_t>(loc.column);
  };
  const auto* entries_field = RegressionSuite::descriptor()->FindFieldByName("entries");
  const auto* expected_field = RegressionEntry::descriptor()->FindFieldByName("expected");
  struct Edit {
    size_t begin, end;
    std::string text;
  };
  std::vector<Edit> edits;
  RegressionSuite wanted = suite;
  for (const auto& [index, expected] : updates) {
    if (index < 0 || index >= suite.entries_size()) {
      return absl::InvalidArgumentError(absl::StrCat("no entry ", index));
    }
    *wanted.mutable_entries(index)->mutable_expected() = expected;
    TextFormat::Printer printer;
    std::string body;
    printer.PrintToString(expected, &body);
    const TextFormat::ParseInfoTree* entry_tree = tree.GetTreeForNested(entries_field, index);
    const TextFormat::ParseLocationRange entry_range = tree.GetLocationRange(entries_field, index);
    if (entry_tree == nullptr || entry_range.start.line < 0) {
      return absl::InternalError(absl::StrCat(source, ": no location for entry ", index));
    }
    const TextFormat::ParseLocationRange range =
        entry_tree->GetLocationRange(expected_field, -1);
    std::string indent;
    size_t begin, end;
    // The block's lines are indented by the column of `expected` when it
    // starts its line, else by the line's indentation + 2 (an entry on one
    // line), the same rule for a new block so that rewriting is idempotent.
    auto line_indent = [&](size_t pos) {
      size_t bol = text.rfind('\n', pos == 0 ? 0 : pos - 1);
      bol = bol == std::string::npos || pos == 0 ? 0 : bol + 1;
      const size_t first = text.find_first_not_of(" \t", bol);
      return std::make_pair(first - bol, first == pos);
    };
    if (range.start.line >= 0) {
      begin = offset(range.start);
      end = offset(range.end);
      const auto [ws, starts_line] = line_indent(begin);
      indent.assign(starts_line ? ws : ws + 2, ' ');
    } else {
      // No expected block yet: before the entry's closing brace.
      end = offset(entry_range.end);
      begin = text.rfind('}', end - 1);
      if (begin == std::string::npos) return absl::InternalError("no closing brace");
      end = begin;
      size_t bol = text.rfind('\n', begin);
      bol = bol == std::string::npos ? 0 : bol + 1;
      const bool brace_alone = text.find_first_not_of(" \t", bol) == begin;
      indent.assign(brace_alone ? static_cast<size_t>(entry_range.start.column) + 2
                                : line_indent(begin).first + 2,
                    ' ');
      if (brace_alone) {
        begin = end = bol;
      }
    }
    std::string block = "expected {\n";
    for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&block, indent, "  ", line, "\n");
    }
    absl::StrAppend(&block, indent, "}");
    if (range.start.line < 0) {
      // A new block: on its own line(s) before the brace.
      const bool at_line_start = begin == 0 || text[begin - 1] == '\n';
      block = at_line_start ? absl::StrCat(indent, block, "\n") : absl::StrCat(" ", block, " ");
    }
    edits.push_back({begin, end, block});
  }
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.begin > b.begin; });
  std::string out = text;
  for (const Edit& e : edits) out.replace(e.begin, e.end - e.begin, e.text);
  RegressionSuite check;
  if (!TextFormat::ParseFromString(out, &check) ||
      check.SerializeAsString() != wanted.SerializeAsString()) {
    return absl::InternalError(absl::StrCat(
        source, ": rewriting the expected values did not give the intended suite; nothing written"));
  }
  return out;
}

std::string CurrentMachineKind() {
  struct utsname u;
  const std::string arch = uname(&u) == 0 ? u.machine : "unknown";
  std::ifstream in("/proc/cpuinfo");
  std::string line, isa;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "flags")) continue;
    const std::set<std::string> flags = absl::StrSplit(line.substr(line.find(':') + 1), ' ',
                                                      absl::SkipEmpty());
    isa = flags.count("avx512f") ? "AVX-512" : flags.count("avx2") ? "AVX2"
          : flags.count("avx")   ? "AVX"
                                 : "no AVX";
    break;
  }
  return absl::StrCat(arch, isa.empty() ? "" : " ", isa, ", LibTorch ", TORCH_VERSION);
}

const Expected* ExpectedFor(const RegressionEntry& e, const std::string& machine_kind) {
  if (e.kind() == RegressionEntry::STATISTICAL || !e.has_expected()) return &e.expected();
  const Expected& x = e.expected();
  if (x.provenance().machine_kind().empty() || x.provenance().machine_kind() == machine_kind) {
    return &x;
  }
  for (const Expected& o : x.other_machines()) {
    if (o.provenance().machine_kind() == machine_kind) return &o;
  }
  return nullptr;
}

Provenance CurrentProvenance(const std::string& root) {
  Provenance p;
  const CodeState code = GitState(root);
  p.set_commit(code.head.empty() ? "unknown" : code.head + (code.dirty ? "+dirty" : ""));
  p.set_date(UtcNow());
  p.set_machine(CpuModel());
  p.set_cores(CoreCount());
  p.set_libtorch(TORCH_VERSION);
  p.set_machine_kind(CurrentMachineKind());
  p.set_source("regress --update");
  return p;
}

absl::StatusOr<RegressResult> RunRegression(const RegressOptions& options) {
  Runner runner(options);
  return runner.Run();
}

}  // namespace tb
