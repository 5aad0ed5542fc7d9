// File: core/run_lock.h
//
// RunDirLock: one process per run directory. Acquire() takes an exclusive
// advisory lock (flock) on <dir>/lock and writes the holder's pid and host
// into it; a second process asking for the same directory is refused with
// FailedPrecondition naming the holder ("run directory runs/x is in use by
// pid 4711 on host node3 since ..."). The kernel releases the lock when the
// holder exits or dies, even by SIGKILL, so a killed run can be resumed at
// once; the lock file itself stays and is harmless. flock works across
// processes on one machine and on most network file systems that support
// it; a shared file system without lock support is reported when locking
// fails for another reason than contention.
#ifndef TIMEBALANCE_CORE_RUN_LOCK_H_
#define TIMEBALANCE_CORE_RUN_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tb {

class RunDirLock {
 public:
  // Creates `dir` if needed and locks it.
  static absl::StatusOr<std::unique_ptr<RunDirLock>> Acquire(const std::string& dir);
  // The same lock on an arbitrary file (created if needed, its folder
  // too), e.g. a comparison cell's lock beside its run directory; the
  // refusal names `what` ("cell runs/c/cells/x is in use by pid ...").
  static absl::StatusOr<std::unique_ptr<RunDirLock>> AcquireFile(const std::string& lock_path,
                                                                 const std::string& what);
  ~RunDirLock();

  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  RunDirLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_RUN_LOCK_H_
