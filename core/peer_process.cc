#include "core/peer_process.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tb {

absl::StatusOr<double> JsonNumberField(absl::string_view json, absl::string_view field) {
  const std::string key = absl::StrCat("\"", field, "\"");
  const size_t at = json.find(key);
  if (at == absl::string_view::npos) {
    return absl::NotFoundError(absl::StrCat("no field ", key, " in ", json));
  }
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(json.substr(at + key.size()));
  if (!absl::ConsumePrefix(&rest, ":")) {
    return absl::NotFoundError(absl::StrCat("field ", key, " has no value in ", json));
  }
  rest = absl::StripLeadingAsciiWhitespace(rest);
  const size_t end = rest.find_first_of(",}");
  double value = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(rest.substr(0, end)), &value)) {
    return absl::NotFoundError(absl::StrCat("field ", key, " is not a number in ", json));
  }
  return value;
}

absl::StatusOr<std::string> RunPeer(const std::string& command, absl::string_view tag) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(absl::StrCat("cannot run peer: ", command));
  std::string output;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0;) output.append(buffer, n);
  const int status = ::pclose(pipe);
  const std::string tail = output.size() > 2000 ? output.substr(output.size() - 2000) : output;
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("peer failed (status ", status, "): ", command,
                                            "\n", tail));
  }
  const std::string prefix = absl::StrCat(tag, " ");
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::ConsumePrefix(&line, prefix)) return std::string(line);
  }
  return absl::NotFoundError(
      absl::StrCat("peer printed no \"", tag, "\" line: ", command, "\n", tail));
}

}  // namespace tb
