#include "ssl/pretrain_trainer.h"

#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

SslPretrainTrainer::SslPretrainTrainer(std::shared_ptr<VideoBackbone> backbone,
                                       std::unique_ptr<SslObjective> objective,
                                       torch::Device device)
    : backbone_(std::move(backbone)), objective_(std::move(objective)), device_(device) {
  backbone_->to(device_);
  objective_->to(device_);
}

absl::StatusOr<StepResult> SslPretrainTrainer::Step(const StepBatches& batches) {
  ViewTensors views;
  RETURN_IF_ERROR(CallTorch("moving views to the device", [&] {
    for (const auto& [name, tensor] : batches.labeled->views) views[name] = tensor.to(device_);
  }));
  ASSIGN_OR_RETURN(SslLoss loss, objective_->Loss(*backbone_, views));
  StepResult result;
  result.loss = loss.loss;
  result.metrics = std::move(loss.metrics);
  result.metrics["loss"] = result.loss.item<double>();
  return result;
}

void SslPretrainTrainer::AfterOptimizerStep(int64_t step) {
  objective_->AfterOptimizerStep(*backbone_, step + 1);
}

std::vector<torch::Tensor> SslPretrainTrainer::TrainableParameters() {
  std::vector<torch::Tensor> params;
  for (const auto& p : backbone_->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  for (const auto& p : objective_->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  return params;
}

std::vector<std::pair<std::string, torch::nn::Module*>> SslPretrainTrainer::CheckpointModules() {
  return {{"model", backbone_.get()}, {"objective", objective_.get()}};
}

void SslPretrainTrainer::SetTraining(bool training) {
  backbone_->train(training);
  objective_->train(training);
}

namespace {

absl::StatusOr<std::unique_ptr<Trainer>> MakeSslTrainer(const ExperimentConfig& config,
                                                        const torch::Device& device) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> backbone, CreateBackbone(config.backbone()));
  SslContext context;
  context.backbone = config.backbone();
  context.feature_dim = backbone->feature_dim();
  context.total_steps = config.schedule().steps();
  context.device = device;
  ASSIGN_OR_RETURN(std::unique_ptr<SslObjective> objective,
                   CreateSslObjective(config.trainer().ssl().objective(), context));
  return std::unique_ptr<Trainer>(
      new SslPretrainTrainer(std::move(backbone), std::move(objective), device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), ssl, MakeSslTrainer);

}  // namespace tb
