#include "core/event_reader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tfrecord.h"

namespace tb {

absl::StatusOr<std::vector<tensorboard::Event>> ReadEventFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot open event file ", path, ": ", std::strerror(err)));
  }
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read event file ", path));
  ASSIGN_OR_RETURN(std::vector<TfRecord> records, ParseTfRecords(bytes, path));
  std::vector<tensorboard::Event> events(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (!events[i].ParseFromString(records[i].data)) {
      return absl::DataLossError(absl::StrCat("event file ", path, ": record at byte offset ",
                                              records[i].offset, " is not an Event proto"));
    }
  }
  return events;
}

}  // namespace tb
