#include "datasets/flow/flow_batch.h"

#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "datasets/flow/flow_file.h"
#include "datasets/flow/flow_index.h"
#include "datasets/flow/tvl1_flow.h"

namespace tb {
namespace {

std::string JoinDir(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

void Describe(const FlowFileHeader& h, int64_t bytes, FlowVideoResult* r) {
  r->frame_count = h.frame_count();
  r->width = h.width();
  r->height = h.height();
  r->file_bytes = bytes;
}

// Decides whether the file at `r->flow_path` can stay: true = kExisting
// (filled in), false = compute. A file with other settings fails the video.
bool KeepExisting(const FlowJob& job, const FlowBatchOptions& o, FlowVideoResult* r) {
  struct stat st;
  if (stat(r->flow_path.c_str(), &st) != 0) return false;
  absl::StatusOr<std::unique_ptr<FlowFile>> file = FlowFile::Open(r->flow_path);
  if (!file.ok()) {
    r->note = absl::StrCat("recomputing: ", file.status().message());
    return false;
  }
  const FlowFileHeader& h = (*file)->header();
  const std::string diff = FlowSettingsDifference(h.settings(), o.settings);
  if (!diff.empty()) {
    r->outcome = FlowOutcome::kFailed;
    r->error = absl::StrCat(r->flow_path, " exists with other settings (", diff,
                            ", file vs requested); pass --overwrite or use another --out");
    return true;
  }
  struct stat video;
  if (stat(job.video_path.c_str(), &video) == 0 &&
      static_cast<int64_t>(video.st_size) != h.source_size_bytes()) {
    r->note = absl::StrCat("recomputing ", r->flow_path, ": made from a video of ",
                           h.source_size_bytes(), " bytes, ", job.video_path, " has ",
                           static_cast<int64_t>(video.st_size));
    return false;
  }
  r->outcome = FlowOutcome::kExisting;
  Describe(h, (*file)->file_bytes(), r);
  return true;
}

FlowVideoResult RunOne(const FlowJob& job, const FlowBatchOptions& o) {
  FlowVideoResult r;
  r.flow_path = JoinDir(o.out_dir, FlowRelativePath(job.relative_path));
  if (!o.overwrite && KeepExisting(job, o, &r)) return r;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<VideoFlow> flow =
      ComputeVideoFlow(job.video_path, job.relative_path, o.settings, o.stop);
  if (!flow.ok()) {
    if (absl::IsCancelled(flow.status())) {
      r.outcome = FlowOutcome::kNotRun;
      return r;
    }
    r.outcome = FlowOutcome::kFailed;
    r.error = std::string(flow.status().message());
    return r;
  }
  if (absl::Status s = WriteFlowFile(r.flow_path, flow->header, flow->fields); !s.ok()) {
    r.outcome = FlowOutcome::kFailed;
    r.error = std::string(s.message());
    return r;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t bytes = 0;
  struct stat st;
  if (stat(r.flow_path.c_str(), &st) == 0) bytes = static_cast<int64_t>(st.st_size);
  Describe(flow->header, bytes, &r);
  r.outcome = FlowOutcome::kComputed;
  return r;
}

}  // namespace

absl::StatusOr<FlowBatchResult> ComputeFlowForVideos(const std::vector<FlowJob>& jobs,
                                                     const FlowBatchOptions& o,
                                                     const FlowProgress& progress) {
  if (absl::Status s = ValidateFlowSettings(o.settings); !s.ok()) return s;
  if (o.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", o.threads, " must be >= 1"));
  }
  if (o.out_dir.empty()) return absl::InvalidArgumentError("no output folder");
  std::set<std::string> seen;
  for (const FlowJob& j : jobs) {
    if (j.relative_path.empty() || j.relative_path[0] == '/') {
      return absl::InvalidArgumentError("video '" + j.video_path +
                                        "' has no relative path below the root");
    }
    if (!seen.insert(j.relative_path).second) {
      return absl::InvalidArgumentError("video '" + j.relative_path + "' listed twice");
    }
  }
  const int64_t n = static_cast<int64_t>(jobs.size());
  FlowBatchResult result;
  result.videos.resize(jobs.size());
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  int64_t done = 0;
  auto work = [&] {
    while (true) {
      if ((o.stop != nullptr && o.stop->load()) || (o.stop_on_error && failed.load())) return;
      const int64_t i = next.fetch_add(1);
      if (i >= n) return;
      FlowVideoResult r = RunOne(jobs[i], o);
      if (r.outcome == FlowOutcome::kFailed) failed = true;
      std::lock_guard<std::mutex> lock(mutex);
      result.videos[i] = std::move(r);
      ++done;
      if (progress && result.videos[i].outcome != FlowOutcome::kNotRun) {
        progress(jobs[i], result.videos[i], done, n);
      }
    }
  };
  std::vector<std::thread> workers;
  const int threads = static_cast<int>(std::min<int64_t>(o.threads, std::max<int64_t>(n, 1)));
  for (int t = 0; t < threads; ++t) workers.emplace_back(work);
  for (std::thread& t : workers) t.join();
  result.stopped = o.stop != nullptr && o.stop->load();

  FlowIndex& index = result.index;
  *index.mutable_settings() = o.settings;
  index.set_source(o.source);
  index.set_root(o.root);
  index.set_library(FlowLibraryVersion());
  for (int64_t i = 0; i < n; ++i) {
    const FlowVideoResult& r = result.videos[i];
    if (r.outcome != FlowOutcome::kComputed && r.outcome != FlowOutcome::kExisting) continue;
    FlowIndexEntry* e = index.add_video();
    e->set_relative_path(jobs[i].relative_path);
    e->set_flow_path(FlowRelativePath(jobs[i].relative_path));
    e->set_frame_count(r.frame_count);
    e->set_width(r.width);
    e->set_height(r.height);
    e->set_file_bytes(r.file_bytes);
  }
  return result;
}

}  // namespace tb
