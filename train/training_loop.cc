#include "train/training_loop.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include <glog/logging.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "configs/config_loader.h"
#include "core/autocast.h"
#include "core/checkpoint.h"
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
// loaders' wait / decode / augment time, printed and appended to
// metrics.jsonl every schedule.log_every steps.
class ProgressLog {
 public:
  ProgressLog(const ExperimentConfig& config, const Loaders& loaders, int64_t first_step,
              bool quiet)
      : quiet_(quiet),
        total_steps_(config.schedule().steps()),
        first_step_(first_step),
        loaders_(loaders),
        metrics_(fs::path(config.run_dir()) / "metrics.jsonl", std::ios::app),
        start_(Clock::now()),
        window_start_(start_),
        window_decode_(loaders.decode_seconds()),
        window_augment_(loaders.augment_seconds()) {}

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
      const double mean = sum / window_steps_;
      (*last)[name] = mean;
      absl::StrAppendFormat(&line, " %s %.4f", name, mean);
      absl::StrAppendFormat(&json, ", %s: %.6g", JsonString(name), mean);
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
    absl::StrAppendFormat(&json,
                          ", \"clips_per_s\": %.3f, \"data_wait_s\": %.3f, "
                          "\"decode_ms_per_clip\": %.3f, \"augment_ms_per_clip\": %.3f}\n",
                          rate, window_wait_, decode_ms, augment_ms);
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
  const bool quiet_;
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
    ProgressLog log(config_, loaders_, outcome_.first_step, quiet);
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
      ASSIGN_OR_RETURN(StepResult result, TrainStep(step, lr));
      ++step;
      const double loss_value = result.loss.item<double>();
      if (!std::isfinite(loss_value)) {
        return absl::InternalError(absl::StrCat("loss became ", loss_value, " at step ", step,
                                                "; lower optimizer lr or check the data"));
      }
      log.AddStep(result.metrics, loaders_.wait_seconds() - wait_before);
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
    LOG(INFO) << "resumed from " << *latest << " at step " << outcome_.first_step;
    return absl::OkStatus();
  }

  // One optimizer step at learning rate `lr`: the batches, the trainer's
  // loss under the configured autocast, backward, clipping, the update.
  absl::StatusOr<StepResult> TrainStep(int64_t step, double lr) {
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
    ASSIGN_OR_RETURN(StepResult result, std::move(step_result));
    RETURN_IF_ERROR(CallTorch("optimizer step", [&] {
      optimizer_->zero_grad();
      result.loss.backward();
      // Gradients are ready here: the place for a data-parallel all-reduce.
      if (config_.trainer().max_grad_norm() > 0) {
        torch::nn::utils::clip_grad_norm_(trainer_->TrainableParameters(),
                                          config_.trainer().max_grad_norm());
      }
      optimizer_->step();
    }));
    trainer_->AfterOptimizerStep(step);
    return result;
  }

  absl::Status Save(int64_t at_step) {
    contents_.position.step = at_step;
    contents_.position.epoch = at_step / loaders_.labeled->batches_per_epoch();
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
