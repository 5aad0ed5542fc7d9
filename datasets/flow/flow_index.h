// File: datasets/flow/flow_index.h
//
// The folder of stored flow that //tools:compute_flow writes: the flow of
// the video <root>/<relative path> is <dir>/<relative path>.flow, and
// <dir>/flow_index.pbtxt (tb.FlowIndex text proto) records the settings the
// files share and which videos have one. FlowStore finds a video's flow
// file from the video's path as the loader knows it (root + relative path,
// with any root), through the index.
//
//   ASSIGN_OR_RETURN(std::shared_ptr<const FlowStore> store, FlowStore::Open(dir));
//   ASSIGN_OR_RETURN(std::string flow_path, store->FlowPathFor(video_path));
#ifndef TIMEBALANCE_DATASETS_FLOW_FLOW_INDEX_H_
#define TIMEBALANCE_DATASETS_FLOW_FLOW_INDEX_H_

#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datasets/flow/flow.pb.h"

namespace tb {

inline constexpr char kFlowIndexName[] = "flow_index.pbtxt";

// "<relative_path>.flow".
std::string FlowRelativePath(const std::string& video_relative_path);

// Text proto with a header comment, written atomically.
absl::Status WriteFlowIndex(const std::string& path, const FlowIndex& index);
// Parse errors name file:line:column; also checks that relative paths are
// present and distinct and the settings valid.
absl::StatusOr<FlowIndex> ReadFlowIndex(const std::string& path);

class FlowStore {
 public:
  // Reads <dir>/flow_index.pbtxt; NotFound naming it when missing.
  static absl::StatusOr<std::shared_ptr<const FlowStore>> Open(const std::string& dir);

  // The flow file of the video at `video_path`: the index entry whose
  // relative path is the longest suffix of `video_path` that starts after a
  // '/' (or is all of it). NotFound naming the video and the index when no
  // entry matches. Does not touch the file system.
  absl::StatusOr<std::string> FlowPathFor(const std::string& video_path) const;

  const std::string& dir() const { return dir_; }
  const std::string& index_path() const { return index_path_; }
  const FlowIndex& index() const { return index_; }

 private:
  std::string dir_, index_path_;
  FlowIndex index_;
  std::unordered_map<std::string, int> by_relative_path_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FLOW_FLOW_INDEX_H_
