// File: train/api/trainer.h
//
// The interface every training method implements (supervised, the
// self-supervised pretraining of ssl/, the semi-supervised baselines and
// TimeBalance distillation of semisup/), the narrow context a trainer is
// built from, and the two-phase trainer registry keyed by the name of the
// TrainerConfig.kind field that selects it.
//
// A trainer owns its models and computes the loss of one step from the
// batches it is given; the training loop (train/training_loop.h) owns
// everything around it: optimizer, schedule, backward pass, gradient
// clipping, checkpoints and logging. A trainer keeps no global state, so
// several can run side by side in one process.
//
// This package is what component packages (ssl/, semisup/) depend on to
// register trainers; it depends only on core/, datasets/ and backbones/, and
// knows no trainer's options (the registry works on the TrainerConfig message
// through reflection), so the drivers in train/ can sit above the components
// without a package cycle (docs/ARCHITECTURE.md).
#ifndef TIMEBALANCE_TRAIN_API_TRAINER_H_
#define TIMEBALANCE_TRAIN_API_TRAINER_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/message.h>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "backbones/backbones.pb.h"
#include "core/autocast.h"
#include "core/registry.h"
#include "datasets/clip_loader.h"
#include "datasets/datasets.pb.h"

namespace tb {

struct StepBatches {
  const ClipBatch* labeled = nullptr;  // always present
  // For semi-supervised methods: the views of UnlabeledSampler(). Its
  // `labels` are the videos' hidden labels, for diagnostics only
  // (pseudo-label accuracy); no method may train on them.
  const ClipBatch* unlabeled = nullptr;
  int64_t step = 0;  // optimizer steps completed before this one
};

struct StepResult {
  torch::Tensor loss;  // scalar; the loop calls backward() on it
  // Logged scalars (loss terms, accuracies, mask rates), by name.
  std::map<std::string, double> metrics;
};

class Trainer {
 public:
  virtual ~Trainer() = default;

  // Computes the loss of one step (forward passes only).
  virtual absl::StatusOr<StepResult> Step(const StepBatches& batches) = 0;

  // Called after each optimizer step (EMA teachers and the like).
  virtual void AfterOptimizerStep(int64_t step) {}

  // Parameters the optimizer updates.
  virtual std::vector<torch::Tensor> TrainableParameters() = 0;

  // Every module whose state must survive a checkpoint, by a stable name.
  virtual std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() = 0;

  // The model that is evaluated at the end.
  virtual VideoBackbone& EvaluationModel() = 0;

  // The model `init_checkpoint` is loaded into before training (the trained
  // model; differs from EvaluationModel() for EMA-teacher methods).
  virtual VideoBackbone& InitializationModel() { return EvaluationModel(); }

  // A head that maps EvaluationModel()'s pooled features to the embedding
  // the method was trained on (an SSL projection head), or null. The
  // temporal-similarity scores can be computed on it.
  virtual torch::nn::Module* FeatureProjection() { return nullptr; }

  // Whether the method reads unlabeled batches.
  virtual bool NeedsUnlabeled() const { return false; }

  // The views of a labeled-loader sample (datasets/views.h); default: one
  // clip with the dataset's augmentation.
  virtual SamplerConfig LabeledSampler() const { return SamplerConfig(); }

  // The views of an unlabeled-loader sample (weak + strong, ...); default:
  // one clip with the dataset's augmentation.
  virtual SamplerConfig UnlabeledSampler() const { return SamplerConfig(); }

  // False for self-supervised methods: the loop then trains on every
  // training video (labeled and unlabeled) and labels are ignored.
  virtual bool UsesLabels() const { return true; }

  // Whether EvaluationModel()'s classifier is trained (otherwise the run is
  // evaluated by representation quality).
  virtual bool HasTrainedClassifier() const { return true; }

  // Switches all trained models between train and eval mode.
  virtual void SetTraining(bool training) = 0;

  // Batches of precise BatchNorm statistics recomputed before
  // EvaluationModel() is evaluated when the experiment's
  // evaluation.precise_bn.num_batches is unset (eval/precise_bn.h); 0 = off.
  // Methods whose reference recomputes them say so here (the multi-view
  // trainers: RGB and temporal-gradient clips share BatchNorm layers in
  // training, only RGB is tested).
  virtual int PreciseBnReferenceBatches() const { return 0; }
};

// What a trainer's options are validated against: where they sit and the
// experiment around them (for checks that involve other fields, e.g. a
// temporal-gradient method needs clips of at least 2 frames).
struct TrainerScope {
  // The options' config path, e.g. "timebalance.distill.trainer.timebalance"
  // (the registry appends the kind to the TrainerConfig's path).
  std::string path;
  // The experiment's backbone (num_classes may still be 0 = from the data).
  BackboneConfig backbone;
  DatasetConfig dataset;
};

// What a trainer is built from besides its own options. Deliberately not the
// whole experiment: a trainer sees its model, its data's geometry, its
// device and its length, nothing about run directories or other stages.
struct TrainerContext {
  torch::Device device = torch::kCPU;
  // The experiment's model (num_classes resolved).
  BackboneConfig backbone;
  // The experiment's data: clip geometry and augmentation, from which a
  // trainer derives the views it samples.
  DatasetConfig dataset;
  // Optimizer steps of the run (momentum schedules, ramp-ups).
  int64_t total_steps = 1;
  // Steps of one pass over the training videos at labeled_batch_size (a
  // self-supervised run's epoch); 0 = unknown.
  int64_t steps_per_epoch = 0;
  // The config path of the TrainerConfig ("trainer", or a pipeline stage's
  // "timebalance.distill.trainer"); the trainer's factory sees the path of
  // its options (CreateTrainer appends the kind), for messages at run time.
  std::string path = "trainer";
  // The experiment's precision: the training loop runs Step under its
  // autocast; frozen models run as InferenceModels, which choose their own
  // precision (e.g. a self-distillation teacher follows this one).
  Precision precision = Precision::kFp32;

  // The model factory: builds the experiment's backbone, or `config` (a
  // teacher's or an auxiliary model's; num_classes 0 = the experiment's).
  absl::StatusOr<std::shared_ptr<VideoBackbone>> CreateModel() const;
  absl::StatusOr<std::shared_ptr<VideoBackbone>> CreateModel(BackboneConfig config) const;
};

using TrainerRegistryType = ComponentRegistry<Trainer, TrainerScope, TrainerContext>;
TrainerRegistryType& TrainerRegistry();

// Validates the trainer selected in `trainer_config` (a TrainerConfig:
// message with a `kind` oneof) at `scope.path`.
absl::Status ValidateTrainer(const google::protobuf::Message& trainer_config,
                             const TrainerScope& scope);

// Builds the trainer selected in `trainer_config`, whose options must have
// passed ValidateTrainer.
absl::StatusOr<std::unique_ptr<Trainer>> CreateTrainer(
    const google::protobuf::Message& trainer_config, const TrainerContext& context);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_API_TRAINER_H_
