#include "core/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return ErrnoError("cannot open", path);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("cannot fsync", path);
  return absl::OkStatus();
}

}  // namespace

std::string TempFileName(const std::string& path) {
  return absl::StrCat(path, ".tmp.", ::getpid());
}

absl::Status CommitTempFile(const std::string& tmp, const std::string& path) {
  absl::Status synced = FsyncPath(tmp, /*directory=*/false);
  if (!synced.ok()) {
    std::remove(tmp.c_str());
    return synced;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const absl::Status s = ErrnoError("cannot rename " + tmp + " to", path);
    std::remove(tmp.c_str());
    return s;
  }
  fs::path dir = fs::path(path).parent_path();
  return FsyncPath(dir.empty() ? "." : dir.string(), /*directory=*/true);
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& data) {
  const std::string tmp = TempFileName(path);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return ErrnoError("cannot create", tmp);
  const size_t n = std::fwrite(data.data(), 1, data.size(), f);
  const bool ok = n == data.size() && std::fflush(f) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    const absl::Status s = ErrnoError("cannot write", tmp);
    std::remove(tmp.c_str());
    return s;
  }
  return CommitTempFile(tmp, path);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!fs::exists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return ErrnoError("cannot open", path);
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) return ErrnoError("cannot read", path);
  return bytes.str();
}

}  // namespace tb
