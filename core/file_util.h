// File: core/file_util.h
//
// Whole-file I/O with the guarantees the project relies on: writes are
// atomic and durable (a temporary file in the same folder, fsync, rename,
// fsync of the folder), so a process killed mid-write leaves either the old
// file or the new one, never a torn one. Errors name the file and the
// reason.
#ifndef TIMEBALANCE_CORE_FILE_UTIL_H_
#define TIMEBALANCE_CORE_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

// Writes `data` to `path` atomically (temp file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path, const std::string& data);

// The temporary name a writer of `path` uses (same folder, unique per
// process): write it completely, then CommitTempFile.
std::string TempFileName(const std::string& path);

// fsyncs `tmp`, renames it over `path` and fsyncs the folder; removes `tmp`
// on failure.
absl::Status CommitTempFile(const std::string& tmp, const std::string& path);

// The bytes of `path`; NotFound when it does not exist, Internal on a read
// error.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_FILE_UTIL_H_
