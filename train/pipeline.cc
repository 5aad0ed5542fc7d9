#include "train/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "backbones/heads.h"
#include "backbones/inference_model.h"
#include "configs/config_loader.h"
#include "configs/pipeline_config.h"
#include "core/checkpoint.h"
#include "core/file_util.h"
#include "core/records.h"
#include "core/run_lock.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "eval/multi_clip_evaluator.h"
#include "eval/representation.h"
#include "reweighting/scorer.h"
#include "train/api/trainer.h"
#include "train/experiment_runner.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

std::string StageDir(const ExperimentConfig& base, const std::string& stage) {
  return (fs::path(base.run_dir()) / "stages" / stage).string();
}

std::string RecordPath(const std::string& dir) { return dir + "/stage_done.pbtxt"; }

// LibTorch's intra-op thread count set to `n` (> 0) for a scope.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : saved_(at::get_num_threads()) {
    if (n > 0 && n != saved_) at::set_num_threads(n);
  }
  ~ScopedThreads() {
    if (at::get_num_threads() != saved_) at::set_num_threads(saved_);
  }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  const int saved_;
};

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
    RETURN_IF_ERROR(ValidatePipelineConfig(base_));
    std::unique_ptr<RunDirLock> lock;
    if (!options_.child_stage.empty()) {
      // The parent holds the lock and writes the summary.
      for (const std::string& s : stages) {
        ASSIGN_OR_RETURN(bool interrupted, RunStage(s, s == options_.child_stage));
        if (interrupted) {
          result_.interrupted = true;
          break;
        }
      }
      return result_;
    }
    if (rank() == 0) {
      absl::StatusOr<std::unique_ptr<RunDirLock>> acquired = RunDirLock::Acquire(base_.run_dir());
      RETURN_IF_ERROR(Agree(acquired.status(), "locking the run directory"));
      lock = std::move(*acquired);
    } else {
      RETURN_IF_ERROR(Agree(absl::OkStatus(), "locking the run directory"));
    }
    const int jobs = base_.timebalance().parallel_stages();
    if (jobs > 1 && options_.launch_stages && collectives() == nullptr) {
      ASSIGN_OR_RETURN(bool interrupted, RunGraph(stages, jobs));
      if (interrupted) {
        result_.interrupted = true;
        return result_;
      }
    } else {
      for (const std::string& s : stages) {
        ASSIGN_OR_RETURN(bool interrupted, RunStage(s, Selected(s)));
        if (interrupted) {
          result_.interrupted = true;
          return result_;
        }
      }
    }
    if (!result_.pending.empty()) {
      // A restricted run: results.json describes a whole pipeline, so one
      // left by an earlier run (now out of date) is removed rather than kept.
      if (rank() == 0) {
        std::error_code ec;
        fs::remove(base_.run_dir() + "/results.json", ec);
      }
      Say(absl::StrCat("timebalance: stages not run (not selected by --stages and not up to "
                       "date): ",
                       absl::StrJoin(result_.pending, ", "),
                       "; results.json is written when every stage has finished"));
      return result_;
    }
    RETURN_IF_ERROR(WriteSummary(stages));
    return result_;
  }

 private:
  Collectives* collectives() const {
    return IsDistributed(options_.distributed.get()) ? options_.distributed.get() : nullptr;
  }
  int rank() const { return collectives() ? collectives()->rank() : 0; }

  // With several ranks: a barrier that also tells every rank whether some
  // rank failed `what` (`local` is this rank's outcome). Returns `local`
  // when it failed, an error naming the failed ranks when another did, OK
  // when all succeeded. One process: `local`.
  absl::Status Agree(const absl::Status& local, const std::string& what) {
    if (collectives() == nullptr) return local;
    const int world = collectives()->world_size();
    torch::Tensor failed = torch::zeros({world}, torch::kFloat64);
    if (!local.ok()) failed[rank()] = 1;
    RETURN_IF_ERROR(CallTorch(what, [&] { collectives()->AllReduceSum({failed}); }));
    if (!local.ok()) return local;
    std::vector<std::string> ranks;
    for (int r = 0; r < world; ++r) {
      if (failed[r].item<double>() > 0) ranks.push_back(absl::StrCat(r));
    }
    if (ranks.empty()) return absl::OkStatus();
    return absl::AbortedError(absl::StrCat(what, " failed on rank ", absl::StrJoin(ranks, ", "),
                                           " (its log says why)"));
  }

  bool Selected(const std::string& stage) const {
    return options_.stages.empty() ||
           std::find(options_.stages.begin(), options_.stages.end(), stage) !=
               options_.stages.end();
  }

  // The stage whose SSL checkpoint initialises the student, if any.
  const char* StudentInitStage() const {
    switch (base_.timebalance().student_init()) {
      case TimeBalancePipelineConfig::INVARIANT:
        return kPretrainInvariant;
      case TimeBalancePipelineConfig::DISTINCTIVE:
        return kPretrainDistinctive;
      case TimeBalancePipelineConfig::COMBINED:
        return kPretrainCombined;
      default:
        return nullptr;
    }
  }

  // The LibTorch threads `stage` runs with: its config's num_threads (set by
  // its fragment or by the parallel_stages plan), 0 = the process's.
  int StageThreads(const std::string& stage) const {
    if (stage == kScore) {
      return PlannedStageThreads(base_, stage,
                                 static_cast<int>(std::thread::hardware_concurrency()));
    }
    absl::StatusOr<ExperimentConfig> c = PipelineStageConfig(base_, stage);
    return c.ok() ? c->num_threads() : 0;
  }

  // The upstream stages of `stage`.
  std::vector<std::string> Inputs(const std::string& stage) const {
    return PipelineStageInputs(base_, stage);
  }

  // The stage's full config with its inputs filled in (training stages).
  absl::StatusOr<ExperimentConfig> FullConfig(const std::string& stage) {
    ASSIGN_OR_RETURN(ExperimentConfig c, PipelineStageConfig(base_, stage));
    if (stage == kFinetuneInvariant) c.set_init_checkpoint(state_[kPretrainInvariant].output);
    if (stage == kFinetuneDistinctive) {
      c.set_init_checkpoint(state_[kPretrainDistinctive].output);
    }
    if (stage == kDistill) {
      TimeBalanceOptions* t = c.mutable_trainer()->mutable_timebalance();
      t->set_invariant_teacher(state_[kFinetuneInvariant].output);
      t->set_distinctive_teacher(state_[kFinetuneDistinctive].output);
      t->set_scores(state_[kScore].output);
      if (const char* init = StudentInitStage()) c.set_init_checkpoint(state_[init].output);
    }
    return c;
  }

  // SHA-256 of what determines the stage's output: its inputs' fingerprints
  // and its config. Inputs enter through their fingerprints, not their paths,
  // and the run directory is left out, so a copied run directory (e.g. for an
  // ablation of one stage) reuses its finished stages.
  absl::StatusOr<std::string> Fingerprint(const std::string& stage) {
    std::string key;
    for (const std::string& in : Inputs(stage)) {
      if (!state_[in].done) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stage ", stage, " needs stage ", in, ", which has not finished (run it first or "
            "include it in --stages)"));
      }
      absl::StrAppend(&key, in, "=", state_[in].fingerprint, ";");
    }
    if (stage == kScore) {
      // How the teachers run changes the features by rounding: part of the key.
      ASSIGN_OR_RETURN(ExperimentConfig distill, PipelineStageConfig(base_, kDistill));
      const TimeBalanceOptions& t = distill.trainer().timebalance();
      return Sha256Hex(absl::StrCat(key, "score\n", ToTextProto(base_.timebalance().score()),
                                    "labeled:", data_.labeled_sha256, "fold_teachers:",
                                    t.fold_teachers(), "channels_last:",
                                    t.teacher_channels_last()));
    }
    ASSIGN_OR_RETURN(ExperimentConfig c, PipelineStageConfig(base_, stage));
    c.clear_run_dir();
    return Sha256Hex(key + ExperimentToText(c));
  }

  // True when the stage's record matches its fingerprint and its output is
  // still there.
  bool Reuse(const std::string& stage, const std::string& dir, StageState* state,
             bool announce = true) {
    absl::StatusOr<StageRecord> record = ReadTextRecord<StageRecord>(RecordPath(dir));
    if (!record.ok() || record->fingerprint() != state->fingerprint ||
        !fs::exists(fs::path(dir) / record->output())) {
      return false;
    }
    state->record = *record;
    state->output = (fs::path(dir) / record->output()).string();
    state->done = true;
    result_.skipped.push_back(stage);
    if (announce) Say(absl::StrFormat("stage %s: up to date (%s), skipped", stage, dir));
    return true;
  }

  // A stale or unfinished stage starts over unless it is being resumed with
  // the same fingerprint; an interrupted one is never restarted silently.
  absl::Status PrepareDir(const std::string& stage, const std::string& dir,
                          const std::string& fingerprint) {
    const std::string started = dir + "/fingerprint";
    std::string previous;
    {
      std::ifstream in(started);
      std::getline(in, previous);
    }
    const bool same = previous == fingerprint;
    if (!(same && options_.resume)) {
      if (same && fs::exists(dir + "/checkpoints") && !fs::is_empty(dir + "/checkpoints")) {
        return absl::FailedPreconditionError(absl::StrCat(
            "stage ", stage, " was interrupted (", dir, "); pass --resume to continue it"));
      }
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    fs::create_directories(dir);
    return WriteFileAtomically(started, fingerprint + "\n");
  }

  // Runs a training stage; returns false in `*finished` when interrupted.
  absl::Status Train(const std::string& stage, StageRecord* out, bool* finished) {
    ASSIGN_OR_RETURN(ExperimentConfig c, FullConfig(stage));
    RunOptions run;
    run.resume = options_.resume;
    run.stop = options_.stop;
    run.quiet = options_.quiet;
    run.distributed = options_.distributed;
    ASSIGN_OR_RETURN(RunResult r, RunExperiment(c, data_, device_, run));
    *finished = !r.training.interrupted;
    out->set_output(r.final_checkpoint);
    *out->mutable_results() = r.results;
    return absl::OkStatus();
  }

  // What a stage needs before it can run: kReady when it is selected and
  // not up to date; kDone when it is up to date; kPending when it is not
  // selected (or its inputs are pending) and not up to date.
  enum class Readiness { kReady, kDone, kPending };
  absl::StatusOr<Readiness> Check(const std::string& stage, bool selected) {
    StageState& state = state_[stage];
    absl::StatusOr<std::string> fingerprint = Fingerprint(stage);
    if (!selected && !fingerprint.ok()) {
      // An unselected stage whose inputs have not finished: left for later.
      // A selected stage that needs it fails in its own Fingerprint.
      result_.pending.push_back(stage);
      return Readiness::kPending;
    }
    RETURN_IF_ERROR(fingerprint.status());
    state.fingerprint = *fingerprint;
    const std::string dir = StageDir(base_, stage);
    if (Reuse(stage, dir, &state)) return Readiness::kDone;
    if (!selected) {
      // In a child process the other stages are its siblings' business.
      if (options_.child_stage.empty()) {
        Say(absl::StrFormat("stage %s: %s, not selected by --stages; not run", stage,
                            fs::exists(RecordPath(dir)) ? "out of date" : "not finished"));
      }
      result_.pending.push_back(stage);
      return Readiness::kPending;
    }
    return Readiness::kReady;
  }

  // The parallel_stages plan: every stage in a child process
  // (options_.launch_stages) as soon as its inputs have finished; each must
  // then have its record. Returns true when interrupted.
  absl::StatusOr<bool> RunGraph(const std::vector<std::string>& stages, int jobs) {
    const int hardware = static_cast<int>(std::thread::hardware_concurrency());
    const int budget = base_.num_threads() > 0 ? base_.num_threads() : std::max(1, hardware);
    std::vector<StageTask> tasks;
    for (const std::string& stage : stages) {
      const int threads = StageThreads(stage);
      tasks.push_back({stage, PipelineStageInputs(base_, stage), threads > 0 ? threads : budget});
    }
    StageHooks hooks;
    hooks.prepare = [this](const std::string& stage) -> absl::StatusOr<bool> {
      ASSIGN_OR_RETURN(Readiness r, Check(stage, Selected(stage)));
      return r == Readiness::kReady;
    };
    hooks.on_start = [this](const StageTask& task) {
      Say(absl::StrFormat("stage %s: running in a child process (%d threads, log %s/logs/%s.log)",
                          task.name, task.threads, base_.run_dir(), task.name));
    };
    hooks.on_done = [this](const std::string& stage) -> absl::Status {
      StageState& state = state_[stage];
      const std::string dir = StageDir(base_, stage);
      if (!Reuse(stage, dir, &state, /*announce=*/false)) {
        return absl::InternalError(absl::StrCat(
            "stage ", stage, " finished in its child process but ", RecordPath(dir),
            " is missing or out of date (see ", base_.run_dir(), "/logs/", stage, ".log)"));
      }
      result_.skipped.pop_back();  // Reuse counted it as skipped: it ran.
      result_.ran.push_back(stage);
      Say(absl::StrFormat("stage %s: done in %.1f s", stage, state.record.seconds()));
      return absl::OkStatus();
    };
    return options_.launch_stages(tasks, jobs, budget, hooks);
  }

  // Returns true when interrupted.
  absl::StatusOr<bool> RunStage(const std::string& stage, bool selected) {
    ASSIGN_OR_RETURN(Readiness readiness, Check(stage, selected));
    if (readiness != Readiness::kReady) return false;
    StageState& state = state_[stage];
    const std::string dir = StageDir(base_, stage);
    // Every rank has decided (from the same files) before rank 0 changes them.
    RETURN_IF_ERROR(Agree(absl::OkStatus(), "stage " + stage));
    RETURN_IF_ERROR(Agree(rank() == 0 ? PrepareDir(stage, dir, state.fingerprint)
                                      : absl::OkStatus(),
                          "preparing stage " + stage));
    Say(absl::StrFormat("stage %s: running (%s)", stage, dir));
    const auto start = std::chrono::steady_clock::now();
    StageRecord out;
    out.set_stage(stage);
    out.set_fingerprint(state.fingerprint);
    ScopedThreads threads(StageThreads(stage));
    if (stage == kScore) {
      // Every rank computes the scores (the same ones); rank 0 writes them,
      // and the others wait for the file before a stage reads it.
      absl::StatusOr<std::string> path = Score(dir);
      RETURN_IF_ERROR(Agree(path.status(), "stage score"));
      out.set_output(*path);
    } else {
      bool finished = false;
      RETURN_IF_ERROR(Train(stage, &out, &finished));
      if (!finished) return true;
    }
    out.set_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    state.output = out.output();
    out.set_output(fs::relative(out.output(), dir).string());
    RETURN_IF_ERROR(Agree(rank() == 0 ? WriteTextRecord(RecordPath(dir), out) : absl::OkStatus(),
                          "recording stage " + stage));
    state.record = out;
    state.done = true;
    result_.ran.push_back(stage);
    Say(absl::StrFormat("stage %s: done in %.1f s", stage, out.seconds()));
    return false;
  }

  // How the score stage runs the SSL models: fold_teachers and
  // teacher_channels_last of the distillation's timebalance options;
  // neither set (or an FP16 stage) = the eval-mode model as it is.
  absl::StatusOr<InferenceOptions> ScoreTeacherOptions(const ExperimentConfig& stage) {
    ASSIGN_OR_RETURN(ExperimentConfig distill, PipelineStageConfig(base_, kDistill));
    const TimeBalanceOptions& t = distill.trainer().timebalance();
    const Precision precision = ExperimentPrecision(stage);
    InferenceOptions options;
    options.fold_batch_norm = t.fold_teachers() && precision != Precision::kFp16;
    options.channels_last = t.teacher_channels_last() && precision != Precision::kFp16;
    options.precision = InferencePrecisionFor(precision);
    return options;
  }

  // The clip features of every training video under the SSL checkpoint of
  // `stage`: the backbone's, or projected by its objective's head.
  absl::StatusOr<torch::Tensor> ExtractTeacherFeatures(const std::string& stage,
                                                      const MixingRule& rule) {
    ASSIGN_OR_RETURN(ExperimentConfig c, PipelineStageConfig(base_, stage));
    ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                     CreateTrainer(c.trainer(), MakeTrainerContext(c, device_, data_.num_train)));
    CheckpointContents contents;
    contents.modules = trainer->CheckpointModules();
    RETURN_IF_ERROR(LoadCheckpoint(state_[stage].output, &contents));
    RepresentationEvalConfig extract;
    extract.set_num_clips(rule.NumClips());
    extract.set_crop_fraction(rule.CropFraction());
    // The teachers run as the distillation runs them: as InferenceModels
    // with BatchNorms folded (fold_teachers), channels-last when asked; in
    // this stage's precision (bf16 autocast or fp32; FP16 runs the eval-mode
    // model).
    ASSIGN_OR_RETURN(const InferenceOptions teacher_options, ScoreTeacherOptions(c));
    torch::Tensor f;
    if (teacher_options.fold_batch_norm || teacher_options.channels_last) {
      absl::StatusOr<InferenceModel> model =
          InferenceModel::Create(c.backbone(), trainer->EvaluationModel(), teacher_options);
      if (!model.ok()) {
        return absl::Status(model.status().code(),
                            absl::StrCat("score: preparing ", stage, "'s model for inference: ",
                                         model.status().message()));
      }
      ASSIGN_OR_RETURN(f, ExtractClipFeatures(*model, data_.train, c.dataset(), extract));
    } else {
      ASSIGN_OR_RETURN(f, ExtractClipFeatures(trainer->EvaluationModel(), data_.train,
                                              c.dataset(), extract, device_,
                                              ExperimentPrecision(c)));
    }
    if (rule.FeatureKind() != TemporalSimilarityRule::PROJECTION) return f;
    auto* projection = dynamic_cast<ProjectionHeadImpl*>(trainer->FeatureProjection());
    if (projection == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config field timebalance.score.temporal_similarity.features = PROJECTION needs a "
          "projection head, but stage ", stage, "'s objective has none"));
    }
    return CallTorch("projecting features", [&] {
      torch::NoGradGuard no_grad;
      projection->eval();
      const int64_t v = f.size(0), n = f.size(1);
      return projection->forward(f.flatten(0, 1).to(device_)).to(torch::kCPU).view({v, n, -1});
    });
  }

  // Teacher features of every training video with the SSL checkpoints, then
  // the mixing weights; writes <dir>/scores.pbtxt and a per-class summary.
  absl::StatusOr<std::string> Score(const std::string& dir) {
    ASSIGN_OR_RETURN(std::unique_ptr<MixingRule> rule,
                     CreateMixingRule(base_.timebalance().score()));
    const std::vector<LabeledVideo>& train = data_.train;
    TeacherFeatures features;
    if (rule->NeedsFeatures()) {
      ASSIGN_OR_RETURN(features.invariant, ExtractTeacherFeatures(kPretrainInvariant, *rule));
      ASSIGN_OR_RETURN(features.distinctive, ExtractTeacherFeatures(kPretrainDistinctive, *rule));
    }
    ASSIGN_OR_RETURN(std::vector<float> weights,
                     rule->Weights(features, static_cast<int64_t>(train.size())));
    std::vector<std::string> paths;
    for (const auto& v : train) paths.push_back(v.path);
    const std::string path = dir + "/scores.pbtxt";
    if (rank() != 0) return path;
    RETURN_IF_ERROR(WriteScores(
        path,
        absl::StrCat(ToOneLineTextProto(base_.timebalance().score()), "; teachers ",
                     state_[kPretrainInvariant].fingerprint, " ",
                     state_[kPretrainDistinctive].fingerprint),
        paths, weights));
    // Mean weight per class, for the record.
    std::map<int, std::pair<double, int>> per_class;
    for (size_t i = 0; i < train.size(); ++i) {
      per_class[train[i].label].first += weights[i];
      per_class[train[i].label].second += 1;
    }
    ScoreResults summary;
    summary.set_videos(static_cast<int32_t>(train.size()));
    for (const auto& [label, sum] : per_class) {
      ClassWeight* c = summary.add_per_class();
      c->set_class_name(data_.class_names[label]);
      c->set_mean_weight(sum.first / sum.second);
      c->set_videos(sum.second);
    }
    RETURN_IF_ERROR(WriteJsonRecord(dir + "/results.json", summary));
    return path;
  }

  const ExperimentResults& StageResults(const std::string& stage) {
    return state_[stage].record.results();
  }

  absl::Status WriteSummary(const std::vector<std::string>& stages) {
    PipelineResults& r = result_.results;
    r.set_experiment(base_.name());
    r.set_split(data_.split_name);
    r.set_labeled_videos(static_cast<int32_t>(data_.labeled.size()));
    r.set_train_videos(static_cast<int32_t>(data_.num_train));
    r.set_labeled_fraction(base_.dataset().labeled_fraction());
    r.set_labeled_list_sha256(data_.labeled_sha256);
    r.set_protocol(absl::StrCat(EvaluationProtocol(base_.evaluation()),
                                ", softmax averaged, final checkpoint"));
    r.set_student_init(
        TimeBalancePipelineConfig::StudentInit_Name(base_.timebalance().student_init()));
    r.set_score_rule(ToOneLineTextProto(base_.timebalance().score()));
    *r.mutable_student() = StageResults(kDistill).test();
    *r.mutable_invariant_teacher() = StageResults(kFinetuneInvariant).test();
    *r.mutable_distinctive_teacher() = StageResults(kFinetuneDistinctive).test();
    if (state_.count(kSupervised)) *r.mutable_supervised() = StageResults(kSupervised).test();
    *r.mutable_ssl_invariant() = StageResults(kPretrainInvariant).representation();
    *r.mutable_ssl_distinctive() = StageResults(kPretrainDistinctive).representation();
    result_.stage_seconds = 0;
    for (const std::string& s : stages) {
      StageTime* t = r.add_stages();
      t->set_stage(s);
      t->set_seconds(state_[s].record.seconds());
      t->set_skipped(std::find(result_.skipped.begin(), result_.skipped.end(), s) !=
                     result_.skipped.end());
      result_.stage_seconds += t->seconds();
    }
    if (rank() != 0) return absl::OkStatus();
    RETURN_IF_ERROR(WriteJsonRecord(base_.run_dir() + "/results.json", r));
    Say(absl::StrFormat(
        "timebalance: student top1 %.2f%% top5 %.2f%% | invariant teacher top1 %.2f%% | "
        "distinctive teacher top1 %.2f%% | results in %s/results.json",
        100 * r.student().top1(), 100 * r.student().top5(), 100 * r.invariant_teacher().top1(),
        100 * r.distinctive_teacher().top1(), base_.run_dir()));
    return absl::OkStatus();
  }

  void Say(const std::string& line) {
    if (options_.quiet || rank() != 0) return;
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
