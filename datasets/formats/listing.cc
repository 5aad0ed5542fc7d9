#include "datasets/formats/listing.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <system_error>
#include <utility>

#include <glog/logging.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"
#include "datasets/ucf101.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

struct TextLine {
  int number = 0;  // 1-based
  std::string text;
};

// Non-blank lines, BOM, CR and surrounding blanks removed (split files are
// often written on Windows).
absl::StatusOr<std::vector<TextLine>> ReadTextLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<TextLine> lines;
  std::string raw;
  for (int number = 1; std::getline(in, raw); ++number) {
    if (number == 1 && raw.rfind("\xEF\xBB\xBF", 0) == 0) raw.erase(0, 3);
    std::string text(absl::StripAsciiWhitespace(raw));
    if (!text.empty()) lines.push_back({number, std::move(text)});
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return lines;
}

absl::Status AtLine(const std::string& file, const TextLine& line, const std::string& reason) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ":", line.number, ": ", reason, ": '", line.text, "'"));
}

std::string Origin(const std::string& file, const TextLine& line) {
  return absl::StrCat(file, ":", line.number);
}

// "<text> <last field>" split at the last run of blanks, so that paths with
// spaces survive.
bool SplitLastField(const std::string& text, std::string* head, std::string* last) {
  const size_t end = text.find_last_of(" \t");
  if (end == std::string::npos) return false;
  *last = text.substr(end + 1);
  *head = std::string(absl::StripTrailingAsciiWhitespace(text.substr(0, end)));
  return !head->empty();
}

// ---------------------------------------------------------------- HMDB51

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Hmdb51SplitFiles(
    const std::string& dir, int split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError("HMDB51 split folder not found: " + dir);
  }
  static const std::regex kName("(.+)_test_split([0-9]+)\\.txt");
  std::vector<std::pair<std::string, std::string>> files;  // class, path
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kName)) continue;
    int n = 0;
    if (!absl::SimpleAtoi(m[2].str(), &n) || n != split) continue;
    files.emplace_back(m[1].str(), entry.path().string());
  }
  if (ec) return absl::UnavailableError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("no HMDB51 split files '<class>_test_split", split,
                                            ".txt' in ", dir));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// ---------------------------------------------------------------- Kinetics

struct KineticsRow {
  std::string label, youtube_id, split, file_name;
  std::string origin;
};

absl::StatusOr<std::vector<std::string>> KineticsCsvFiles(const std::string& annotations) {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::is_directory(annotations, ec)) {
    for (const auto& entry : fs::directory_iterator(annotations, ec)) {
      if (entry.path().extension() == ".csv") files.push_back(entry.path().string());
    }
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot list ", annotations, ": ", ec.message()));
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) return absl::NotFoundError("no .csv files in " + annotations);
    return files;
  }
  for (absl::string_view f : absl::StrSplit(annotations, ',', absl::SkipWhitespace())) {
    const std::string file(absl::StripAsciiWhitespace(f));
    if (!fs::is_regular_file(file, ec)) return absl::NotFoundError("Kinetics CSV not found: " + file);
    files.push_back(file);
  }
  if (files.empty()) return absl::InvalidArgumentError("no Kinetics CSV given");
  return files;
}

// Seconds as written in the CSV ("95" or "95.0"), an integer >= 0.
bool ParseSeconds(const std::string& text, int64_t* out) {
  if (absl::SimpleAtoi(text, out)) return *out >= 0;
  double d = 0;
  // Range first: casting inf, nan or a double beyond int64 is undefined
  // (//datasets/fuzz:listing_fuzzer found "1e3081").
  if (!absl::SimpleAtod(text, &d) || !(d >= 0 && d < 9.0e18) || std::floor(d) != d) {
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

absl::Status ReadKineticsCsv(const std::string& file, std::vector<KineticsRow>* rows,
                             int* skipped_test) {
  ASSIGN_OR_RETURN(std::vector<TextLine> lines, ReadTextLines(file));
  if (lines.empty()) return absl::InvalidArgumentError(file + ": empty CSV");
  ASSIGN_OR_RETURN(std::vector<std::string> header, SplitCsvRecord(lines[0].text));
  std::map<std::string, size_t> column;
  for (size_t i = 0; i < header.size(); ++i) {
    column[absl::AsciiStrToLower(absl::StripAsciiWhitespace(header[i]))] = i;
  }
  for (const char* required : {"youtube_id", "time_start", "time_end", "split"}) {
    if (!column.count(required)) {
      return AtLine(file, lines[0], absl::StrCat("header has no '", required,
                                                 "' column (want label,youtube_id,time_start,"
                                                 "time_end,split)"));
    }
  }
  const bool has_label = column.count("label") > 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const TextLine& line = lines[i];
    absl::StatusOr<std::vector<std::string>> fields = SplitCsvRecord(line.text);
    if (!fields.ok()) return AtLine(file, line, std::string(fields.status().message()));
    if (fields->size() != header.size()) {
      return AtLine(file, line, absl::StrCat(fields->size(), " fields, the header has ",
                                             header.size()));
    }
    auto field = [&](const char* name) { return (*fields)[column.at(name)]; };
    KineticsRow row;
    row.split = absl::AsciiStrToLower(field("split"));
    if (row.split == "test") {
      ++*skipped_test;
      continue;
    }
    if (row.split == "validate") row.split = "val";
    if (row.split != "train" && row.split != "val") {
      return AtLine(file, line, absl::StrCat("split '", field("split"),
                                             "' is not train, val or test"));
    }
    if (!has_label) return AtLine(file, line, "a train/val row needs a 'label' column");
    row.label = std::string(absl::StripAsciiWhitespace(field("label")));
    row.youtube_id = std::string(absl::StripAsciiWhitespace(field("youtube_id")));
    if (row.label.empty()) return AtLine(file, line, "empty label");
    if (row.youtube_id.empty() || row.youtube_id.find('/') != std::string::npos) {
      return AtLine(file, line, absl::StrCat("bad youtube_id '", row.youtube_id, "'"));
    }
    int64_t start = 0, end = 0;
    if (!ParseSeconds(field("time_start"), &start) || !ParseSeconds(field("time_end"), &end) ||
        end < start) {
      return AtLine(file, line, absl::StrCat("bad time_start/time_end '", field("time_start"),
                                             "', '", field("time_end"), "'"));
    }
    char name[64];
    std::snprintf(name, sizeof(name), "_%06lld_%06lld.mp4", static_cast<long long>(start),
                  static_cast<long long>(end));
    row.file_name = row.youtube_id + name;
    row.origin = Origin(file, line);
    rows->push_back(std::move(row));
  }
  return absl::OkStatus();
}

constexpr std::array<KineticsLayout, 6> kAllLayouts = {
    KineticsLayout::kSplitLabel, KineticsLayout::kSplitLabelUnderscore,
    KineticsLayout::kSplitFlat,  KineticsLayout::kLabel,
    KineticsLayout::kLabelUnderscore, KineticsLayout::kFlat};

std::string KineticsRelativePath(const KineticsRow& row, KineticsLayout layout) {
  const std::string underscored = absl::StrReplaceAll(row.label, {{" ", "_"}});
  switch (layout) {
    case KineticsLayout::kSplitLabel: return row.split + "/" + row.label + "/" + row.file_name;
    case KineticsLayout::kSplitLabelUnderscore:
      return row.split + "/" + underscored + "/" + row.file_name;
    case KineticsLayout::kSplitFlat: return row.split + "/" + row.file_name;
    case KineticsLayout::kLabel: return row.label + "/" + row.file_name;
    case KineticsLayout::kLabelUnderscore: return underscored + "/" + row.file_name;
    case KineticsLayout::kFlat: return row.file_name;
  }
  return row.file_name;
}

bool IsFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// ---------------------------------------------------------------- list

// Without classes.txt, integer labels make classes 0..max label.
constexpr int kMaxNumberedClasses = 100000;

absl::StatusOr<std::vector<std::string>> ReadClassesFile(const std::string& file) {
  ASSIGN_OR_RETURN(std::vector<TextLine> lines, ReadTextLines(file));
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const TextLine& line : lines) {
    if (!seen.insert(line.text).second) return AtLine(file, line, "duplicate class name");
    names.push_back(line.text);
  }
  if (names.empty()) return absl::InvalidArgumentError(file + ": no classes");
  return names;
}

struct RawListEntry {
  std::string path, label;
  std::string origin;
};

absl::Status ReadRawList(const std::string& file, ManifestVideo::Split split,
                         std::vector<RawListEntry>* out,
                         std::vector<ManifestVideo::Split>* splits) {
  ASSIGN_OR_RETURN(std::vector<TextLine> lines, ReadTextLines(file));
  for (const TextLine& line : lines) {
    RawListEntry e;
    if (!SplitLastField(line.text, &e.path, &e.label)) {
      return AtLine(file, line, "expected '<path> <label>'");
    }
    e.origin = Origin(file, line);
    out->push_back(std::move(e));
    splits->push_back(split);
  }
  return absl::OkStatus();
}

}  // namespace

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

bool HasVideoExtension(const std::string& path) {
  static const std::set<std::string> kExtensions = {
      ".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv",
      ".3gp"};
  const std::string ext = absl::AsciiStrToLower(fs::path(path).extension().string());
  return kExtensions.count(ext) > 0;
}

absl::StatusOr<std::vector<std::string>> SplitCsvRecord(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  size_t i = 0;
  for (;;) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      for (;;) {
        if (i >= line.size()) return absl::InvalidArgumentError("unterminated quoted field");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      if (i < line.size() && line[i] != ',') {
        return absl::InvalidArgumentError("text after a closing quote");
      }
    } else {
      while (i < line.size() && line[i] != ',') field += line[i++];
    }
    fields.push_back(field);
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return fields;
}

const char* KineticsLayoutName(KineticsLayout layout) {
  switch (layout) {
    case KineticsLayout::kSplitLabel: return "<split>/<label>/<file>";
    case KineticsLayout::kSplitLabelUnderscore: return "<split>/<label_with_underscores>/<file>";
    case KineticsLayout::kSplitFlat: return "<split>/<file>";
    case KineticsLayout::kLabel: return "<label>/<file>";
    case KineticsLayout::kLabelUnderscore: return "<label_with_underscores>/<file>";
    case KineticsLayout::kFlat: return "<file>";
  }
  return "?";
}

absl::StatusOr<DatasetListing> ReadUcf101Listing(const std::string& root,
                                                 const std::string& annotations, int split) {
  ASSIGN_OR_RETURN(SplitSet set, ReadUcf101Split(root, annotations, split,
                                                 /*check_files=*/false));
  DatasetListing listing;
  listing.format = "ucf101";
  listing.dataset = "ucf101";
  listing.class_names = set.class_names;
  const std::string ann = annotations.empty() ? root : annotations;
  for (const auto& [list, kind] : {std::make_pair(&set.train, ManifestVideo::TRAIN),
                                   std::make_pair(&set.test, ManifestVideo::TEST)}) {
    const std::string file = JoinPath(
        ann, absl::StrFormat("%s%02d.txt", kind == ManifestVideo::TRAIN ? "trainlist" : "testlist",
                             split));
    for (const VideoEntry& e : *list) {
      listing.videos.push_back({e.relative_path, e.label, kind, file});
    }
  }
  return listing;
}

absl::StatusOr<DatasetListing> ReadHmdb51Listing(const std::string& annotations, int split) {
  ASSIGN_OR_RETURN(auto files, Hmdb51SplitFiles(annotations, split));
  DatasetListing listing;
  listing.format = "hmdb51";
  listing.dataset = "hmdb51";
  int unused = 0;
  for (const auto& [class_name, file] : files) {
    const int label = static_cast<int>(listing.class_names.size());
    listing.class_names.push_back(class_name);
    ASSIGN_OR_RETURN(std::vector<TextLine> lines, ReadTextLines(file));
    for (const TextLine& line : lines) {
      std::string video, flag;
      if (!SplitLastField(line.text, &video, &flag)) {
        return AtLine(file, line, "expected '<video>.avi <0|1|2>'");
      }
      if (video.find('/') != std::string::npos) {
        return AtLine(file, line, "video name contains '/'");
      }
      ManifestVideo::Split kind;
      if (flag == "1") {
        kind = ManifestVideo::TRAIN;
      } else if (flag == "2") {
        kind = ManifestVideo::TEST;
      } else if (flag == "0") {
        ++unused;
        continue;
      } else {
        return AtLine(file, line, absl::StrCat("split flag '", flag, "' is not 0, 1 or 2"));
      }
      listing.videos.push_back({class_name + "/" + video, label, kind, Origin(file, line)});
    }
  }
  listing.notes.push_back(absl::StrCat(files.size(), " classes from ", annotations, "; ", unused,
                                       " videos marked 0 (unused in split ", split,
                                       ") skipped"));
  return listing;
}

absl::StatusOr<DatasetListing> ReadKineticsListing(const std::string& root,
                                                   const std::string& annotations,
                                                   KineticsLayout* detected) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, KineticsCsvFiles(annotations));
  std::vector<KineticsRow> rows;
  int skipped_test = 0;
  for (const std::string& file : files) {
    RETURN_IF_ERROR(ReadKineticsCsv(file, &rows, &skipped_test));
  }
  DatasetListing listing;
  listing.format = "kinetics";
  listing.dataset = "kinetics400";
  std::set<std::string> labels;
  for (const KineticsRow& row : rows) labels.insert(row.label);
  listing.class_names.assign(labels.begin(), labels.end());
  std::map<std::string, int> label_of;
  for (size_t i = 0; i < listing.class_names.size(); ++i) {
    label_of[listing.class_names[i]] = static_cast<int>(i);
  }

  // The layout under which most of the first rows' files exist.
  constexpr size_t kProbeRows = 200;
  std::map<KineticsLayout, int> hits;
  for (size_t i = 0; i < rows.size() && i < kProbeRows; ++i) {
    for (KineticsLayout layout : kAllLayouts) {
      if (IsFile(JoinPath(root, KineticsRelativePath(rows[i], layout)))) ++hits[layout];
    }
  }
  KineticsLayout layout = KineticsLayout::kSplitLabel;
  int best = 0;
  for (KineticsLayout l : kAllLayouts) {
    if (hits[l] > best) {
      best = hits[l];
      layout = l;
    }
  }
  if (detected != nullptr) *detected = layout;

  int other_extension = 0;
  for (const KineticsRow& row : rows) {
    std::string relative = KineticsRelativePath(row, layout);
    if (!IsFile(JoinPath(root, relative))) {
      // youtube-dl based downloaders sometimes keep the original container.
      const std::string stem = relative.substr(0, relative.size() - 4);
      for (const char* ext : {".mkv", ".webm"}) {
        if (IsFile(JoinPath(root, stem + ext))) {
          relative = stem + ext;
          ++other_extension;
          break;
        }
      }
    }
    listing.videos.push_back({relative, label_of.at(row.label),
                              row.split == "train" ? ManifestVideo::TRAIN : ManifestVideo::TEST,
                              row.origin});
  }
  listing.notes.push_back(absl::StrCat(
      rows.size(), " train/val rows from ", absl::StrJoin(files, ", "), "; layout ",
      KineticsLayoutName(layout), " (", best, " of the first ", std::min(rows.size(), kProbeRows),
      " rows found)", best == 0 ? ", no video found under any layout" : ""));
  if (skipped_test > 0) {
    listing.notes.push_back(absl::StrCat(skipped_test, " 'test' rows skipped (val is the test set)"));
  }
  if (other_extension > 0) {
    listing.notes.push_back(absl::StrCat(other_extension, " videos found as .mkv/.webm"));
  }
  return listing;
}

absl::StatusOr<DatasetListing> ReadPathLabelListing(const std::string& annotations) {
  std::error_code ec;
  if (!fs::is_directory(annotations, ec)) {
    return absl::NotFoundError("list annotations folder not found: " + annotations +
                               " (want train.txt, test.txt and optionally classes.txt)");
  }
  DatasetListing listing;
  listing.format = "list";
  listing.dataset = "list";
  const std::string classes_file = JoinPath(annotations, "classes.txt");
  const bool have_classes = IsFile(classes_file);
  if (have_classes) {
    ASSIGN_OR_RETURN(listing.class_names, ReadClassesFile(classes_file));
  }
  std::vector<RawListEntry> entries;
  std::vector<ManifestVideo::Split> splits;
  for (const auto& [name, kind] : {std::make_pair("train.txt", ManifestVideo::TRAIN),
                                   std::make_pair("test.txt", ManifestVideo::TEST)}) {
    const std::string file = JoinPath(annotations, name);
    if (!IsFile(file)) return absl::NotFoundError("missing list file: " + file);
    RETURN_IF_ERROR(ReadRawList(file, kind, &entries, &splits));
  }
  // Labels are all integers or all class names, as the first entry's.
  if (entries.empty()) return absl::InvalidArgumentError("no videos listed in " + annotations);
  std::vector<int> numeric(entries.size(), -1);
  const bool by_number = absl::SimpleAtoi(entries[0].label, &numeric[0]);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (absl::SimpleAtoi(entries[i].label, &numeric[i]) != by_number) {
      return absl::InvalidArgumentError(absl::StrCat(
          entries[i].origin, ": label '", entries[i].label, "' mixes integer and class-name "
          "labels (the first entry's label is '", entries[0].label, "')"));
    }
  }
  std::map<std::string, int> label_of;
  if (!by_number) {
    if (!have_classes) {
      std::set<std::string> names;
      for (const RawListEntry& e : entries) names.insert(e.label);
      listing.class_names.assign(names.begin(), names.end());
    }
    for (size_t i = 0; i < listing.class_names.size(); ++i) {
      label_of[listing.class_names[i]] = static_cast<int>(i);
    }
  } else if (!have_classes) {
    // Classes 0..max label, named by their numbers. A label far above any
    // dataset's class count is a typo or a corrupt file, not a reason to
    // make billions of classes.
    size_t max_at = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (numeric[i] > numeric[max_at]) max_at = i;
    }
    const int max_label = numeric[max_at];
    if (max_label >= kMaxNumberedClasses) {
      return absl::InvalidArgumentError(absl::StrCat(
          entries[max_at].origin, ": label ", max_label, " would make ", int64_t{max_label} + 1,
          " classes (at most ", kMaxNumberedClasses,
          " without classes.txt; list the class names there)"));
    }
    for (int i = 0; i <= max_label; ++i) listing.class_names.push_back(std::to_string(i));
  }
  const int num_classes = static_cast<int>(listing.class_names.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const RawListEntry& e = entries[i];
    int label = numeric[i];
    if (!by_number) {
      auto it = label_of.find(e.label);
      if (it == label_of.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(e.origin, ": unknown class '", e.label, "' (not in ", classes_file, ")"));
      }
      label = it->second;
    } else if (label < 0 || label >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat(e.origin, ": label ", e.label,
                                                     " out of range [0, ", num_classes, ")"));
    }
    listing.videos.push_back({e.path, label, splits[i], e.origin});
  }
  return listing;
}

absl::StatusOr<DatasetListing> ReadListing(const std::string& format, const std::string& root,
                                           const std::string& annotations, int split) {
  if (split < 1) return absl::InvalidArgumentError(absl::StrCat("split ", split, " must be >= 1"));
  absl::StatusOr<DatasetListing> listing;
  if (format == "ucf101") {
    listing = ReadUcf101Listing(root, annotations, split);
  } else if (format == "hmdb51") {
    listing = ReadHmdb51Listing(annotations.empty() ? root : annotations, split);
  } else if (format == "kinetics") {
    if (split != 1) return absl::InvalidArgumentError("kinetics has one split: use split 1");
    listing = ReadKineticsListing(root, annotations);
  } else if (format == "list") {
    if (split != 1) return absl::InvalidArgumentError("list format has one split: use split 1");
    listing = ReadPathLabelListing(annotations.empty() ? root : annotations);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown format '", format, "' (want ucf101, hmdb51, kinetics or list)"));
  }
  if (!listing.ok()) return listing.status();
  const int num_classes = static_cast<int>(listing->class_names.size());
  std::map<std::string, std::string> seen;  // relative path -> origin
  int train = 0, test = 0;
  for (const ListedVideo& v : listing->videos) {
    if (!HasVideoExtension(v.relative_path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          v.origin, ": '", v.relative_path,
          "' does not have a video file extension (.avi, .mp4, .mkv, .webm, ...)"));
    }
    auto [it, inserted] = seen.emplace(v.relative_path, v.origin);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(v.origin, ": '", v.relative_path,
                                                     "' is already listed at ", it->second));
    }
    CHECK_GE(v.label, 0);
    CHECK_LT(v.label, num_classes);
    (v.split == ManifestVideo::TRAIN ? train : test)++;
  }
  if (train == 0) return absl::InvalidArgumentError("no training videos listed in " + annotations);
  if (test == 0) return absl::InvalidArgumentError("no test videos listed in " + annotations);
  return listing;
}

}  // namespace tb
