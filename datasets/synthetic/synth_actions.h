// File: datasets/synthetic/synth_actions.h
//
// SynthActions: the project's built-in synthetic action dataset. It exists so
// that the whole pipeline (decode, sample, train, evaluate) can run on a
// dataset that is small, fast to make, and built so that the two temporal
// representations TimeBalance balances both matter:
//
//  * cyclic classes ("temporally invariant"): a class-specific object (shape,
//    texture, colour) doing a class-specific periodic motion (orbit, bounce,
//    pulsate, rotate, swing, figure-eight) over the whole video. Any clip from
//    anywhere in the video looks alike.
//  * sequential classes ("temporally distinctive"): an object whose look is
//    drawn per video from a pool shared by all sequential classes, doing three
//    sub-actions one after the other (e.g. Right, Up, Grow). Classes differ
//    only in the ORDER of the same sub-actions, so clips from different times
//    of one video differ and only their order identifies the class.
//
// Every video also gets nuisances: a background (gradient + static clutter)
// drawn from a pool shared by the whole dataset (or its own, with
// background_pool = 0), speed (+-speed_variation), start phase, position, distractor
// objects, camera jitter and pixel noise. The difficulty knobs below are meant
// to be calibrated; each nuisance draws from its own RngStream purpose, so
// changing one knob leaves the rest of a video unchanged.
//
// Videos are written in the UCF101 layout:
//   out_dir/<Class>/v_<Class>_gNN_c01.avi, classInd.txt ("1 Class"),
//   trainlist01.txt ("Class/v_Class_g01_c01.avi 1"), testlist01.txt (path),
//   synth_actions.txt (options and class descriptions), and next to every
//   video its actor boxes, <video>.actors (the main object's box in every
//   frame; datasets/actor_boxes.h), for ActorCutMix.
// Video k of class c (train videos first, then test) is rendered from
// RngStream(seed, 0, c * (train_per_class + test_per_class) + k, 0, purpose),
// so the output is the same for any number of threads.
#ifndef TIMEBALANCE_DATASETS_SYNTHETIC_SYNTH_ACTIONS_H_
#define TIMEBALANCE_DATASETS_SYNTHETIC_SYNTH_ACTIONS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

struct SynthOptions {
  // Half of the classes are cyclic, half sequential: must be even, >= 2.
  int num_classes = 10;
  int train_per_class = 30;
  int test_per_class = 10;
  uint64_t seed = 0;

  // Per-video length and size, uniform in [min, max]. Frames are 4:3.
  int min_frames = 48;
  int max_frames = 96;
  int min_short_side = 96;
  int max_short_side = 128;
  double fps = 25;

  // --- Difficulty knobs. ---
  // Standard deviation of per-pixel, per-channel noise, in 0..255 units.
  float noise = 6.0f;
  // Each video has 0..max_distractors randomly moving extra objects.
  int max_distractors = 2;
  // Standard deviation (pixels) of the per-frame global camera shift.
  float jitter = 1.0f;
  // Speeds (cyclic periods, relative sub-action durations) vary by a factor
  // in [1 - speed_variation, 1 + speed_variation]; sub-action extents by
  // half that.
  float speed_variation = 0.3f;
  // Per-video hue shift of a cyclic class's colours, as a fraction of the
  // colour wheel (+-hue_jitter); 0.5 makes colour useless as a cue.
  float hue_jitter = 0.05f;
  // Probability that a cyclic video's object takes a random look from the
  // shared pool instead of its class look, leaving only its motion as a cue.
  float appearance_similarity = 0.0f;
  // Probability that a distractor wears the look of a random cyclic class.
  float lookalike_distractors = 0.3f;
  // Main object radius as a fraction of the short side (+-20% per video).
  // Above ~0.16 a growing object may no longer fit in the frame.
  float object_size = 0.14f;
  // Contrast (0..1) of the static background clutter blobs.
  float background_clutter = 0.5f;
  // 0: every video gets its own background. N > 0: each video takes one of N
  // backgrounds shared by the whole dataset (drawn uniformly, independently
  // of the class), so a background identifies neither a class nor a video.
  // With a background per video, an instance-discrimination objective that
  // treats clips of one video as positives (L_IC) can match videos by their
  // background alone and learn nothing about the action (docs/results.md).
  int background_pool = 8;

  // --- Encoding. ---
  int qscale = 4;  // MPEG-4 fixed quantiser, 1 (best) .. 31
  int gop_size = 12;
};

enum class SynthFamily { kCyclic, kSequential };

struct SynthClass {
  std::string name;         // CamelCase, e.g. "OrbitStripedCircle", "RightUpGrow"
  SynthFamily family = SynthFamily::kCyclic;
  std::string description;  // one line, human readable
};

// Frames of one rendered video, RGB24, frame after frame, no padding.
struct SynthVideo {
  int width = 0;
  int height = 0;
  int num_frames = 0;
  std::vector<uint8_t> rgb;
  // The main object's (the actor's) bounding box in every frame, {x0, y0,
  // x1, y1} normalised to the frame and clipped to it, written next to the
  // video as `<video>.actors` (the format of datasets/actor_boxes.h, score 1;
  // that library is not a dependency, to keep the packages acyclic).
  std::vector<std::array<float, 4>> actor_boxes;
  const uint8_t* frame(int t) const {
    return rgb.data() + static_cast<size_t>(t) * width * height * 3;
  }
};

struct SynthWriteStats {
  int64_t videos = 0;
  int64_t frames = 0;
  int64_t bytes = 0;  // all files written, lists included
};

const char* SynthFamilyName(SynthFamily family);

// InvalidArgument naming the offending option ("num_classes: must be even").
absl::Status ValidateSynthOptions(const SynthOptions& options);

// Class list in label order (label = index + 1 in classInd.txt). Cyclic and
// sequential classes alternate, so any prefix is balanced.
absl::StatusOr<std::vector<SynthClass>> SynthClasses(const SynthOptions& options);

// Renders video `video_index` (0 .. train_per_class + test_per_class - 1) of
// class `class_id` (0-based) in memory, exactly as WriteSynthActions encodes it.
absl::StatusOr<SynthVideo> RenderVideo(int class_id, int video_index,
                                       const SynthOptions& options);

// A preset for smoke tests and examples: short (24-32 frames), small (short
// side 48-56 px) videos, so a dataset of a few dozen videos takes well under a
// second to write. Difficulty knobs keep their defaults.
SynthOptions SmokeTestOptions(int num_classes, int train_per_class, int test_per_class,
                              uint64_t seed);

// Bumped whenever the same options render different videos, so that a
// dataset written by an older generator is recognised as stale. Version 2:
// background_pool (backgrounds shared by the dataset).
inline constexpr int kSynthGeneratorVersion = 2;

// What out_dir holds compared with what WriteSynthActions(out_dir, options)
// would write: kMissing (no synth_actions.txt), kUpToDate (same generator
// version and options, and the split lists are there), or kStale with
// `difference` naming the first option or version that differs, e.g.
// "background_pool: the folder has (absent), these options give 8".
enum class SynthDirState { kMissing, kUpToDate, kStale };
absl::StatusOr<SynthDirState> CheckSynthActionsDir(const std::string& out_dir,
                                                   const SynthOptions& options,
                                                   std::string* difference);

// Renders and encodes the whole dataset into out_dir (created if missing)
// with num_threads workers (<= 0: one per core). The split lists are written
// after all videos, so their presence means the dataset is complete.
absl::Status WriteSynthActions(const std::string& out_dir, const SynthOptions& options,
                               int num_threads, SynthWriteStats* stats = nullptr);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_SYNTHETIC_SYNTH_ACTIONS_H_
