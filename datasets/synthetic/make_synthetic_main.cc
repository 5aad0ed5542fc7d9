// make_synthetic: writes the SynthActions dataset (see
// datasets/synthetic/synth_actions.h) in the UCF101 layout.
//
//   make_synthetic --out=/data/synth --classes=10 --train_per_class=30
//       --test_per_class=10 --seed=0 [--threads=2] [--noise=6 --jitter=1 ...]
//
// If --out already holds a SynthActions dataset written with the same options
// by this generator version, nothing is written ("up to date"). If it holds
// one written with other options or by an older generator, the tool refuses
// (exit 2, naming the first difference) unless --overwrite is given, which
// removes that dataset first.
//
// Exit codes: 0 success, 2 bad flag or stale dataset, 1 I/O or encoding
// failure. Errors are one line naming the flag or the path.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>

#include <gflags/gflags.h>
#include <glog/logging.h>

#include "absl/status/status.h"
#include "datasets/synthetic/synth_actions.h"

namespace {
const tb::SynthOptions kDefaults;
}  // namespace

DEFINE_string(out, "", "Output folder (created if missing). Required.");
DEFINE_int32(classes, kDefaults.num_classes, "Number of classes (even: half cyclic, half sequential).");
DEFINE_int32(train_per_class, kDefaults.train_per_class, "Training videos per class.");
DEFINE_int32(test_per_class, kDefaults.test_per_class, "Test videos per class.");
DEFINE_uint64(seed, kDefaults.seed, "Dataset seed.");
DEFINE_bool(overwrite, false,
            "Replace a SynthActions dataset in --out written with other options or by an "
            "older generator (otherwise an error).");
DEFINE_int32(threads, 0, "Worker threads (0: one per core).");
DEFINE_int32(min_frames, kDefaults.min_frames, "Shortest video, frames.");
DEFINE_int32(max_frames, kDefaults.max_frames, "Longest video, frames.");
DEFINE_int32(min_short_side, kDefaults.min_short_side, "Smallest frame height (frames are 4:3).");
DEFINE_int32(max_short_side, kDefaults.max_short_side, "Largest frame height.");
DEFINE_double(fps, kDefaults.fps, "Frame rate written into the videos.");
DEFINE_double(noise, kDefaults.noise, "Pixel noise standard deviation (0..255 units).");
DEFINE_int32(max_distractors, kDefaults.max_distractors, "Up to this many distractor objects per video.");
DEFINE_double(jitter, kDefaults.jitter, "Camera shake standard deviation, pixels.");
DEFINE_double(speed_variation, kDefaults.speed_variation, "Relative speed variation (+-).");
DEFINE_double(hue_jitter, kDefaults.hue_jitter, "Per-video hue shift of cyclic class colours (+- fraction of the wheel).");
DEFINE_double(appearance_similarity, kDefaults.appearance_similarity,
              "Probability that a cyclic video uses a random pool look (motion is then the only cue).");
DEFINE_double(lookalike_distractors, kDefaults.lookalike_distractors,
              "Probability that a distractor looks like a cyclic class object.");
DEFINE_double(object_size, kDefaults.object_size, "Main object radius / short side.");
DEFINE_double(background_clutter, kDefaults.background_clutter, "Contrast of background clutter, 0..1.");
DEFINE_int32(background_pool, kDefaults.background_pool,
             "Backgrounds shared by the whole dataset; 0: one background per video.");
DEFINE_int32(qscale, kDefaults.qscale, "MPEG-4 quantiser, 1 (best) .. 31.");
DEFINE_int32(gop_size, kDefaults.gop_size, "Key frame interval.");

namespace {

// Validation messages start with the option name; most flags share it.
std::string FlagForOption(const std::string& message) {
  const std::string option = message.substr(0, message.find(':'));
  if (option == "num_classes") return "classes";
  return option;
}

// gflags exits with status 1 on an unknown flag or a malformed value, but this
// tool promises 2 for every bad flag, so those are caught before it parses.
bool PrecheckFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    arg = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const bool inline_value = eq != std::string::npos;
    const std::string name = inline_value ? arg.substr(0, eq) : arg;
    std::string value = inline_value ? arg.substr(eq + 1) : "";
    gflags::CommandLineFlagInfo info;
    if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
      if (!inline_value && name.rfind("no", 0) == 0 &&
          gflags::GetCommandLineFlagInfo(name.substr(2).c_str(), &info) && info.type == "bool") {
        continue;
      }
      std::fprintf(stderr, "make_synthetic: unknown flag --%s\n", name.c_str());
      return false;
    }
    if (!inline_value) {
      if (info.type == "bool") continue;
      if (i + 1 >= argc) {
        std::fprintf(stderr, "make_synthetic: bad flag --%s: missing value\n", name.c_str());
        return false;
      }
      value = argv[++i];
    }
    if (gflags::SetCommandLineOption(name.c_str(), value.c_str()).empty()) {
      std::fprintf(stderr, "make_synthetic: bad flag --%s: '%s' is not a valid %s\n",
                   name.c_str(), value.c_str(), info.type.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "make_synthetic --out=DIR --classes=N --train_per_class=K --test_per_class=M --seed=S");
  if (!PrecheckFlags(argc, argv)) return 2;
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  if (FLAGS_out.empty()) {
    std::fprintf(stderr, "make_synthetic: --out is required\n");
    return 2;
  }
  if (FLAGS_out[0] == '-') {
    // Almost always "--out --next_flag": a value that was forgotten.
    std::fprintf(stderr, "make_synthetic: bad flag --out: '%s' looks like a flag\n",
                 FLAGS_out.c_str());
    return 2;
  }
  if (argc > 1) {
    std::fprintf(stderr, "make_synthetic: unexpected argument '%s'\n", argv[1]);
    return 2;
  }
  tb::SynthOptions options;
  options.num_classes = FLAGS_classes;
  options.train_per_class = FLAGS_train_per_class;
  options.test_per_class = FLAGS_test_per_class;
  options.seed = FLAGS_seed;
  options.min_frames = FLAGS_min_frames;
  options.max_frames = FLAGS_max_frames;
  options.min_short_side = FLAGS_min_short_side;
  options.max_short_side = FLAGS_max_short_side;
  options.fps = FLAGS_fps;
  options.noise = static_cast<float>(FLAGS_noise);
  options.max_distractors = FLAGS_max_distractors;
  options.jitter = static_cast<float>(FLAGS_jitter);
  options.speed_variation = static_cast<float>(FLAGS_speed_variation);
  options.hue_jitter = static_cast<float>(FLAGS_hue_jitter);
  options.appearance_similarity = static_cast<float>(FLAGS_appearance_similarity);
  options.lookalike_distractors = static_cast<float>(FLAGS_lookalike_distractors);
  options.object_size = static_cast<float>(FLAGS_object_size);
  options.background_clutter = static_cast<float>(FLAGS_background_clutter);
  options.background_pool = FLAGS_background_pool;
  options.qscale = FLAGS_qscale;
  options.gop_size = FLAGS_gop_size;

  if (const absl::Status valid = tb::ValidateSynthOptions(options); !valid.ok()) {
    const std::string message(valid.message());
    std::fprintf(stderr, "make_synthetic: bad flag --%s: %s\n", FlagForOption(message).c_str(),
                 message.c_str());
    return 2;
  }
  if (FLAGS_threads < 0) {
    std::fprintf(stderr, "make_synthetic: bad flag --threads: must be >= 0\n");
    return 2;
  }

  std::string difference;
  const absl::StatusOr<tb::SynthDirState> state =
      tb::CheckSynthActionsDir(FLAGS_out, options, &difference);
  if (!state.ok()) {
    std::fprintf(stderr, "make_synthetic: %s\n", std::string(state.status().message()).c_str());
    return 1;
  }
  if (*state == tb::SynthDirState::kUpToDate) {
    std::printf("make_synthetic: %s is up to date (same options, generator version %d)\n",
                FLAGS_out.c_str(), tb::kSynthGeneratorVersion);
    return 0;
  }
  if (*state == tb::SynthDirState::kStale) {
    if (!FLAGS_overwrite) {
      std::fprintf(stderr,
                   "make_synthetic: %s/synth_actions.txt: the folder holds a different "
                   "SynthActions dataset (%s); remove it or pass --overwrite\n",
                   FLAGS_out.c_str(), difference.c_str());
      return 2;
    }
    // Only a folder that synth_actions.txt marks as a SynthActions dataset
    // is ever removed.
    std::error_code ec;
    std::filesystem::remove_all(FLAGS_out, ec);
    if (ec) {
      std::fprintf(stderr, "make_synthetic: %s: cannot remove the old dataset: %s\n",
                   FLAGS_out.c_str(), ec.message().c_str());
      return 1;
    }
    std::printf("make_synthetic: replacing %s (%s)\n", FLAGS_out.c_str(), difference.c_str());
  }
  LOG(INFO) << "Writing " << options.num_classes * (options.train_per_class + options.test_per_class)
            << " videos to " << FLAGS_out;
  const auto start = std::chrono::steady_clock::now();
  tb::SynthWriteStats stats;
  const absl::Status status = tb::WriteSynthActions(FLAGS_out, options, FLAGS_threads, &stats);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!status.ok()) {
    std::fprintf(stderr, "make_synthetic: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("make_synthetic: wrote %lld videos (%lld frames, %d classes) to %s: %.1f MB in %.1f s\n",
              static_cast<long long>(stats.videos), static_cast<long long>(stats.frames),
              options.num_classes, FLAGS_out.c_str(), stats.bytes / 1e6, seconds);
  return 0;
}
