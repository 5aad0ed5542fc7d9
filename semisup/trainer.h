// File: semisup/trainer.h
//
// The interface of every training method (supervised now; the
// semi-supervised baselines and TimeBalance distillation implement it too),
// and its registry keyed by the TrainerConfig.kind field name.
//
// A trainer owns its models and computes the loss of one step from the
// batches it is given; the training loop (training_loop.h) owns everything
// around it: optimizer, schedule, backward pass, gradient clipping (the one
// place where gradients are ready, where a data-parallel all-reduce goes),
// checkpoints and logging. A trainer keeps no global state, so several can
// run side by side in one process.
#ifndef TIMEBALANCE_SEMISUP_TRAINER_H_
#define TIMEBALANCE_SEMISUP_TRAINER_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"
#include "backbones/backbone.h"
#include "configs/experiment.pb.h"
#include "core/registry.h"
#include "datasets/clip_loader.h"

namespace tb {

struct StepBatches {
  const ClipBatch* labeled = nullptr;    // always present
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
};

// Factories get the resolved experiment (num_classes resolved) and the
// device to place models on.
using TrainerRegistryType = Registry<Trainer, const ExperimentConfig&, const torch::Device&>;
TrainerRegistryType& TrainerRegistry();

absl::StatusOr<std::unique_ptr<Trainer>> CreateTrainer(const ExperimentConfig& config,
                                                       const torch::Device& device);

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_TRAINER_H_
