#include "configs/config_loader.h"

#include <fstream>
#include <sstream>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/registry.h"
#include "core/status_macros.h"
#include "datasets/clip_ops.h"

namespace tb {
namespace {

// Collects the parser's first error as "source:line:col: message".
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit FirstErrorCollector(std::string source) : source_(std::move(source)) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message);
    }
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string source_;
  std::string first_;
};

// Accumulates validation failures; the first one is reported.
class Checker {
 public:
  template <typename T>
  void Require(bool ok, const std::string& field, const T& value, const std::string& rule) {
    if (!ok && status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("config field ", field, " = ", value, ": ", rule));
    }
  }
  void RequireSet(bool set, const std::string& field, const std::string& what) {
    if (!set && status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("config field ", field, " is required: ", what));
    }
  }
  void Merge(const absl::Status& s) {
    if (!s.ok() && status_.ok()) status_ = absl::InvalidArgumentError(s.message());
  }
  absl::Status status() const { return status_; }

 private:
  absl::Status status_;
};

void ValidateDataset(const DatasetConfig& d, Checker* c) {
  c->Merge(SetOneofField(d, "format", "config field dataset").status());
  if (d.has_ucf101()) {
    c->RequireSet(!d.ucf101().root().empty(), "dataset.ucf101.root",
                  "the folder with the class folders of videos");
    c->Require(d.ucf101().split() >= 1 && d.ucf101().split() <= 3, "dataset.ucf101.split",
               d.ucf101().split(), "must be 1, 2 or 3");
  }
  if (d.has_manifest()) {
    c->RequireSet(!d.manifest().path().empty(), "dataset.manifest.path",
                  "the manifest written by tools/prepare_dataset");
  }
  c->Merge(ValidateAugmentation(d.augmentation(), "dataset.augmentation"));
  c->Require(d.labeled_fraction() > 0 && d.labeled_fraction() <= 1,
             "dataset.labeled_fraction", d.labeled_fraction(), "must be in (0, 1]");
  const ClipSampling& clip = d.clip();
  c->Require(clip.num_frames() >= 1 && clip.num_frames() <= 512, "dataset.clip.num_frames",
             clip.num_frames(), "must be in [1, 512]");
  c->Require(clip.stride() >= 1 && clip.stride() <= 64, "dataset.clip.stride", clip.stride(),
             "must be in [1, 64]");
  c->Require(clip.decode_short_side() >= 8 && clip.decode_short_side() <= 4096,
             "dataset.clip.decode_short_side", clip.decode_short_side(),
             "must be in [8, 4096]");
  c->Require(clip.crop_size() >= 8 && clip.crop_size() <= clip.decode_short_side(),
             "dataset.clip.crop_size", clip.crop_size(),
             "must be in [8, dataset.clip.decode_short_side]");
  c->Require(clip.mean_size() == 3, "dataset.clip.mean", clip.mean_size(),
             "needs 3 values (one per RGB channel)");
  c->Require(clip.std_size() == 3, "dataset.clip.std", clip.std_size(),
             "needs 3 values (one per RGB channel)");
  for (int i = 0; i < clip.std_size(); ++i) {
    c->Require(clip.std(i) > 0, absl::StrCat("dataset.clip.std[", i, "]"), clip.std(i),
               "must be > 0");
  }
  const Augmentation& a = d.augmentation();
  c->Require(a.min_crop_scale() > 0 && a.min_crop_scale() <= a.max_crop_scale(),
             "dataset.augmentation.min_crop_scale", a.min_crop_scale(),
             "must be in (0, max_crop_scale]");
  c->Require(a.max_crop_scale() <= 1, "dataset.augmentation.max_crop_scale",
             a.max_crop_scale(), "must be <= 1");
  c->Require(a.min_aspect_ratio() > 0 && a.min_aspect_ratio() <= a.max_aspect_ratio(),
             "dataset.augmentation.min_aspect_ratio", a.min_aspect_ratio(),
             "must be in (0, max_aspect_ratio]");
  c->Require(a.flip_probability() >= 0 && a.flip_probability() <= 1,
             "dataset.augmentation.flip_probability", a.flip_probability(),
             "must be in [0, 1]");
  c->Require(d.loader().num_workers() >= 1 && d.loader().num_workers() <= 64,
             "dataset.loader.num_workers", d.loader().num_workers(), "must be in [1, 64]");
  c->Require(d.loader().prefetch_batches() >= 1, "dataset.loader.prefetch_batches",
             d.loader().prefetch_batches(), "must be >= 1");
}

void ValidateOptimization(const ExperimentConfig& e, Checker* c) {
  c->Merge(SetOneofField(e.optimizer(), "kind", "config field optimizer").status());
  if (e.optimizer().has_adam()) {
    const AdamOptions& a = e.optimizer().adam();
    c->Require(a.lr() > 0, "optimizer.adam.lr", a.lr(), "must be > 0");
    c->Require(a.beta1() >= 0 && a.beta1() < 1, "optimizer.adam.beta1", a.beta1(),
               "must be in [0, 1)");
    c->Require(a.beta2() >= 0 && a.beta2() < 1, "optimizer.adam.beta2", a.beta2(),
               "must be in [0, 1)");
    c->Require(a.weight_decay() >= 0, "optimizer.adam.weight_decay", a.weight_decay(),
               "must be >= 0");
  }
  if (e.optimizer().has_sgd()) {
    const SgdOptions& s = e.optimizer().sgd();
    c->Require(s.lr() > 0, "optimizer.sgd.lr", s.lr(), "must be > 0");
    c->Require(s.momentum() >= 0 && s.momentum() < 1, "optimizer.sgd.momentum", s.momentum(),
               "must be in [0, 1)");
    c->Require(s.weight_decay() >= 0, "optimizer.sgd.weight_decay", s.weight_decay(),
               "must be >= 0");
  }
  const ScheduleConfig& s = e.schedule();
  c->Require(s.steps() > 0, "schedule.steps", s.steps(), "must be > 0 (training length)");
  c->Require(s.warmup_steps() >= 0 && s.warmup_steps() <= s.steps(), "schedule.warmup_steps",
             s.warmup_steps(), "must be in [0, schedule.steps]");
  c->Merge(SetOneofField(s, "decay", "config field schedule").status());
  if (s.has_cosine()) {
    c->Require(s.cosine().final_fraction() >= 0 && s.cosine().final_fraction() <= 1,
               "schedule.cosine.final_fraction", s.cosine().final_fraction(),
               "must be in [0, 1]");
  }
  if (s.has_step()) {
    c->Require(s.step().factor() > 0, "schedule.step.factor", s.step().factor(),
               "must be > 0");
  }
  c->Require(s.checkpoint_every() > 0, "schedule.checkpoint_every", s.checkpoint_every(),
             "must be > 0");
  c->Require(s.keep_checkpoints() >= 1, "schedule.keep_checkpoints", s.keep_checkpoints(),
             "must be >= 1");
  c->Require(s.log_every() > 0, "schedule.log_every", s.log_every(), "must be > 0");
}

}  // namespace

absl::StatusOr<ExperimentConfig> ParseExperimentText(const std::string& text,
                                                     const std::string& source) {
  ExperimentConfig config;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(errors.first().empty() ? source + ": cannot parse"
                                                             : errors.first());
  }
  return config;
}

void ResolveDefaults(ExperimentConfig* config) {
  ClipSampling* clip = config->mutable_dataset()->mutable_clip();
  if (clip->mean_size() == 0) {
    for (float m : {0.43216f, 0.394666f, 0.37645f}) clip->add_mean(m);
  }
  if (clip->std_size() == 0) {
    for (float s : {0.22803f, 0.22145f, 0.216989f}) clip->add_std(s);
  }
  // Materialise every sub-message so the written config lists all defaults.
  DatasetConfig* d = config->mutable_dataset();
  d->mutable_augmentation();
  d->mutable_loader();
  config->mutable_backbone();
  config->mutable_trainer();
  config->mutable_evaluation();
  ScheduleConfig* s = config->mutable_schedule();
  if (s->decay_case() == ScheduleConfig::DECAY_NOT_SET) s->mutable_cosine();
}

// The options every semi-supervised method shares (semisup.proto): found by
// type in whichever trainer is set, so a new method gets them checked too.
// (Sampler options are checked when the loader's planner is built.)
void ValidateSemiSupervised(const TrainerConfig& t, Checker* c) {
  const google::protobuf::Reflection* reflection = t.GetReflection();
  const google::protobuf::FieldDescriptor* kind = reflection->GetOneofFieldDescriptor(
      t, TrainerConfig::descriptor()->FindOneofByName("kind"));
  if (kind == nullptr || kind->message_type() == nullptr) return;
  const google::protobuf::Message& options = reflection->GetMessage(t, kind);
  const std::string prefix = "trainer." + kind->name() + ".";
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  options.GetReflection()->ListFields(options, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->message_type() == nullptr || f->is_repeated()) continue;
    const google::protobuf::Message& m = options.GetReflection()->GetMessage(options, f);
    const std::string path = prefix + f->name();
    if (const auto* s = dynamic_cast<const UnlabeledSchedule*>(&m)) {
      c->Require(!s->has_weight() || s->weight() >= 0, path + ".weight", s->weight(),
                 "must be >= 0");
      c->Require(s->warmup_steps() >= 0, path + ".warmup_steps", s->warmup_steps(),
                 "must be >= 0");
      c->Require(s->rampup_steps() >= 0, path + ".rampup_steps", s->rampup_steps(),
                 "must be >= 0");
    } else if (const auto* p = dynamic_cast<const PseudoLabelOptions*>(&m)) {
      c->Require(!p->has_threshold() || (p->threshold() >= 0 && p->threshold() <= 1),
                 path + ".threshold", p->threshold(), "must be in [0, 1]");
    }
  }
}

absl::Status ValidateExperimentConfig(const ExperimentConfig& e) {
  Checker c;
  c.RequireSet(e.has_dataset(), "dataset", "which videos to train and test on");
  ValidateDataset(e.dataset(), &c);
  c.Merge(SetOneofField(e.backbone(), "kind", "config field backbone").status());
  c.Require(e.backbone().num_classes() >= 0, "backbone.num_classes", e.backbone().num_classes(),
            "must be >= 0 (0 = from the dataset)");
  c.Require(e.backbone().dropout() >= 0 && e.backbone().dropout() < 1, "backbone.dropout",
            e.backbone().dropout(), "must be in [0, 1)");
  c.Merge(SetOneofField(e.trainer(), "kind", "config field trainer").status());
  c.Require(e.trainer().labeled_batch_size() >= 1, "trainer.labeled_batch_size",
            e.trainer().labeled_batch_size(), "must be >= 1");
  c.Require(e.trainer().unlabeled_batch_size() >= 0, "trainer.unlabeled_batch_size",
            e.trainer().unlabeled_batch_size(), "must be >= 0 (0 = labeled_batch_size)");
  c.Require(e.trainer().max_grad_norm() >= 0, "trainer.max_grad_norm",
            e.trainer().max_grad_norm(), "must be >= 0");
  if (e.trainer().has_supervised()) {
    const float ls = e.trainer().supervised().label_smoothing();
    c.Require(ls >= 0 && ls < 1, "trainer.supervised.label_smoothing", ls, "must be in [0, 1)");
  }
  ValidateSemiSupervised(e.trainer(), &c);
  ValidateOptimization(e, &c);
  c.Require(e.evaluation().num_clips() >= 1, "evaluation.num_clips", e.evaluation().num_clips(),
            "must be >= 1");
  c.Require(e.evaluation().crop_fraction() > 0 && e.evaluation().crop_fraction() <= 1,
            "evaluation.crop_fraction", e.evaluation().crop_fraction(), "must be in (0, 1]");
  c.Require(e.evaluation().batch_size() >= 1, "evaluation.batch_size",
            e.evaluation().batch_size(), "must be >= 1");
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
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("config file not found or unreadable: " + path);
  std::stringstream text;
  text << in.rdbuf();
  ASSIGN_OR_RETURN(ExperimentConfig config, ParseExperimentText(text.str(), path));
  for (size_t i = 0; i < overrides.size(); ++i) {
    ASSIGN_OR_RETURN(ExperimentConfig fragment,
                     ParseExperimentText(overrides[i], absl::StrCat("--override #", i + 1)));
    config.MergeFrom(fragment);
  }
  ResolveDefaults(&config);
  RETURN_IF_ERROR(ValidateExperimentConfig(config));
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

std::string ExperimentToText(const ExperimentConfig& config) {
  std::string out;
  google::protobuf::TextFormat::Printer printer;
  printer.PrintToString(config, &out);
  return out;
}

}  // namespace tb
