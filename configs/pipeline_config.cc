#include "configs/pipeline_config.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>

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

std::vector<std::string> PipelineStageInputs(const ExperimentConfig& config,
                                             const std::string& stage) {
  if (stage == kScore) return {kPretrainInvariant, kPretrainDistinctive};
  if (stage == kFinetuneInvariant) return {kPretrainInvariant};
  if (stage == kFinetuneDistinctive) return {kPretrainDistinctive};
  if (stage != kDistill) return {};
  std::vector<std::string> in = {kScore, kFinetuneInvariant, kFinetuneDistinctive};
  switch (config.timebalance().student_init()) {
    case TimeBalancePipelineConfig::INVARIANT:
      in.push_back(kPretrainInvariant);
      break;
    case TimeBalancePipelineConfig::DISTINCTIVE:
      in.push_back(kPretrainDistinctive);
      break;
    case TimeBalancePipelineConfig::COMBINED:
      in.push_back(kPretrainCombined);
      break;
    default:
      break;
  }
  return in;
}

int PlannedStageThreads(const ExperimentConfig& config, const std::string& stage,
                        int hardware_threads) {
  const int jobs = config.timebalance().parallel_stages();
  if (jobs <= 1) return 0;
  const std::vector<std::string> stages = PipelineStages(config);
  if (std::find(stages.begin(), stages.end(), stage) == stages.end()) return 0;
  const int total = config.num_threads() > 0 ? config.num_threads() : std::max(1, hardware_threads);
  // A final stage (no other stage reads it: distill, supervised) runs last,
  // alone, with every thread; the others share them.
  for (const std::string& other : stages) {
    const std::vector<std::string> in = PipelineStageInputs(config, other);
    if (std::find(in.begin(), in.end(), stage) != in.end()) return std::max(1, total / jobs);
  }
  return total;
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
  const ExperimentConfig& fragment = Fragment(base.timebalance(), spec.fragment);
  c.MergeFrom(fragment);
  if (!fragment.has_num_threads()) {
    const int planned = PlannedStageThreads(
        base, stage, static_cast<int>(std::thread::hardware_concurrency()));
    if (planned > 0) c.set_num_threads(planned);
  }
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
  if (config.timebalance().parallel_stages() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field timebalance.parallel_stages = ", config.timebalance().parallel_stages(),
        ": must be >= 1"));
  }
  RETURN_IF_ERROR(ValidateMixingRule(config.timebalance().score(), StageConfigPath(kScore)));
  for (const std::string& stage : PipelineStages(config)) {
    if (stage == kScore) continue;
    RETURN_IF_ERROR(PipelineStageConfig(config, stage).status());
  }
  return absl::OkStatus();
}

}  // namespace tb
