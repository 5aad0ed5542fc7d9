// bench_backbone: speed of a backbone on this machine. Prints parameters,
// analytic GFLOPs per clip (convolutions + linear layers), and for fp32 and
// bf16 autocast, with channels-last-3d off and on: median forward clips/s
// (eval, no grad) and median training clips/s (forward + backward + SGD
// step), with the achieved GFLOP/s (training counts 3x the forward FLOPs).
//
// With --peer, the Python peer (tools/bench/peer_backbone.py, torchvision's
// r3d_18) runs right after each row with the same shapes and threads, and
// the C++ / peer ratios are printed.
//
//   bazel run -c opt //tools:bench_backbone -- --backbone='r3d18 {}' --frames=8
//       --size=112 --batch=4 [--peer=tools/bench/peer_backbone.py]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <google/protobuf/text_format.h>
#include <torch/torch.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backbones/backbone.h"
#include "backbones/flop_counter.h"
#include "core/autocast.h"
#include "core/peer_process.h"
#include "core/threads.h"

DEFINE_string(backbone, "r3d18 {}",
              "BackboneConfig text proto fragment, e.g. 'r3d18 { width_multiplier: 0.5 }'.");
DEFINE_int32(num_classes, 400, "Classifier outputs.");
DEFINE_int32(frames, 8, "Frames per clip.");
DEFINE_int32(size, 112, "Crop side.");
DEFINE_int32(batch, 4, "Clips per step.");
DEFINE_int32(iters, 5, "Timed iterations per measurement (the median is printed).");
DEFINE_int32(warmup, 2, "Untimed iterations before each measurement.");
DEFINE_int32(threads, 0, "LibTorch intra-op threads (0 = all cores).");
DEFINE_string(precisions, "fp32,bf16", "Comma-separated: fp32, bf16 (CPU autocast).");
DEFINE_string(layouts, "contiguous,channels_last", "Comma-separated memory formats.");
DEFINE_bool(train, true, "Also measure training steps.");
DEFINE_string(peer, "",
              "Python peer to time right after each row, e.g. tools/bench/peer_backbone.py "
              "(run with /usr/bin/python3, same shapes and threads); adds its clips/s and the "
              "ratios. Needs --backbone='r3d18 {}' (torchvision's r3d_18).");

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double MedianSeconds(Fn&& fn) {
  for (int i = 0; i < FLAGS_warmup; ++i) fn();
  std::vector<double> times;
  for (int i = 0; i < FLAGS_iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return Median(times);
}

int Run() {
  tb::BackboneConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(FLAGS_backbone, &config)) {
    std::fprintf(stderr, "bench_backbone: error: cannot parse --backbone='%s'\n",
                 FLAGS_backbone.c_str());
    return 2;
  }
  config.set_num_classes(FLAGS_num_classes);
  const int threads = tb::ConfigureThreads(FLAGS_threads);
  const torch::Device cpu(torch::kCPU);
  torch::manual_seed(0);
  const torch::Tensor clip = torch::randn({FLAGS_batch, 3, FLAGS_frames, FLAGS_size, FLAGS_size});
  const torch::Tensor labels = torch::randint(FLAGS_num_classes, {FLAGS_batch}, torch::kInt64);

  double gflops_per_clip = 0;
  int64_t params = 0;
  {
    auto model = tb::CreateBackbone(config);
    if (!model.ok()) {
      std::fprintf(stderr, "bench_backbone: error: %s\n",
                   std::string(model.status().message()).c_str());
      return 2;
    }
    params = tb::CountParameters(**model);
    torch::NoGradGuard no_grad;
    (*model)->eval();
    const torch::Tensor one = clip.narrow(0, 0, 1);
    const tb::FlopCount count = tb::CountForwardFlops([&] { (*model)->forward(one); });
    gflops_per_clip = count.flops / 1e9;
  }
  std::printf("backbone %s, %lld parameters, %.2f GFLOPs/clip at %dx%dx%d, batch %d, %d threads\n",
              FLAGS_backbone.c_str(), static_cast<long long>(params), gflops_per_clip,
              FLAGS_frames, FLAGS_size, FLAGS_size, FLAGS_batch, threads);
  const bool peer = !FLAGS_peer.empty();
  if (peer && !(config.has_r3d18() && config.r3d18().width_multiplier() == 1.0f &&
                !config.r3d18().tclr_temporal_layer4())) {
    std::fprintf(stderr, "bench_backbone: error: --peer builds torchvision's r3d_18; "
                 "--backbone must be 'r3d18 {}', got '%s'\n", FLAGS_backbone.c_str());
    return 2;
  }
  std::printf("| precision | layout | forward clips/s | forward GFLOP/s | train clips/s | "
              "train GFLOP/s |%s\n|---|---|---|---|---|---|%s\n",
              peer ? " peer forward | peer train | forward ratio | train ratio |" : "",
              peer ? "---|---|---|---|" : "");
  for (const std::string& precision : std::vector<std::string>(absl::StrSplit(FLAGS_precisions, ','))) {
    for (const std::string& layout : std::vector<std::string>(absl::StrSplit(FLAGS_layouts, ','))) {
      if ((precision != "fp32" && precision != "bf16") ||
          (layout != "contiguous" && layout != "channels_last")) {
        std::fprintf(stderr, "bench_backbone: error: unknown precision/layout %s/%s\n",
                     precision.c_str(), layout.c_str());
        return 2;
      }
      torch::manual_seed(0);
      std::shared_ptr<tb::VideoBackbone> model = *tb::CreateBackbone(config);
      torch::Tensor x = clip;
      if (layout == "channels_last") {
        tb::ToChannelsLast(*model);
        x = clip.contiguous(at::MemoryFormat::ChannelsLast3d);
      }
      const bool bf16 = precision == "bf16";
      model->eval();
      const double fwd = MedianSeconds([&] {
        torch::NoGradGuard no_grad;
        tb::AutocastScope autocast(cpu, bf16 ? tb::Precision::kBf16 : tb::Precision::kFp32);
        model->forward(x);
      });
      double train = 0;
      if (FLAGS_train) {
        model->train();
        torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
        train = MedianSeconds([&] {
          opt.zero_grad();
          torch::Tensor loss;
          {
            tb::AutocastScope autocast(cpu, bf16 ? tb::Precision::kBf16 : tb::Precision::kFp32);
            loss = torch::nn::functional::cross_entropy(model->forward(x), labels);
          }
          loss.backward();
          opt.step();
        });
      }
      const double fwd_rate = FLAGS_batch / fwd;
      const double train_rate = train > 0 ? FLAGS_batch / train : 0;
      std::printf("| %s | %s | %.2f | %.1f | %.2f | %.1f |", precision.c_str(), layout.c_str(),
                  fwd_rate, fwd_rate * gflops_per_clip, train_rate,
                  train_rate * 3 * gflops_per_clip);
      if (peer) {
        const std::string command = absl::StrFormat(
            "/usr/bin/python3 %s --frames=%d --size=%d --batch=%d --num_classes=%d --iters=%d "
            "--warmup=%d --threads=%d --precisions=%s --layouts=%s %s",
            FLAGS_peer, FLAGS_frames, FLAGS_size, FLAGS_batch, FLAGS_num_classes, FLAGS_iters,
            FLAGS_warmup, threads, precision, layout, FLAGS_train ? "--train" : "--no-train");
        absl::StatusOr<std::string> line = tb::RunPeer(command, "PEER_BACKBONE");
        absl::StatusOr<double> peer_fwd =
            line.ok() ? tb::JsonNumberField(*line, "forward_clips_per_s") : line.status();
        absl::StatusOr<double> peer_train =
            line.ok() ? tb::JsonNumberField(*line, "train_clips_per_s") : line.status();
        if (!peer_fwd.ok() || !peer_train.ok()) {
          std::fprintf(stderr, "\nbench_backbone: error: %s\n",
                       std::string((peer_fwd.ok() ? peer_train : peer_fwd).status().message())
                           .c_str());
          return 1;
        }
        std::printf(" %.2f | %.2f | %.2fx | %s |", *peer_fwd, *peer_train, fwd_rate / *peer_fwd,
                    *peer_train > 0 ? absl::StrFormat("%.2fx", train_rate / *peer_train).c_str()
                                    : "-");
      }
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Measures a backbone's forward and training speed.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return Run();
}
