// bench_frozen: forward speed of a frozen model (a teacher, the score stage,
// evaluation) run the way the trainers run it today and as an InferenceModel
// (backbones/inference_model.h), side by side in one run. The variants are
// timed round-robin (one batch of each per round, the starting variant
// rotating), so load from other processes hits them alike; the median and
// the fastest of --iters rounds are printed with their ratios to today's
// teachers.
//
//   bazel run //tools:bench_frozen -- --backbone='r3d18 { width_multiplier: 0.125 }' \
//       --frames=8 --size=64 --batch=16
//   bazel run //tools:bench_frozen -- --backbone='r3d18 {}' --frames=8 --size=112 --batch=4
//
// Variants (--variants, comma-separated, all by default):
//   eval_nograd         eval mode under NoGradGuard, fp32 (today's teachers)
//   eval_nograd_bf16    the same under bf16 autocast (today's teacher_bf16)
//   inference_mode      InferenceModel without folding, fp32 (InferenceMode only)
//   folded              InferenceModel, BatchNorms folded, fp32
//   folded_cl           folded, channels-last-3d weights and clip
//   folded_bf16         folded, weights cast to bf16
//   folded_bf16_cl      folded, bf16 weights, channels-last-3d
//   folded_autocast     folded, fp32 weights under bf16 autocast
// Every variant returns softmax probabilities in fp32, as a teacher does.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <google/protobuf/text_format.h>
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "backbones/backbone.h"
#include "backbones/inference_model.h"
#include "core/autocast.h"
#include "core/threads.h"
#include "core/cli.h"

DEFINE_string(backbone, "r3d18 {}",
              "BackboneConfig text proto fragment, e.g. 'r3d18 { width_multiplier: 0.125 }'.");
DEFINE_int32(num_classes, 400, "Classifier outputs.");
DEFINE_int32(frames, 8, "Frames per clip.");
DEFINE_int32(size, 112, "Crop side.");
DEFINE_int32(batch, 4, "Clips per forward pass.");
DEFINE_int32(iters, 7, "Timed rounds (the median per variant is printed).");
DEFINE_int32(warmup, 2, "Untimed rounds first.");
DEFINE_int32(threads, 0, "LibTorch intra-op threads (0 = all cores).");
DEFINE_string(variants,
              "eval_nograd,eval_nograd_bf16,inference_mode,folded,folded_cl,folded_bf16,"
              "folded_bf16_cl,folded_autocast",
              "Comma-separated variants to time (see the file comment).");
DEFINE_bool(fold_report, false, "Print which BatchNorms were folded and which were kept.");

namespace {

struct Variant {
  std::string name;
  std::string what;
  std::function<torch::Tensor(const torch::Tensor&)> run;  // clip -> probabilities
  std::vector<double> seconds;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// An InferenceModel variant; the model lives in the returned closure.
absl::StatusOr<Variant> MakeInferenceVariant(const std::string& name, const std::string& what,
                                             const tb::BackboneConfig& config,
                                             const tb::VideoBackbone& trained,
                                             const tb::InferenceOptions& options) {
  absl::StatusOr<tb::InferenceModel> model = tb::InferenceModel::Create(config, trained, options);
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("variant ", name, ": ", model.status().message()));
  }
  if (FLAGS_fold_report) {
    std::printf("%s: %s", name.c_str(), model->fold_report().ToString().c_str());
  }
  auto shared = std::make_shared<tb::InferenceModel>(*std::move(model));
  Variant v{name, what, nullptr, {}};
  v.run = [shared](const torch::Tensor& clip) {
    absl::StatusOr<torch::Tensor> p = shared->Probabilities(clip);
    if (!p.ok()) {
      std::fprintf(stderr, "bench_frozen: error: %s\n", std::string(p.status().message()).c_str());
      std::exit(tb::kExitDataError);
    }
    return *p;
  };
  return v;
}

int Run() {
  tb::BackboneConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(FLAGS_backbone, &config)) {
    return tb::ToolError("bench_frozen", tb::kExitUsageError,
                         "cannot parse --backbone='" + FLAGS_backbone + "'");
  }
  config.set_num_classes(FLAGS_num_classes);
  if (FLAGS_iters < 1 || FLAGS_batch < 1) {
    return tb::ToolError("bench_frozen", tb::kExitUsageError, "--iters and --batch must be >= 1");
  }
  const int threads = tb::ConfigureThreads(FLAGS_threads);
  torch::manual_seed(0);
  auto created = tb::CreateBackbone(config);
  if (!created.ok()) return tb::ToolError("bench_frozen", tb::kExitUsageError, created.status());
  std::shared_ptr<tb::VideoBackbone> trained = *created;
  trained->eval();
  for (auto& p : trained->parameters()) p.set_requires_grad(false);  // as LoadFrozenModel
  const torch::Tensor clip = torch::randn({FLAGS_batch, 3, FLAGS_frames, FLAGS_size, FLAGS_size});

  std::vector<Variant> variants;
  for (const std::string& name : std::vector<std::string>(absl::StrSplit(FLAGS_variants, ','))) {
    tb::InferenceOptions options;
    std::string what;
    if (name == "eval_nograd" || name == "eval_nograd_bf16") {
      const bool bf16 = name == "eval_nograd_bf16";
      variants.push_back(
          {name,
           bf16 ? "eval mode, NoGradGuard, bf16 autocast (today's teacher_bf16)"
                : "eval mode, NoGradGuard, fp32 (today's teachers)",
           [trained, bf16](const torch::Tensor& x) {
             torch::NoGradGuard no_grad;
             tb::AutocastScope autocast(torch::kCPU,
                                        bf16 ? tb::Precision::kBf16 : tb::Precision::kFp32);
             return torch::softmax(trained->forward(x).to(torch::kFloat), 1);
           },
           {}});
      continue;
    } else if (name == "inference_mode") {
      options.fold_batch_norm = false;
      what = "InferenceMode, not folded, fp32";
    } else if (name == "folded") {
      what = "InferenceMode, BN folded, fp32";
    } else if (name == "folded_cl") {
      options.channels_last = true;
      what = "BN folded, fp32, channels-last-3d";
    } else if (name == "folded_bf16") {
      options.precision = tb::InferencePrecision::kBf16Weights;
      what = "BN folded, bf16 weights";
    } else if (name == "folded_bf16_cl") {
      options.precision = tb::InferencePrecision::kBf16Weights;
      options.channels_last = true;
      what = "BN folded, bf16 weights, channels-last-3d";
    } else if (name == "folded_autocast") {
      options.precision = tb::InferencePrecision::kBf16Autocast;
      what = "BN folded, fp32 weights, bf16 autocast";
    } else {
      return tb::ToolError("bench_frozen", tb::kExitUsageError,
                           "--variants: unknown variant \"" + name + "\"");
    }
    absl::StatusOr<Variant> v = MakeInferenceVariant(name, what, config, *trained, options);
    if (v.status().code() == absl::StatusCode::kUnimplemented) {
      std::printf("skipped %s\n", std::string(v.status().message()).c_str());
      continue;
    }
    if (!v.ok()) return tb::ToolError("bench_frozen", tb::kExitUsageError, v.status());
    variants.push_back(*std::move(v));
  }

  std::printf("bench_frozen: %s, %lld parameters, clips %dx%dx%d, batch %d, %d threads, "
              "median of %d round-robin rounds (%d warm-up)\n",
              config.ShortDebugString().c_str(),
              static_cast<long long>(tb::CountParameters(*trained)), FLAGS_frames, FLAGS_size,
              FLAGS_size, FLAGS_batch, threads, FLAGS_iters, FLAGS_warmup);
  std::fflush(stdout);
  const size_t n = variants.size();
  for (int round = 0; round < FLAGS_warmup + FLAGS_iters; ++round) {
    for (size_t k = 0; k < n; ++k) {
      Variant& v = variants[(k + round) % n];
      const auto start = std::chrono::steady_clock::now();
      const torch::Tensor p = v.run(clip);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (p.size(0) != FLAGS_batch) std::exit(tb::kExitDataError);
      if (round >= FLAGS_warmup) v.seconds.push_back(s);
    }
  }
  // Medians, and the fastest round (the least disturbed by other processes).
  struct Base {
    double median = 0, best = 0;
  } base_fp32, base_bf16;
  for (const Variant& v : variants) {
    Base* base = v.name == "eval_nograd" ? &base_fp32
                 : v.name == "eval_nograd_bf16" ? &base_bf16 : nullptr;
    if (base != nullptr) {
      base->median = Median(v.seconds);
      base->best = *std::min_element(v.seconds.begin(), v.seconds.end());
    }
  }
  auto ratios = [](const Base& base, double median, double best) {
    return base.median > 0 ? absl::StrFormat("%.2fx / %.2fx", base.median / median, base.best / best)
                           : std::string("-");
  };
  std::printf("| variant | what | median ms/batch | best ms/batch | clips/s (median) | "
              "vs eval_nograd (median / best) | vs eval_nograd_bf16 (median / best) |\n"
              "|---|---|---|---|---|---|---|\n");
  for (const Variant& v : variants) {
    const double median = Median(v.seconds);
    const double best = *std::min_element(v.seconds.begin(), v.seconds.end());
    std::printf("| %s | %s | %.1f | %.1f | %.2f | %s | %s |\n", v.name.c_str(), v.what.c_str(),
                1e3 * median, 1e3 * best, FLAGS_batch / median,
                ratios(base_fp32, median, best).c_str(), ratios(base_bf16, median, best).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int init = tb::InitTool(
      "bench_frozen",
      "Times a frozen model's forward pass as today's teachers run it and as an InferenceModel.\n"
      "  bench_frozen --backbone='r3d18 {}' --frames=8 --size=112 --batch=4",
      &argc, &argv);
  if (init != 0) return init;
  return Run();
}
