// File: core/records.h
//
// Reading and writing protobuf records: text protos (records a program reads
// back: stage and cell records, scores) and JSON (results.json, for people
// and scripts), both written atomically (core/file_util.h). JSON uses
// protobuf's printer with the .proto field names, so its keys are the ones
// documented in core/results.proto.
//
//   RETURN_IF_ERROR(WriteJsonRecord(dir + "/results.json", results));
//   ASSIGN_OR_RETURN(StageRecord r, ReadTextRecord<StageRecord>(path));
#ifndef TIMEBALANCE_CORE_RECORDS_H_
#define TIMEBALANCE_CORE_RECORDS_H_

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

// Parses text-proto `text` into `message`; InvalidArgument names `source`
// and the first error's line and column.
absl::Status ParseTextProto(const std::string& text, const std::string& source,
                            google::protobuf::Message* message);

// Reads the text proto at `path`: NotFound when the file does not exist,
// DataLoss naming the file and line when it does not parse.
absl::Status ReadTextRecord(const std::string& path, google::protobuf::Message* message);

template <typename T>
absl::StatusOr<T> ReadTextRecord(const std::string& path) {
  T message;
  absl::Status s = ReadTextRecord(path, &message);
  if (!s.ok()) return s;
  return message;
}

// Multi-line text proto of `message`.
std::string ToTextProto(const google::protobuf::Message& message);
// One-line text proto of `message` (for messages and tables).
std::string ToOneLineTextProto(const google::protobuf::Message& message);
// Indented JSON of `message` with the .proto field names and a final newline.
std::string ToJson(const google::protobuf::Message& message);
// Parses JSON written by ToJson; InvalidArgument naming `source`.
absl::Status ParseJson(const std::string& json, const std::string& source,
                       google::protobuf::Message* message);

absl::Status WriteTextRecord(const std::string& path, const google::protobuf::Message& message);
absl::Status WriteJsonRecord(const std::string& path, const google::protobuf::Message& message);

// `text` as a JSON string literal (quoted, escaped), for hand-assembled
// JSON lines (metrics.jsonl, the tools' one-line reports).
std::string JsonString(const std::string& text);

// Reads JSON written by WriteJsonRecord (NotFound / DataLoss as above).
absl::Status ReadJsonRecord(const std::string& path, google::protobuf::Message* message);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_RECORDS_H_
