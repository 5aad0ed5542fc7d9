#include "core/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/file_util.h"

namespace tb {

absl::StatusOr<std::unique_ptr<RunDirLock>> RunDirLock::Acquire(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError("cannot create run directory " + dir + ": " + ec.message());
  return AcquireFile((std::filesystem::path(dir) / "lock").string(), "run directory " + dir);
}

absl::StatusOr<std::unique_ptr<RunDirLock>> RunDirLock::AcquireFile(const std::string& path,
                                                                    const std::string& what) {
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (!folder.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    if (ec) return absl::InternalError("cannot create " + folder.string() + ": " + ec.message());
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open lock file ", path, ": ",
                                            std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(err)));
    }
    absl::StatusOr<std::string> holder = ReadFileToString(path);
    std::string who = holder.ok() ? std::string(absl::StripAsciiWhitespace(*holder)) : "";
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is in use by ", who.empty() ? "another process" : who, " (lock file ", path,
        "); wait for it to finish or choose another run directory"));
  }
  char host[256] = {0};
  ::gethostname(host, sizeof(host) - 1);
  const std::time_t now = std::time(nullptr);
  char when[64] = {0};
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  const std::string text = absl::StrCat("pid ", ::getpid(), " on host ", host, " since ", when, "\n");
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) !=
                                     static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot write lock file ", path, ": ",
                                            std::strerror(err)));
  }
  return std::unique_ptr<RunDirLock>(new RunDirLock(path, fd));
}

RunDirLock::~RunDirLock() {
  // Closing the descriptor releases the lock.
  ::close(fd_);
}

}  // namespace tb
