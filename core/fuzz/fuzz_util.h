// File: core/fuzz/fuzz_util.h
//
// What the fuzz targets (*_fuzzer.cc under core/fuzz, datasets/fuzz,
// configs/fuzz; docs/RELIABILITY.md, "Fuzzing") share. Each target defines
// LLVMFuzzerTestOneInput and is built three ways by tb_fuzz_target
// (core/fuzz/fuzz.bzl): as a libFuzzer binary (--config=fuzz), as a replayer
// of files in the normal build, and as a test of the normal suite that feeds
// the target's seed corpus and regression inputs to the same entry point.
//
// Most of the project's readers take a path, so a target writes the input's
// bytes to files in a scratch folder of the process first.
#ifndef TIMEBALANCE_CORE_FUZZ_FUZZ_UTIL_H_
#define TIMEBALANCE_CORE_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace tb::fuzz {

// A folder of this process for input files: under $TEST_TMPDIR in a test,
// else under /dev/shm when it exists (no disk writes for millions of
// inputs), else $TMPDIR or /tmp. Created on first use, removed at exit.
const std::string& ScratchDir();

// Removes everything inside ScratchDir() (between inputs).
void ClearScratchDir();

// Writes `data` to ScratchDir()/relative (folders created as needed) and
// returns the path. Aborts when the scratch folder cannot be written: that is
// the machine, not a finding.
std::string WriteScratchFile(const std::string& relative, absl::string_view data);

// Like WriteScratchFile, but returns "" instead of aborting when the path
// cannot be made (a file stands where a folder is needed, or a folder where
// the file goes): for targets whose input names the files.
std::string TryWriteScratchFile(const std::string& relative, absl::string_view data);

// An invariant of a target that does not hold: prints `what` and aborts, which
// libFuzzer reports as a crash (and the corpus test as a failure).
[[noreturn]] void InvariantFailed(const char* file, int line, const std::string& what);

}  // namespace tb::fuzz

#define TB_FUZZ_CHECK(cond, what)                                                    \
  do {                                                                               \
    if (!(cond)) ::tb::fuzz::InvariantFailed(__FILE__, __LINE__,                     \
                                             std::string(#cond ": ") + (what));      \
  } while (0)

#endif  // TIMEBALANCE_CORE_FUZZ_FUZZ_UTIL_H_
