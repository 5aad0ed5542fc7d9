#include "datasets/ucf101.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

struct Line {
  int number = 0;  // 1-based
  std::string text;
  std::vector<std::string> fields;
};

// Non-blank lines with CR and surrounding whitespace removed, so files
// written on Windows (the official lists are CRLF) read the same.
absl::StatusOr<std::vector<Line>> ReadLines(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<Line> lines;
  std::string raw;
  int number = 0;
  while (std::getline(in, raw)) {
    ++number;
    if (number == 1 && raw.rfind("\xEF\xBB\xBF", 0) == 0) raw.erase(0, 3);
    std::string text(absl::StripAsciiWhitespace(raw));
    if (text.empty()) continue;
    Line line;
    line.number = number;
    line.fields = absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    line.text = std::move(text);
    lines.push_back(std::move(line));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return lines;
}

absl::Status LineError(absl::StatusCode code, const std::string& file, const Line& line,
                       const std::string& reason) {
  return absl::Status(code, absl::StrCat(file, ":", line.number, ": ", reason, ": '", line.text,
                                         "'"));
}

absl::StatusOr<std::vector<std::string>> ReadClassIndex(const std::string& file) {
  if (!fs::is_regular_file(file)) return absl::NotFoundError("missing classInd.txt: " + file);
  ASSIGN_OR_RETURN(std::vector<Line> lines, ReadLines(file));
  std::map<int, std::string> by_id;
  std::map<std::string, int> id_of_name;
  for (const Line& line : lines) {
    int id = 0;
    if (line.fields.size() != 2 || !absl::SimpleAtoi(line.fields[0], &id)) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       "expected '<class id> <class name>'");
    }
    if (id < 1) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       "class ids start at 1");
    }
    if (!by_id.emplace(id, line.fields[1]).second) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       absl::StrCat("duplicate class id ", id));
    }
    if (!id_of_name.emplace(line.fields[1], id).second) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       absl::StrCat("duplicate class name ", line.fields[1]));
    }
  }
  if (by_id.empty()) return absl::InvalidArgumentError(file + ": no classes");
  std::vector<std::string> names;
  for (const auto& [id, name] : by_id) {
    // Labels are positions in this list, so a gap would shift every later class.
    if (id != static_cast<int>(names.size()) + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": class ids are not 1..", by_id.size(), ": id ",
                       names.size() + 1, " is missing"));
    }
    names.push_back(name);
  }
  return names;
}

class ClassLookup {
 public:
  explicit ClassLookup(const std::vector<std::string>& names) {
    for (size_t i = 0; i < names.size(); ++i) {
      exact_[names[i]] = static_cast<int>(i);
      // The official lists spell some class folders with a different case
      // than classInd.txt (HandstandPushups / HandStandPushups).
      auto [it, inserted] = folded_.emplace(absl::AsciiStrToLower(names[i]), static_cast<int>(i));
      if (!inserted) it->second = -1;
    }
  }
  int Find(const std::string& name) const {
    auto it = exact_.find(name);
    if (it != exact_.end()) return it->second;
    auto f = folded_.find(absl::AsciiStrToLower(name));
    return f != folded_.end() ? f->second : -1;
  }

 private:
  std::map<std::string, int> exact_;
  std::map<std::string, int> folded_;  // -1: ambiguous
};

// label_required: train lists carry "<path> <label>", test lists the path only
// (a label there is still checked when present).
absl::StatusOr<std::vector<VideoEntry>> ReadList(const std::string& file, const std::string& root,
                                                 const std::vector<std::string>& class_names,
                                                 const ClassLookup& classes, bool label_required,
                                                 bool check_files) {
  if (!fs::is_regular_file(file)) return absl::NotFoundError("missing split list: " + file);
  ASSIGN_OR_RETURN(std::vector<Line> lines, ReadLines(file));
  const int num_classes = static_cast<int>(class_names.size());
  std::vector<VideoEntry> entries;
  entries.reserve(lines.size());
  for (const Line& line : lines) {
    const size_t n = line.fields.size();
    if (label_required ? n != 2 : (n < 1 || n > 2)) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       label_required ? "expected '<class>/<video> <label>'"
                                      : "expected '<class>/<video>'");
    }
    VideoEntry e;
    e.relative_path = line.fields[0];
    const size_t slash = e.relative_path.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == e.relative_path.size()) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       "video path is not '<class>/<video>'");
    }
    const std::string folder = e.relative_path.substr(0, slash);
    const int folder_label = classes.Find(folder);
    if (folder_label < 0) {
      return LineError(absl::StatusCode::kInvalidArgument, file, line,
                       absl::StrCat("unknown class '", folder, "'"));
    }
    e.label = folder_label;
    if (line.fields.size() == 2) {
      int label = 0;
      if (!absl::SimpleAtoi(line.fields[1], &label)) {
        return LineError(absl::StatusCode::kInvalidArgument, file, line,
                         absl::StrCat("label '", line.fields[1], "' is not an integer"));
      }
      if (label < 1 || label > num_classes) {
        return LineError(absl::StatusCode::kInvalidArgument, file, line,
                         absl::StrCat("label ", label, " out of range [1, ", num_classes, "]"));
      }
      if (label - 1 != folder_label) {
        return LineError(absl::StatusCode::kInvalidArgument, file, line,
                         absl::StrCat("label ", label, " (", class_names[label - 1],
                                      ") disagrees with folder '", folder, "' (label ",
                                      folder_label + 1, ")"));
      }
    }
    e.path = JoinPath(root, e.relative_path);
    if (check_files) {
      std::error_code ec;
      if (!fs::is_regular_file(e.path, ec)) {
        return LineError(absl::StatusCode::kNotFound, file, line,
                         absl::StrCat("video not found: ", e.path));
      }
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

}  // namespace

absl::StatusOr<SplitSet> ReadUcf101Split(const std::string& root, const std::string& annotations,
                                         int split, bool check_files) {
  std::error_code ec;
  if (root.empty() || !fs::is_directory(root, ec)) {
    return absl::NotFoundError("dataset root not found: " + root);
  }
  const std::string ann = annotations.empty() ? root : annotations;
  if (!fs::is_directory(ann, ec)) {
    return absl::NotFoundError("annotations folder not found: " + ann);
  }
  if (split < 1 || split > 99) {
    return absl::InvalidArgumentError(absl::StrCat("split must be in 1..99, got ", split));
  }
  SplitSet set;
  ASSIGN_OR_RETURN(set.class_names, ReadClassIndex(JoinPath(ann, "classInd.txt")));
  const ClassLookup classes(set.class_names);
  const std::string nn = absl::StrFormat("%02d", split);
  ASSIGN_OR_RETURN(set.train, ReadList(JoinPath(ann, "trainlist" + nn + ".txt"), root,
                                       set.class_names, classes, /*label_required=*/true,
                                       check_files));
  ASSIGN_OR_RETURN(set.test, ReadList(JoinPath(ann, "testlist" + nn + ".txt"), root,
                                      set.class_names, classes, /*label_required=*/false,
                                      check_files));
  return set;
}

}  // namespace tb
