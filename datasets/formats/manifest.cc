#include "datasets/formats/manifest.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "absl/strings/str_cat.h"
#include "core/file_util.h"
#include "core/status_macros.h"
#include "datasets/formats/listing.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit CollectErrors(std::string file) : file_(std::move(file)) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat(file_, ":", line + 1, ":", column + 1, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string file_;
  std::string first_;
};

}  // namespace

absl::Status ValidateManifest(const Manifest& m, const std::string& source) {
  if (m.class_names_size() == 0) return absl::InvalidArgumentError(source + ": no class_names");
  std::set<std::string> names;
  for (const std::string& name : m.class_names()) {
    if (name.empty()) return absl::InvalidArgumentError(source + ": empty class name");
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": duplicate class name '", name, "'"));
    }
  }
  if (m.root().empty()) return absl::InvalidArgumentError(source + ": no root");
  std::set<std::string> paths;
  for (int i = 0; i < m.video_size(); ++i) {
    const ManifestVideo& v = m.video(i);
    const std::string where = absl::StrCat(source, ": video ", i, " ('", v.relative_path(), "')");
    if (v.relative_path().empty()) return absl::InvalidArgumentError(where + ": no relative_path");
    if (!paths.insert(v.relative_path()).second) {
      return absl::InvalidArgumentError(where + ": relative_path listed twice");
    }
    if (!v.has_label() || v.label() < 0 || v.label() >= m.class_names_size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": label ", v.label(),
                                                     " not in [0, ", m.class_names_size(), ")"));
    }
    if (v.split() != ManifestVideo::TRAIN && v.split() != ManifestVideo::TEST) {
      return absl::InvalidArgumentError(where + ": split must be TRAIN or TEST");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ReadManifest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("manifest not found: " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError("error reading manifest " + path);
  Manifest m;
  CollectErrors errors(path);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &m)) {
    return absl::InvalidArgumentError(errors.first().empty() ? path + ": cannot parse manifest"
                                                             : errors.first());
  }
  RETURN_IF_ERROR(ValidateManifest(m, path));
  if (fs::path(m.root()).is_relative()) {
    m.set_root(JoinPath(fs::path(path).parent_path().string(), m.root()));
  }
  return m;
}

absl::Status WriteManifest(const std::string& path, const Manifest& manifest) {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(manifest, &text)) {
    return absl::InternalError("cannot print manifest " + path);
  }
  return WriteFileAtomically(
      path, "# proto-file: datasets/formats/manifest.proto\n# proto-message: tb.Manifest\n" + text);
}

absl::StatusOr<SplitSet> ManifestToSplitSet(const Manifest& manifest,
                                            const std::string& root_override, bool check_files) {
  const std::string root = root_override.empty() ? manifest.root() : root_override;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return absl::NotFoundError("dataset root not found: " + root);
  SplitSet set;
  set.class_names.assign(manifest.class_names().begin(), manifest.class_names().end());
  for (const ManifestVideo& v : manifest.video()) {
    VideoEntry e;
    e.relative_path = v.relative_path();
    e.label = v.label();
    e.path = JoinPath(root, v.relative_path());
    if (check_files && !fs::is_regular_file(e.path, ec)) {
      return absl::NotFoundError("video not found: " + e.path);
    }
    (v.split() == ManifestVideo::TRAIN ? set.train : set.test).push_back(std::move(e));
  }
  return set;
}

}  // namespace tb
