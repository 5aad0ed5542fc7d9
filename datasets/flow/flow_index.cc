#include "datasets/flow/flow_index.h"

#include <fstream>
#include <iterator>

#include <google/protobuf/text_format.h>

#include "absl/strings/str_cat.h"
#include "core/records.h"
#include "core/status_macros.h"
#include "datasets/flow/flow_file.h"

namespace tb {
namespace {

std::string JoinDir(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace

std::string FlowRelativePath(const std::string& video_relative_path) {
  return video_relative_path + ".flow";
}

absl::Status WriteFlowIndex(const std::string& path, const FlowIndex& index) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(index, &text)) {
    return absl::InternalError("cannot print flow index " + path);
  }
  return WriteFileAtomicallyTo(
      path,
      "# proto-file: datasets/flow/flow.proto\n# proto-message: tb.FlowIndex\n"
      "# Written by //tools:compute_flow; the flow of <root>/<relative_path> is <flow_path>\n"
      "# below this folder.\n" +
          text);
}

absl::StatusOr<FlowIndex> ReadFlowIndex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("flow index not found: ", path,
                                            " (written by //tools:compute_flow)"));
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError("error reading flow index " + path);
  FlowIndex index;
  RETURN_IF_ERROR(ParseTextProto(text, path, &index));
  if (absl::Status s = ValidateFlowSettings(index.settings()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return index;
}

absl::StatusOr<std::shared_ptr<const FlowStore>> FlowStore::Open(const std::string& dir) {
  auto store = std::make_shared<FlowStore>();
  store->dir_ = dir;
  store->index_path_ = JoinDir(dir, kFlowIndexName);
  ASSIGN_OR_RETURN(store->index_, ReadFlowIndex(store->index_path_));
  for (int i = 0; i < store->index_.video_size(); ++i) {
    const FlowIndexEntry& e = store->index_.video(i);
    if (e.relative_path().empty() || e.flow_path().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(store->index_path_, ": video ", i, " has no relative_path or flow_path"));
    }
    if (!store->by_relative_path_.emplace(e.relative_path(), i).second) {
      return absl::InvalidArgumentError(absl::StrCat(store->index_path_, ": video '",
                                                     e.relative_path(), "' listed twice"));
    }
  }
  return std::shared_ptr<const FlowStore>(std::move(store));
}

absl::StatusOr<std::string> FlowStore::FlowPathFor(const std::string& video_path) const {
  // Longest suffix first: the whole path, then after each '/'.
  size_t start = 0;
  while (true) {
    auto it = by_relative_path_.find(video_path.substr(start));
    if (it != by_relative_path_.end()) {
      return JoinDir(dir_, index_.video(it->second).flow_path());
    }
    const size_t slash = video_path.find('/', start);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return absl::NotFoundError(absl::StrCat("no flow for video ", video_path, ": not listed in ",
                                          index_path_, " (run //tools:compute_flow on it)"));
}

}  // namespace tb
