#include "train/training_loop.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include <glog/logging.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "configs/config_loader.h"
#include "core/autocast.h"
#include "core/checkpoint.h"
#include "core/event_writer.h"
#include "core/format.h"
#include "core/records.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "train/lr_schedule.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kUnlabeledSeedSalt = 0x5eed0001;

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerConfig& c,
                                                       std::vector<torch::Tensor> params) {
  if (c.has_sgd()) {
    const SgdOptions& o = c.sgd();
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr())
                    .momentum(o.momentum())
                    .weight_decay(o.weight_decay())
                    .nesterov(o.nesterov()));
  }
  const AdamOptions& o = c.adam();
  if (o.decoupled()) {
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(o.lr())
                    .betas({o.beta1(), o.beta2()})
                    .eps(o.eps())
                    .weight_decay(o.weight_decay()));
  }
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(o.lr())
                  .betas({o.beta1(), o.beta2()})
                  .eps(o.eps())
                  .weight_decay(o.weight_decay()));
}

double BaseLearningRate(const OptimizerConfig& c) {
  return c.has_sgd() ? c.sgd().lr() : c.adam().lr();
}

void SetLearningRate(torch::optim::Optimizer* opt, double lr) {
  for (auto& group : opt->param_groups()) group.options().set_lr(lr);
}

// The labeled loader (or, for methods without labels, the loader of every
// training video) and the optional unlabeled one, with their clip counts.
struct Loaders {
  std::unique_ptr<ClipLoader> labeled;
  std::unique_ptr<ClipLoader> unlabeled;
  int64_t clips_per_step = 0;

  double wait_seconds() const {
    return labeled->wait_seconds() + (unlabeled ? unlabeled->wait_seconds() : 0);
  }
  double decode_seconds() const {
    return labeled->decode_seconds() + (unlabeled ? unlabeled->decode_seconds() : 0);
  }
  double augment_seconds() const {
    return labeled->augment_seconds() + (unlabeled ? unlabeled->augment_seconds() : 0);
  }
  int64_t slow_videos() const {
    return labeled->slow_video_count() + (unlabeled ? unlabeled->slow_video_count() : 0);
  }
};

// Clips per sample of a planner's views.
int ClipsPerSample(const SamplePlanner& planner) {
  int clips = 0;
  for (const ViewShape& v : planner.views()) clips += v.clips;
  return clips;
}

absl::StatusOr<Loaders> MakeLoaders(const ExperimentConfig& config, const ExperimentData& data,
                                    const Trainer& trainer, int64_t first_step) {
  Loaders loaders;
  const int batch_size = config.trainer().labeled_batch_size();
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner,
                   CreateSamplePlanner(trainer.LabeledSampler(), config.dataset()));
  loaders.clips_per_step = static_cast<int64_t>(batch_size) * ClipsPerSample(*planner);
  loaders.labeled = std::make_unique<ClipLoader>(
      trainer.UsesLabels() ? data.labeled : data.train, config.dataset(), batch_size,
      config.seed(), first_step, std::move(planner));
  if (!trainer.NeedsUnlabeled() || data.unlabeled.empty()) return loaders;
  const int unlabeled_batch = config.trainer().unlabeled_batch_size() > 0
                                  ? config.trainer().unlabeled_batch_size()
                                  : batch_size;
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> unlabeled_planner,
                   CreateSamplePlanner(trainer.UnlabeledSampler(), config.dataset()));
  loaders.clips_per_step +=
      static_cast<int64_t>(unlabeled_batch) * ClipsPerSample(*unlabeled_planner);
  loaders.unlabeled = std::make_unique<ClipLoader>(
      data.unlabeled, config.dataset(), unlabeled_batch, config.seed() ^ kUnlabeledSeedSalt,
      first_step, std::move(unlabeled_planner));
  return loaders;
}

// Progress of the current log window: averaged metrics, throughput and the
// loaders' wait / decode / augment time, printed, appended to metrics.jsonl
// and written as TensorBoard scalars (events.out.tfevents.* in the run
// directory, with the resolved config as a text summary) every
// schedule.log_every steps.
class ProgressLog {
 public:
  ProgressLog(const ExperimentConfig& config, const Loaders& loaders, int64_t first_step,
              bool quiet, std::unique_ptr<EventWriter> events)
      : quiet_(quiet),
        events_(std::move(events)),
        total_steps_(config.schedule().steps()),
        first_step_(first_step),
        loaders_(loaders),
        metrics_(fs::path(config.run_dir()) / "metrics.jsonl", std::ios::app),
        start_(Clock::now()),
        window_start_(start_),
        window_decode_(loaders.decode_seconds()),
        window_augment_(loaders.augment_seconds()) {}

  // Counts a step skipped for a non-finite loss (reported as
  // nonfinite_steps, the run's total so far).
  void AddSkipped() { ++skipped_; }

  void AddStep(const std::map<std::string, double>& metrics, double wait_seconds) {
    ++window_steps_;
    window_wait_ += wait_seconds;
    for (const auto& [name, value] : metrics) window_sums_[name] += value;
  }

  // Writes the window ending at `step` and starts a new one; `last` gets the
  // window's mean metrics.
  void Flush(int64_t step, double lr, std::map<std::string, double>* last) {
    const double window_seconds = SecondsSince(window_start_);
    const double clips = static_cast<double>(window_steps_) * loaders_.clips_per_step;
    const double rate = clips / std::max(1e-9, window_seconds);
    const double eta = SecondsSince(start_) / (step - first_step_) * (total_steps_ - step);
    std::string line = absl::StrFormat("step %d/%d", step, total_steps_);
    std::string json = absl::StrFormat("{\"step\": %d, \"lr\": %.6g", step, lr);
    last->clear();
    for (const auto& [name, sum] : window_sums_) {
      const double mean = sum / std::max<int64_t>(1, window_steps_);
      (*last)[name] = mean;
      absl::StrAppendFormat(&line, " %s %.4f", name, mean);
      absl::StrAppendFormat(&json, ", %s: %.6g", JsonString(name), mean);
      Scalar("train/" + name, step, mean);
    }
    if (skipped_ > 0) {
      (*last)["nonfinite_steps"] = skipped_;
      absl::StrAppendFormat(&line, " nonfinite_steps %d", skipped_);
      absl::StrAppendFormat(&json, ", \"nonfinite_steps\": %d", skipped_);
      Scalar("train/nonfinite_steps", step, skipped_);
    }
    // Per clip, in worker milliseconds (workers run in parallel with the
    // trainer; only data-wait stalls it).
    const double decode_ms =
        1e3 * (loaders_.decode_seconds() - window_decode_) / std::max(1.0, clips);
    const double augment_ms =
        1e3 * (loaders_.augment_seconds() - window_augment_) / std::max(1.0, clips);
    absl::StrAppendFormat(&line,
                          " lr %.2e clips/s %.1f data-wait %.0f%% decode %.1f ms/clip "
                          "augment %.1f ms/clip eta %s",
                          lr, rate, 100.0 * window_wait_ / std::max(1e-9, window_seconds),
                          decode_ms, augment_ms, FormatDuration(eta));
    const int64_t slow = loaders_.slow_videos();
    if (slow > 0) absl::StrAppendFormat(&line, " slow-videos %d", slow);
    absl::StrAppendFormat(&json,
                          ", \"clips_per_s\": %.3f, \"data_wait_s\": %.3f, "
                          "\"decode_ms_per_clip\": %.3f, \"augment_ms_per_clip\": %.3f, "
                          "\"slow_videos\": %d}\n",
                          rate, window_wait_, decode_ms, augment_ms, slow);
    Scalar("train/lr", step, lr);
    Scalar("loader/clips_per_s", step, rate);
    Scalar("loader/data_wait_share", step, window_wait_ / std::max(1e-9, window_seconds));
    Scalar("loader/decode_ms_per_clip", step, decode_ms);
    Scalar("loader/augment_ms_per_clip", step, augment_ms);
    Scalar("loader/slow_videos", step, static_cast<double>(slow));
    if (events_ != nullptr) {
      const absl::Status flushed = events_->Flush();
      if (!flushed.ok()) EventError(flushed);
    }
    if (!quiet_) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    metrics_ << json << std::flush;
    window_start_ = Clock::now();
    window_decode_ = loaders_.decode_seconds();
    window_augment_ = loaders_.augment_seconds();
    window_wait_ = 0;
    window_steps_ = 0;
    window_sums_.clear();
  }

  double seconds() const { return SecondsSince(start_); }

 private:
  void Scalar(const std::string& tag, int64_t step, double value) {
    if (events_ == nullptr) return;
    const absl::Status added = events_->AddScalar(tag, step, value);
    if (!added.ok()) EventError(added);
  }

  // Event files are a view of metrics.jsonl: a write error is reported once
  // and stops the events, not the run.
  void EventError(const absl::Status& status) {
    LOG(WARNING) << "TensorBoard events stop here: " << status;
    events_.reset();
  }

  const bool quiet_;
  std::unique_ptr<EventWriter> events_;
  int64_t skipped_ = 0;
  const int64_t total_steps_;
  const int64_t first_step_;
  const Loaders& loaders_;
  std::ofstream metrics_;
  const Clock::time_point start_;
  Clock::time_point window_start_;
  double window_decode_, window_augment_;
  double window_wait_ = 0;
  int64_t window_steps_ = 0;
  std::map<std::string, double> window_sums_;
};

// Everything one run of the loop holds: the optimizer, what a checkpoint
// saves, the loaders and the progress log.
class TrainingLoop {
 public:
  TrainingLoop(const ExperimentConfig& config, const ExperimentData& data, Trainer* trainer,
               const torch::Device& device)
      : config_(config),
        data_(data),
        trainer_(trainer),
        device_(device),
        ckpt_dir_(CheckpointDir(config)),
        optimizer_(MakeOptimizer(config.optimizer(), trainer->TrainableParameters())) {
    contents_.modules = trainer_->CheckpointModules();
    contents_.optimizers = {{"optimizer", optimizer_.get()}};
    contents_.position.seed = config.seed();
    contents_.position.config_text = ExperimentToText(config);
  }

  absl::StatusOr<TrainingOutcome> Run(bool resume, const std::atomic<bool>* stop, bool quiet) {
    std::error_code ec;
    fs::create_directories(ckpt_dir_, ec);
    if (ec) return absl::InternalError("cannot create " + ckpt_dir_ + ": " + ec.message());
    RETURN_IF_ERROR(Restore(resume));
    ASSIGN_OR_RETURN(loaders_, MakeLoaders(config_, data_, *trainer_, outcome_.first_step));
    ProgressLog log(config_, loaders_, outcome_.first_step, quiet, OpenEvents());
    trainer_->SetTraining(true);
    int64_t step = outcome_.first_step;
    const ScheduleConfig& schedule = config_.schedule();
    while (step < schedule.steps()) {
      if (stop != nullptr && stop->load()) {
        RETURN_IF_ERROR(Save(step));
        LOG(INFO) << "interrupted: checkpoint written at step " << step;
        outcome_.interrupted = true;
        break;
      }
      const double lr = LearningRateAt(schedule, BaseLearningRate(config_.optimizer()), step);
      const double wait_before = loaders_.wait_seconds();
      ASSIGN_OR_RETURN(StepOutcome done, TrainStep(step, lr));
      ++step;
      if (done.skipped) {
        log.AddSkipped();
      } else {
        log.AddStep(done.result.metrics, loaders_.wait_seconds() - wait_before);
      }
      if (step % schedule.log_every() == 0 || step == schedule.steps()) {
        log.Flush(step, lr, &outcome_.last_metrics);
      }
      if (step % schedule.checkpoint_every() == 0 || step == schedule.steps()) {
        RETURN_IF_ERROR(Save(step));
      }
    }
    outcome_.steps_done = step;
    outcome_.seconds = log.seconds();
    outcome_.data_wait_seconds = loaders_.wait_seconds();
    const double total_clips =
        static_cast<double>(step - outcome_.first_step) * loaders_.clips_per_step;
    outcome_.clips_per_second = total_clips / std::max(1e-9, outcome_.seconds);
    trainer_->SetTraining(false);
    return outcome_;
  }

 private:
  // Restores the latest checkpoint when resuming; refuses to overwrite a run
  // directory that has checkpoints otherwise.
  absl::Status Restore(bool resume) {
    absl::StatusOr<std::string> latest = LatestCheckpoint(ckpt_dir_);
    if (latest.ok() && !resume) {
      return absl::FailedPreconditionError(absl::StrCat(
          "run directory ", config_.run_dir(), " already has checkpoints (", *latest,
          "); pass --resume to continue it or choose another --run_dir"));
    }
    if (!latest.ok()) {
      if (resume) LOG(INFO) << "--resume: no checkpoint in " << ckpt_dir_ << ", starting at 0";
      return absl::OkStatus();
    }
    const std::string wanted_config = contents_.position.config_text;
    RETURN_IF_ERROR(LoadCheckpoint(*latest, &contents_));
    if (contents_.position.config_text != wanted_config) {
      LOG(WARNING) << "resuming " << *latest << " with a config that differs from the one it "
                   << "was written with; the new config is used from here on";
      contents_.position.config_text = wanted_config;
    }
    outcome_.first_step = contents_.position.step;
    // Dropout masks and every other draw from LibTorch's generators continue
    // where the interrupted run left them.
    if (!contents_.position.rng_states.empty()) {
      RETURN_IF_ERROR(RestoreGlobalRngState(contents_.position.rng_states[0]));
    } else {
      LOG(WARNING) << *latest << " holds no random generator state (written before they were "
                   << "recorded): dropout masks after the resume differ from an uninterrupted "
                   << "run";
    }
    LOG(INFO) << "resumed from " << *latest << " at step " << outcome_.first_step;
    return absl::OkStatus();
  }

  struct StepOutcome {
    StepResult result;
    bool skipped = false;  // non-finite loss, update skipped
  };

  // One optimizer step at learning rate `lr`: the batches, the trainer's
  // loss under the configured autocast, backward, clipping, the update. A
  // non-finite loss is caught before the update (NonFinite).
  absl::StatusOr<StepOutcome> TrainStep(int64_t step, double lr) {
    ASSIGN_OR_RETURN(ClipBatch lb, loaders_.labeled->Next());
    ClipBatch ub;
    StepBatches batches{&lb, nullptr, step};
    if (loaders_.unlabeled) {
      ASSIGN_OR_RETURN(ub, loaders_.unlabeled->Next());
      batches.unlabeled = &ub;
    }
    SetLearningRate(optimizer_.get(), lr);
    absl::StatusOr<StepResult> step_result;
    {
      AutocastScope autocast(device_, ExperimentPrecision(config_));
      step_result = trainer_->Step(batches);
    }
    StepOutcome out;
    ASSIGN_OR_RETURN(out.result, std::move(step_result));
    StepResult& result = out.result;
    const double loss_value = result.loss.item<double>();
    if (!std::isfinite(loss_value)) {
      ASSIGN_OR_RETURN(out.skipped, NonFinite(step, loss_value, result.metrics));
      optimizer_->zero_grad();
      return out;
    }
    bool finite_gradients = true;
    RETURN_IF_ERROR(CallTorch("backward pass", [&] {
      optimizer_->zero_grad();
      result.loss.backward();
      // Gradients are ready here: the place for a data-parallel all-reduce.
      finite_gradients = FiniteGradients();
    }));
    if (!finite_gradients) {
      result.metrics["gradients"] = std::numeric_limits<double>::quiet_NaN();
      ASSIGN_OR_RETURN(out.skipped, NonFinite(step, loss_value, result.metrics));
      optimizer_->zero_grad();
      return out;
    }
    RETURN_IF_ERROR(CallTorch("optimizer step", [&] {
      if (config_.trainer().max_grad_norm() > 0) {
        torch::nn::utils::clip_grad_norm_(trainer_->TrainableParameters(),
                                          config_.trainer().max_grad_norm());
      }
      optimizer_->step();
    }));
    trainer_->AfterOptimizerStep(step);
    return out;
  }

  // Whether every gradient is finite (a finite loss can still overflow in
  // the backward pass; such an update would poison the next checkpoint).
  bool FiniteGradients() {
    std::vector<torch::Tensor> flags;
    for (const torch::Tensor& p : trainer_->TrainableParameters()) {
      if (p.grad().defined()) flags.push_back(torch::isfinite(p.grad()).all());
    }
    return flags.empty() || torch::stack(flags).all().item<bool>();
  }

  // A non-finite loss at `step` (0-based): true when the step may be skipped
  // (trainer.skip_nonfinite_steps), otherwise the error that stops the run,
  // naming the step, the terms and the last good checkpoint.
  absl::StatusOr<bool> NonFinite(int64_t step, double loss,
                                 const std::map<std::string, double>& metrics) {
    if (nonfinite_skipped_ < config_.trainer().skip_nonfinite_steps()) {
      ++nonfinite_skipped_;
      LOG(WARNING) << "step " << step + 1 << ": loss " << loss << ", update skipped ("
                   << nonfinite_skipped_ << " of trainer.skip_nonfinite_steps = "
                   << config_.trainer().skip_nonfinite_steps() << ")";
      return true;
    }
    std::vector<std::string> terms;
    for (const auto& [name, value] : metrics) {
      if (!std::isfinite(value)) terms.push_back(absl::StrCat(name, " = ", value));
    }
    absl::StatusOr<std::string> last = LatestCheckpoint(ckpt_dir_);
    return absl::AbortedError(absl::StrCat(
        "step ", step + 1, ": the loss is ", loss,
        terms.empty() ? "" : absl::StrCat(" (non-finite terms: ", absl::StrJoin(terms, ", "), ")"),
        "; stopped before updating the model. Last good checkpoint: ",
        last.ok() ? *last : "none (no checkpoint written yet)",
        ". Lower optimizer lr or check the data, then rerun with --resume; "
        "trainer.skip_nonfinite_steps tolerates a few such steps"));
  }

  // The run's TensorBoard event file, with the resolved config as text at
  // the first step of this invocation; null (with a warning) when it cannot
  // be created: events are a view of metrics.jsonl, not the record.
  std::unique_ptr<EventWriter> OpenEvents() {
    absl::StatusOr<std::unique_ptr<EventWriter>> events =
        CreateUniqueEventWriter(config_.run_dir(), "");
    if (!events.ok()) {
      LOG(WARNING) << "no TensorBoard events for this run: " << events.status();
      return nullptr;
    }
    const absl::Status text = (*events)->AddText(
        "config", outcome_.first_step, MarkdownPreformatted(contents_.position.config_text));
    if (!text.ok()) LOG(WARNING) << "TensorBoard events: " << text;
    return std::move(*events);
  }

  absl::Status Save(int64_t at_step) {
    contents_.position.step = at_step;
    contents_.position.epoch = at_step / loaders_.labeled->batches_per_epoch();
    contents_.position.rng_states = {CaptureGlobalRngState()};
    RETURN_IF_ERROR(SaveCheckpoint(CheckpointPath(ckpt_dir_, at_step), contents_));
    return PruneCheckpoints(ckpt_dir_, config_.schedule().keep_checkpoints());
  }

  const ExperimentConfig& config_;
  const ExperimentData& data_;
  Trainer* trainer_;
  const torch::Device device_;
  const std::string ckpt_dir_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  CheckpointContents contents_;
  Loaders loaders_;
  TrainingOutcome outcome_;
  int nonfinite_skipped_ = 0;
};

}  // namespace

std::string CheckpointDir(const ExperimentConfig& config) {
  return (fs::path(config.run_dir()) / "checkpoints").string();
}

absl::StatusOr<TrainingOutcome> RunTraining(const ExperimentConfig& config,
                                            const ExperimentData& data, Trainer* trainer,
                                            const torch::Device& device, bool resume,
                                            const std::atomic<bool>* stop, bool quiet) {
  TrainingLoop loop(config, data, trainer, device);
  return loop.Run(resume, stop, quiet);
}

}  // namespace tb
