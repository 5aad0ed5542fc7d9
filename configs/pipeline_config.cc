#include "configs/pipeline_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "configs/config_loader.h"
#include "core/registry.h"
#include "core/status_macros.h"
#include "reweighting/scorer.h"

namespace tb {
namespace {

// The fragment field of a stage and the trainer kind the stage needs.
struct StageSpec {
  const char* fragment;
  const char* trainer;
};

absl::StatusOr<StageSpec> Spec(const std::string& stage) {
  if (stage == kPretrainInvariant) return StageSpec{"pretrain_invariant", "ssl"};
  if (stage == kPretrainDistinctive) return StageSpec{"pretrain_distinctive", "ssl"};
  if (stage == kPretrainCombined) return StageSpec{"pretrain_combined", "ssl"};
  if (stage == kFinetuneInvariant || stage == kFinetuneDistinctive) {
    return StageSpec{"finetune", "supervised"};
  }
  if (stage == kDistill) return StageSpec{"distill", "timebalance"};
  if (stage == kSupervised) return StageSpec{"supervised_baseline", "supervised"};
  return absl::InvalidArgumentError("unknown pipeline stage \"" + stage + "\"");
}

const ExperimentConfig& Fragment(const TimeBalancePipelineConfig& p, const std::string& field) {
  const google::protobuf::FieldDescriptor* f =
      TimeBalancePipelineConfig::descriptor()->FindFieldByName(field);
  CHECK(f != nullptr) << "no pipeline field " << field;
  return static_cast<const ExperimentConfig&>(p.GetReflection()->GetMessage(p, f));
}

}  // namespace

std::vector<std::string> PipelineStages(const ExperimentConfig& config) {
  std::vector<std::string> stages = {kPretrainInvariant, kPretrainDistinctive};
  if (config.timebalance().student_init() == TimeBalancePipelineConfig::COMBINED) {
    stages.push_back(kPretrainCombined);
  }
  for (const char* s : {kScore, kFinetuneInvariant, kFinetuneDistinctive, kDistill}) {
    stages.push_back(s);
  }
  if (config.timebalance().has_supervised_baseline()) stages.push_back(kSupervised);
  return stages;
}

std::string StageConfigPath(const std::string& stage) {
  if (stage == kScore) return "timebalance.score";
  absl::StatusOr<StageSpec> spec = Spec(stage);
  return spec.ok() ? absl::StrCat("timebalance.", spec->fragment) : "timebalance";
}

absl::StatusOr<ExperimentConfig> PipelineStageConfig(const ExperimentConfig& base,
                                                     const std::string& stage) {
  ASSIGN_OR_RETURN(StageSpec spec, Spec(stage));
  ExperimentConfig c = base;
  c.clear_timebalance();
  c.MergeFrom(Fragment(base.timebalance(), spec.fragment));
  c.set_name(absl::StrCat(base.name(), "/", stage));
  c.set_run_dir((std::filesystem::path(base.run_dir()) / "stages" / stage).string());
  const std::string path = StageConfigPath(stage);
  ASSIGN_OR_RETURN(std::string kind,
                   SetOneofField(c.trainer(), "kind", absl::StrCat(path, ".trainer")));
  if (kind != spec.trainer) {
    return absl::InvalidArgumentError(absl::StrCat("config field ", path, ".trainer: stage ",
                                                   stage, " needs trainer { ", spec.trainer,
                                                   " {...} }, got ", kind));
  }
  RETURN_IF_ERROR(ValidateExperimentConfig(c, path));
  return c;
}

absl::Status ValidatePipelineConfig(const ExperimentConfig& config) {
  RETURN_IF_ERROR(ValidateMixingRule(config.timebalance().score(), StageConfigPath(kScore)));
  for (const std::string& stage : PipelineStages(config)) {
    if (stage == kScore) continue;
    RETURN_IF_ERROR(PipelineStageConfig(config, stage).status());
  }
  return absl::OkStatus();
}

}  // namespace tb
