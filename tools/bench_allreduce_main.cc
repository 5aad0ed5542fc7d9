// bench_allreduce: the cost of data-parallel gradient averaging per step for
// a backbone's parameters (R3D-18 by default): a backward pass whose
// gradients are cheap (loss = sum of p * c), so what is timed is what
// GradientSynchronizer adds to a step (bucketing, hooks, the c10d
// all-reduces and the copy back), and the same bytes as one flat all-reduce.
// Run with several ranks (tools/launch.sh, or RANK/WORLD_SIZE/MASTER_ADDR/
// MASTER_PORT by hand); rank 0 prints median milliseconds per step and the
// bus bandwidth (2 (N-1)/N x bytes / time, the ring all-reduce convention).
//
//   tools/launch.sh --nproc=2 -- bazel-bin/tools/bench_allreduce [--backbone='r3d18 {}']
//       [--iters=10] [--bucket_mib=25]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "configs/experiment.pb.h"
#include "core/cli.h"
#include "core/threads.h"
#include "google/protobuf/text_format.h"
#include "train/distributed.h"

DEFINE_string(backbone, "r3d18 {}", "tb.BackboneConfig text proto whose parameters are averaged.");
DEFINE_int32(iters, 10, "Timed steps (the median is printed).");
DEFINE_int32(warmup, 2, "Untimed steps first.");
DEFINE_int32(bucket_mib, 25, "Gradient bucket size (distributed.bucket_mib).");
DEFINE_int32(threads, 1, "LibTorch intra-op threads per rank.");

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run() {
  tb::ConfigureThreads(FLAGS_threads);
  absl::StatusOr<tb::DistributedEnv> env = tb::DistributedEnvFromEnvironment();
  if (!env.ok()) return tb::ToolError("bench_allreduce", tb::kExitUsageError, env.status());
  if (env->world_size < 2) {
    return tb::ToolError("bench_allreduce", tb::kExitUsageError,
                         "run it with 2 or more ranks (tools/launch.sh --nproc=2 -- ...)");
  }
  tb::BackboneConfig bc;
  if (!google::protobuf::TextFormat::ParseFromString(FLAGS_backbone, &bc)) {
    return tb::ToolError("bench_allreduce", tb::kExitUsageError,
                         "--backbone: not a tb.BackboneConfig: " + FLAGS_backbone);
  }
  if (bc.num_classes() == 0) bc.set_num_classes(101);  // UCF101's head
  absl::StatusOr<std::shared_ptr<tb::VideoBackbone>> model = tb::CreateBackbone(bc);
  if (!model.ok()) return tb::ToolError("bench_allreduce", tb::kExitUsageError, model.status());
  tb::DistributedConfig dc;
  dc.set_bucket_mib(FLAGS_bucket_mib);
  auto group = tb::ConnectProcessGroup(*env, dc);
  if (!group.ok()) return tb::ToolError("bench_allreduce", tb::kExitDataError, group.status());
  std::vector<torch::Tensor> params = (*model)->parameters();
  int64_t numel = 0;
  for (const torch::Tensor& p : params) numel += p.numel();
  const double bytes = 4.0 * static_cast<double>(numel);
  tb::GradientSynchronizer sync(params, *group, static_cast<int64_t>(FLAGS_bucket_mib) << 20);

  std::vector<double> step_ms, flat_ms, backward_ms;
  torch::Tensor flat = torch::ones({numel});
  for (int i = 0; i < FLAGS_warmup + FLAGS_iters; ++i) {
    // Gradients are zeroed in place, as an optimizer's zero_grad() does, so
    // neither timing pays for first-touch allocation.
    for (torch::Tensor& p : params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    (*group)->Barrier();
    // The backward pass alone (no synchronizer hooks armed).
    auto t0 = std::chrono::steady_clock::now();
    {
      torch::Tensor loss = torch::zeros({});
      for (const torch::Tensor& p : params) loss = loss + (p * 0.5).sum();
      loss.backward();
    }
    auto t1 = std::chrono::steady_clock::now();
    for (torch::Tensor& p : params) p.mutable_grad().zero_();
    (*group)->Barrier();
    auto t2 = std::chrono::steady_clock::now();
    sync.Prepare();
    {
      torch::Tensor loss = torch::zeros({});
      for (const torch::Tensor& p : params) loss = loss + (p * 0.5).sum();
      loss.backward();
    }
    sync.Finish();
    auto t3 = std::chrono::steady_clock::now();
    (*group)->Barrier();
    auto t4 = std::chrono::steady_clock::now();
    (*group)->AllReduceSum({flat});
    auto t5 = std::chrono::steady_clock::now();
    if (i < FLAGS_warmup) continue;
    backward_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    step_ms.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
    flat_ms.push_back(std::chrono::duration<double, std::milli>(t5 - t4).count());
  }
  // Every rank's averaged gradient must be 0.5 (the same on every rank).
  double worst = 0;
  for (const torch::Tensor& p : params) {
    worst = std::max(worst, (p.grad() - 0.5).abs().max().item<double>());
  }
  if (env->rank == 0) {
    const int n = env->world_size;
    const double bus = 2.0 * (n - 1) / n * bytes;
    const double overhead = Median(step_ms) - Median(backward_ms);
    std::printf(
        "bench_allreduce: %s, %lld parameters (%.1f MB fp32), %d ranks (%s), %d bucket(s) of "
        "<= %d MiB, %d thread(s) per rank, median of %d\n",
        FLAGS_backbone.c_str(), static_cast<long long>(numel), bytes / 1e6, n,
        (*group)->env().launcher.c_str(), sync.num_buckets(), FLAGS_bucket_mib, FLAGS_threads,
        FLAGS_iters);
    std::printf("  backward alone                 %8.1f ms\n", Median(backward_ms));
    std::printf("  backward + gradient averaging  %8.1f ms  (averaging adds %.1f ms)\n",
                Median(step_ms), overhead);
    std::printf("  one flat all-reduce            %8.1f ms  (bus bandwidth %.2f GB/s)\n",
                Median(flat_ms), bus / (Median(flat_ms) / 1e3) / 1e9);
    std::printf("  max |averaged grad - 0.5| = %.3g\n", worst);
  }
  return worst < 1e-6 ? 0 : tb::kExitDataError;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      "bench_allreduce",
      "Times data-parallel gradient averaging for a backbone's parameters.\n"
      "  tools/launch.sh --nproc=2 -- bazel-bin/tools/bench_allreduce [--backbone='r3d18 {}']",
      &argc, &argv);
  if (init != 0) return init;
  return Run();
}
