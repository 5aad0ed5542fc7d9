// File: ssl/pretrain_trainer.h
//
// Self-supervised pretraining as a Trainer (registered as `ssl`, options
// SslTrainerOptions in ssl/ssl.proto): the backbone plus the
// objective's own modules (heads, EMA encoders, queues, prototypes) are
// trained on every training video with the objective's sampler; each loss
// term is logged separately. Checkpoints hold "model" (the backbone, which
// later stages load for fine-tuning) and "objective".
#ifndef TIMEBALANCE_SSL_PRETRAIN_TRAINER_H_
#define TIMEBALANCE_SSL_PRETRAIN_TRAINER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ssl/objective.h"
#include "train/api/trainer.h"

namespace tb {

class SslPretrainTrainer : public Trainer {
 public:
  SslPretrainTrainer(std::shared_ptr<VideoBackbone> backbone,
                     std::unique_ptr<SslObjective> objective, torch::Device device);

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override;
  void AfterOptimizerStep(int64_t step) override;
  std::vector<torch::Tensor> TrainableParameters() override;
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override;
  VideoBackbone& EvaluationModel() override { return *backbone_; }
  // The objective's "projection" head, when it has one.
  torch::nn::Module* FeatureProjection() override;
  void SetTraining(bool training) override;
  SamplerConfig LabeledSampler() const override { return objective_->Sampler(); }
  bool UsesLabels() const override { return false; }
  bool HasTrainedClassifier() const override { return false; }

  SslObjective& objective() { return *objective_; }

 private:
  std::shared_ptr<VideoBackbone> backbone_;
  std::unique_ptr<SslObjective> objective_;
  torch::Device device_;
};

}  // namespace tb

#endif  // TIMEBALANCE_SSL_PRETRAIN_TRAINER_H_
