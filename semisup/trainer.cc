#include "semisup/trainer.h"

#include "core/status_macros.h"

namespace tb {

TrainerRegistryType& TrainerRegistry() {
  static auto* registry = new TrainerRegistryType("trainer");
  return *registry;
}

absl::StatusOr<std::unique_ptr<Trainer>> CreateTrainer(const ExperimentConfig& config,
                                                       const torch::Device& device) {
  ASSIGN_OR_RETURN(std::string kind, SetOneofField(config.trainer(), "kind", "trainer"));
  return TrainerRegistry().Create(kind, config, device);
}

}  // namespace tb
