#include "train/training_loop.h"

#include <chrono>
#include <cstring>
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
#include "backbones/sync_batch_norm.h"
#include "core/autocast.h"
#include "core/checkpoint.h"
#include "core/event_writer.h"
#include "core/format.h"
#include "core/records.h"
#include "core/status_macros.h"
#include "core/torch_status.h"
#include "datasets/views.h"
#include "train/fused_adam.h"
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
  const auto options = torch::optim::AdamOptions(o.lr())
                           .betas({o.beta1(), o.beta2()})
                           .eps(o.eps())
                           .weight_decay(o.weight_decay());
  if (o.fused()) return std::make_unique<FusedAdam>(params, options);
  return std::make_unique<torch::optim::Adam>(params, options);
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
                                    const Trainer& trainer, int64_t first_step,
                                    const LoaderShard& shard) {
  Loaders loaders;
  const int batch_size = config.trainer().labeled_batch_size();
  ASSIGN_OR_RETURN(std::unique_ptr<SamplePlanner> planner,
                   CreateSamplePlanner(trainer.LabeledSampler(), config.dataset()));
  // Global: every rank's clips (a rank loads clips_per_step / world).
  loaders.clips_per_step = static_cast<int64_t>(batch_size) * ClipsPerSample(*planner);
  loaders.labeled = std::make_unique<ClipLoader>(
      trainer.UsesLabels() ? data.labeled : data.train, config.dataset(), batch_size,
      config.seed(), first_step, std::move(planner), SlowVideoOptions(), shard);
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
      first_step, std::move(unlabeled_planner), SlowVideoOptions(), shard);
  return loaders;
}

// Progress of the current log window: averaged metrics, throughput and the
// loaders' wait / decode / augment time, printed, appended to metrics.jsonl
// and written as TensorBoard scalars (events.out.tfevents.* in the run
// directory, with the resolved config as a text summary) every
// schedule.log_every steps.
class ProgressLog {
 public:
  // `collectives` (may be null): the window's metrics are averaged over the
  // ranks, and only rank 0 prints and writes.
  ProgressLog(const ExperimentConfig& config, const Loaders& loaders, int64_t first_step,
              bool quiet, std::unique_ptr<EventWriter> events, Collectives* collectives)
      : quiet_(quiet),
        writes_(collectives == nullptr || collectives->rank() == 0),
        collectives_(collectives),
        events_(std::move(events)),
        total_steps_(config.schedule().steps()),
        first_step_(first_step),
        loaders_(loaders),
        start_(Clock::now()),
        window_start_(start_),
        window_decode_(loaders.decode_seconds()),
        window_augment_(loaders.augment_seconds()) {
    if (writes_) metrics_.open(fs::path(config.run_dir()) / "metrics.jsonl", std::ios::app);
  }

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
    if (IsDistributed(collectives_)) AverageOverRanks();
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
    if (!quiet_ && writes_) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    if (writes_) metrics_ << json << std::flush;
    window_start_ = Clock::now();
    window_decode_ = loaders_.decode_seconds();
    window_augment_ = loaders_.augment_seconds();
    window_wait_ = 0;
    window_steps_ = 0;
    window_sums_.clear();
  }

  double seconds() const { return SecondsSince(start_); }

 private:
  // Replaces the window's metric sums by their mean over the ranks. Every
  // rank runs the same trainer, so the names agree; when the ranks' counts
  // of metrics differ (sum^2 != world * sum of squares, the same verdict on
  // every rank) each keeps its local values.
  void AverageOverRanks() {
    std::vector<double> values;
    for (const auto& entry : window_sums_) values.push_back(entry.second);
    const double n = static_cast<double>(values.size());
    torch::Tensor t = torch::tensor(values, torch::kFloat64);
    torch::Tensor count = torch::tensor(std::vector<double>{n, n * n}, torch::kFloat64);
    collectives_->AllReduceSum({count});
    const double sum = count[0].item<double>(), squares = count[1].item<double>();
    if (sum * sum != collectives_->world_size() * squares) {
      LOG_FIRST_N(WARNING, 1) << "the ranks log different metrics; rank "
                              << collectives_->rank() << " logs its own";
      return;
    }
    if (values.empty()) return;
    collectives_->AllReduceSum({t});
    int64_t i = 0;
    for (auto& entry : window_sums_) {
      entry.second = t[i++].item<double>() / collectives_->world_size();
    }
  }

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
  const bool writes_;
  Collectives* const collectives_;
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
               const torch::Device& device,
               std::shared_ptr<ProcessGroupCollectives> distributed)
      : config_(config),
        data_(data),
        trainer_(trainer),
        device_(device),
        distributed_(IsDistributed(distributed.get()) ? std::move(distributed) : nullptr),
        rank_(distributed_ ? distributed_->rank() : 0),
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
    LoaderShard shard;
    if (distributed_) {
      RETURN_IF_ERROR(StartDistributed());
      shard = {distributed_->rank(), distributed_->world_size()};
    }
    ASSIGN_OR_RETURN(loaders_,
                     MakeLoaders(config_, data_, *trainer_, outcome_.first_step, shard));
    ProgressLog log(config_, loaders_, outcome_.first_step, quiet,
                    rank_ == 0 ? OpenEvents() : nullptr, distributed_.get());
    trainer_->SetTraining(true);
    int64_t step = outcome_.first_step;
    const ScheduleConfig& schedule = config_.schedule();
    while (step < schedule.steps()) {
      ASSIGN_OR_RETURN(const bool stopping, AnyRank(stop != nullptr && stop->load()));
      if (stopping) {
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
    // where the interrupted run left them (each rank its own).
    const std::vector<std::string>& states = contents_.position.rng_states;
    const int world = distributed_ ? distributed_->world_size() : 1;
    if (static_cast<int>(states.size()) == world) {
      RETURN_IF_ERROR(RestoreGlobalRngState(states[rank_]));
    } else if (!states.empty()) {
      LOG(WARNING) << *latest << " holds the random generator states of " << states.size()
                   << " rank(s) and this run has " << world << ": rank " << rank_
                   << " continues with the first one's, so dropout masks after the resume "
                   << "differ from an uninterrupted run";
      RETURN_IF_ERROR(RestoreGlobalRngState(states[0]));
    } else {
      LOG(WARNING) << *latest << " holds no random generator state (written before they were "
                   << "recorded): dropout masks after the resume differ from an uninterrupted "
                   << "run";
    }
    LOG(INFO) << "resumed from " << *latest << " at step " << outcome_.first_step;
    return absl::OkStatus();
  }

  // Every rank starts from rank 0's model at the same step, with
  // cross-rank BatchNorm if configured and gradient averaging armed.
  absl::Status StartDistributed() {
    const DistributedConfig& dc = config_.distributed();
    const int world = distributed_->world_size();
    for (int batch : {config_.trainer().labeled_batch_size(),
                      config_.trainer().unlabeled_batch_size()}) {
      if (batch % world != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "trainer batch size ", batch, " is not a multiple of the ", world,
            " ranks: each rank trains on an equal slice of every batch"));
      }
    }
    return CallTorch("distributed start", [&] {
      // The step every rank restored must agree (a checkpoint written
      // between two ranks' reads would make them differ).
      torch::Tensor steps = torch::tensor(
          std::vector<double>{static_cast<double>(outcome_.first_step),
                              static_cast<double>(outcome_.first_step * outcome_.first_step)},
          torch::kFloat64);
      distributed_->AllReduceSum({steps});
      const double sum = steps[0].item<double>();
      if (sum * sum != world * steps[1].item<double>()) {
        throw std::runtime_error(absl::StrCat(
            "the ranks restored different checkpoints (rank ", rank_, " is at step ",
            outcome_.first_step, "); restart them together"));
      }
      std::vector<torch::Tensor> state;
      for (const auto& [name, module] : contents_.modules) {
        for (const torch::Tensor& p : module->parameters()) state.push_back(p.detach());
        for (const torch::Tensor& b : module->buffers()) state.push_back(b.detach());
      }
      distributed_->Broadcast(state, 0);
      for (const auto& [name, module] : contents_.modules) {
        if (dc.sync_batchnorm()) SetBatchNormCollectives(*module, distributed_);
        SetModuleCollectives(*module, distributed_);  // queues and the like
      }
      gradients_ = std::make_unique<GradientSynchronizer>(
          trainer_->TrainableParameters(), distributed_,
          static_cast<int64_t>(dc.bucket_mib()) << 20);
    });
  }

  // Whether `local` holds on any rank (the same answer on every rank).
  absl::StatusOr<bool> AnyRank(bool local) {
    if (!distributed_) return local;
    return CallTorch("distributed flag", [&] {
      torch::Tensor flag = torch::full({1}, local ? 1.0 : 0.0, torch::kFloat64);
      distributed_->AllReduceSum({flag});
      return flag.item<double>() > 0;
    });
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
    // Every rank skips (or stops) together when one rank's loss is not
    // finite.
    ASSIGN_OR_RETURN(const bool nonfinite_somewhere, AnyRank(!std::isfinite(loss_value)));
    if (nonfinite_somewhere) {
      ASSIGN_OR_RETURN(out.skipped, NonFinite(step, loss_value, result.metrics));
      optimizer_->zero_grad();
      return out;
    }
    bool finite_gradients = true;
    RETURN_IF_ERROR(CallTorch("backward pass", [&] {
      optimizer_->zero_grad();
      if (gradients_) gradients_->Prepare();
      result.loss.backward();
      // Averaged over the ranks: every rank sees the same gradients (and
      // the same verdict on their finiteness).
      if (gradients_) gradients_->Finish();
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

  // Rank 0 writes the checkpoint, with every rank's generator state.
  absl::Status Save(int64_t at_step) {
    contents_.position.step = at_step;
    contents_.position.epoch = at_step / loaders_.labeled->batches_per_epoch();
    contents_.position.rng_states = {CaptureGlobalRngState()};
    if (distributed_) {
      ASSIGN_OR_RETURN(contents_.position.rng_states,
                       GatherStrings(contents_.position.rng_states[0]));
    }
    absl::Status saved = absl::OkStatus();
    if (rank_ == 0) {
      saved = SaveCheckpoint(CheckpointPath(ckpt_dir_, at_step), contents_);
      if (saved.ok()) saved = PruneCheckpoints(ckpt_dir_, config_.schedule().keep_checkpoints());
    }
    if (!distributed_) return saved;
    // The other ranks read the run directory after training (the final
    // checkpoint): they wait for rank 0 here and learn whether it failed.
    ASSIGN_OR_RETURN(bool failed, AnyRank(!saved.ok()));
    if (!saved.ok()) return saved;
    if (failed) {
      return absl::AbortedError(absl::StrCat("rank 0 could not write the checkpoint of step ",
                                             at_step, " (its log says why)"));
    }
    return absl::OkStatus();
  }

  // Every rank's `local` bytes, in rank order.
  absl::StatusOr<std::vector<std::string>> GatherStrings(const std::string& local) {
    return CallTorch("gathering the ranks' generator states", [&] {
      const int world = distributed_->world_size();
      torch::Tensor size = torch::zeros({world}, torch::kInt64);
      size[rank_] = static_cast<int64_t>(local.size());
      distributed_->AllReduceSum({size});
      const int64_t longest = size.max().item<int64_t>();
      torch::Tensor bytes = torch::zeros({1, longest}, torch::kUInt8);
      std::memcpy(bytes.data_ptr<uint8_t>(), local.data(), local.size());
      const torch::Tensor all = distributed_->AllGather(bytes);
      std::vector<std::string> out;
      for (int r = 0; r < world; ++r) {
        const uint8_t* row = all[r].data_ptr<uint8_t>();
        out.emplace_back(reinterpret_cast<const char*>(row),
                         static_cast<size_t>(size[r].item<int64_t>()));
      }
      return out;
    });
  }

  const ExperimentConfig& config_;
  const ExperimentData& data_;
  Trainer* trainer_;
  const torch::Device device_;
  // Null for one process.
  const std::shared_ptr<ProcessGroupCollectives> distributed_;
  const int rank_;
  std::unique_ptr<GradientSynchronizer> gradients_;
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
                                            const std::atomic<bool>* stop, bool quiet,
                                            std::shared_ptr<ProcessGroupCollectives> distributed) {
  TrainingLoop loop(config, data, trainer, device, std::move(distributed));
  return loop.Run(resume, stop, quiet);
}

}  // namespace tb
