#include "core/event_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "core/tfrecord.h"
#include "glog/logging.h"

namespace tb {
namespace {

constexpr char kFileVersion[] = "brain.Event:2";
constexpr char kTextPluginName[] = "text";
constexpr char kKeptForRetry[] = "kept for the next Flush";

std::string Hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// An event with a one-value summary for `tag`; the caller sets the value.
absl::StatusOr<tensorboard::Event> SummaryEvent(const std::string& tag, int64_t step,
                                                double wall_time, const std::string& path) {
  if (tag.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("event file ", path, ": empty summary tag"));
  }
  tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  event.mutable_summary()->add_value()->set_tag(tag);
  return event;
}

absl::Status ClosedError(const std::string& path) {
  return absl::FailedPreconditionError(absl::StrCat("event file ", path, " is closed"));
}

}  // namespace

double WallTimeNow() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

std::string EventFileName(int64_t unix_seconds, const std::string& hostname,
                          const std::string& suffix) {
  std::string name = absl::StrCat("events.out.tfevents.", unix_seconds, ".", hostname);
  if (!suffix.empty()) absl::StrAppend(&name, ".", suffix);
  return name;
}

std::string MarkdownPreformatted(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 8);
  size_t start = 0;
  while (true) {
    const size_t end = text.find('\n', start);
    out += "    ";
    out.append(text.substr(start, end == std::string_view::npos ? end : end - start));
    out += '\n';
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

absl::StatusOr<std::unique_ptr<EventWriter>> EventWriter::Create(const std::string& dir,
                                                                 const std::string& suffix) {
  if (dir.empty()) return absl::InvalidArgumentError("event writer: empty directory name");
  if (suffix.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("event writer for ", dir, ": suffix '", suffix, "' contains '/'"));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create event directory ", dir, ": ", ec.message()));
  }
  const double now = WallTimeNow();
  const std::string path =
      absl::StrCat(dir, "/", EventFileName(static_cast<int64_t>(now), Hostname(), suffix));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot create event file ", path, ": ", std::strerror(err));
    if (err == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          message, " (another writer started in the same second; give it another suffix)"));
    }
    return absl::ErrnoToStatus(err, message);
  }
  std::unique_ptr<EventWriter> writer(new EventWriter(path, fd));
  tensorboard::Event header;
  header.set_wall_time(now);
  header.set_file_version(kFileVersion);
  absl::Status s = writer->AddEvent(header);
  if (s.ok()) s = writer->Flush();
  if (!s.ok()) {
    // A file without a complete header is of no use to TensorBoard.
    writer->Close().IgnoreError();
    std::remove(path.c_str());
    return s;
  }
  return writer;
}

EventWriter::EventWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

EventWriter::~EventWriter() {
  bool open;
  {
    absl::MutexLock lock(&mu_);
    open = fd_ >= 0;
  }
  if (!open) return;
  const absl::Status s = Close();
  if (!s.ok()) LOG(ERROR) << "closing event writer: " << s;
}

absl::Status EventWriter::AddScalar(const std::string& tag, int64_t step, double value,
                                    double wall_time) {
  ASSIGN_OR_RETURN(tensorboard::Event event, SummaryEvent(tag, step, wall_time, path_));
  tensorboard::Summary::Value* v = event.mutable_summary()->mutable_value(0);
  v->set_simple_value(static_cast<float>(value));
  return AddEvent(event);
}

absl::Status EventWriter::AddText(const std::string& tag, int64_t step, const std::string& text,
                                  double wall_time) {
  ASSIGN_OR_RETURN(tensorboard::Event event, SummaryEvent(tag, step, wall_time, path_));
  tensorboard::Summary::Value* v = event.mutable_summary()->mutable_value(0);
  tensorboard::SummaryMetadata* metadata = v->mutable_metadata();
  // The text plugin's content is a TextPluginData{version: 0}, which
  // serializes to no bytes; set_content("") still marks plugin_data present.
  metadata->mutable_plugin_data()->set_plugin_name(kTextPluginName);
  metadata->mutable_plugin_data()->set_content("");
  metadata->set_data_class(tensorboard::DATA_CLASS_TENSOR);
  tensorboard::TensorProto* tensor = v->mutable_tensor();
  tensor->set_dtype(tensorboard::DT_STRING);
  tensor->mutable_tensor_shape();  // present with no dims: rank 0
  tensor->add_string_val(text);
  return AddEvent(event);
}

absl::Status EventWriter::AddEvent(const tensorboard::Event& event) {
  absl::MutexLock lock(&mu_);
  return AppendLocked(event);
}

absl::Status EventWriter::AppendLocked(const tensorboard::Event& event) {
  if (fd_ < 0) return ClosedError(path_);
  std::string data;
  if (!event.SerializeToString(&data)) {
    return absl::InternalError(absl::StrCat("event file ", path_, ": cannot serialize event"));
  }
  AppendTfRecord(data, &buffer_);
  if (buffer_.size() > kAutoFlushBytes) return WriteBufferLocked(kKeptForRetry);
  return absl::OkStatus();
}

absl::Status EventWriter::Flush() {
  absl::MutexLock lock(&mu_);
  if (fd_ < 0) return ClosedError(path_);
  return WriteBufferLocked(kKeptForRetry);
}

absl::Status EventWriter::WriteBufferLocked(const char* unwritten_fate) {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      buffer_.erase(0, done);
      return absl::ErrnoToStatus(
          err, absl::StrCat("cannot write event file ", path_, ": ", std::strerror(err), " (",
                            buffer_.size(), " bytes ", unwritten_fate, ")"));
    }
    done += static_cast<size_t>(n);
  }
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status EventWriter::Close() {
  absl::MutexLock lock(&mu_);
  if (fd_ < 0) return ClosedError(path_);
  absl::Status s = WriteBufferLocked("of events lost: the file is closed anyway");
  buffer_.clear();
  if (::close(fd_) != 0 && s.ok()) {
    const int err = errno;
    s = absl::ErrnoToStatus(
        err, absl::StrCat("cannot close event file ", path_, ": ", std::strerror(err)));
  }
  fd_ = -1;
  return s;
}

absl::StatusOr<std::unique_ptr<EventWriter>> CreateUniqueEventWriter(const std::string& dir,
                                                                     const std::string& suffix) {
  absl::StatusOr<std::unique_ptr<EventWriter>> writer = EventWriter::Create(dir, suffix);
  for (int n = 1; n <= 100 && absl::IsAlreadyExists(writer.status()); ++n) {
    writer = EventWriter::Create(dir, suffix.empty() ? absl::StrCat(n) : absl::StrCat(suffix, ".", n));
  }
  return writer;
}

}  // namespace tb
