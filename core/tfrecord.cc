#include "core/tfrecord.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/crc32c.h"

namespace tb {
namespace {

void PutLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

uint64_t GetLittleEndian(std::string_view bytes, size_t pos, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[pos + i])) << (8 * i);
  }
  return v;
}

absl::Status RecordError(const std::string& name, size_t offset, const std::string& reason) {
  return absl::DataLossError(
      absl::StrCat("TFRecord file ", name, ": record at byte offset ", offset, ": ", reason));
}

}  // namespace

void AppendTfRecord(std::string_view data, std::string* out) {
  out->reserve(out->size() + data.size() + kTfRecordOverhead);
  const size_t length_pos = out->size();
  PutLittleEndian(data.size(), 8, out);
  const uint32_t length_crc = MaskCrc32c(Crc32c(std::string_view(out->data() + length_pos, 8)));
  PutLittleEndian(length_crc, 4, out);
  out->append(data.data(), data.size());
  PutLittleEndian(MaskCrc32c(Crc32c(data)), 4, out);
}

absl::StatusOr<std::vector<TfRecord>> ParseTfRecords(std::string_view bytes,
                                                     const std::string& name) {
  std::vector<TfRecord> records;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t left = bytes.size() - pos;
    if (left < 12) {
      return RecordError(name, pos, absl::StrCat("truncated header (", left, " of 12 bytes)"));
    }
    const uint64_t length = GetLittleEndian(bytes, pos, 8);
    const uint32_t length_crc = static_cast<uint32_t>(GetLittleEndian(bytes, pos + 8, 4));
    const uint32_t want_length_crc = MaskCrc32c(Crc32c(bytes.substr(pos, 8)));
    if (length_crc != want_length_crc) {
      return RecordError(name, pos,
                         absl::StrFormat("length CRC mismatch (stored 0x%08x, computed 0x%08x)",
                                         length_crc, want_length_crc));
    }
    if (length > left - 12 || left - 12 - length < 4) {
      return RecordError(name, pos,
                         absl::StrCat("truncated data (record needs ", length + 16, " bytes, ",
                                      left, " left in the file)"));
    }
    const std::string_view data = bytes.substr(pos + 12, length);
    const uint32_t data_crc = static_cast<uint32_t>(GetLittleEndian(bytes, pos + 12 + length, 4));
    const uint32_t want_data_crc = MaskCrc32c(Crc32c(data));
    if (data_crc != want_data_crc) {
      return RecordError(name, pos,
                         absl::StrFormat("data CRC mismatch (stored 0x%08x, computed 0x%08x)",
                                         data_crc, want_data_crc));
    }
    records.push_back(TfRecord{pos, std::string(data)});
    pos += 12 + length + 4;
  }
  return records;
}

}  // namespace tb
