#include "semisup/supervised_trainer.h"

#include <torch/nn/functional/loss.h>

#include "core/config_check.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

SupervisedTrainer::SupervisedTrainer(std::shared_ptr<VideoBackbone> model,
                                     const SupervisedOptions& options, torch::Device device)
    : model_(std::move(model)), options_(options), device_(device) {
  model_->to(device_);
}

absl::StatusOr<StepResult> SupervisedTrainer::Step(const StepBatches& batches) {
  return CallTorch("supervised step", [&] {
    const torch::Tensor clips = batches.labeled->clips.to(device_);
    const torch::Tensor labels = batches.labeled->labels.to(device_);
    const torch::Tensor logits = model_->forward(clips);
    namespace F = torch::nn::functional;
    StepResult result;
    result.loss = F::cross_entropy(
        logits, labels, F::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing()));
    const double accuracy =
        logits.argmax(1).eq(labels).to(torch::kFloat).mean().item<double>();
    result.metrics["loss_ce"] = result.loss.item<double>();
    result.metrics["train_top1"] = accuracy;
    return result;
  });
}

std::vector<torch::Tensor> SupervisedTrainer::TrainableParameters() {
  return model_->parameters();
}

std::vector<std::pair<std::string, torch::nn::Module*>> SupervisedTrainer::CheckpointModules() {
  return {{"model", model_.get()}};
}

namespace {

absl::Status ValidateSupervised(const SupervisedOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.Require(o.label_smoothing() >= 0 && o.label_smoothing() < 1, "label_smoothing",
            o.label_smoothing(), "must be in [0, 1)");
  return c.status();
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateSupervised(const SupervisedOptions& o,
                                                          const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> model, context.CreateModel());
  return std::unique_ptr<Trainer>(new SupervisedTrainer(std::move(model), o, context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), supervised, ValidateSupervised, CreateSupervised);

}  // namespace tb
