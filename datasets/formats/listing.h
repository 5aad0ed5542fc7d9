// File: datasets/formats/listing.h
//
// Readers of the official annotation formats of the common action datasets,
// all producing one DatasetListing: the class names and, per video, its path
// relative to the video root, its label and whether it is a training or a
// test video. Every malformed annotation is an error naming the file, the
// line and the offending text; a listing never silently drops a video.
//
//   ucf101    classInd.txt, trainlistNN.txt, testlistNN.txt
//             (datasets/ucf101.h); videos at <root>/<class>/<video>.avi.
//   hmdb51    one file per class and split, <class>_test_split<N>.txt, lines
//             "<video>.avi <0|1|2>" (1 train, 2 test, 0 unused); videos at
//             <root>/<class>/<video>.avi; classes = the sorted class names
//             of the split files.
//   kinetics  CSV with the header label,youtube_id,time_start,time_end,split
//             (any column order, extra columns ignored, RFC 4180 quoting);
//             "train" rows are training videos, "val" rows test videos,
//             "test" rows (no public labels) are skipped. Files are
//             <youtube_id>_<start:06d>_<end:06d>.mp4 in one of the layouts
//             of the common download scripts, detected from the files
//             present (see KineticsLayout).
//   list      <annotations>/train.txt and test.txt, lines "<path> <label>"
//             where the label is a 0-based integer or a class name;
//             optional classes.txt (one name per line, line order = label);
//             without it, integer labels make the classes 0..max label
//             (at most 100000).
#ifndef TIMEBALANCE_DATASETS_FORMATS_LISTING_H_
#define TIMEBALANCE_DATASETS_FORMATS_LISTING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "datasets/formats/manifest.pb.h"

namespace tb {

struct ListedVideo {
  std::string relative_path;  // '/'-separated, below the video root
  int label = 0;              // 0-based
  ManifestVideo::Split split = ManifestVideo::SPLIT_UNSET;
  std::string origin;         // "file:line" of the annotation that listed it
};

struct DatasetListing {
  std::string format;                    // ucf101, hmdb51, kinetics, list
  std::string dataset;                   // default dataset name, e.g. "kinetics400"
  std::vector<std::string> class_names;  // index = label
  std::vector<ListedVideo> videos;       // annotation order
  std::vector<std::string> notes;        // what was skipped and why, for the user
};

// The folder layouts of Kinetics downloads, relative to the video root:
//   kSplitLabel        <split>/<label>/<file>  (ActivityNet crawler run once
//                      per split, or cvdfoundation tars arranged by class)
//   kSplitLabelUnderscore  the same with spaces in labels replaced by '_'
//                      (as several forks of the crawler write them)
//   kSplitFlat         <split>/<file>           (cvdfoundation tars as extracted)
//   kLabel, kLabelUnderscore  <label>/<file>    (no split folders)
//   kFlat              <file>
// <split> is the CSV's split value (train, val).
enum class KineticsLayout {
  kSplitLabel,
  kSplitLabelUnderscore,
  kSplitFlat,
  kLabel,
  kLabelUnderscore,
  kFlat,
};
const char* KineticsLayoutName(KineticsLayout layout);

absl::StatusOr<DatasetListing> ReadUcf101Listing(const std::string& root,
                                                 const std::string& annotations, int split);
absl::StatusOr<DatasetListing> ReadHmdb51Listing(const std::string& annotations, int split);
// `annotations`: a CSV file, a comma-separated list of CSV files, or a folder
// whose *.csv files are all read. The layout is the one under which most of
// the first rows' files exist (kSplitLabel when none exists); a file missing
// as .mp4 is also looked for as .mkv and .webm.
absl::StatusOr<DatasetListing> ReadKineticsListing(const std::string& root,
                                                   const std::string& annotations,
                                                   KineticsLayout* detected = nullptr);
absl::StatusOr<DatasetListing> ReadPathLabelListing(const std::string& annotations);

// Dispatches on `format` (ucf101, hmdb51, kinetics, list) and checks what
// every format must satisfy: a known video file extension, no path listed
// twice, labels in range, at least one training and one test video.
absl::StatusOr<DatasetListing> ReadListing(const std::string& format, const std::string& root,
                                           const std::string& annotations, int split);

// True for the extensions of containers FFmpeg reads video from
// (.avi .mp4 .mkv .webm .mov .m4v .mpg .mpeg .flv .wmv .ogv .3gp), any case.
bool HasVideoExtension(const std::string& path);

// Splits one CSV record (RFC 4180: fields may be double-quoted, "" inside
// quotes is a quote). Fails on an unterminated quote or text after a
// closing quote.
absl::StatusOr<std::vector<std::string>> SplitCsvRecord(const std::string& line);

// dir + "/" + name (no doubled slash; dir "" gives name).
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FORMATS_LISTING_H_
