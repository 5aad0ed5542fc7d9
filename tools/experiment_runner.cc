#include "tools/experiment_runner.h"

#include <cstdio>
#include <filesystem>

#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backbones/backbone.h"
#include "configs/config_loader.h"
#include "core/checkpoint.h"
#include "core/status_macros.h"
#include "eval/multi_clip_evaluator.h"
#include "eval/representation.h"
#include "semisup/trainer.h"

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

namespace {

absl::Status LoadInitCheckpoint(const std::string& path, VideoBackbone& model) {
  CheckpointContents contents;
  contents.modules = {{"model", &model}};
  absl::Status loaded = LoadCheckpoint(path, &contents);
  if (!loaded.ok()) {
    return absl::Status(loaded.code(),
                        absl::StrCat("config field init_checkpoint: ", loaded.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RunResult> RunExperiment(const ExperimentConfig& config, const ExperimentData& data,
                                        const torch::Device& device, const RunOptions& options) {
  const int num_classes = static_cast<int>(data.class_names.size());
  const std::string run_dir = config.run_dir();
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) return absl::InternalError("cannot create run_dir " + run_dir + ": " + ec.message());
  RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/config.pbtxt", ExperimentToText(config)));

  // Initialisation and dropout draw from LibTorch's global generator.
  torch::manual_seed(config.seed());
  ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, CreateTrainer(config, device));
  if (!options.quiet) {
    std::printf("experiment %s: %zu classes, %zu labeled / %lld train videos (labeled list %s), "
                "%zu test videos, %lld parameters, device %s\n",
                config.name().c_str(), data.class_names.size(), data.labeled.size(),
                static_cast<long long>(data.num_train), data.labeled_hash.c_str(),
                data.test.size(),
                static_cast<long long>(CountParameters(trainer->EvaluationModel())),
                config.device().c_str());
    std::fflush(stdout);
  }

  RunResult result;
  const bool has_checkpoint = LatestCheckpoint(CheckpointDir(config)).ok();
  if (options.eval_only) {
    ASSIGN_OR_RETURN(std::string latest, LatestCheckpoint(CheckpointDir(config)));
    CheckpointContents contents;
    contents.modules = trainer->CheckpointModules();
    RETURN_IF_ERROR(LoadCheckpoint(latest, &contents));
    result.training.steps_done = contents.position.step;
    result.final_checkpoint = latest;
  } else {
    if (!config.init_checkpoint().empty() && !(options.resume && has_checkpoint)) {
      RETURN_IF_ERROR(LoadInitCheckpoint(config.init_checkpoint(), trainer->InitializationModel()));
    }
    ASSIGN_OR_RETURN(result.training,
                     RunTraining(config, data, trainer.get(), device, options.resume,
                                 options.stop));
    if (result.training.interrupted) return result;
    ASSIGN_OR_RETURN(result.final_checkpoint, LatestCheckpoint(CheckpointDir(config)));
    if (!options.quiet) {
      std::printf("trained steps %lld..%lld in %.1f s (%.2f clips/s, data wait %.1f s)\n",
                  static_cast<long long>(result.training.first_step),
                  static_cast<long long>(result.training.steps_done), result.training.seconds,
                  result.training.clips_per_second, result.training.data_wait_seconds);
    }
  }
  if (!config.evaluation().after_training() && !options.eval_only) return result;

  const TrainingOutcome& t = result.training;
  const std::string common = absl::StrFormat(
      "\"experiment\": \"%s\", \"split\": \"%s\", \"labeled_videos\": %d, \"train_videos\": %d, "
      "\"labeled_fraction\": %.4f, \"labeled_list_hash\": \"%s\", \"steps\": %d, "
      "\"train_seconds\": %.3f, \"train_clips_per_s\": %.3f, \"checkpoint\": \"final\"",
      config.name(), data.split_name, data.labeled.size(), data.num_train,
      config.dataset().labeled_fraction(), data.labeled_hash, t.steps_done, t.seconds,
      t.clips_per_second);
  if (!trainer->HasTrainedClassifier()) {
    const std::vector<LabeledVideo>& train = data.train;
    const RepresentationEvalConfig& r = config.representation_eval();
    ASSIGN_OR_RETURN(RepresentationReport report,
                     EvaluateRepresentation(trainer->EvaluationModel(), train, data.test,
                                            num_classes, config.dataset(), r, device,
                                            ExperimentPrecision(config)));
    result.knn_top1 = report.knn.top1;
    result.temporal_similarity = report.temporal_similarity;
    result.per_class_knn_top1 = report.knn.per_class;
    result.per_class_temporal_similarity = report.temporal_similarity_per_class;
    result.results_json = absl::StrFormat(
        "{%s, \"protocol\": \"backbone features of %d evenly spaced clips per video, centre "
        "crop %.2f; kNN k=%d T=%.3g on clip-averaged features\", \"representation\": %s}\n",
        common, r.num_clips(), r.crop_fraction(), r.knn_k(), r.knn_temperature(),
        RepresentationReportToJson(report, data.class_names));
    if (!options.quiet) {
      std::string recall;
      for (const auto& [k, v] : report.retrieval) recall += absl::StrFormat(" R@%d %.1f%%", k, 100 * v);
      std::printf("representation: kNN top1 %.2f%% (clips in order %.2f%%), linear probe top1 %.2f%%, retrieval%s, "
                  "temporal similarity %.3f (centred %.3f; between videos %.3f) (%.1f s)\n",
                  100 * report.knn.top1, 100 * report.knn_ordered.top1, 100 * report.probe.top1,
                  recall.c_str(), report.temporal_similarity, report.centered_temporal_similarity,
                  report.cross_video_similarity, report.seconds);
    }
  } else {
    ASSIGN_OR_RETURN(VideoAccuracy acc,
                     EvaluateMultiClip(trainer->EvaluationModel(), data.test, num_classes,
                                       config.dataset(), config.evaluation(), device,
                                       ExperimentPrecision(config)));
    result.top1 = acc.top1;
    result.top5 = acc.top5;
    result.per_class_top1 = acc.per_class_top1;
    result.results_json = absl::StrFormat(
        "{%s, \"protocol\": \"%s, softmax averaged\", \"test\": %s}\n", common,
        EvaluationProtocol(config.evaluation()),
        VideoAccuracyToJson(acc, data.class_names));
    if (!options.quiet) {
      std::printf("test: %lld videos x %d clips: top1 %.2f%% top5 %.2f%% (%.1f s)\n",
                  static_cast<long long>(acc.num_videos), acc.num_clips, 100 * acc.top1,
                  100 * acc.top5, acc.seconds);
    }
  }
  result.evaluated = true;
  RETURN_IF_ERROR(WriteFileAtomically(run_dir + "/results.json", result.results_json));
  if (!options.quiet) {
    std::printf("results in %s/results.json\n", run_dir.c_str());
    std::fflush(stdout);
  }
  return result;
}

}  // namespace tb
