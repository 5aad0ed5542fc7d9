#include "train/compare.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "backbones/backbone.h"
#include "configs/config_loader.h"
#include "configs/pipeline_config.h"
#include "core/file_util.h"
#include "core/format.h"
#include "core/records.h"
#include "core/run_lock.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "datasets/formats/experiment_data.h"
#include "eval/multi_clip_evaluator.h"
#include "train/experiment_runner.h"
#include "train/pipeline.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

// "FixMatch (ours)" -> "fixmatch_ours": folder names.
std::string Slug(const std::string& name) {
  std::string s;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!s.empty() && s.back() != '_') {
      s += '_';
    }
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return s.empty() ? "method" : s;
}

std::string Percent(float fraction) {
  return absl::StrFormat("%g%%", std::round(fraction * 1000.0) / 10.0);
}

// "f10_s0": a cell's fraction (in percent) and seed, in its folder's and its
// task's name.
std::string FractionSeed(float fraction, uint64_t seed) {
  return absl::StrFormat("f%g_s%d", std::round(fraction * 1000.0) / 10.0, seed);
}

// The cell's experiment: base + the method's override, the cell's fraction
// and seeds, defaults resolved. With `pretraining`, the method's pretrain
// override merged on top of that: the cell's pretraining run. The run_dir is
// set by the caller.
ExperimentConfig CellConfig(const CompareConfig& c, const CompareMethod& m, float fraction,
                            uint64_t seed, bool pretraining = false) {
  ExperimentConfig e = c.base();
  e.MergeFrom(m.override());
  if (pretraining) e.MergeFrom(m.pretrain());
  e.set_name(absl::StrCat(c.name(), "/", m.name(), pretraining ? "/pretrain" : "", "/",
                          Percent(fraction), "/seed", seed));
  e.mutable_dataset()->set_labeled_fraction(fraction);
  if (c.seed_labeled_subset()) e.mutable_dataset()->set_labeled_seed(seed);
  if (!c.labeled_list_pattern().empty()) {
    e.mutable_dataset()->set_labeled_list(
        absl::StrReplaceAll(c.labeled_list_pattern(),
                            {{"{pct}", absl::StrFormat("%g", std::round(fraction * 1000.0) / 10.0)},
                             {"{seed}", absl::StrCat(seed)}}));
  }
  e.set_seed(seed);
  ResolveDefaults(&e);
  return e;
}

// Where a self-distillation teacher checkpoint goes in `e`'s trainer.
absl::StatusOr<std::string*> TeacherField(ExperimentConfig* e, const std::string& method) {
  TrainerConfig* t = e->mutable_trainer();
  if (t->has_self_distillation()) return t->mutable_self_distillation()->mutable_teacher();
  if (t->has_mean_teacher() && t->mean_teacher().has_self_distillation()) {
    return t->mutable_mean_teacher()->mutable_self_distillation()->mutable_teacher();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("method \"", method,
                   "\": teacher_from needs trainer { self_distillation {...} } or "
                   "trainer { mean_teacher { self_distillation {...} } } in its override"));
}

// "r3d18 (width 0.125)".
std::string DescribeBackbone(const BackboneConfig& b) {
  const google::protobuf::Reflection* r = b.GetReflection();
  const google::protobuf::FieldDescriptor* kind =
      r->GetOneofFieldDescriptor(b, BackboneConfig::descriptor()->FindOneofByName("kind"));
  if (kind == nullptr) return "?";
  const google::protobuf::Message& options = r->GetMessage(b, kind);
  const google::protobuf::FieldDescriptor* width =
      options.GetDescriptor()->FindFieldByName("width_multiplier");
  if (width == nullptr) return kind->name();
  return absl::StrFormat("%s (width %g)", kind->name(),
                         options.GetReflection()->GetFloat(options, width));
}

int64_t BudgetSteps(const ExperimentConfig& e) {
  if (!e.has_timebalance()) return e.schedule().steps();
  int64_t steps = 0;
  for (const std::string& stage : PipelineStages(e)) {
    absl::StatusOr<ExperimentConfig> s = PipelineStageConfig(e, stage);
    if (s.ok()) steps += s->schedule().steps();
  }
  return steps;
}

// A cell's steps: its experiment's (or pipeline's) and its pretraining run's.
int64_t CellSteps(const CompareConfig& c, const CompareMethod& m, const ExperimentConfig& e,
                  float fraction, uint64_t seed) {
  int64_t steps = BudgetSteps(e);
  if (m.has_pretrain()) steps += CellConfig(c, m, fraction, seed, true).schedule().steps();
  return steps;
}

// What a cell's fingerprint adds for its pretraining run: its config
// without where it runs and its thread count; "" without one, so the cells
// of methods without pretraining keep their fingerprints.
std::string PretrainKey(const CompareConfig& c, const CompareMethod& m, float fraction,
                        uint64_t seed) {
  if (!m.has_pretrain()) return "";
  ExperimentConfig p = CellConfig(c, m, fraction, seed, true);
  p.clear_run_dir();
  p.clear_num_threads();
  return "\npretrain:\n" + ToTextProto(p);
}

struct Stats {
  double mean = 0, std = 0;
  int n = 0;
};

Stats MeanStd(const std::vector<double>& v) {
  Stats s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  for (double x : v) s.mean += x;
  s.mean /= v.size();
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / (v.size() - 1));
  }
  return s;
}

// One table row: the method's top-1 (in %) per fraction over seeds, its
// evaluated model's size and the mean wall time of its finished cells.
struct RowSummary {
  std::string backbone;
  int frames = 0;
  int64_t steps = 0, params = -1;
  std::vector<Stats> top1;  // per labeled fraction, in config order
  std::vector<double> seconds;
};

RowSummary Summarize(const CompareConfig& c, const CompareMethod& m,
                     const std::vector<CellRecord>& cells) {
  const ExperimentConfig e = CellConfig(c, m, c.labeled_fractions(0), c.seeds(0));
  RowSummary row;
  row.backbone = DescribeBackbone(e.backbone());
  row.frames = e.dataset().clip().num_frames();
  row.steps = CellSteps(c, m, e, c.labeled_fractions(0), c.seeds(0));
  for (float f : c.labeled_fractions()) {
    std::vector<double> top1;
    for (const CellRecord& r : cells) {
      if (r.method() != m.name() || std::abs(r.labeled_fraction() - f) > 1e-6) continue;
      top1.push_back(100.0 * r.top1());
      row.seconds.push_back(r.seconds());
      if (r.parameters() > 0) row.params = r.parameters();
    }
    row.top1.push_back(MeanStd(top1));
  }
  return row;
}

}  // namespace

absl::StatusOr<CompareConfig> LoadCompareConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return absl::NotFoundError("compare config not found or unreadable: " + path);
  CompareConfig config;
  RETURN_IF_ERROR(ParseTextProto(*text, path, &config));
  return config;
}

absl::Status ValidateCompareConfig(const CompareConfig& c) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (c.name().empty()) return bad("compare config: field name is required");
  if (c.methods().empty()) return bad("compare config: no methods");
  if (c.labeled_fractions().empty()) return bad("compare config: no labeled_fractions");
  if (c.seeds().empty()) return bad("compare config: no seeds");
  for (float f : c.labeled_fractions()) {
    if (!(f > 0 && f <= 1)) {
      return bad(absl::StrCat("compare config: labeled_fractions value ", f, " is not in (0, 1]"));
    }
  }
  std::set<std::string> seen, slugs;
  std::set<std::string> pipelines;
  for (const CompareMethod& m : c.methods()) {
    if (m.name().empty()) return bad("compare config: a method has no name");
    if (!seen.insert(m.name()).second || !slugs.insert(Slug(m.name())).second) {
      return bad(absl::StrCat("compare config: method name \"", m.name(), "\" is used twice"));
    }
    if (m.override().has_timebalance()) pipelines.insert(m.name());
    if (m.has_pretrain()) {
      const std::string where = absl::StrCat("method \"", m.name(), "\": pretrain ");
      if (m.override().has_timebalance() || m.pretrain().has_timebalance()) {
        return bad(where + "cannot be combined with a timebalance pipeline (its stages pretrain "
                           "and fine-tune themselves)");
      }
      if (m.override().has_init_checkpoint() || m.pretrain().has_init_checkpoint()) {
        return bad(where + "sets the main run's init_checkpoint; remove init_checkpoint from "
                           "the method's override and pretrain");
      }
      const ExperimentConfig main = CellConfig(c, m, c.labeled_fractions(0), c.seeds(0));
      const ExperimentConfig pre = CellConfig(c, m, c.labeled_fractions(0), c.seeds(0), true);
      if (ToTextProto(main.backbone()) != ToTextProto(pre.backbone())) {
        return bad(where + "changes the backbone; its final checkpoint initialises the cell's "
                           "model, so pretrain must not set backbone");
      }
    }
    if (!m.teacher_from().empty()) {
      if (!seen.count(m.teacher_from()) || m.teacher_from() == m.name()) {
        return bad(absl::StrCat("method \"", m.name(), "\": teacher_from \"", m.teacher_from(),
                                "\" must name a method listed before it"));
      }
      if (pipelines.count(m.teacher_from())) {
        return bad(absl::StrCat("method \"", m.name(), "\": teacher_from \"", m.teacher_from(),
                                "\" is a pipeline; name a single-experiment method"));
      }
      for (const CompareMethod& t : c.methods()) {
        if (t.name() != m.teacher_from()) continue;
        const ExperimentConfig te = CellConfig(c, t, c.labeled_fractions(0), c.seeds(0));
        if (te.trainer().has_mean_teacher() && te.trainer().mean_teacher().evaluate_teacher()) {
          return bad(absl::StrCat(
              "method \"", m.name(), "\": teacher_from \"", m.teacher_from(),
              "\" evaluates its EMA teacher, but the checkpoint's \"model\" is its student; "
              "name another method"));
        }
      }
    }
    // Every cell, with every component it names, before any compute.
    for (float fraction : c.labeled_fractions()) {
      for (uint64_t seed : c.seeds()) {
        ExperimentConfig e = CellConfig(c, m, fraction, seed);
        e.set_run_dir("validate");
        if (!m.teacher_from().empty()) {
          ASSIGN_OR_RETURN(std::string * teacher, TeacherField(&e, m.name()));
          *teacher = "teacher.pt";
        }
        if (m.has_pretrain()) e.set_init_checkpoint("pretrain.pt");
        absl::Status valid = ValidateExperimentConfig(e);
        if (valid.ok() && e.has_timebalance()) valid = ValidatePipelineConfig(e);
        if (!valid.ok()) {
          return bad(absl::StrCat("method \"", m.name(), "\", ", Percent(fraction),
                                  " labels, seed ", seed, ": ", valid.message()));
        }
        if (m.has_pretrain()) {
          ExperimentConfig p = CellConfig(c, m, fraction, seed, true);
          p.set_run_dir("validate/pretrain");
          valid = ValidateExperimentConfig(p);
          if (!valid.ok()) {
            return bad(absl::StrCat("method \"", m.name(), "\", pretrain, ", Percent(fraction),
                                    " labels, seed ", seed, ": ", valid.message()));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CellFingerprint(const CompareConfig& c, const CompareMethod& m,
                                            float fraction, uint64_t seed,
                                            const std::string& teacher_fingerprint) {
  // The fingerprint leaves out where the cell runs and how many threads it
  // uses (neither changes what is computed beyond float rounding), and
  // where its teacher's checkpoint lies (the teacher's own fingerprint
  // stands for it), so a cell's key does not depend on the output folder.
  ExperimentConfig keyed = CellConfig(c, m, fraction, seed);
  keyed.clear_run_dir();
  keyed.clear_num_threads();
  if (!m.teacher_from().empty()) {
    ASSIGN_OR_RETURN(std::string * keyed_teacher, TeacherField(&keyed, m.name()));
    keyed_teacher->clear();
  }
  return Sha256Hex(ToTextProto(keyed) + teacher_fingerprint + PretrainKey(c, m, fraction, seed));
}

std::string ComparisonMarkdown(const CompareConfig& c, const std::vector<CellRecord>& cells) {
  const ExperimentConfig& base = c.base();
  std::string md = absl::StrCat("# ", c.name(), "\n\n");
  const ClipSampling& clip = base.dataset().clip();
  const EvaluationConfig& ev = base.evaluation();
  absl::StrAppendFormat(
      &md,
      "Video top-1 (%%) on the test split, mean ± sample std over seeds (n = seeds finished; no std for one seed). "
      "Backbone %s; clips of %d frames at stride %d, %d px crops; evaluation %s, softmax "
      "averaged, final checkpoint. Seeds: %s%s.\n\n",
      DescribeBackbone(base.backbone()), clip.num_frames(), clip.stride(), clip.crop_size(),
      EvaluationProtocol(ev), absl::StrJoin(c.seeds(), ", "),
      !c.labeled_list_pattern().empty()
          ? (c.labeled_list_pattern().find("{seed}") != std::string::npos
                 ? " (published labeled lists, one per seed)"
                 : " (published labeled lists, the same for every seed)")
      : c.seed_labeled_subset() ? " (each seed also draws its labeled subset)"
                                : " (one labeled subset for every seed)");
  md += "| Method | Backbone | Params (M) | #F | Steps |";
  for (float f : c.labeled_fractions()) md += " " + Percent(f) + " |";
  md += " Wall time / cell |\n|---|---|---|---|---|";
  for (int i = 0; i < c.labeled_fractions_size(); ++i) md += "---|";
  md += "---|\n";
  for (const CompareMethod& m : c.methods()) {
    const RowSummary row = Summarize(c, m, cells);
    std::string cols;
    for (const Stats& s : row.top1) {
      // One seed has no spread: print its value alone rather than "± 0.0".
      cols += s.n == 0   ? " - |"
              : s.n == 1 ? absl::StrFormat(" %.1f (1) |", s.mean)
                         : absl::StrFormat(" %.1f ± %.1f (%d) |", s.mean, s.std, s.n);
    }
    absl::StrAppendFormat(&md, "| %s | %s | %s | %d | %d |%s %s |\n", m.name(), row.backbone,
                          row.params > 0 ? absl::StrFormat("%.2f", row.params / 1e6) : "-",
                          row.frames, row.steps, cols,
                          row.seconds.empty() ? "-" : FormatDuration(MeanStd(row.seconds).mean));
  }
  // The labeled lists every number used.
  std::map<std::pair<float, uint64_t>, std::string> hashes;
  for (const CellRecord& r : cells) {
    hashes[{r.labeled_fraction(), r.seed()}] = r.labeled_list_sha256();
  }
  if (!hashes.empty()) {
    md += "\nLabeled lists (SHA-256 of the sorted list, first 16 hex digits, per fraction and seed):";
    for (const auto& [key, hash] : hashes) {
      absl::StrAppendFormat(&md, " %s/seed %d `%s`;", Percent(key.first), key.second,
                            hash.substr(0, 16));
    }
    md.back() = '.';
    md += "\n";
  }
  return md;
}

std::string ComparisonCsv(const CompareConfig& c, const std::vector<CellRecord>& cells) {
  std::string csv = "method,backbone,params,frames,steps";
  for (float f : c.labeled_fractions()) {
    const std::string p = absl::StrFormat("%g", std::round(f * 1000.0) / 10.0);
    absl::StrAppend(&csv, ",top1_", p, "_mean,top1_", p, "_std,top1_", p, "_n");
  }
  csv += ",mean_cell_seconds\n";
  for (const CompareMethod& m : c.methods()) {
    const RowSummary row = Summarize(c, m, cells);
    std::string cols;
    for (const Stats& s : row.top1) {
      cols += s.n == 0   ? ",,,0"
              : s.n == 1 ? absl::StrFormat(",%.2f,,1", s.mean)
                         : absl::StrFormat(",%.2f,%.2f,%d", s.mean, s.std, s.n);
    }
    absl::StrAppendFormat(
        &csv, "\"%s\",\"%s\",%d,%d,%d%s,%s\n", m.name(), row.backbone, row.params, row.frames,
        row.steps, cols,
        row.seconds.empty() ? "" : absl::StrFormat("%.1f", MeanStd(row.seconds).mean));
  }
  return csv;
}

namespace {

// One invocation of a comparison: which cells are selected, the cells
// visited so far, and the tables written from them.
class Comparison {
 public:
  Comparison(const CompareConfig& config, const CompareOptions& options)
      : c_(config), options_(options) {}

  absl::StatusOr<CompareResult> Run() {
    RETURN_IF_ERROR(Setup());
    if (!options_.child_cell.empty()) {
      // The parent created the folder and wrote the config.
      ASSIGN_OR_RETURN(bool interrupted, VisitAll(Mode::kRun));
      if (!interrupted && result_.ran + result_.reused + result_.elsewhere != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat(kCompareCellFlag, options_.child_cell,
                         ": not a cell this invocation runs, or its teacher has not finished"));
      }
      return result_;
    }
    std::error_code ec;
    fs::create_directories(options_.out_dir, ec);
    if (ec) return absl::InternalError("cannot create " + options_.out_dir + ": " + ec.message());
    RETURN_IF_ERROR(WriteTextRecord(options_.out_dir + "/compare_config.pbtxt", c_));
    if (options_.jobs > 1 && options_.launch_cells && !options_.collect) {
      absl::StatusOr<bool> interrupted = RunGraph();
      // The tables from every finished cell (those of the plan are now all
      // reused), as a run of one cell after another builds them; also after
      // an interruption or a failure.
      result_.cells.clear();
      absl::Status tables = VisitAll(Mode::kRead).status();
      if (tables.ok()) tables = WriteTables();
      RETURN_IF_ERROR(interrupted.status());
      RETURN_IF_ERROR(tables);
      result_.interrupted = *interrupted;
      return result_;
    }
    ASSIGN_OR_RETURN(bool interrupted, VisitAll(Mode::kRun));
    if (interrupted) return result_;
    RETURN_IF_ERROR(WriteTables());
    return result_;
  }

  // PlanCells.
  absl::StatusOr<std::vector<StageTask>> Plan() {
    RETURN_IF_ERROR(Setup());
    return Tasks();
  }

 private:
  // What VisitCell does with a cell this invocation runs: kRun runs it here;
  // kLaunch (the parent of --jobs) leaves it to a child (Visit::kLaunch);
  // kRead treats every cell as not selected (reads finished ones only).
  enum class Mode { kRun, kLaunch, kRead };
  enum class Visit { kNext, kInterrupted, kLaunch };

  // The config and the selection checked; the shards assigned.
  absl::Status Setup() {
    RETURN_IF_ERROR(ValidateCompareConfig(c_));
    RETURN_IF_ERROR(CheckSelection());
    total_ = c_.methods_size() * c_.labeled_fractions_size() * c_.seeds_size();
    AssignShards();
    if (options_.child_cell.empty()) return absl::OkStatus();
    for (int fi = 0; fi < c_.labeled_fractions_size(); ++fi) {
      for (int si = 0; si < c_.seeds_size(); ++si) {
        for (int mi = 0; mi < c_.methods_size(); ++mi) {
          if (CellName(fi, si, mi) == options_.child_cell) child_at_ = {fi, si, mi};
        }
      }
    }
    if (child_at_.has_value()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(kCompareCellFlag, options_.child_cell, ": no such cell in the config"));
  }

  // In a child, the cells it visits: its own and those before it with the
  // same fraction and seed (its teacher_from chain); every cell otherwise.
  bool InChildScope(int fi, int si, int mi) const {
    if (!child_at_.has_value()) return true;
    const auto [cfi, csi, cmi] = *child_at_;
    return fi == cfi && si == csi && mi <= cmi;
  }

  // Every cell of the matrix in order (fraction, seed, method); true when
  // interrupted.
  absl::StatusOr<bool> VisitAll(Mode mode) {
    for (int fi = 0; fi < c_.labeled_fractions_size(); ++fi) {
      for (int si = 0; si < c_.seeds_size(); ++si) {
        // Finished cells of this (fraction, seed) by method, for teacher_from.
        std::map<std::string, CellRecord> done_here;
        for (int mi = 0; mi < c_.methods_size(); ++mi) {
          if (!InChildScope(fi, si, mi)) continue;
          ASSIGN_OR_RETURN(Visit v, VisitCell(fi, si, mi, &done_here, mode));
          if (v == Visit::kInterrupted) return true;
        }
      }
    }
    return false;
  }

  // The task name of a cell (PlanCells).
  std::string CellName(int fi, int si, int mi) const {
    return Slug(c_.methods(mi).name()) + "_" +
           FractionSeed(c_.labeled_fractions(fi), c_.seeds(si));
  }

  int MethodIndex(const std::string& name) const {
    for (int mi = 0; mi < c_.methods_size(); ++mi) {
      if (c_.methods(mi).name() == name) return mi;
    }
    return -1;
  }

  // The selected cells of this invocation as a graph (PlanCells); fills
  // planned_.
  absl::StatusOr<std::vector<StageTask>> Tasks() {
    std::vector<StageTask> tasks;
    planned_.clear();
    for (int fi = 0; fi < c_.labeled_fractions_size(); ++fi) {
      for (int si = 0; si < c_.seeds_size(); ++si) {
        for (int mi = 0; mi < c_.methods_size(); ++mi) {
          if (!Planned(fi, si, mi)) continue;
          StageTask task;
          task.name = CellName(fi, si, mi);
          if (!planned_.emplace(task.name, std::make_tuple(fi, si, mi)).second) {
            return absl::InvalidArgumentError(absl::StrCat(
                "compare config: two cells are named ", task.name,
                " (labeled_fractions or seeds repeat, to 0.1%)"));
          }
          for (int t = MethodIndex(c_.methods(mi).teacher_from()); t >= 0;
               t = MethodIndex(c_.methods(t).teacher_from())) {
            if (Planned(fi, si, t)) {
              task.inputs.push_back(CellName(fi, si, t));
              break;
            }
          }
          tasks.push_back(std::move(task));
        }
      }
    }
    return tasks;
  }

  // The --jobs plan: the selected cells through options_.launch_cells, a
  // cell to run in a child process; true when interrupted.
  absl::StatusOr<bool> RunGraph() {
    ASSIGN_OR_RETURN(std::vector<StageTask> tasks, Tasks());
    for (StageTask& t : tasks) t.threads = CellThreads(options_.thread_budget, options_.jobs);
    // Finished cells by (fraction, seed) and method, for teacher_from.
    std::map<std::pair<int, int>, std::map<std::string, CellRecord>> done;
    StageHooks hooks;
    hooks.prepare = [&](const std::string& name) -> absl::StatusOr<bool> {
      const auto [fi, si, mi] = planned_.at(name);
      std::map<std::string, CellRecord>& done_here = done[{fi, si}];
      // The cells before it that this invocation does not run, for a
      // teacher_from chain through them (read only).
      for (int before = 0; before < mi; ++before) {
        if (Planned(fi, si, before) || done_here.count(c_.methods(before).name())) continue;
        RETURN_IF_ERROR(VisitCell(fi, si, before, &done_here, Mode::kRead).status());
      }
      ASSIGN_OR_RETURN(Visit v, VisitCell(fi, si, mi, &done_here, Mode::kLaunch));
      return v == Visit::kLaunch;
    };
    hooks.on_start = [this](const StageTask& task) {
      Say(absl::StrFormat("cell %s: running in a child process (%d threads, log %s)", task.name,
                          task.threads, LogPath(task.name)));
    };
    hooks.on_done = [&](const std::string& name) -> absl::Status {
      const auto [fi, si, mi] = planned_.at(name);
      std::map<std::string, CellRecord>& done_here = done[{fi, si}];
      RETURN_IF_ERROR(VisitCell(fi, si, mi, &done_here, Mode::kRead).status());
      auto it = done_here.find(c_.methods(mi).name());
      if (it == done_here.end()) {
        // The child found the cell locked (another invocation took it after
        // this one looked) and skipped it.
        Say(absl::StrFormat("cell %s: running elsewhere (found locked by its child process, "
                            "see %s); skipped",
                            name, LogPath(name)));
        ++result_.elsewhere;
        return absl::OkStatus();
      }
      Say(absl::StrFormat("cell %s: top-1 %.1f%% top-5 %.1f%% in %s", name,
                          100 * it->second.top1(), 100 * it->second.top5(),
                          FormatDuration(it->second.seconds())));
      ++result_.ran;
      return absl::OkStatus();
    };
    return options_.launch_cells(tasks, options_.jobs, options_.thread_budget, hooks);
  }

  std::string LogPath(const std::string& cell) const {
    return (fs::path(options_.out_dir) / "logs" / (cell + ".log")).string();
  }

  // --methods, --fractions and --seeds must name parts of the matrix.
  absl::Status CheckSelection() const {
    if (options_.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
    if (options_.shard_count < 1 || options_.shard_index < 0 ||
        options_.shard_index >= options_.shard_count) {
      return absl::InvalidArgumentError(absl::StrCat("--shard: ", options_.shard_index, "/",
                                                     options_.shard_count,
                                                     " is not i/N with 0 <= i < N"));
    }
    for (const std::string& name : options_.methods) {
      bool found = false;
      for (const CompareMethod& m : c_.methods()) found |= m.name() == name;
      if (!found) return absl::InvalidArgumentError("--methods: no method named \"" + name + "\"");
    }
    for (float f : options_.fractions) {
      bool found = false;
      for (float g : c_.labeled_fractions()) found |= std::abs(f - g) < 1e-6;
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat("--fractions: ", f, " is not in the config"));
      }
    }
    for (uint64_t s : options_.seeds) {
      bool found = false;
      for (uint64_t t : c_.seeds()) found |= s == t;
      if (!found) {
        return absl::InvalidArgumentError(absl::StrCat("--seeds: ", s, " is not in the config"));
      }
    }
    return absl::OkStatus();
  }

  bool InSelection(const std::string& name, float fraction, uint64_t seed) const {
    bool m = options_.methods.empty(), f = options_.fractions.empty(), s = options_.seeds.empty();
    for (const std::string& x : options_.methods) m |= x == name;
    for (float x : options_.fractions) f |= std::abs(x - fraction) < 1e-6;
    for (uint64_t x : options_.seeds) s |= x == seed;
    return m && f && s;
  }

  // The method a cell's teacher_from chain starts at (itself without one).
  std::string RootMethod(const CompareMethod& m) const {
    std::string name = m.name();
    for (int t = MethodIndex(m.teacher_from()); t >= 0;
         t = MethodIndex(c_.methods(t).teacher_from())) {
      name = c_.methods(t).name();
    }
    return name;
  }

  // Which shard runs each selected cell: groups (fraction, seed, root method)
  // numbered in matrix order among the selected cells, group g to shard
  // g mod N. Depends only on the config and the selection flags, so every
  // invocation computes the same assignment.
  void AssignShards() {
    std::map<std::tuple<int, int, std::string>, int> group;
    for (int fi = 0; fi < c_.labeled_fractions_size(); ++fi) {
      for (int si = 0; si < c_.seeds_size(); ++si) {
        for (const CompareMethod& m : c_.methods()) {
          if (!InSelection(m.name(), c_.labeled_fractions(fi), c_.seeds(si))) continue;
          const auto key = std::make_tuple(fi, si, RootMethod(m));
          const int g = group.emplace(key, static_cast<int>(group.size())).first->second;
          shard_of_[std::make_tuple(fi, si, m.name())] = g % options_.shard_count;
        }
      }
    }
  }

  // The cells this invocation runs (with --jobs: in child processes): its
  // selection and shard.
  bool Planned(int fi, int si, int mi) const {
    if (options_.collect) return false;
    auto it = shard_of_.find(std::make_tuple(fi, si, c_.methods(mi).name()));
    return it != shard_of_.end() && it->second == options_.shard_index;
  }

  // The cells run here: the planned ones, or in a child its one cell.
  bool Selected(int fi, int si, int mi) const {
    return Planned(fi, si, mi) &&
           (options_.child_cell.empty() || CellName(fi, si, mi) == options_.child_cell);
  }

  // Reuses, runs or skips the cell of method `mi` at fraction `fi` and seed
  // `si` (indices into the config).
  absl::StatusOr<Visit> VisitCell(int fi, int si, int mi,
                                  std::map<std::string, CellRecord>* done_here, Mode mode) {
    const CompareMethod& m = c_.methods(mi);
    const float fraction = c_.labeled_fractions(fi);
    const uint64_t seed = c_.seeds(si);
    const int index = (fi * c_.seeds_size() + si) * c_.methods_size() + mi + 1;
    const std::string where = absl::StrFormat("[%d/%d] %s, %s labels, seed %d", index, total_,
                                              m.name(), Percent(fraction), seed);
    const bool run = mode != Mode::kRead && Selected(fi, si, mi);
    ExperimentConfig e = CellConfig(c_, m, fraction, seed);
    std::string teacher_fingerprint;
    if (!m.teacher_from().empty()) {
      auto it = done_here->find(m.teacher_from());
      if (it == done_here->end()) {
        if (run) Say(absl::StrCat(where, ": skipped (teacher ", m.teacher_from(), " not finished)"));
        NoteMissing(m, fraction, seed);
        return Visit::kNext;
      }
      ASSIGN_OR_RETURN(std::string * teacher, TeacherField(&e, m.name()));
      *teacher = it->second.checkpoint();
      teacher_fingerprint = it->second.fingerprint();
    }
    e.clear_run_dir();
    ASSIGN_OR_RETURN(const std::string fingerprint,
                     CellFingerprint(c_, m, fraction, seed, teacher_fingerprint));
    const std::string dir = (fs::path(options_.out_dir) / "cells" / Slug(m.name()) /
                             (FractionSeed(fraction, seed) + "_" + fingerprint.substr(0, 8)))
                                .string();
    e.set_run_dir(dir);
    const std::string record_path = dir + "/cell_done.pbtxt";
    absl::StatusOr<CellRecord> previous = ReadTextRecord<CellRecord>(record_path);
    // A cell another invocation is running: take its lock first, then look
    // for its record again (it may have finished meanwhile).
    std::unique_ptr<RunDirLock> lock;
    if (run && !(previous.ok() && previous->fingerprint() == fingerprint)) {
      absl::StatusOr<std::unique_ptr<RunDirLock>> held =
          RunDirLock::AcquireFile(dir + ".lock", "cell " + dir);
      if (!held.ok() && held.status().code() == absl::StatusCode::kFailedPrecondition) {
        Say(absl::StrCat(where, ": running elsewhere (", held.status().message(), "); skipped"));
        ++result_.elsewhere;
        return Visit::kNext;
      }
      RETURN_IF_ERROR(held.status());
      lock = std::move(*held);
      previous = ReadTextRecord<CellRecord>(record_path);
    }
    if (!run && !(previous.ok() && previous->fingerprint() == fingerprint)) {
      NoteMissing(m, fraction, seed);
      return Visit::kNext;
    }
    // With --jobs its child does the rest (and takes the lock again).
    if (mode == Mode::kLaunch && !(previous.ok() && previous->fingerprint() == fingerprint)) {
      return Visit::kLaunch;
    }
    // The labeled list's contents (not only its path) must match.
    ASSIGN_OR_RETURN(ExperimentData data, LoadExperimentData(e.dataset()));
    if (previous.ok() && previous->fingerprint() == fingerprint) {
      if (previous->labeled_list_sha256() != data.labeled_sha256) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cell ", dir, " was run with labeled list sha256 ", previous->labeled_list_sha256(),
            " but the list is now ", data.labeled_sha256,
            " (the list file or the dataset changed); delete the cell folder to rerun it"));
      }
      // Cells not selected in this invocation still enter the tables.
      if (run) {
        Say(absl::StrFormat("%s: reused (top-1 %.1f%%) from %s", where, 100 * previous->top1(),
                            dir));
        ++result_.reused;
      }
      (*done_here)[m.name()] = *previous;
      result_.cells.push_back(*previous);
      return Visit::kNext;
    }
    if (!run) return Visit::kNext;
    Say(absl::StrCat(where, ": running in ", dir));
    CellRecord record;
    record.set_method(m.name());
    record.set_labeled_fraction(fraction);
    record.set_seed(seed);
    record.set_fingerprint(fingerprint);
    record.set_labeled_list_sha256(data.labeled_sha256);
    record.set_steps(CellSteps(c_, m, e, fraction, seed));
    std::optional<ExperimentConfig> pretrain;
    if (m.has_pretrain()) {
      pretrain = CellConfig(c_, m, fraction, seed, true);
      pretrain->set_run_dir(dir + "/pretrain");
    }
    ASSIGN_OR_RETURN(bool finished, RunCell(&e, pretrain, data, &record));
    if (!finished) return Visit::kInterrupted;
    RETURN_IF_ERROR(WriteTextRecord(record_path, record));
    Say(absl::StrFormat("%s: top-1 %.1f%% top-5 %.1f%% in %s", where, 100 * record.top1(),
                        100 * record.top5(), FormatDuration(record.seconds())));
    (*done_here)[m.name()] = record;
    result_.cells.push_back(record);
    ++result_.ran;
    RETURN_IF_ERROR(WriteTables());
    return Visit::kNext;
  }

  // Trains and evaluates the cell (a pipeline or one experiment, after its
  // pretraining run if it has one), resuming an interrupted invocation;
  // false when interrupted again (its wall time so far is kept in
  // partial_seconds.txt and the tables are written).
  absl::StatusOr<bool> RunCell(ExperimentConfig* e, const std::optional<ExperimentConfig>& pretrain,
                               const ExperimentData& data, CellRecord* record) {
    RETURN_IF_ERROR(ResolveNumClasses(e, static_cast<int>(data.class_names.size())));
    ASSIGN_OR_RETURN(torch::Device device, ParseDevice(e->device()));
    {
      ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, CreateBackbone(e->backbone()));
      record->set_parameters(CountParameters(*model));
    }
    const std::string partial_path = e->run_dir() + "/partial_seconds.txt";
    double earlier_seconds = 0;
    {
      std::ifstream partial(partial_path);
      if (partial) partial >> earlier_seconds;
    }
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return earlier_seconds +
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    bool interrupted = false;
    if (pretrain.has_value()) {
      // Interrupted pretraining: the main run has not started.
      ASSIGN_OR_RETURN(std::optional<std::string> checkpoint, Pretrain(*pretrain, device));
      interrupted = !checkpoint.has_value();
      if (checkpoint.has_value()) e->set_init_checkpoint(*checkpoint);
    }
    if (interrupted) {
    } else if (e->has_timebalance()) {
      PipelineOptions po;
      po.resume = true;
      po.stop = options_.stop;
      po.quiet = options_.quiet;
      ASSIGN_OR_RETURN(PipelineResult r, RunPipeline(*e, data, device, po));
      interrupted = r.interrupted;
      record->set_top1(r.results.student().top1());
      record->set_top5(r.results.student().top5());
      record->set_seconds(r.stage_seconds);
    } else {
      RunOptions ro;
      ro.resume = true;
      ro.stop = options_.stop;
      ro.quiet = options_.quiet;
      ASSIGN_OR_RETURN(RunResult r, RunExperiment(*e, data, device, ro));
      interrupted = r.training.interrupted;
      record->set_top1(r.results.test().top1());
      record->set_top5(r.results.test().top5());
      // An interrupted run has no final checkpoint (fs::absolute("") throws).
      if (!interrupted) record->set_checkpoint(fs::absolute(r.final_checkpoint).string());
      record->set_seconds(elapsed());
    }
    if (!interrupted) return true;
    result_.interrupted = true;
    RETURN_IF_ERROR(WriteFileAtomically(partial_path, absl::StrFormat("%.3f\n", elapsed())));
    RETURN_IF_ERROR(WriteTables());
    return false;
  }

  // Runs (or resumes, or reuses) a cell's pretraining run in its run_dir;
  // its final checkpoint (absolute), or nullopt when interrupted. A finished
  // run leaves pretrain_done.pbtxt (a StageRecord) there.
  absl::StatusOr<std::optional<std::string>> Pretrain(ExperimentConfig p,
                                                      const torch::Device& device) {
    const std::string record_path = p.run_dir() + "/pretrain_done.pbtxt";
    ExperimentConfig keyed = p;
    keyed.clear_run_dir();
    keyed.clear_num_threads();
    const std::string fingerprint = Sha256Hex(ToTextProto(keyed));
    absl::StatusOr<StageRecord> done = ReadTextRecord<StageRecord>(record_path);
    if (done.ok() && done->fingerprint() == fingerprint &&
        fs::exists(fs::path(p.run_dir()) / done->output())) {
      return std::optional<std::string>(
          fs::absolute(fs::path(p.run_dir()) / done->output()).string());
    }
    ASSIGN_OR_RETURN(ExperimentData data, LoadExperimentData(p.dataset()));
    RETURN_IF_ERROR(ResolveNumClasses(&p, static_cast<int>(data.class_names.size())));
    RunOptions ro;
    ro.resume = true;
    ro.stop = options_.stop;
    ro.quiet = options_.quiet;
    Say(absl::StrCat("  pretraining in ", p.run_dir()));
    ASSIGN_OR_RETURN(RunResult r, RunExperiment(p, data, device, ro));
    if (r.training.interrupted) return std::optional<std::string>();
    StageRecord record;
    record.set_stage("pretrain");
    record.set_fingerprint(fingerprint);
    record.set_output(fs::relative(fs::absolute(r.final_checkpoint), fs::absolute(p.run_dir()))
                          .string());
    *record.mutable_results() = r.results;
    RETURN_IF_ERROR(WriteTextRecord(record_path, record));
    return std::optional<std::string>(fs::absolute(r.final_checkpoint).string());
  }

  // Not in a child: its parent writes them.
  absl::Status WriteTables() {
    if (!options_.child_cell.empty()) return absl::OkStatus();
    result_.markdown = ComparisonMarkdown(c_, result_.cells);
    result_.csv = ComparisonCsv(c_, result_.cells);
    std::string cells_csv =
        "method,labeled_fraction,seed,top1,top5,seconds,steps,parameters,labeled_list_sha256,"
        "fingerprint\n";
    for (const CellRecord& r : result_.cells) {
      absl::StrAppendFormat(&cells_csv, "\"%s\",%g,%d,%.4f,%.4f,%.1f,%d,%d,%s,%s\n", r.method(),
                            r.labeled_fraction(), r.seed(), r.top1(), r.top5(), r.seconds(),
                            r.steps(), r.parameters(), r.labeled_list_sha256(), r.fingerprint());
    }
    RETURN_IF_ERROR(WriteFileAtomically(options_.out_dir + "/comparison.md", result_.markdown));
    RETURN_IF_ERROR(WriteFileAtomically(options_.out_dir + "/comparison.csv", result_.csv));
    return WriteFileAtomically(options_.out_dir + "/cells.csv", cells_csv);
  }

  void NoteMissing(const CompareMethod& m, float fraction, uint64_t seed) {
    if (options_.collect) {
      result_.missing.push_back(
          absl::StrCat(m.name(), ", ", Percent(fraction), " labels, seed ", seed));
    }
  }

  void Say(const std::string& line) const {
    if (options_.quiet) return;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  const CompareConfig& c_;
  const CompareOptions& options_;
  CompareResult result_;
  int total_ = 0;
  // (fraction index, seed index, method) -> shard, for the selected cells.
  std::map<std::tuple<int, int, std::string>, int> shard_of_;
  // Task name -> (fraction index, seed index, method index) of the planned
  // cells (Tasks).
  std::map<std::string, std::tuple<int, int, int>> planned_;
  // In a child: its cell's (fraction index, seed index, method index).
  std::optional<std::tuple<int, int, int>> child_at_;
};

}  // namespace

absl::StatusOr<CompareResult> RunComparison(const CompareConfig& c, const CompareOptions& options) {
  Comparison comparison(c, options);
  return comparison.Run();
}

int CellThreads(int thread_budget, int jobs) {
  return std::max(1, thread_budget / std::max(1, jobs));
}

absl::StatusOr<std::vector<StageTask>> PlanCells(const CompareConfig& c,
                                                 const CompareOptions& options) {
  Comparison comparison(c, options);
  return comparison.Plan();
}

}  // namespace tb
