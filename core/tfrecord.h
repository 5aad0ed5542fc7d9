// File: core/tfrecord.h
//
// TFRecord framing, the container of TensorBoard event files. Each record is
//
//   uint64  length            little endian
//   uint32  masked CRC32C of the 8 length bytes
//   byte    data[length]
//   uint32  masked CRC32C of data
//
// (integers little endian, masks from core/crc32c.h). Records are simply
// concatenated; there is no file header. AppendTfRecord frames one record;
// ParseTfRecords splits a whole file back and checks both CRCs of every
// record, for tests and tools that read what EventWriter wrote.
#ifndef TIMEBALANCE_CORE_TFRECORD_H_
#define TIMEBALANCE_CORE_TFRECORD_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tb {

// Bytes a record adds around its data: length, length CRC, data CRC.
inline constexpr size_t kTfRecordOverhead = 8 + 4 + 4;

// Appends `data`, framed as one TFRecord, to *out.
void AppendTfRecord(std::string_view data, std::string* out);

struct TfRecord {
  uint64_t offset = 0;  // byte offset of the record's length field
  std::string data;
};

// The records of `bytes`, the contents of the file `name` (used in errors).
// DataLoss naming the file and the record's byte offset if a record is
// truncated (including a file cut inside the 12-byte header) or either CRC
// does not match.
absl::StatusOr<std::vector<TfRecord>> ParseTfRecords(std::string_view bytes,
                                                     const std::string& name);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_TFRECORD_H_
