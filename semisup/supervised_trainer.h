// File: semisup/supervised_trainer.h
//
// The supervised baseline: cross-entropy (with optional label smoothing) on
// labeled clips only. Unlabeled videos are ignored.
//
// Example config:
//   trainer { supervised { label_smoothing: 0.1 } labeled_batch_size: 8 }
#ifndef TIMEBALANCE_SEMISUP_SUPERVISED_TRAINER_H_
#define TIMEBALANCE_SEMISUP_SUPERVISED_TRAINER_H_

#include <memory>

#include "semisup/semisup.pb.h"
#include "train/api/trainer.h"

namespace tb {

class SupervisedTrainer : public Trainer {
 public:
  SupervisedTrainer(std::shared_ptr<VideoBackbone> model, const SupervisedOptions& options,
                    torch::Device device);

  absl::StatusOr<StepResult> Step(const StepBatches& batches) override;
  std::vector<torch::Tensor> TrainableParameters() override;
  std::vector<std::pair<std::string, torch::nn::Module*>> CheckpointModules() override;
  VideoBackbone& EvaluationModel() override { return *model_; }
  void SetTraining(bool training) override { model_->train(training); }

 private:
  std::shared_ptr<VideoBackbone> model_;
  SupervisedOptions options_;
  torch::Device device_;
};

}  // namespace tb

#endif  // TIMEBALANCE_SEMISUP_SUPERVISED_TRAINER_H_
