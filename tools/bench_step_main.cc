// bench_step: speed of TimeBalance's student training step on this machine:
// student forward + backward + Adam step on labeled + unlabeled clips, and
// the forward passes of both frozen teachers on the same clips. Models are
// built from the config's backbone (random weights; speed does not depend on
// them), clips are random tensors of the config's clip geometry (no data
// loading), batch sizes from the distillation stage of a pipeline config (or
// the experiment's trainer). Prints median clips/s (student clips per
// second) for fp32 and bf16 autocast (student and teachers). The teachers
// run as the trainer runs them (TimeBalanceOptions: folded by default; set
// fold_teachers, teacher_channels_last, teacher_precision by --override).
// With --peer, the Python peer (tools/bench/peer_step.py) runs right after
// each precision with the same shapes and threads, and the ratio is printed.
//
//   bazel run -c opt //tools:bench_step -- --config=configs/X.pbtxt
//       [--override=...] [--num_classes=101] [--peer=tools/bench/peer_step.py]
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <gflags/gflags.h>
#include <torch/optim/adam.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backbones/backbone.h"
#include "configs/config_loader.h"
#include "core/autocast.h"
#include "core/threads.h"
#include "semisup/timebalance_trainer.h"
#include "train/fused_adam.h"
#include "core/cli.h"
#include "core/peer_process.h"
#include "configs/pipeline_config.h"

DEFINE_string(config, "", "Experiment or TimeBalance pipeline config. Required.");
DEFINE_string(override, "", "Text-proto fragment merged into the config.");
DEFINE_int32(num_classes, 101, "Classifier outputs (no dataset is read).");
DEFINE_int32(iters, 5, "Timed steps per precision (the median is printed).");
DEFINE_int32(warmup, 2, "Untimed steps before timing.");
DEFINE_bool(fused_adam, false,
            "Step with train/fused_adam.h (AdamOptions.fused) instead of torch::optim::Adam; "
            "the peer then uses torch.optim.Adam(foreach=True), its fastest CPU Adam.");
DEFINE_int32(threads, 0, "LibTorch intra-op threads (0 = all cores).");
DEFINE_string(precisions, "fp32,bf16", "Comma-separated: fp32, bf16.");
DEFINE_bool(op_census, false,
            "After timing, run one more step counting its ATen operator calls "
            "(at::RecordFunction) and print them per precision: where a small model's step "
            "goes when per-operator overhead dominates.");
DEFINE_string(peer, "",
              "Python peer to time right after each precision, e.g. tools/bench/peer_step.py "
              "(run with /usr/bin/python3, same shapes and threads); adds its clips/s and the "
              "ratio. Needs an r3d18 backbone of width 1.");

namespace {

// Counts the ATen operator calls (at::RecordFunction, FUNCTION scope) of
// every thread while it exists: top-level calls (those not made inside
// another operator, i.e. what the step's code and the autograd engine ask
// for) by name, and all calls.
class OpCensus {
 public:
  OpCensus() {
    Active() = this;
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&OpCensus::OnStart, &OpCensus::OnEnd)
            .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  }
  ~OpCensus() {
    at::removeCallback(handle_);
    Active() = nullptr;
  }
  OpCensus(const OpCensus&) = delete;
  OpCensus& operator=(const OpCensus&) = delete;

  // "N top-level ATen calls (M with nested ones) per step, X us of the
  // median step per top-level call; most frequent: a n, b n, ..."
  std::string Summary(double step_seconds) const {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t top = 0;
    std::vector<std::pair<int64_t, std::string>> order;
    for (const auto& [name, n] : top_level_) {
      top += n;
      order.emplace_back(n, name);
    }
    std::sort(order.rbegin(), order.rend());
    std::string most;
    for (size_t i = 0; i < order.size() && i < 8; ++i) {
      absl::StrAppend(&most, i ? ", " : "", order[i].second, " ", order[i].first);
    }
    return absl::StrFormat(
        "op census of one step: %d top-level ATen calls (%d with nested ones), %.1f us of the "
        "median step per top-level call; most frequent: %s",
        top, all_.load(), top > 0 ? 1e6 * step_seconds / top : 0.0, most);
  }

 private:
  static OpCensus*& Active() {
    static OpCensus* active = nullptr;
    return active;
  }
  static int& Depth() {
    thread_local int depth = 0;
    return depth;
  }
  static std::unique_ptr<at::ObserverContext> OnStart(const at::RecordFunction& fn) {
    OpCensus* self = Active();
    if (self == nullptr) return nullptr;
    self->all_.fetch_add(1);
    if (Depth()++ == 0) {
      std::lock_guard<std::mutex> lock(self->mu_);
      ++self->top_level_[fn.name()];
    }
    return nullptr;
  }
  static void OnEnd(const at::RecordFunction&, at::ObserverContext*) {
    if (Depth() > 0) --Depth();
  }

  at::CallbackHandle handle_;
  mutable std::mutex mu_;
  std::map<std::string, int64_t> top_level_;
  std::atomic<int64_t> all_{0};
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run() {
  if (FLAGS_config.empty()) {
    return tb::ToolError("bench_step", tb::kExitUsageError, "--config is required");
  }
  std::vector<std::string> overrides = {"run_dir: \"/tmp/bench_step\""};
  if (!FLAGS_override.empty()) overrides.push_back(FLAGS_override);
  auto loaded = tb::LoadExperimentConfig(FLAGS_config, overrides);
  if (!loaded.ok()) return tb::ToolError("bench_step", tb::kExitUsageError, loaded.status());
  tb::ExperimentConfig config = *loaded;
  if (config.has_timebalance()) {
    auto distill = tb::PipelineStageConfig(config, tb::kDistill);
    if (!distill.ok()) return tb::ToolError("bench_step", tb::kExitUsageError, distill.status());
    config = *distill;
  }
  config.mutable_backbone()->set_num_classes(FLAGS_num_classes);
  const int threads = tb::ConfigureThreads(FLAGS_threads);
  const int nl = config.trainer().labeled_batch_size();
  const int nu = config.trainer().unlabeled_batch_size() > 0
                     ? config.trainer().unlabeled_batch_size()
                     : nl;
  const tb::ClipSampling& clip = config.dataset().clip();
  torch::manual_seed(0);
  auto created_student = tb::CreateBackbone(config.backbone());
  if (!created_student.ok()) {
    return tb::ToolError("bench_step", tb::kExitUsageError, created_student.status());
  }
  std::shared_ptr<tb::VideoBackbone> student = *created_student;
  tb::ClipBatch labeled, unlabeled;
  labeled.clips = torch::randn({nl, 3, clip.num_frames(), clip.crop_size(), clip.crop_size()});
  labeled.labels = torch::randint(0, FLAGS_num_classes, {nl}, torch::kInt64);
  unlabeled.clips = torch::randn({nu, 3, clip.num_frames(), clip.crop_size(), clip.crop_size()});
  unlabeled.labels = torch::randint(0, FLAGS_num_classes, {nu}, torch::kInt64);
  std::map<std::string, float> scores;
  for (int i = 0; i < nl; ++i) labeled.paths.push_back("l" + std::to_string(i));
  for (int i = 0; i < nu; ++i) unlabeled.paths.push_back("u" + std::to_string(i));
  for (const auto& p : labeled.paths) scores[p] = 0.5f;
  for (const auto& p : unlabeled.paths) scores[p] = 0.5f;

  std::printf("bench_step: %s, student + 2 teachers, %lld parameters each, %d labeled + %d "
              "unlabeled clips of %dx%dx%d per step, %d threads\n",
              config.backbone().ShortDebugString().c_str(),
              static_cast<long long>(tb::CountParameters(*student)), nl, nu, clip.num_frames(),
              clip.crop_size(), clip.crop_size(), threads);
  const bool peer = !FLAGS_peer.empty();
  if (peer) {
    const tb::BackboneConfig& b = config.backbone();
    if (!b.has_r3d18()) {
      return tb::ToolError("bench_step", tb::kExitUsageError,
                           "--peer: the Python peer builds torchvision's r3d_18 (at the config's "
                           "width_multiplier), so the config's backbone must be r3d18, got " +
                               b.ShortDebugString());
    }
  }
  std::printf(
      "| precision | teachers | step s (median) | of which Adam s | student clips/s |%s\n"
      "|---|---|---|---|---|%s\n",
              peer ? " peer clips/s | ratio |" : "", peer ? "---|---|" : "");
  for (const std::string& precision :
       std::vector<std::string>(absl::StrSplit(FLAGS_precisions, ','))) {
    if (precision != "fp32" && precision != "bf16") {
      return tb::ToolError("bench_step", tb::kExitUsageError,
                           "--precisions: unknown precision \"" + precision + "\"");
    }
    const bool bf16 = precision == "bf16";
    tb::TimeBalanceOptions options = config.trainer().timebalance();
    options.set_teacher_bf16(false);
    if (!bf16) {
      options.set_teacher_precision(tb::TimeBalanceOptions::TEACHER_FP32);
    } else if (!options.has_teacher_precision() ||
               options.teacher_precision() == tb::TimeBalanceOptions::TEACHER_FP32) {
      options.set_teacher_precision(tb::TimeBalanceOptions::TEACHER_BF16_AUTOCAST);
    }
    // Fresh teachers per precision: the trainer folds them in place.
    std::vector<std::shared_ptr<tb::VideoBackbone>> teachers;
    for (int t = 0; t < 2; ++t) {
      auto m = tb::CreateBackbone(config.backbone());
      if (!m.ok()) return tb::ToolError("bench_step", tb::kExitUsageError, m.status());
      teachers.push_back(*std::move(m));
    }
    auto created = tb::TimeBalanceTrainer::Create(student, std::move(teachers[0]),
                                                  std::move(teachers[1]), scores, options,
                                                  torch::kCPU);
    if (!created.ok()) return tb::ToolError("bench_step", tb::kExitUsageError, created.status());
    tb::TimeBalanceTrainer& trainer = **created;
    trainer.SetTraining(true);
    std::unique_ptr<torch::optim::Adam> adam =
        FLAGS_fused_adam ? std::make_unique<tb::FusedAdam>(trainer.TrainableParameters(),
                                                           torch::optim::AdamOptions(1e-4))
                         : std::make_unique<torch::optim::Adam>(trainer.TrainableParameters(),
                                                                torch::optim::AdamOptions(1e-4));
    std::vector<double> times;
    std::vector<double> adam_times;  // the optimizer step alone, within each step
    // One training step; adds its time (and its Adam step's) when `timed`.
    auto one_step = [&](bool timed) -> absl::Status {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<tb::StepResult> result;
      {
        tb::AutocastScope autocast(torch::kCPU, bf16 ? tb::Precision::kBf16 : tb::Precision::kFp32);
        result = trainer.Step({&labeled, &unlabeled});
      }
      if (!result.ok()) return result.status();
      adam->zero_grad();
      result->loss.backward();
      const auto adam_start = std::chrono::steady_clock::now();
      adam->step();
      const auto end = std::chrono::steady_clock::now();
      if (timed) {
        times.push_back(std::chrono::duration<double>(end - start).count());
        adam_times.push_back(std::chrono::duration<double>(end - adam_start).count());
      }
      return absl::OkStatus();
    };
    for (int i = 0; i < FLAGS_warmup + FLAGS_iters; ++i) {
      absl::Status done = one_step(i >= FLAGS_warmup);
      if (!done.ok()) return tb::ToolError("bench_step", tb::kExitDataError, done);
    }
    std::string census_line;
    if (FLAGS_op_census) {
      OpCensus census;
      absl::Status done = one_step(false);
      if (!done.ok()) return tb::ToolError("bench_step", tb::kExitDataError, done);
      census_line = census.Summary(Median(times));
    }
    const double clips_per_s = (nl + nu) / Median(times);
    const std::string teacher_mode = absl::StrCat(
        tb::TimeBalanceOptions::TeacherPrecision_Name(options.teacher_precision()),
        FLAGS_fused_adam ? ", fused Adam" : "",
        options.fold_teachers() ? ", folded" : "", options.teacher_channels_last() ? ", cl" : "");
    std::printf("| %s | %s | %.3f | %.3f | %.2f |", precision.c_str(), teacher_mode.c_str(),
                Median(times), Median(adam_times), clips_per_s);
    if (peer) {
      // The peer right after, same shapes and threads: a ratio measured side by side.
      const std::string command = absl::StrFormat(
          "/usr/bin/python3 %s --frames=%d --size=%d --labeled=%d --unlabeled=%d "
          "--num_classes=%d --dropout=%g --labeled_weight=%g --unlabeled_weight=%g --iters=%d "
          "--warmup=%d --threads=%d --precisions=%s --width=%g%s%s",
          FLAGS_peer, clip.num_frames(), clip.crop_size(), nl, nu, FLAGS_num_classes,
          config.backbone().dropout(), options.labeled_weight(), options.unlabeled_weight(),
          FLAGS_iters, FLAGS_warmup, threads, precision,
          config.backbone().r3d18().width_multiplier(),
          config.backbone().r3d18().tclr_temporal_layer4() ? " --tclr_temporal_layer4" : "",
          FLAGS_fused_adam ? " --adam_foreach" : "");
      absl::StatusOr<std::string> line = tb::RunPeer(command, "PEER_STEP");
      absl::StatusOr<double> peer_clips =
          line.ok() ? tb::JsonNumberField(*line, "clips_per_s") : line.status();
      if (!peer_clips.ok()) {
        return tb::ToolError("bench_step", tb::kExitDataError, peer_clips.status());
      }
      std::printf(" %.2f | %.2fx |", *peer_clips, clips_per_s / *peer_clips);
    }
    std::printf("\n");
    if (!census_line.empty()) std::printf("%s: %s\n", precision.c_str(), census_line.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      "bench_step",
      "Measures TimeBalance's student training step (student fwd+bwd, two teachers fwd).\n"
      "  bench_step --config=configs/X.pbtxt [--override='...']",
      &argc, &argv);
  if (init != 0) return init;
  return Run();
}
