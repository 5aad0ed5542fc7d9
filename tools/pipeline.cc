#include "tools/pipeline.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <google/protobuf/text_format.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "backbones/heads.h"
#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "eval/multi_clip_evaluator.h"
#include "eval/representation.h"
#include "reweighting/scorer.h"
#include "semisup/trainer.h"
#include "ssl/pretrain_trainer.h"
#include "tools/experiment_runner.h"
#include "tools/pipeline.pb.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr char kPretrainInvariant[] = "pretrain_invariant";
constexpr char kPretrainDistinctive[] = "pretrain_distinctive";
constexpr char kPretrainCombined[] = "pretrain_combined";
constexpr char kScore[] = "score";
constexpr char kFinetuneInvariant[] = "finetune_invariant";
constexpr char kFinetuneDistinctive[] = "finetune_distinctive";
constexpr char kDistill[] = "distill";
constexpr char kSupervised[] = "supervised";

std::string StageDir(const ExperimentConfig& base, const std::string& stage) {
  return (fs::path(base.run_dir()) / "stages" / stage).string();
}

absl::StatusOr<StageRecord> ReadRecord(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path);
  std::stringstream text;
  text << in.rdbuf();
  StageRecord record;
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &record)) {
    return absl::DataLossError("cannot parse " + path);
  }
  return record;
}

std::string RecordPath(const std::string& dir) { return dir + "/stage_done.pbtxt"; }

// The stage's training config before inputs are filled in.
absl::StatusOr<ExperimentConfig> StageBase(const ExperimentConfig& base, const std::string& stage) {
  const TimeBalancePipelineConfig& p = base.timebalance();
  const ExperimentConfig* fragment = nullptr;
  if (stage == kPretrainInvariant) fragment = &p.pretrain_invariant();
  if (stage == kPretrainDistinctive) fragment = &p.pretrain_distinctive();
  if (stage == kPretrainCombined) fragment = &p.pretrain_combined();
  if (stage == kFinetuneInvariant || stage == kFinetuneDistinctive) fragment = &p.finetune();
  if (stage == kDistill) fragment = &p.distill();
  if (stage == kSupervised) fragment = &p.supervised_baseline();
  if (fragment == nullptr) return absl::InvalidArgumentError("unknown stage " + stage);
  ExperimentConfig c = base;
  c.clear_timebalance();
  c.MergeFrom(*fragment);
  c.set_name(absl::StrCat(base.name(), "/", stage));
  c.set_run_dir(StageDir(base, stage));
  const char* want = stage.rfind("pretrain", 0) == 0 ? "ssl"
                     : stage == kDistill           ? "timebalance"
                                                   : "supervised";
  ASSIGN_OR_RETURN(std::string kind, SetOneofField(c.trainer(), "kind", "trainer"));
  if (kind != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field timebalance.", stage.rfind("finetune", 0) == 0 ? "finetune" : stage,
        ".trainer: stage ", stage, " needs trainer { ", want, " {...} }, got ", kind));
  }
  absl::Status valid = ValidateExperimentConfig(c);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("stage ", stage, ": ", valid.message()));
  }
  return c;
}

struct StageState {
  std::string fingerprint;
  StageRecord record;  // when done; record.output is relative to the stage dir
  std::string output;  // record.output resolved against the stage dir
  bool done = false;
};

class Pipeline {
 public:
  Pipeline(const ExperimentConfig& base, const ExperimentData& data, const torch::Device& device,
           const PipelineOptions& options)
      : base_(base), data_(data), device_(device), options_(options) {}

  absl::StatusOr<PipelineResult> Run() {
    const std::vector<std::string> stages = PipelineStages(base_);
    for (const std::string& s : options_.stages) {
      if (std::find(stages.begin(), stages.end(), s) == stages.end()) {
        return absl::InvalidArgumentError(absl::StrCat("--stages: unknown stage \"", s,
                                                       "\"; stages: ",
                                                       absl::StrJoin(stages, ",")));
      }
    }
    // Every stage config is checked before any compute.
    for (const std::string& s : stages) {
      if (s == kScore) {
        RETURN_IF_ERROR(CreateMixingRule(base_.timebalance().score()).status());
        continue;
      }
      RETURN_IF_ERROR(StageBase(base_, s).status());
    }
    for (const std::string& s : stages) {
      const bool selected = options_.stages.empty() ||
                            std::find(options_.stages.begin(), options_.stages.end(), s) !=
                                options_.stages.end();
      ASSIGN_OR_RETURN(bool interrupted, RunStage(s, selected));
      if (interrupted) {
        result_.interrupted = true;
        return result_;
      }
    }
    RETURN_IF_ERROR(WriteSummary(stages));
    return result_;
  }

 private:
  // The upstream stages of `stage`.
  std::vector<std::string> Inputs(const std::string& stage) const {
    if (stage == kScore) return {kPretrainInvariant, kPretrainDistinctive};
    if (stage == kFinetuneInvariant) return {kPretrainInvariant};
    if (stage == kFinetuneDistinctive) return {kPretrainDistinctive};
    if (stage == kDistill) {
      std::vector<std::string> in = {kScore, kFinetuneInvariant, kFinetuneDistinctive};
      switch (base_.timebalance().student_init()) {
        case TimeBalancePipelineConfig::INVARIANT: in.push_back(kPretrainInvariant); break;
        case TimeBalancePipelineConfig::DISTINCTIVE: in.push_back(kPretrainDistinctive); break;
        case TimeBalancePipelineConfig::COMBINED: in.push_back(kPretrainCombined); break;
        default: break;
      }
      return in;
    }
    return {};
  }

  // The stage's full config with inputs filled in (training stages).
  absl::StatusOr<ExperimentConfig> FullConfig(const std::string& stage) {
    ASSIGN_OR_RETURN(ExperimentConfig c, StageBase(base_, stage));
    if (stage == kFinetuneInvariant) c.set_init_checkpoint(state_[kPretrainInvariant].output);
    if (stage == kFinetuneDistinctive) {
      c.set_init_checkpoint(state_[kPretrainDistinctive].output);
    }
    if (stage == kDistill) {
      TimeBalanceOptions* t = c.mutable_trainer()->mutable_timebalance();
      t->set_invariant_teacher(state_[kFinetuneInvariant].output);
      t->set_distinctive_teacher(state_[kFinetuneDistinctive].output);
      t->set_scores(state_[kScore].output);
      const auto init = base_.timebalance().student_init();
      if (init == TimeBalancePipelineConfig::INVARIANT) {
        c.set_init_checkpoint(state_[kPretrainInvariant].output);
      } else if (init == TimeBalancePipelineConfig::DISTINCTIVE) {
        c.set_init_checkpoint(state_[kPretrainDistinctive].output);
      } else if (init == TimeBalancePipelineConfig::COMBINED) {
        c.set_init_checkpoint(state_[kPretrainCombined].output);
      }
    }
    return c;
  }

  absl::StatusOr<bool> RunStage(const std::string& stage, bool selected) {
    std::string key;
    for (const std::string& in : Inputs(stage)) {
      if (!state_[in].done) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stage ", stage, " needs stage ", in, ", which has not finished (run it first or "
            "include it in --stages)"));
      }
      absl::StrAppend(&key, in, "=", state_[in].fingerprint, ";");
    }
    std::string config_text;
    if (stage == kScore) {
      std::string rule;
      google::protobuf::TextFormat::PrintToString(base_.timebalance().score(), &rule);
      config_text = absl::StrCat("score\n", rule, "labeled:", data_.labeled_hash);
    } else {
      // Inputs enter through their fingerprints (key), not their paths, and
      // the run directory is left out, so a copied run directory (e.g. for
      // an ablation of one stage) reuses its finished stages.
      ASSIGN_OR_RETURN(ExperimentConfig c, StageBase(base_, stage));
      c.clear_run_dir();
      config_text = ExperimentToText(c);
    }
    StageState& state = state_[stage];
    state.fingerprint = Fnv1a(key + config_text);
    const std::string dir = StageDir(base_, stage);
    absl::StatusOr<StageRecord> record = ReadRecord(RecordPath(dir));
    if (record.ok() && record->fingerprint() == state.fingerprint &&
        fs::exists(fs::path(dir) / record->output())) {
      state.record = *record;
      state.output = (fs::path(dir) / record->output()).string();
      state.done = true;
      result_.skipped.push_back(stage);
      Say(absl::StrFormat("stage %s: up to date (%s), skipped", stage, dir));
      return false;
    }
    if (!selected) {
      return absl::FailedPreconditionError(absl::StrCat(
          "stage ", stage, " is ", record.ok() ? "out of date" : "not finished",
          " but not selected by --stages; include it"));
    }
    // A stale or unfinished stage: start over unless resuming the same config.
    const std::string started = dir + "/fingerprint";
    std::string previous;
    {
      std::ifstream in(started);
      std::getline(in, previous);
    }
    const bool same = previous == state.fingerprint;
    if (!(same && options_.resume)) {
      if (same && fs::exists(dir + "/checkpoints") && !fs::is_empty(dir + "/checkpoints")) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stage ", stage, " was interrupted (", dir, "); pass --resume to continue it"));
      }
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    fs::create_directories(dir);
    RETURN_IF_ERROR(WriteFileAtomically(started, state.fingerprint + "\n"));
    Say(absl::StrFormat("stage %s: running (%s)", stage, dir));
    const auto start = std::chrono::steady_clock::now();
    StageRecord out;
    out.set_stage(stage);
    out.set_fingerprint(state.fingerprint);
    if (stage == kScore) {
      ASSIGN_OR_RETURN(std::string path, Score(dir));
      out.set_output(path);
    } else {
      ASSIGN_OR_RETURN(ExperimentConfig c, FullConfig(stage));
      RunOptions run;
      run.resume = options_.resume;
      run.stop = options_.stop;
      run.quiet = options_.quiet;
      ASSIGN_OR_RETURN(RunResult r, RunExperiment(c, data_, device_, run));
      if (r.training.interrupted) return true;
      out.set_output(r.final_checkpoint);
      out.set_top1(r.top1);
      out.set_top5(r.top5);
      for (double v : r.per_class_top1) out.add_per_class_top1(v);
      out.set_knn_top1(r.knn_top1);
      out.set_temporal_similarity(r.temporal_similarity);
      for (double v : r.per_class_knn_top1) out.add_per_class_knn_top1(v);
      for (double v : r.per_class_temporal_similarity) out.add_per_class_temporal_similarity(v);
    }
    out.set_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    state.output = out.output();
    out.set_output(fs::relative(out.output(), dir).string());
    std::string text;
    google::protobuf::TextFormat::PrintToString(out, &text);
    RETURN_IF_ERROR(WriteFileAtomically(RecordPath(dir), text));
    state.record = out;
    state.done = true;
    result_.ran.push_back(stage);
    Say(absl::StrFormat("stage %s: done in %.1f s", stage, out.seconds()));
    return false;
  }

  // Teacher features of every training video with the SSL checkpoints, then
  // the mixing weights; writes <dir>/scores.tsv.
  absl::StatusOr<std::string> Score(const std::string& dir) {
    ASSIGN_OR_RETURN(std::unique_ptr<MixingRule> rule,
                     CreateMixingRule(base_.timebalance().score()));
    const std::vector<LabeledVideo>& train = data_.train;
    TeacherFeatures features;
    if (rule->NeedsFeatures()) {
      RepresentationEvalConfig extract;
      extract.set_num_clips(rule->NumClips());
      extract.set_crop_fraction(rule->CropFraction());
      for (const auto& [stage, target] :
           {std::pair{kPretrainInvariant, &features.invariant},
            std::pair{kPretrainDistinctive, &features.distinctive}}) {
        ASSIGN_OR_RETURN(ExperimentConfig c, StageBase(base_, stage));
        ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, CreateTrainer(c, device_));
        CheckpointContents contents;
        contents.modules = trainer->CheckpointModules();
        RETURN_IF_ERROR(LoadCheckpoint(state_[stage].output, &contents));
        ASSIGN_OR_RETURN(torch::Tensor f,
                         ExtractClipFeatures(trainer->EvaluationModel(), train, c.dataset(),
                                             extract, device_, ExperimentPrecision(c)));
        if (rule->FeatureKind() == TemporalSimilarityRule::PROJECTION) {
          auto* ssl = dynamic_cast<SslPretrainTrainer*>(trainer.get());
          std::shared_ptr<torch::nn::Module> projection;
          for (const auto& child : ssl->objective().named_children()) {
            if (child.key() == "projection") projection = child.value();
          }
          if (projection == nullptr || projection->as<ProjectionHeadImpl>() == nullptr) {
            return absl::InvalidArgumentError(absl::StrCat(
                "score: features PROJECTION needs a projection head, but stage ", stage,
                "'s objective has none"));
          }
          ASSIGN_OR_RETURN(f, CallTorch("projecting features", [&] {
            torch::NoGradGuard no_grad;
            projection->eval();
            const int64_t v = f.size(0), n = f.size(1);
            return projection->as<ProjectionHeadImpl>()
                ->forward(f.flatten(0, 1).to(device_))
                .to(torch::kCPU)
                .view({v, n, -1});
          }));
        }
        *target = f;
      }
    }
    ASSIGN_OR_RETURN(std::vector<float> weights,
                     rule->Weights(features, static_cast<int64_t>(train.size())));
    std::vector<std::string> paths;
    for (const auto& v : train) paths.push_back(v.path);
    const std::string path = dir + "/scores.tsv";
    RETURN_IF_ERROR(WriteScores(
        path, absl::StrCat("teachers ", state_[kPretrainInvariant].fingerprint, " ",
                           state_[kPretrainDistinctive].fingerprint),
        paths, weights));
    // Mean weight per class, for the record.
    std::map<int, std::pair<double, int>> per_class;
    for (size_t i = 0; i < train.size(); ++i) {
      per_class[train[i].label].first += weights[i];
      per_class[train[i].label].second += 1;
    }
    std::vector<std::string> rows;
    for (const auto& [label, sum] : per_class) {
      rows.push_back(absl::StrFormat("{\"class\": \"%s\", \"mean_weight\": %.4f}",
                                     data_.class_names[label], sum.first / sum.second));
    }
    RETURN_IF_ERROR(WriteFileAtomically(
        dir + "/results.json",
        absl::StrCat("{\"videos\": ", train.size(), ", \"per_class\": [",
                     absl::StrJoin(rows, ", "), "]}\n")));
    return path;
  }

  absl::Status WriteSummary(const std::vector<std::string>& stages) {
    auto model = [&](const char* name, const std::string& stage) {
      const StageRecord& r = state_[stage].record;
      std::vector<std::string> per_class;
      for (int c = 0; c < r.per_class_top1_size(); ++c) {
        per_class.push_back(absl::StrFormat("{\"class\": \"%s\", \"top1\": %.4f}",
                                            c < static_cast<int>(data_.class_names.size())
                                                ? data_.class_names[c]
                                                : "?",
                                            r.per_class_top1(c)));
      }
      return absl::StrFormat("\"%s\": {\"top1\": %.4f, \"top5\": %.4f, \"per_class\": [%s]}",
                             name, r.top1(), r.top5(), absl::StrJoin(per_class, ", "));
    };
    auto ssl = [&](const char* name, const std::string& stage) {
      const StageRecord& r = state_[stage].record;
      std::vector<std::string> per_class;
      for (int c = 0; c < r.per_class_knn_top1_size(); ++c) {
        per_class.push_back(absl::StrFormat(
            "{\"class\": \"%s\", \"knn_top1\": %.4f, \"temporal_similarity\": %.4f}",
            c < static_cast<int>(data_.class_names.size()) ? data_.class_names[c] : "?",
            r.per_class_knn_top1(c),
            c < r.per_class_temporal_similarity_size() ? r.per_class_temporal_similarity(c)
                                                       : 0.0));
      }
      return absl::StrFormat(
          "\"%s\": {\"knn_top1\": %.4f, \"temporal_similarity\": %.4f, \"per_class\": [%s]}",
          name, r.knn_top1(), r.temporal_similarity(), absl::StrJoin(per_class, ", "));
    };
    std::vector<std::string> times;
    for (const std::string& s : stages) {
      const bool skipped =
          std::find(result_.skipped.begin(), result_.skipped.end(), s) != result_.skipped.end();
      times.push_back(absl::StrFormat("{\"stage\": \"%s\", \"seconds\": %.1f, \"skipped\": %s}", s,
                                      state_[s].record.seconds(), skipped ? "true" : "false"));
    }
    const EvaluationConfig& e = base_.evaluation();
    std::string student_init = TimeBalancePipelineConfig::StudentInit_Name(
        base_.timebalance().student_init());
    std::string rule;
    google::protobuf::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    printer.PrintToString(base_.timebalance().score(), &rule);
    result_.results_json = absl::StrFormat(
        "{\"pipeline\": \"timebalance\", \"experiment\": \"%s\", \"split\": \"%s\", "
        "\"labeled_videos\": %d, \"train_videos\": %d, \"labeled_fraction\": %.4f, "
        "\"labeled_list_hash\": \"%s\", \"protocol\": \"%s, softmax averaged, final "
        "checkpoint\", \"student_init\": \"%s\", "
        "\"score_rule\": \"%s\", %s, %s, %s, \"stages\": [%s]}\n",
        base_.name(), data_.split_name, data_.labeled.size(), data_.num_train,
        base_.dataset().labeled_fraction(), data_.labeled_hash, EvaluationProtocol(e),
        student_init, rule, model("student", kDistill),
        model("invariant_teacher", kFinetuneInvariant),
        model("distinctive_teacher", kFinetuneDistinctive) +
            (state_.count(kSupervised) ? ", " + model("supervised", kSupervised) : "") + ", " +
            ssl("ssl_invariant", kPretrainInvariant) + ", " +
            ssl("ssl_distinctive", kPretrainDistinctive),
        absl::StrJoin(times, ", "));
    RETURN_IF_ERROR(WriteFileAtomically(base_.run_dir() + "/results.json", result_.results_json));
    const auto& s = state_[kDistill].record;
    result_.student_top1 = s.top1();
    result_.student_top5 = s.top5();
    result_.stage_seconds = 0;
    for (const std::string& stage : stages) result_.stage_seconds += state_[stage].record.seconds();
    Say(absl::StrFormat(
        "timebalance: student top1 %.2f%% top5 %.2f%% | invariant teacher top1 %.2f%% | "
        "distinctive teacher top1 %.2f%% | results in %s/results.json",
        100 * s.top1(), 100 * s.top5(), 100 * state_[kFinetuneInvariant].record.top1(),
        100 * state_[kFinetuneDistinctive].record.top1(), base_.run_dir()));
    return absl::OkStatus();
  }

  void Say(const std::string& line) {
    if (options_.quiet) return;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  const ExperimentConfig& base_;
  const ExperimentData& data_;
  const torch::Device device_;
  const PipelineOptions& options_;
  std::map<std::string, StageState> state_;
  PipelineResult result_;
};

}  // namespace

std::string Fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return absl::StrFormat("%016x", h);
}

std::vector<std::string> PipelineStages(const ExperimentConfig& config) {
  std::vector<std::string> stages = {kPretrainInvariant, kPretrainDistinctive};
  if (config.timebalance().student_init() == TimeBalancePipelineConfig::COMBINED) {
    stages.push_back(kPretrainCombined);
  }
  for (const char* s : {kScore, kFinetuneInvariant, kFinetuneDistinctive, kDistill}) {
    stages.push_back(s);
  }
  if (config.timebalance().has_supervised_baseline()) stages.push_back(kSupervised);
  return stages;
}

absl::StatusOr<ExperimentConfig> PipelineStageConfig(const ExperimentConfig& config,
                                                     const std::string& stage) {
  return StageBase(config, stage);
}

absl::StatusOr<PipelineResult> RunPipeline(const ExperimentConfig& config,
                                           const ExperimentData& data,
                                           const torch::Device& device,
                                           const PipelineOptions& options) {
  if (!config.has_timebalance()) {
    return absl::InvalidArgumentError("RunPipeline needs a config with a timebalance field");
  }
  Pipeline pipeline(config, data, device, options);
  return pipeline.Run();
}

}  // namespace tb
