#include "train/experiment_runner.h"

#include <cstdio>
#include <filesystem>
#include <optional>

#include <glog/logging.h>
#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/event_writer.h"
#include "core/file_util.h"
#include "core/records.h"
#include "core/run_lock.h"
#include "core/status_macros.h"
#include "eval/multi_clip_evaluator.h"
#include "eval/precise_bn.h"
#include "eval/representation.h"

namespace tb {

absl::StatusOr<torch::Device> ParseDevice(const std::string& name) {
  if (name.rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    return absl::FailedPreconditionError("config field device = \"" + name +
                                         "\": this LibTorch build has no usable CUDA device "
                                         "(set LIBTORCH to a CUDA LibTorch and rebuild)");
  }
  try {
    return torch::Device(name);
  } catch (const c10::Error&) {
    return absl::InvalidArgumentError("config field device = \"" + name +
                                      "\": expected cpu, cuda or cuda:N");
  }
}

absl::Status ResolveNumClasses(ExperimentConfig* config, int num_classes) {
  if (config->backbone().num_classes() == 0) {
    config->mutable_backbone()->set_num_classes(num_classes);
  } else if (config->backbone().num_classes() != num_classes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "config field backbone.num_classes = %d but the dataset has %d classes",
        config->backbone().num_classes(), num_classes));
  }
  return absl::OkStatus();
}

TrainerContext MakeTrainerContext(const ExperimentConfig& config, const torch::Device& device,
                                  int64_t train_videos) {
  TrainerContext context;
  context.device = device;
  context.backbone = config.backbone();
  context.dataset = config.dataset();
  context.total_steps = config.schedule().steps();
  const int64_t batch = config.trainer().labeled_batch_size();
  context.steps_per_epoch = batch > 0 ? (train_videos + batch - 1) / batch : 0;
  context.path = "trainer";
  context.precision = ExperimentPrecision(config);
  return context;
}

namespace {

// One experiment's steps, in order: Prepare, then Restore (evaluation only)
// or Train, then Evaluate.
class ExperimentRun {
 public:
  ExperimentRun(const ExperimentConfig& config, const ExperimentData& data,
                const torch::Device& device, const RunOptions& options)
      : config_(config), data_(data), device_(device), options_(options) {}

  absl::StatusOr<RunResult> Run() {
    RETURN_IF_ERROR(Prepare());
    if (options_.eval_only) {
      RETURN_IF_ERROR(RestoreLatest());
    } else {
      RETURN_IF_ERROR(Train());
      if (result_.training.interrupted) return result_;
    }
    if (!config_.evaluation().after_training() && !options_.eval_only) return result_;
    RETURN_IF_ERROR(Evaluate());
    return result_;
  }

 private:
  // The run directory (locked for this process), the resolved config in it,
  // and the trainer.
  absl::Status Prepare() {
    if (rank() == 0) {
      ASSIGN_OR_RETURN(lock_, RunDirLock::Acquire(config_.run_dir()));
      RETURN_IF_ERROR(
          WriteFileAtomically(config_.run_dir() + "/config.pbtxt", ExperimentToText(config_)));
    }
    // Initialisation and dropout draw from LibTorch's global generator.
    torch::manual_seed(config_.seed());
    ASSIGN_OR_RETURN(trainer_,
                     CreateTrainer(config_.trainer(),
                                   MakeTrainerContext(config_, device_, data_.num_train)));
    Say(absl::StrFormat(
        "experiment %s: %zu classes, %zu labeled / %lld train videos (labeled list sha256 %s), "
        "%zu test videos, %lld parameters, device %s",
        config_.name(), data_.class_names.size(), data_.labeled.size(),
        static_cast<long long>(data_.num_train), data_.labeled_sha256.substr(0, 16),
        data_.test.size(), static_cast<long long>(CountParameters(trainer_->EvaluationModel())),
        config_.device()));
    return absl::OkStatus();
  }

  absl::Status RestoreLatest() {
    ASSIGN_OR_RETURN(std::string latest, LatestCheckpoint(CheckpointDir(config_)));
    CheckpointContents contents;
    contents.modules = trainer_->CheckpointModules();
    RETURN_IF_ERROR(LoadCheckpoint(latest, &contents));
    result_.training.steps_done = contents.position.step;
    result_.final_checkpoint = latest;
    return absl::OkStatus();
  }

  // Loads init_checkpoint into a fresh run's model, then trains.
  absl::Status Train() {
    const bool has_checkpoint = LatestCheckpoint(CheckpointDir(config_)).ok();
    if (!config_.init_checkpoint().empty() && !(options_.resume && has_checkpoint)) {
      CheckpointContents contents;
      contents.modules = {{"model", &trainer_->InitializationModel()}};
      absl::Status loaded = LoadCheckpoint(config_.init_checkpoint(), &contents);
      if (!loaded.ok()) {
        return absl::Status(loaded.code(),
                            absl::StrCat("config field init_checkpoint: ", loaded.message()));
      }
    }
    ASSIGN_OR_RETURN(result_.training,
                     RunTraining(config_, data_, trainer_.get(), device_, options_.resume,
                                 options_.stop, options_.quiet, options_.distributed));
    if (result_.training.interrupted) return absl::OkStatus();
    ASSIGN_OR_RETURN(result_.final_checkpoint, LatestCheckpoint(CheckpointDir(config_)));
    const TrainingOutcome& t = result_.training;
    Say(absl::StrFormat("trained steps %lld..%lld in %.1f s (%.2f clips/s, data wait %.1f s)",
                        static_cast<long long>(t.first_step), static_cast<long long>(t.steps_done),
                        t.seconds, t.clips_per_second, t.data_wait_seconds));
    return absl::OkStatus();
  }

  // Evaluates the final model and writes results.json.
  absl::Status Evaluate() {
    ExperimentResults& r = result_.results;
    const TrainingOutcome& t = result_.training;
    r.set_experiment(config_.name());
    r.set_split(data_.split_name);
    r.set_labeled_videos(static_cast<int32_t>(data_.labeled.size()));
    r.set_train_videos(static_cast<int32_t>(data_.num_train));
    r.set_labeled_fraction(config_.dataset().labeled_fraction());
    r.set_labeled_list_sha256(data_.labeled_sha256);
    r.set_steps(static_cast<int32_t>(t.steps_done));
    r.set_train_seconds(t.seconds);
    r.set_train_clips_per_s(t.clips_per_second);
    r.set_checkpoint("final");
    r.set_model_sha256(ModuleSha256(trainer_->EvaluationModel()));
    r.set_world_size(world_size());
    if (world_size() > 1) {
      r.set_distributed_backend(BackendName(config_.distributed().backend()));
    }
    if (trainer_->HasTrainedClassifier()) {
      RETURN_IF_ERROR(EvaluateClassifier(&r));
    } else {
      RETURN_IF_ERROR(EvaluateRepresentation(&r));
    }
    result_.evaluated = true;
    if (rank() != 0) return absl::OkStatus();
    RETURN_IF_ERROR(WriteJsonRecord(config_.run_dir() + "/results.json", r));
    WriteEvaluationEvents(r);
    Say(absl::StrFormat("results in %s/results.json", config_.run_dir()));
    return absl::OkStatus();
  }

  // Precise BatchNorm statistics for the evaluation (eval/precise_bn.h):
  // recomputed on the evaluation model, which `keep` restores afterwards, so
  // the trained model and its checkpoints are left as they are.
  absl::Status PreciseBatchNormForEvaluation(ExperimentResults* r) {
    const PreciseBnConfig& c = config_.evaluation().precise_bn();
    const std::vector<LabeledVideo>& videos =
        c.videos() == PreciseBnConfig::LABELED ? data_.labeled : data_.train;
    const PreciseBnPlan plan =
        PlanPreciseBn(c, static_cast<int64_t>(videos.size()), trainer_->PreciseBnReferenceBatches(),
                      config_.trainer().labeled_batch_size(), config_.seed());
    if (plan.num_batches == 0) return absl::OkStatus();
    r->set_precise_bn_batches(plan.num_batches);
    r->set_precise_bn_batch_size(plan.batch_size);
    ASSIGN_OR_RETURN(PreciseBnReport report,
                     PreciseBatchNorm(trainer_->EvaluationModel(), c, plan, videos,
                                      config_.dataset(), device_, ExperimentPrecision(config_),
                                      DistributedCollectives()));
    Say(absl::StrFormat(
        "precise-BN: %d BatchNorm layers recomputed on %d batches of %d training clips (%.1f s)",
        report.layers, report.batches, plan.batch_size, report.seconds));
    return absl::OkStatus();
  }

  // The evaluated model prepared as config field evaluation asks
  // (fold_batch_norm, channels_last; backbones/inference_model.h), after
  // precise-BN; nullopt: evaluate the eval-mode model itself (both off, or an
  // FP16 experiment, a precision InferenceModel does not run).
  absl::StatusOr<std::optional<InferenceModel>> EvaluationInferenceModel() {
    const EvaluationConfig& e = config_.evaluation();
    const Precision precision = ExperimentPrecision(config_);
    if ((!e.fold_batch_norm() && !e.channels_last()) || precision == Precision::kFp16) {
      return std::optional<InferenceModel>();
    }
    InferenceOptions options;
    options.fold_batch_norm = e.fold_batch_norm();
    options.channels_last = e.channels_last();
    options.precision = InferencePrecisionFor(precision);
    absl::StatusOr<InferenceModel> model =
        InferenceModel::Create(config_.backbone(), trainer_->EvaluationModel(), options);
    if (!model.ok()) {
      return absl::Status(model.status().code(),
                          absl::StrCat("evaluation: preparing the model for inference (config "
                                       "field evaluation.fold_batch_norm: false evaluates it as "
                                       "it is): ",
                                       model.status().message()));
    }
    return std::optional<InferenceModel>(*std::move(model));
  }

  absl::Status EvaluateClassifier(ExperimentResults* r) {
    BatchNormStatisticsGuard keep(trainer_->EvaluationModel());
    RETURN_IF_ERROR(PreciseBatchNormForEvaluation(r));
    ASSIGN_OR_RETURN(std::optional<InferenceModel> inference, EvaluationInferenceModel());
    ASSIGN_OR_RETURN(
        VideoAccuracy acc,
        inference ? EvaluateMultiClip(*inference, data_.test, NumClasses(), config_.dataset(),
                                      config_.evaluation(), collectives())
                  : EvaluateMultiClip(trainer_->EvaluationModel(), data_.test, NumClasses(),
                                      config_.dataset(), config_.evaluation(), device_,
                                      ExperimentPrecision(config_), collectives()));
    std::string protocol = absl::StrCat(EvaluationProtocol(config_.evaluation()),
                                        ", softmax averaged");
    if (r->precise_bn_batches() > 0) {
      absl::StrAppendFormat(&protocol, ", precise-BN on %d x %d training clips",
                            r->precise_bn_batches(), r->precise_bn_batch_size());
    }
    r->set_protocol(protocol);
    *r->mutable_test() = VideoAccuracyToRecord(acc, data_.class_names);
    Say(absl::StrFormat("test: %lld videos x %d clips: top1 %.2f%% top5 %.2f%% (%.1f s)",
                        static_cast<long long>(acc.num_videos), acc.num_clips, 100 * acc.top1,
                        100 * acc.top5, acc.seconds));
    return absl::OkStatus();
  }

  absl::Status EvaluateRepresentation(ExperimentResults* r) {
    BatchNormStatisticsGuard keep(trainer_->EvaluationModel());
    RETURN_IF_ERROR(PreciseBatchNormForEvaluation(r));
    const RepresentationEvalConfig& e = config_.representation_eval();
    ASSIGN_OR_RETURN(std::optional<InferenceModel> inference, EvaluationInferenceModel());
    ASSIGN_OR_RETURN(
        RepresentationReport report,
        inference ? tb::EvaluateRepresentation(*inference, data_.train, data_.test, NumClasses(),
                                               config_.dataset(), e)
                  : tb::EvaluateRepresentation(trainer_->EvaluationModel(), data_.train,
                                               data_.test, NumClasses(), config_.dataset(), e,
                                               device_, ExperimentPrecision(config_)));
    r->set_protocol(absl::StrFormat(
        "backbone features of %d evenly spaced clips per video, centre crop %.2f; kNN k=%d "
        "T=%.3g on clip-averaged features",
        e.num_clips(), e.crop_fraction(), e.knn_k(), e.knn_temperature()));
    *r->mutable_representation() = RepresentationReportToRecord(report, data_.class_names);
    std::string recall;
    for (const auto& [k, v] : report.retrieval) {
      absl::StrAppendFormat(&recall, " R@%d %.1f%%", k, 100 * v);
    }
    Say(absl::StrFormat(
        "representation: kNN top1 %.2f%% (clips in order %.2f%%), linear probe top1 %.2f%%, "
        "retrieval%s, temporal similarity %.3f (centred %.3f; between videos %.3f) (%.1f s)",
        100 * report.knn.top1, 100 * report.knn_ordered.top1, 100 * report.probe.top1, recall,
        report.temporal_similarity, report.centered_temporal_similarity,
        report.cross_video_similarity, report.seconds));
    return absl::OkStatus();
  }

  // The evaluation as TensorBoard scalars at the final step, next to the
  // training curves (a missing event file is a warning: results.json is the
  // record).
  void WriteEvaluationEvents(const ExperimentResults& r) const {
    auto events = CreateUniqueEventWriter(config_.run_dir(), "eval");
    if (!events.ok()) {
      LOG(WARNING) << "no TensorBoard evaluation events: " << events.status();
      return;
    }
    std::vector<std::pair<std::string, double>> scalars;
    if (r.has_test()) {
      scalars = {{"test/top1", r.test().top1()}, {"test/top5", r.test().top5()}};
    } else {
      scalars = {{"representation/knn_top1", r.representation().knn_top1()},
                 {"representation/probe_top1", r.representation().probe_top1()},
                 {"representation/temporal_similarity",
                  r.representation().temporal_similarity()}};
    }
    for (const auto& [tag, value] : scalars) {
      const absl::Status added = (*events)->AddScalar(tag, r.steps(), value);
      if (!added.ok()) LOG(WARNING) << "TensorBoard evaluation events: " << added;
    }
  }

  int NumClasses() const { return static_cast<int>(data_.class_names.size()); }

  std::shared_ptr<Collectives> DistributedCollectives() const {
    if (!IsDistributed(options_.distributed.get())) return nullptr;
    return options_.distributed;
  }
  Collectives* collectives() const {
    return IsDistributed(options_.distributed.get()) ? options_.distributed.get() : nullptr;
  }
  int rank() const { return collectives() ? collectives()->rank() : 0; }
  int world_size() const { return collectives() ? collectives()->world_size() : 1; }

  void Say(const std::string& line) const {
    if (options_.quiet || rank() != 0) return;
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  }

  const ExperimentConfig& config_;
  const ExperimentData& data_;
  const torch::Device device_;
  const RunOptions& options_;
  std::unique_ptr<RunDirLock> lock_;
  std::unique_ptr<Trainer> trainer_;
  RunResult result_;
};

}  // namespace

absl::StatusOr<RunResult> RunExperiment(const ExperimentConfig& config, const ExperimentData& data,
                                        const torch::Device& device, const RunOptions& options) {
  ExperimentRun run(config, data, device, options);
  return run.Run();
}

}  // namespace tb
