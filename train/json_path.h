// File: train/json_path.h
//
// Reading numbers out of the files runs write, for //tools:regress and
// //tools:report: any JSON file (results.json of an experiment, a pipeline
// or a stage; protobuf's JSON printer) as a google.protobuf.Value, a path
// into it, and the training loop's metrics.jsonl (one JSON object per log
// window).
//
//   ASSIGN_OR_RETURN(google::protobuf::Value results, ReadJsonFile(dir + "/results.json"));
//   ASSIGN_OR_RETURN(google::protobuf::Value v, ResolveJsonPath(results, "test.top1"));
#ifndef TIMEBALANCE_TRAIN_JSON_PATH_H_
#define TIMEBALANCE_TRAIN_JSON_PATH_H_

#include <google/protobuf/struct.pb.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

// Parses JSON text (numbers become doubles); InvalidArgument naming `source`.
absl::StatusOr<google::protobuf::Value> ParseJsonValue(const std::string& text,
                                                       const std::string& source);

// Reads and parses a JSON file: NotFound when it does not exist.
absl::StatusOr<google::protobuf::Value> ReadJsonFile(const std::string& path);

// Syntax of a path: keys separated by dots; "[N]" selects element N of a
// list, "[key=value]" the first object of a list whose `key` is `value`
// (compared as text, numbers in their shortest form):
//   "test.top1", "student.per_class[2].top1", "stages[stage=distill].seconds".
// InvalidArgument naming the path and the position of a syntax error.
absl::Status CheckJsonPath(const std::string& path);

// The value at `path`; NotFound naming the first component that is missing
// ("no key \"top1\" at test"), InvalidArgument for a syntax error.
absl::StatusOr<google::protobuf::Value> ResolveJsonPath(const google::protobuf::Value& root,
                                                        const std::string& path);

// A JSON value as a number: numbers, booleans (0/1) and strings that hold a
// whole number (protobuf prints int64 as a string). False otherwise.
bool JsonNumber(const google::protobuf::Value& value, double* number);

// One line of metrics.jsonl: the step that ends the log window and every
// numeric key of the line (the step included).
struct MetricsLine {
  int64_t step = 0;
  std::map<std::string, double> values;
};

// Every line of a metrics.jsonl file, in file order. An empty line is
// skipped; a line that does not parse is DataLoss naming the file and line.
absl::StatusOr<std::vector<MetricsLine>> ReadMetricsJsonl(const std::string& path);

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_JSON_PATH_H_
