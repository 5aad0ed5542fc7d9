#include "train/api/trainer.h"

#include "core/status_macros.h"

namespace tb {

absl::StatusOr<std::shared_ptr<VideoBackbone>> TrainerContext::CreateModel() const {
  return CreateBackbone(backbone);
}

absl::StatusOr<std::shared_ptr<VideoBackbone>> TrainerContext::CreateModel(
    BackboneConfig config) const {
  if (config.num_classes() == 0) config.set_num_classes(backbone.num_classes());
  return CreateBackbone(config);
}

TrainerRegistryType& TrainerRegistry() {
  static auto* registry = new TrainerRegistryType("trainer", "kind");
  return *registry;
}

absl::Status ValidateTrainer(const google::protobuf::Message& trainer_config,
                             const TrainerScope& scope) {
  return TrainerRegistry().Validate(trainer_config, scope);
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateTrainer(
    const google::protobuf::Message& trainer_config, const TrainerContext& context) {
  ASSIGN_OR_RETURN(std::string kind, SetOneofField(trainer_config, "kind", context.path));
  TrainerContext own = context;
  own.path = JoinConfigPath(context.path, kind);
  return TrainerRegistry().Create(trainer_config, own);
}

}  // namespace tb
