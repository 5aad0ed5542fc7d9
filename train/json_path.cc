#include "train/json_path.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"

namespace tb {
namespace {

using google::protobuf::Value;

// One component of a path: a key, an index or a selector.
struct Step {
  enum Kind { kKey, kIndex, kSelect } kind = kKey;
  std::string key;    // kKey; kSelect: the selector's key
  int64_t index = 0;  // kIndex
  std::string value;  // kSelect
};

absl::StatusOr<std::vector<Step>> ParsePath(const std::string& path) {
  auto bad = [&](size_t at, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric path \"", path, "\": ", why, " at character ", at + 1));
  };
  std::vector<Step> steps;
  if (path.empty()) return absl::InvalidArgumentError("metric path is empty");
  size_t i = 0;
  bool expect_key = true;  // after a dot (or at the start, unless "[")
  while (i < path.size()) {
    const char c = path[i];
    if (c == '[') {
      const size_t close = path.find(']', i);
      if (close == std::string::npos) return bad(i, "'[' without ']'");
      const std::string inside = path.substr(i + 1, close - i - 1);
      Step s;
      const size_t eq = inside.find('=');
      if (eq != std::string::npos) {
        s.kind = Step::kSelect;
        s.key = inside.substr(0, eq);
        s.value = inside.substr(eq + 1);
        if (s.key.empty()) return bad(i, "empty key in [key=value]");
      } else {
        s.kind = Step::kIndex;
        if (!absl::SimpleAtoi(inside, &s.index) || s.index < 0) {
          return bad(i, "[" + inside + "] is neither an index nor key=value");
        }
      }
      steps.push_back(s);
      i = close + 1;
      expect_key = false;
    } else if (c == '.') {
      if (expect_key) return bad(i, "empty key");
      expect_key = true;
      ++i;
      if (i == path.size()) return bad(i - 1, "ends with '.'");
    } else if (c == ']') {
      return bad(i, "']' without '['");
    } else {
      if (!expect_key) return bad(i, "missing '.' before a key");
      size_t end = i;
      while (end < path.size() && path[end] != '.' && path[end] != '[' && path[end] != ']') ++end;
      Step s;
      s.key = path.substr(i, end - i);
      steps.push_back(s);
      i = end;
      expect_key = false;
    }
  }
  return steps;
}

// A scalar as text, for [key=value] selectors and messages.
std::string ScalarText(const Value& v) {
  switch (v.kind_case()) {
    case Value::kStringValue: return v.string_value();
    case Value::kNumberValue: return absl::StrCat(v.number_value());
    case Value::kBoolValue: return v.bool_value() ? "true" : "false";
    case Value::kNullValue: return "null";
    default: return "";
  }
}

}  // namespace

absl::StatusOr<Value> ParseJsonValue(const std::string& text, const std::string& source) {
  Value value;
  const auto status = google::protobuf::util::JsonStringToMessage(text, &value);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid JSON: ", std::string(status.message())));
  }
  return value;
}

absl::StatusOr<Value> ReadJsonFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseJsonValue(*text, path);
}

absl::Status CheckJsonPath(const std::string& path) { return ParsePath(path).status(); }

absl::StatusOr<Value> ResolveJsonPath(const Value& root, const std::string& path) {
  absl::StatusOr<std::vector<Step>> steps = ParsePath(path);
  if (!steps.ok()) return steps.status();
  const Value* at = &root;
  std::string where = "the top level";
  std::string walked;
  for (const Step& s : *steps) {
    switch (s.kind) {
      case Step::kKey: {
        if (at->kind_case() != Value::kStructValue) {
          return absl::NotFoundError(
              absl::StrCat("no key \"", s.key, "\" at ", where, " (not an object)"));
        }
        const auto& fields = at->struct_value().fields();
        auto it = fields.find(s.key);
        if (it == fields.end()) {
          return absl::NotFoundError(absl::StrCat("no key \"", s.key, "\" at ", where));
        }
        at = &it->second;
        walked += (walked.empty() ? "" : ".") + s.key;
        break;
      }
      case Step::kIndex: {
        if (at->kind_case() != Value::kListValue ||
            s.index >= at->list_value().values_size()) {
          return absl::NotFoundError(absl::StrCat(
              "no element [", s.index, "] at ", where,
              at->kind_case() == Value::kListValue
                  ? absl::StrCat(" (", at->list_value().values_size(), " elements)")
                  : " (not a list)"));
        }
        at = &at->list_value().values(static_cast<int>(s.index));
        walked += absl::StrCat("[", s.index, "]");
        break;
      }
      case Step::kSelect: {
        if (at->kind_case() != Value::kListValue) {
          return absl::NotFoundError(
              absl::StrCat("no element [", s.key, "=", s.value, "] at ", where, " (not a list)"));
        }
        const Value* found = nullptr;
        for (const Value& e : at->list_value().values()) {
          if (e.kind_case() != Value::kStructValue) continue;
          auto it = e.struct_value().fields().find(s.key);
          if (it != e.struct_value().fields().end() && ScalarText(it->second) == s.value) {
            found = &e;
            break;
          }
        }
        if (found == nullptr) {
          return absl::NotFoundError(
              absl::StrCat("no element [", s.key, "=", s.value, "] at ", where));
        }
        at = found;
        walked += absl::StrCat("[", s.key, "=", s.value, "]");
        break;
      }
    }
    where = walked;
  }
  return *at;
}

bool JsonNumber(const Value& value, double* number) {
  switch (value.kind_case()) {
    case Value::kNumberValue:
      *number = value.number_value();
      return true;
    case Value::kBoolValue:
      *number = value.bool_value() ? 1 : 0;
      return true;
    case Value::kStringValue: {
      int64_t i;
      if (absl::SimpleAtoi(value.string_value(), &i)) {
        *number = static_cast<double>(i);
        return true;
      }
      return false;
    }
    default:
      return false;
  }
}

absl::StatusOr<std::vector<MetricsLine>> ReadMetricsJsonl(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  std::vector<MetricsLine> lines;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    absl::StatusOr<Value> v = ParseJsonValue(std::string(line), absl::StrCat(path, ":", number));
    if (!v.ok()) return absl::DataLossError(v.status().message());
    if (v->kind_case() != Value::kStructValue) {
      return absl::DataLossError(absl::StrCat(path, ":", number, ": not a JSON object"));
    }
    MetricsLine m;
    for (const auto& [key, field] : v->struct_value().fields()) {
      double x;
      if (JsonNumber(field, &x)) m.values[key] = x;
    }
    auto step = m.values.find("step");
    if (step == m.values.end()) {
      return absl::DataLossError(absl::StrCat(path, ":", number, ": no \"step\""));
    }
    m.step = static_cast<int64_t>(std::llround(step->second));
    lines.push_back(std::move(m));
  }
  return lines;
}

}  // namespace tb
