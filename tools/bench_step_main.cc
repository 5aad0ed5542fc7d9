// bench_step: speed of TimeBalance's student training step on this machine:
// student forward + backward + Adam step on labeled + unlabeled clips, and
// the forward passes of both frozen teachers on the same clips. Models are
// built from the config's backbone (random weights; speed does not depend on
// them), clips are random tensors of the config's clip geometry (no data
// loading), batch sizes from the distillation stage of a pipeline config (or
// the experiment's trainer). Prints median clips/s (student clips per
// second) for fp32 and bf16 autocast (student and teachers).
//
//   bazel run -c opt //tools:bench_step -- --config=configs/X.pbtxt
//       [--override=...] [--num_classes=101]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <torch/optim/adam.h>
#include <torch/torch.h>

#include "absl/strings/str_split.h"
#include "backbones/backbone.h"
#include "configs/config_loader.h"
#include "core/autocast.h"
#include "core/threads.h"
#include "semisup/timebalance_trainer.h"
#include "core/cli.h"
#include "configs/pipeline_config.h"

DEFINE_string(config, "", "Experiment or TimeBalance pipeline config. Required.");
DEFINE_string(override, "", "Text-proto fragment merged into the config.");
DEFINE_int32(num_classes, 101, "Classifier outputs (no dataset is read).");
DEFINE_int32(iters, 5, "Timed steps per precision (the median is printed).");
DEFINE_int32(warmup, 2, "Untimed steps before timing.");
DEFINE_int32(threads, 0, "LibTorch intra-op threads (0 = all cores).");
DEFINE_string(precisions, "fp32,bf16", "Comma-separated: fp32, bf16.");

namespace {

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
  std::vector<std::shared_ptr<tb::VideoBackbone>> models;
  for (int i = 0; i < 3; ++i) {
    auto m = tb::CreateBackbone(config.backbone());
    if (!m.ok()) return tb::ToolError("bench_step", tb::kExitUsageError, m.status());
    models.push_back(*m);
  }
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
              static_cast<long long>(tb::CountParameters(*models[0])), nl, nu,
              clip.num_frames(), clip.crop_size(), clip.crop_size(), threads);
  std::printf("| precision | step s (median) | student clips/s |\n|---|---|---|\n");
  for (const std::string& precision :
       std::vector<std::string>(absl::StrSplit(FLAGS_precisions, ','))) {
    if (precision != "fp32" && precision != "bf16") {
      return tb::ToolError("bench_step", tb::kExitUsageError,
                           "--precisions: unknown precision \"" + precision + "\"");
    }
    const bool bf16 = precision == "bf16";
    tb::TimeBalanceOptions options = config.trainer().timebalance();
    options.set_teacher_bf16(bf16);
    tb::TimeBalanceTrainer trainer(models[0], models[1], models[2], scores, options,
                                   torch::kCPU);
    trainer.SetTraining(true);
    torch::optim::Adam adam(trainer.TrainableParameters(), torch::optim::AdamOptions(1e-4));
    std::vector<double> times;
    for (int i = 0; i < FLAGS_warmup + FLAGS_iters; ++i) {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<tb::StepResult> result;
      {
        tb::AutocastScope autocast(torch::kCPU, bf16 ? tb::Precision::kBf16 : tb::Precision::kFp32);
        result = trainer.Step({&labeled, &unlabeled});
      }
      if (!result.ok()) return tb::ToolError("bench_step", tb::kExitDataError, result.status());
      adam.zero_grad();
      result->loss.backward();
      adam.step();
      if (i >= FLAGS_warmup) {
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    std::printf("| %s | %.3f | %.2f |\n", precision.c_str(), median, (nl + nu) / median);
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
