// File: datasets/flow/flow_file.h
//
// The .flow file: the optical flow of one video, one field per consecutive
// frame pair (field t = flow from frame t to frame t + 1, at the decode
// size), each component quantised to one byte (FlowQuantization in
// flow.proto) and each field compressed on its own, so a clip's few fields
// are read without touching the rest. Layout (integers little-endian):
//
//   8 bytes   magic "TBFLOW1\n"
//   4 bytes   uint32 H: size of the header
//   H bytes   FlowFileHeader (binary proto): settings, video, sizes
//   8 (F + 1) uint64 offsets: field f is bytes [offsets[f], offsets[f + 1])
//             of the file, offsets[F] = file size (F = frame_count - 1)
//   4 bytes   uint32 CRC-32 (zlib's) of the H, header and offset bytes
//   ...       the fields: each the zlib stream of 2 planes (x then y
//             component), height rows of width bytes each (after the
//             settings' row filter, if any)
//
// A truncated or damaged file is detected on Open (magic, sizes, checksum,
// offsets) or on reading a field (zlib's Adler-32, the inflated size);
// every error names the file and the reason. Files are written atomically
// (<path>.partial, fsync, rename), so a file that exists is complete.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<FlowFile> f, FlowFile::Open(path));
//   std::vector<float> xy(2 * f->header().height() * f->header().width());
//   RETURN_IF_ERROR(f->ReadFieldFloat(t, xy.data()));  // px, [2, H, W]
//
// Reading is thread-safe (pread on one descriptor).
#ifndef TIMEBALANCE_DATASETS_FLOW_FLOW_FILE_H_
#define TIMEBALANCE_DATASETS_FLOW_FLOW_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datasets/flow/flow.pb.h"

namespace tb {

inline constexpr char kFlowFileMagic[] = "TBFLOW1\n";  // 8 bytes without the NUL
inline constexpr int kFlowFileVersion = 1;
inline constexpr char kTvL1Algorithm[] = "opencv_dual_tvl1";

// What compute_flow uses unless told otherwise: OpenCV's TV-L1 defaults,
// decode short side 128, bound 20 px, 255 levels, zlib level 9 without a
// row filter (smallest of the measured options, docs/DATA.md).
FlowSettings DefaultFlowSettings();

// Known algorithm, compression and filter names, ranges of the numbers.
absl::Status ValidateFlowSettings(const FlowSettings& settings);

// "" when `a` and `b` give the same stored values, else a short description
// of the first differences ("decode_short_side 112 vs 128").
std::string FlowSettingsDifference(const FlowSettings& a, const FlowSettings& b);

// Quantisation (flow.proto, FlowQuantization).
float FlowQuantStep(const FlowQuantization& q);  // 2 * bound / (levels - 1)
uint8_t QuantizeFlowValue(float v, const FlowQuantization& q);
float DequantizeFlowValue(uint8_t level, const FlowQuantization& q);

// OpenCV's CV_32FC2 layout ([H, W, 2], x then y per pixel) to quantised
// planes ([2, H, W]).
void QuantizeFlowField(const float* xy_interleaved, int width, int height,
                       const FlowQuantization& q, uint8_t* planes);

// One field's planes ([2, H, W] levels) to its stored bytes, and back.
// Decoding fails (DataLoss, naming `what`) on a damaged stream or a wrong
// size.
absl::StatusOr<std::string> EncodeFlowField(const uint8_t* planes, int width, int height,
                                            const FlowSettings& settings);
absl::Status DecodeFlowField(std::string_view data, int width, int height,
                             const FlowSettings& settings, const std::string& what,
                             uint8_t* planes);

// Writes a .flow file atomically; creates missing parent folders. The
// header's frame_count must be encoded_fields.size() + 1.
absl::Status WriteFlowFile(const std::string& path, const FlowFileHeader& header,
                           const std::vector<std::string>& encoded_fields);

// Creates the folder of `path` if needed, then writes `data` atomically
// (core/file_util.h).
absl::Status WriteFileAtomicallyTo(const std::string& path, const std::string& data);

class FlowFile {
 public:
  // Opens `path` and checks everything but the fields' contents.
  static absl::StatusOr<std::unique_ptr<FlowFile>> Open(const std::string& path);
  ~FlowFile();

  FlowFile(const FlowFile&) = delete;
  FlowFile& operator=(const FlowFile&) = delete;

  const FlowFileHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  int64_t num_fields() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t file_bytes() const { return offsets_.back(); }
  // Field f is bytes [offsets()[f], offsets()[f + 1]) of the file.
  const std::vector<uint64_t>& offsets() const { return offsets_; }

  // Field `index` as levels, [2, H, W] bytes.
  absl::Status ReadField(int64_t index, uint8_t* planes) const;
  // Field `index` dequantised to px, [2, H, W] floats.
  absl::Status ReadFieldFloat(int64_t index, float* xy) const;

 private:
  FlowFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  const std::string path_;
  const int fd_;
  FlowFileHeader header_;
  std::vector<uint64_t> offsets_;
};

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FLOW_FLOW_FILE_H_
