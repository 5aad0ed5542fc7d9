#include "configs/config_loader.h"

#include "absl/strings/str_cat.h"
#include "backbones/backbone.h"
#include "configs/pipeline_config.h"
#include "core/config_check.h"
#include "core/file_util.h"
#include "core/records.h"
#include "core/status_macros.h"
#include "datasets/clip_ops.h"
#include "datasets/views.h"
#include "train/api/trainer.h"

namespace tb {
namespace {

void ValidateDataset(const DatasetConfig& d, FieldChecker* c) {
  c->Merge(SetOneofField(d, "format", c->path()).status());
  if (d.has_ucf101()) {
    c->RequireSet(!d.ucf101().root().empty(), "ucf101.root",
                  "the folder with the class folders of videos");
    c->Require(d.ucf101().split() >= 1 && d.ucf101().split() <= 3, "ucf101.split",
               d.ucf101().split(), "must be 1, 2 or 3");
  }
  if (d.has_manifest()) {
    c->RequireSet(!d.manifest().path().empty(), "manifest.path",
                  "the manifest written by tools/prepare_dataset");
  }
  c->Merge(ValidateAugmentation(d.augmentation(), c->Path("augmentation")));
  c->Require(d.labeled_fraction() > 0 && d.labeled_fraction() <= 1, "labeled_fraction",
             d.labeled_fraction(), "must be in (0, 1]");
  const ClipSampling& clip = d.clip();
  c->Require(clip.num_frames() >= 1 && clip.num_frames() <= 512, "clip.num_frames",
             clip.num_frames(), "must be in [1, 512]");
  c->Require(clip.stride() >= 1 && clip.stride() <= 64, "clip.stride", clip.stride(),
             "must be in [1, 64]");
  c->Require(clip.decode_short_side() >= 8 && clip.decode_short_side() <= 4096,
             "clip.decode_short_side", clip.decode_short_side(), "must be in [8, 4096]");
  c->Require(clip.crop_size() >= 8 && clip.crop_size() <= clip.decode_short_side(),
             "clip.crop_size", clip.crop_size(), "must be in [8, dataset.clip.decode_short_side]");
  c->Require(clip.mean_size() == 3, "clip.mean", clip.mean_size(),
             "needs 3 values (one per RGB channel)");
  c->Require(clip.std_size() == 3, "clip.std", clip.std_size(),
             "needs 3 values (one per RGB channel)");
  for (int i = 0; i < clip.std_size(); ++i) {
    c->Require(clip.std(i) > 0, absl::StrCat("clip.std[", i, "]"), clip.std(i), "must be > 0");
  }
  const Augmentation& a = d.augmentation();
  c->Require(a.min_crop_scale() > 0 && a.min_crop_scale() <= a.max_crop_scale(),
             "augmentation.min_crop_scale", a.min_crop_scale(), "must be in (0, max_crop_scale]");
  c->Require(a.max_crop_scale() <= 1, "augmentation.max_crop_scale", a.max_crop_scale(),
             "must be <= 1");
  c->Require(a.min_aspect_ratio() > 0 && a.min_aspect_ratio() <= a.max_aspect_ratio(),
             "augmentation.min_aspect_ratio", a.min_aspect_ratio(),
             "must be in (0, max_aspect_ratio]");
  c->Require(a.flip_probability() >= 0 && a.flip_probability() <= 1,
             "augmentation.flip_probability", a.flip_probability(), "must be in [0, 1]");
  c->Require(d.loader().num_workers() >= 1 && d.loader().num_workers() <= 64,
             "loader.num_workers", d.loader().num_workers(), "must be in [1, 64]");
  c->Require(d.loader().prefetch_batches() >= 1, "loader.prefetch_batches",
             d.loader().prefetch_batches(), "must be >= 1");
}

void ValidateOptimizer(const OptimizerConfig& o, FieldChecker* c) {
  c->Merge(SetOneofField(o, "kind", c->path()).status());
  if (o.has_adam()) {
    const AdamOptions& a = o.adam();
    c->Require(a.lr() > 0, "adam.lr", a.lr(), "must be > 0");
    c->Require(a.beta1() >= 0 && a.beta1() < 1, "adam.beta1", a.beta1(), "must be in [0, 1)");
    c->Require(a.beta2() >= 0 && a.beta2() < 1, "adam.beta2", a.beta2(), "must be in [0, 1)");
    c->Require(a.weight_decay() >= 0, "adam.weight_decay", a.weight_decay(), "must be >= 0");
    c->Require(!(a.fused() && a.decoupled()), "adam.fused", a.fused(),
               "is only available for Adam, not with adam.decoupled (AdamW)");
  }
  if (o.has_sgd()) {
    const SgdOptions& s = o.sgd();
    c->Require(s.lr() > 0, "sgd.lr", s.lr(), "must be > 0");
    c->Require(s.momentum() >= 0 && s.momentum() < 1, "sgd.momentum", s.momentum(),
               "must be in [0, 1)");
    c->Require(s.weight_decay() >= 0, "sgd.weight_decay", s.weight_decay(), "must be >= 0");
  }
}

void ValidateSchedule(const ScheduleConfig& s, FieldChecker* c) {
  c->Require(s.steps() > 0, "steps", s.steps(), "must be > 0 (training length)");
  c->Require(s.warmup_steps() >= 0 && s.warmup_steps() <= s.steps(), "warmup_steps",
             s.warmup_steps(), "must be in [0, schedule.steps]");
  c->Merge(SetOneofField(s, "decay", c->path()).status());
  if (s.has_cosine()) {
    c->Require(s.cosine().final_fraction() >= 0 && s.cosine().final_fraction() <= 1,
               "cosine.final_fraction", s.cosine().final_fraction(), "must be in [0, 1]");
  }
  if (s.has_step()) {
    c->Require(s.step().factor() > 0, "step.factor", s.step().factor(), "must be > 0");
  }
  c->Require(s.checkpoint_every() > 0, "checkpoint_every", s.checkpoint_every(), "must be > 0");
  c->Require(s.keep_checkpoints() >= 1, "keep_checkpoints", s.keep_checkpoints(),
             "must be >= 1");
  c->Require(s.log_every() > 0, "log_every", s.log_every(), "must be > 0");
}

void ValidateTrainerConfig(const ExperimentConfig& e, FieldChecker* c) {
  const TrainerConfig& t = e.trainer();
  c->Require(t.labeled_batch_size() >= 1, "labeled_batch_size", t.labeled_batch_size(),
             "must be >= 1");
  c->Require(t.unlabeled_batch_size() >= 0, "unlabeled_batch_size", t.unlabeled_batch_size(),
             "must be >= 0 (0 = labeled_batch_size)");
  c->Require(t.max_grad_norm() >= 0, "max_grad_norm", t.max_grad_norm(), "must be >= 0");
  c->Require(t.skip_nonfinite_steps() >= 0, "skip_nonfinite_steps", t.skip_nonfinite_steps(),
             "must be >= 0");
  if (!c->ok()) return;
  TrainerScope scope;
  scope.path = c->path();
  scope.backbone = e.backbone();
  scope.dataset = e.dataset();
  c->Merge(ValidateTrainer(t, scope));
}

void ValidateEvaluation(const ExperimentConfig& e, FieldChecker* c) {
  const EvaluationConfig& v = e.evaluation();
  c->Require(v.num_clips() >= 1, "evaluation.num_clips", v.num_clips(), "must be >= 1");
  c->Require(v.crop_fraction() > 0 && v.crop_fraction() <= 1, "evaluation.crop_fraction",
             v.crop_fraction(), "must be in (0, 1]");
  c->Require(v.batch_size() >= 1, "evaluation.batch_size", v.batch_size(), "must be >= 1");
  const PreciseBnConfig& bn = v.precise_bn();
  c->Require(bn.num_batches() >= 0, "evaluation.precise_bn.num_batches", bn.num_batches(),
             "must be >= 0 (0 = off; unset = the trainer's reference default)");
  c->Require(bn.batch_size() >= 0, "evaluation.precise_bn.batch_size", bn.batch_size(),
             "must be >= 0 (0 = trainer.labeled_batch_size)");
  if (bn.has_sampler()) {
    c->Merge(ValidateSampler(bn.sampler(), c->Path("evaluation.precise_bn.sampler")));
  }
  const RepresentationEvalConfig& r = e.representation_eval();
  c->Require(r.num_clips() >= 2, "representation_eval.num_clips", r.num_clips(),
             "must be >= 2 (the temporal-similarity diagnostic compares clips)");
  c->Require(r.crop_fraction() > 0 && r.crop_fraction() <= 1, "representation_eval.crop_fraction",
             r.crop_fraction(), "must be in (0, 1]");
  c->Require(r.knn_k() >= 1, "representation_eval.knn_k", r.knn_k(), "must be >= 1");
  c->Require(r.knn_temperature() > 0, "representation_eval.knn_temperature",
             r.knn_temperature(), "must be > 0");
  c->Require(r.probe_steps() >= 0, "representation_eval.probe_steps", r.probe_steps(),
             "must be >= 0 (0 = no linear probe)");
}

}  // namespace

absl::StatusOr<ExperimentConfig> ParseExperimentText(const std::string& text,
                                                     const std::string& source) {
  ExperimentConfig config;
  RETURN_IF_ERROR(ParseTextProto(text, source, &config));
  return config;
}

void ResolveDefaults(ExperimentConfig* config) {
  ResolveDatasetDefaults(config->mutable_dataset());
  // Materialise every sub-message so the written config lists all defaults.
  config->mutable_backbone();
  config->mutable_trainer();
  config->mutable_evaluation();
  ScheduleConfig* s = config->mutable_schedule();
  if (s->decay_case() == ScheduleConfig::DECAY_NOT_SET) s->mutable_cosine();
}

absl::Status ValidateExperimentConfig(const ExperimentConfig& e, const std::string& path) {
  FieldChecker c(path);
  c.RequireSet(e.has_dataset(), "dataset", "which videos to train and test on");
  {
    FieldChecker d(c.Path("dataset"));
    ValidateDataset(e.dataset(), &d);
    c.Merge(d.status());
  }
  if (c.ok()) c.Merge(ValidateBackbone(e.backbone(), c.Path("backbone")));
  if (c.ok()) {
    FieldChecker t(c.Path("trainer"));
    ValidateTrainerConfig(e, &t);
    c.Merge(t.status());
  }
  {
    FieldChecker o(c.Path("optimizer"));
    ValidateOptimizer(e.optimizer(), &o);
    c.Merge(o.status());
    FieldChecker s(c.Path("schedule"));
    ValidateSchedule(e.schedule(), &s);
    c.Merge(s.status());
  }
  ValidateEvaluation(e, &c);
  c.RequireSet(!e.run_dir().empty(), "run_dir", "set it in the config or with --run_dir");
  const std::string& dev = e.device();
  const bool device_ok = dev == "cpu" || dev == "cuda" || dev.rfind("cuda:", 0) == 0;
  c.Require(device_ok, "device", "\"" + dev + "\"", "must be \"cpu\", \"cuda\" or \"cuda:N\"");
  c.Require(e.precision() != ExperimentConfig::FP16 || dev.rfind("cuda", 0) == 0, "precision",
            "FP16", "needs a CUDA device (use BF16 on CPU)");
  c.Require(e.num_threads() >= 0, "num_threads", e.num_threads(), "must be >= 0 (0 = all cores)");
  return c.status();
}

absl::StatusOr<ExperimentConfig> LoadExperimentConfig(const std::string& path,
                                                      const std::vector<std::string>& overrides) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::NotFoundError("config file not found or unreadable: " + path);
  }
  ASSIGN_OR_RETURN(ExperimentConfig config, ParseExperimentText(*text, path));
  for (size_t i = 0; i < overrides.size(); ++i) {
    ASSIGN_OR_RETURN(ExperimentConfig fragment,
                     ParseExperimentText(overrides[i], absl::StrCat("--override #", i + 1)));
    config.MergeFrom(fragment);
  }
  ResolveDefaults(&config);
  ExperimentConfig base = config;
  base.clear_timebalance();
  RETURN_IF_ERROR(ValidateExperimentConfig(base));
  if (config.has_timebalance()) RETURN_IF_ERROR(ValidatePipelineConfig(config));
  return config;
}

Precision ExperimentPrecision(const ExperimentConfig& config) {
  switch (config.precision()) {
    case ExperimentConfig::BF16:
      return Precision::kBf16;
    case ExperimentConfig::FP16:
      return Precision::kFp16;
    case ExperimentConfig::FP32:
      break;
  }
  return Precision::kFp32;
}

std::string ExperimentToText(const ExperimentConfig& config) { return ToTextProto(config); }

}  // namespace tb
