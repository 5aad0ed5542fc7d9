#include "semisup/training_loop.h"

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
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "semisup/lr_schedule.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kUnlabeledSeedSalt = 0x5eed0001;

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

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace

std::string CheckpointDir(const ExperimentConfig& config) {
  return (fs::path(config.run_dir()) / "checkpoints").string();
}

absl::StatusOr<TrainingOutcome> RunTraining(const ExperimentConfig& config,
                                            const ExperimentData& data, Trainer* trainer,
                                            const torch::Device& device, bool resume,
                                            const std::atomic<bool>* stop) {
  const ScheduleConfig& schedule = config.schedule();
  const std::string ckpt_dir = CheckpointDir(config);
  std::error_code ec;
  fs::create_directories(ckpt_dir, ec);
  if (ec) return absl::InternalError("cannot create " + ckpt_dir + ": " + ec.message());

  std::unique_ptr<torch::optim::Optimizer> optimizer =
      MakeOptimizer(config.optimizer(), trainer->TrainableParameters());
  CheckpointContents contents;
  contents.modules = trainer->CheckpointModules();
  contents.optimizers = {{"optimizer", optimizer.get()}};
  contents.position.seed = config.seed();
  contents.position.config_text = ExperimentToText(config);

  TrainingOutcome outcome;
  absl::StatusOr<std::string> latest = LatestCheckpoint(ckpt_dir);
  if (latest.ok() && !resume) {
    return absl::FailedPreconditionError(
        absl::StrCat("run directory ", config.run_dir(), " already has checkpoints (", *latest,
                     "); pass --resume to continue it or choose another --run_dir"));
  }
  if (latest.ok()) {
    const std::string wanted_config = contents.position.config_text;
    RETURN_IF_ERROR(LoadCheckpoint(*latest, &contents));
    if (contents.position.config_text != wanted_config) {
      LOG(WARNING) << "resuming " << *latest << " with a config that differs from the one it "
                   << "was written with; the new config is used from here on";
      contents.position.config_text = wanted_config;
    }
    outcome.first_step = contents.position.step;
    LOG(INFO) << "resumed from " << *latest << " at step " << outcome.first_step;
  } else if (resume) {
    LOG(INFO) << "--resume: no checkpoint in " << ckpt_dir << ", starting from step 0";
  }

  const int batch_size = config.trainer().labeled_batch_size();
  int64_t step = outcome.first_step;
  std::vector<LabeledVideo> train_videos =
      trainer->UsesLabels() ? data.labeled : data.train;
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner,
                   CreateSamplePlanner(trainer->LabeledSampler(), config.dataset()));
  int clips_per_sample = 0;
  for (const ViewShape& v : planner->views()) clips_per_sample += v.clips;
  ClipLoader labeled(std::move(train_videos), config.dataset(), batch_size, config.seed(), step,
                     std::move(planner));
  const int unlabeled_batch = config.trainer().unlabeled_batch_size() > 0
                                  ? config.trainer().unlabeled_batch_size()
                                  : batch_size;
  std::unique_ptr<ClipLoader> unlabeled;
  int unlabeled_clips_per_sample = 0;
  if (trainer->NeedsUnlabeled() && !data.unlabeled.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> unlabeled_planner,
                     CreateSamplePlanner(trainer->UnlabeledSampler(), config.dataset()));
    for (const ViewShape& v : unlabeled_planner->views()) unlabeled_clips_per_sample += v.clips;
    unlabeled = std::make_unique<ClipLoader>(data.unlabeled, config.dataset(), unlabeled_batch,
                                             config.seed() ^ kUnlabeledSeedSalt, step,
                                             std::move(unlabeled_planner));
  }

  const int64_t clips_per_step =
      static_cast<int64_t>(batch_size) * clips_per_sample +
      (unlabeled ? static_cast<int64_t>(unlabeled_batch) * unlabeled_clips_per_sample : 0);
  std::ofstream metrics_log(fs::path(config.run_dir()) / "metrics.jsonl", std::ios::app);
  const auto start = std::chrono::steady_clock::now();
  auto window_start = start;
  double window_wait = 0;
  // Worker time spent decoding and augmenting (summed over workers and
  // loaders), at the start of the log window.
  auto decode_total = [&] {
    return labeled.decode_seconds() + (unlabeled ? unlabeled->decode_seconds() : 0);
  };
  auto augment_total = [&] {
    return labeled.augment_seconds() + (unlabeled ? unlabeled->augment_seconds() : 0);
  };
  double window_decode = decode_total(), window_augment = augment_total();
  int64_t window_steps = 0;
  std::map<std::string, double> window_sums;
  const double base_lr = BaseLearningRate(config.optimizer());
  const Precision precision = ExperimentPrecision(config);
  trainer->SetTraining(true);

  auto save = [&](int64_t at_step) -> absl::Status {
    contents.position.step = at_step;
    contents.position.epoch = at_step / labeled.batches_per_epoch();
    RETURN_IF_ERROR(SaveCheckpoint(CheckpointPath(ckpt_dir, at_step), contents));
    return PruneCheckpoints(ckpt_dir, schedule.keep_checkpoints());
  };

  while (step < schedule.steps()) {
    if (stop != nullptr && stop->load()) {
      RETURN_IF_ERROR(save(step));
      LOG(INFO) << "interrupted: checkpoint written at step " << step;
      outcome.interrupted = true;
      break;
    }
    const double wait_before = labeled.wait_seconds() + (unlabeled ? unlabeled->wait_seconds() : 0);
    ASSIGN_OR_RETURN(ClipBatch lb, labeled.Next());
    ClipBatch ub;
    StepBatches batches{&lb, nullptr, step};
    if (unlabeled) {
      ASSIGN_OR_RETURN(ub, unlabeled->Next());
      batches.unlabeled = &ub;
    }
    window_wait +=
        labeled.wait_seconds() + (unlabeled ? unlabeled->wait_seconds() : 0) - wait_before;

    const double lr = LearningRateAt(schedule, base_lr, step);
    SetLearningRate(optimizer.get(), lr);
    absl::StatusOr<StepResult> step_result;
    {
      AutocastScope autocast(device, precision);
      step_result = trainer->Step(batches);
    }
    ASSIGN_OR_RETURN(StepResult result, std::move(step_result));
    RETURN_IF_ERROR(CallTorch("optimizer step", [&] {
      optimizer->zero_grad();
      result.loss.backward();
      // Gradients are ready here: the place for a data-parallel all-reduce.
      if (config.trainer().max_grad_norm() > 0) {
        torch::nn::utils::clip_grad_norm_(trainer->TrainableParameters(),
                                          config.trainer().max_grad_norm());
      }
      optimizer->step();
    }));
    trainer->AfterOptimizerStep(step);
    ++step;
    ++window_steps;
    const double loss_value = result.loss.item<double>();
    if (!std::isfinite(loss_value)) {
      return absl::InternalError(absl::StrCat("loss became ", loss_value, " at step ", step,
                                              "; lower optimizer lr or check the data"));
    }
    for (const auto& [name, value] : result.metrics) window_sums[name] += value;

    if (step % schedule.log_every() == 0 || step == schedule.steps()) {
      const auto now = std::chrono::steady_clock::now();
      const double window_seconds = std::chrono::duration<double>(now - window_start).count();
      const double elapsed = std::chrono::duration<double>(now - start).count();
      const double clips = static_cast<double>(window_steps) * clips_per_step;
      const double rate = clips / std::max(1e-9, window_seconds);
      const double eta = elapsed / (step - outcome.first_step) * (schedule.steps() - step);
      std::string line = absl::StrFormat("step %d/%d", step, schedule.steps());
      std::string json = absl::StrFormat("{\"step\": %d, \"lr\": %.6g", step, lr);
      outcome.last_metrics.clear();
      for (const auto& [name, sum] : window_sums) {
        const double mean = sum / window_steps;
        outcome.last_metrics[name] = mean;
        absl::StrAppendFormat(&line, " %s %.4f", name, mean);
        absl::StrAppendFormat(&json, ", \"%s\": %.6g", name, mean);
      }
      // Per clip, in worker milliseconds (workers run in parallel with the
      // trainer; only data-wait stalls it).
      const double decode_ms = 1e3 * (decode_total() - window_decode) / std::max(1.0, clips);
      const double augment_ms = 1e3 * (augment_total() - window_augment) / std::max(1.0, clips);
      absl::StrAppendFormat(&line,
                            " lr %.2e clips/s %.1f data-wait %.0f%% decode %.1f ms/clip "
                            "augment %.1f ms/clip eta %s",
                            lr, rate, 100.0 * window_wait / std::max(1e-9, window_seconds),
                            decode_ms, augment_ms, FormatDuration(eta));
      absl::StrAppendFormat(&json,
                            ", \"clips_per_s\": %.3f, \"data_wait_s\": %.3f, "
                            "\"decode_ms_per_clip\": %.3f, \"augment_ms_per_clip\": %.3f}\n",
                            rate, window_wait, decode_ms, augment_ms);
      window_decode = decode_total();
      window_augment = augment_total();
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
      metrics_log << json << std::flush;
      window_start = now;
      window_wait = 0;
      window_steps = 0;
      window_sums.clear();
    }
    if (step % schedule.checkpoint_every() == 0 || step == schedule.steps()) {
      RETURN_IF_ERROR(save(step));
    }
  }
  outcome.steps_done = step;
  outcome.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  outcome.data_wait_seconds = labeled.wait_seconds() + (unlabeled ? unlabeled->wait_seconds() : 0);
  const double total_clips = static_cast<double>(step - outcome.first_step) * clips_per_step;
  outcome.clips_per_second = total_clips / std::max(1e-9, outcome.seconds);
  trainer->SetTraining(false);
  return outcome;
}

}  // namespace tb
