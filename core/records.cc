#include "core/records.h"

#include <glog/logging.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"

namespace tb {
namespace {

// Keeps the parser's first error as "source:line:col: message".
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  explicit FirstErrorCollector(std::string source) : source_(std::move(source)) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message);
    }
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string source_;
  std::string first_;
};

absl::Status AsDataLoss(const absl::Status& s) {
  if (s.ok() || s.code() != absl::StatusCode::kInvalidArgument) return s;
  return absl::DataLossError(s.message());
}

}  // namespace

absl::Status ParseTextProto(const std::string& text, const std::string& source,
                            google::protobuf::Message* message) {
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors(source);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, message)) {
    return absl::InvalidArgumentError(errors.first().empty() ? source + ": cannot parse"
                                                             : errors.first());
  }
  return absl::OkStatus();
}

absl::Status ReadTextRecord(const std::string& path, google::protobuf::Message* message) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return AsDataLoss(ParseTextProto(*text, path, message));
}

std::string ToTextProto(const google::protobuf::Message& message) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(message, &text);
  return text;
}

std::string ToOneLineTextProto(const google::protobuf::Message& message) {
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  std::string text;
  printer.PrintToString(message, &text);
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  CHECK(status.ok()) << "cannot print " << message.GetDescriptor()->full_name()
                     << " as JSON: " << status.ToString();
  if (json.empty() || json.back() != '\n') json += '\n';
  return json;
}

absl::Status ParseJson(const std::string& json, const std::string& source,
                       google::protobuf::Message* message) {
  const auto status = google::protobuf::util::JsonStringToMessage(json, message);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message().as_string()));
  }
  return absl::OkStatus();
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

absl::Status WriteTextRecord(const std::string& path, const google::protobuf::Message& message) {
  return WriteFileAtomically(path, ToTextProto(message));
}

absl::Status WriteJsonRecord(const std::string& path, const google::protobuf::Message& message) {
  return WriteFileAtomically(path, ToJson(message));
}

absl::Status ReadJsonRecord(const std::string& path, google::protobuf::Message* message) {
  absl::StatusOr<std::string> json = ReadFileToString(path);
  if (!json.ok()) return json.status();
  return AsDataLoss(ParseJson(*json, path, message));
}

}  // namespace tb
