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

torch::nn::Module* SslPretrainTrainer::FeatureProjection() {
  for (const auto& child : objective_->named_children()) {
    if (child.key() == "projection") return child.value().get();
  }
  return nullptr;
}

namespace {

absl::Status ValidateSslTrainer(const SslTrainerOptions& o, const TrainerScope& scope) {
  FieldChecker c(scope.path);
  c.RequireSet(o.has_objective(), "objective", "the self-supervised objective to train");
  if (!c.ok()) return c.status();
  return ValidateSslObjective(o.objective(), c.Path("objective"));
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateSslTrainer(const SslTrainerOptions& o,
                                                          const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::shared_ptr<VideoBackbone> backbone, context.CreateModel());
  SslContext ssl;
  ssl.backbone = context.backbone;
  ssl.feature_dim = backbone->feature_dim();
  ssl.total_steps = context.total_steps;
  ssl.steps_per_epoch = context.steps_per_epoch;
  ssl.device = context.device;
  ASSIGN_OR_RETURN(std::unique_ptr<SslObjective> objective,
                   CreateSslObjective(o.objective(), ssl));
  return std::unique_ptr<Trainer>(
      new SslPretrainTrainer(std::move(backbone), std::move(objective), context.device));
}

}  // namespace

TB_REGISTER_COMPONENT(TrainerRegistry(), ssl, ValidateSslTrainer, CreateSslTrainer);

}  // namespace tb
