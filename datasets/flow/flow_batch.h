// File: datasets/flow/flow_batch.h
//
// What //tools:compute_flow does, as a library: the flow of many videos on
// several threads (one video per thread), each written atomically to
// <out_dir>/<relative path>.flow, resumable: a video whose file already
// exists with the same settings and the same source size is skipped, so an
// interrupted run continues where it stopped. A file with other settings is
// an error for that video (unless `overwrite`); a file that is unreadable,
// or made from a video of another size, is recomputed.
//
// The index (flow_index.h) is built from the videos that end with a file;
// the caller writes it.
#ifndef TIMEBALANCE_DATASETS_FLOW_FLOW_BATCH_H_
#define TIMEBALANCE_DATASETS_FLOW_FLOW_BATCH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "datasets/flow/flow.pb.h"

namespace tb {

struct FlowJob {
  std::string video_path;     // the file to read
  std::string relative_path;  // its path below the dataset root
};

struct FlowBatchOptions {
  FlowSettings settings;
  std::string out_dir;
  int threads = 1;
  // Recompute videos that already have a file.
  bool overwrite = false;
  // Start no further video after the first failure.
  bool stop_on_error = true;
  // Polled between frame pairs; true abandons the running videos (nothing
  // is written for them) and starts no more.
  const std::atomic<bool>* stop = nullptr;
  // Recorded in the index.
  std::string source;
  std::string root;
};

enum class FlowOutcome {
  kNotRun,    // not reached (stopped, or a failure under stop_on_error)
  kComputed,  // computed and written now
  kExisting,  // a file with the same settings was there
  kFailed,
};

struct FlowVideoResult {
  FlowOutcome outcome = FlowOutcome::kNotRun;
  std::string error;  // kFailed: the reason, naming the file
  std::string note;   // e.g. why an existing file was recomputed
  std::string flow_path;
  int64_t frame_count = 0;
  int width = 0, height = 0;
  int64_t file_bytes = 0;
  double seconds = 0;  // wall time of the computation (kComputed)
};

struct FlowBatchResult {
  std::vector<FlowVideoResult> videos;  // one per job, in job order
  FlowIndex index;  // the jobs that have a file now, in job order
  bool stopped = false;  // `stop` was set
};

// Called after each video from the worker threads (serialised).
using FlowProgress =
    std::function<void(const FlowJob& job, const FlowVideoResult& result, int64_t done,
                       int64_t total)>;

// Fails only for bad options (settings, threads, two jobs with one relative
// path); per-video failures are in the result.
absl::StatusOr<FlowBatchResult> ComputeFlowForVideos(const std::vector<FlowJob>& jobs,
                                                     const FlowBatchOptions& options,
                                                     const FlowProgress& progress = nullptr);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FLOW_FLOW_BATCH_H_
