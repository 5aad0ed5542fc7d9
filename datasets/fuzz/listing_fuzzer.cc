// Fuzz target: the annotation readers of datasets/formats/listing.h
// (UCF101, HMDB51, Kinetics CSV, path/label lists) and datasets/ucf101.h.
// The input is a small folder tree in text form:
//
//   <format> [<split>]          first line: ucf101, hmdb51, kinetics or list
//   == <relative file name>     starts a file; the lines up to the next
//   <content>                   "== " line are its content
//
// e.g. "ucf101 1\n== classInd.txt\n1 A\n== trainlist01.txt\nA/a.avi 1\n...".
// Names are sanitised into the scratch folder (at most 16 files, 3 levels);
// the tree is both the video root and the annotation folder. ReadListing
// runs on it, and for ucf101 also ReadUcf101Split with check_files (the
// input may create the listed videos as empty files). Invariants: every
// error has a message; a listing has classes, train and test videos, labels
// in range and distinct paths; ReadUcf101Split agrees with the ucf101
// listing.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/fuzz/fuzz_util.h"
#include "datasets/formats/listing.h"
#include "datasets/ucf101.h"

namespace {

// A relative path of [A-Za-z0-9_.,- ] components, no "." or "..", or "".
std::string SafeName(absl::string_view name) {
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '/', absl::SkipEmpty())) {
    std::string clean;
    for (char c : part) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
          c == ',' || c == '-' || c == ' ') {
        clean.push_back(c);
      }
    }
    if (clean.empty() || clean == "." || clean == "..") return "";
    parts.push_back(clean);
  }
  if (parts.empty() || parts.size() > 3) return "";
  return absl::StrJoin(parts, "/");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  tb::fuzz::ClearScratchDir();
  const std::string root = tb::fuzz::ScratchDir() + "/root";
  tb::fuzz::WriteScratchFile("root/.keep", "");

  std::vector<absl::string_view> lines = absl::StrSplit(bytes, '\n');
  std::vector<absl::string_view> header = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
  if (header.empty()) return 0;
  const std::string format(header[0]);
  int split = 1;
  if (header.size() > 1 && !absl::SimpleAtoi(header[1], &split)) return 0;

  std::set<std::string> written;
  std::string name, content;
  auto flush = [&] {
    if (!name.empty() && written.size() < 16 && written.insert(name).second) {
      tb::fuzz::TryWriteScratchFile("root/" + name, content);
    }
  };
  for (size_t i = 1; i < lines.size(); ++i) {
    if (absl::StartsWith(lines[i], "== ")) {
      flush();
      name = SafeName(lines[i].substr(3));
      content.clear();
    } else {
      content.append(lines[i].data(), lines[i].size());
      if (i + 1 < lines.size()) content.push_back('\n');
    }
  }
  flush();

  absl::StatusOr<tb::DatasetListing> listing = tb::ReadListing(format, root, root, split);
  if (!listing.ok()) {
    TB_FUZZ_CHECK(!listing.status().message().empty(), "an error without a message");
  } else {
    const int classes = static_cast<int>(listing->class_names.size());
    TB_FUZZ_CHECK(classes > 0, "a listing without classes");
    int train = 0, test = 0;
    std::set<std::string> paths;
    for (const tb::ListedVideo& v : listing->videos) {
      TB_FUZZ_CHECK(v.label >= 0 && v.label < classes,
                    absl::StrCat(v.relative_path, " has label ", v.label, " of ", classes));
      TB_FUZZ_CHECK(paths.insert(v.relative_path).second, v.relative_path + " listed twice");
      TB_FUZZ_CHECK(!v.origin.empty(), v.relative_path + " has no origin");
      (v.split == tb::ManifestVideo::TRAIN ? train : test)++;
      TB_FUZZ_CHECK(v.split == tb::ManifestVideo::TRAIN || v.split == tb::ManifestVideo::TEST,
                    v.relative_path + " has no split");
    }
    TB_FUZZ_CHECK(train > 0 && test > 0, absl::StrCat(train, " train and ", test, " test"));
  }
  if (format == "ucf101") {
    absl::StatusOr<tb::SplitSet> set = tb::ReadUcf101Split(root, root, split,
                                                           /*check_files=*/true);
    if (!set.ok()) {
      TB_FUZZ_CHECK(!set.status().message().empty(), "an error without a message");
    } else if (listing.ok()) {
      // check_files only adds "video not found" errors.
      TB_FUZZ_CHECK(set->train.size() + set->test.size() == listing->videos.size(),
                    "ReadUcf101Split and ReadListing list different videos");
      TB_FUZZ_CHECK(set->class_names == listing->class_names, "class names differ");
    }
  }
  return 0;
}
