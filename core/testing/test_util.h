// File: core/testing/test_util.h
//
// Small helpers shared by tests: paths under the test's temporary folder,
// running a shell command (tests cross-check our code against the ffmpeg
// CLI) and reading a whole file.
#ifndef TIMEBALANCE_CORE_TESTING_TEST_UTIL_H_
#define TIMEBALANCE_CORE_TESTING_TEST_UTIL_H_

#include <string>

namespace tb::testing {

// $TEST_TMPDIR/name (or /tmp/name outside Bazel).
std::string TmpPath(const std::string& name);

// Runs `command` through the shell and returns its stdout (binary-safe).
std::string RunCommand(const std::string& command);

// The bytes of `path`, empty if it cannot be read.
std::string ReadAll(const std::string& path);

}  // namespace tb::testing

#endif  // TIMEBALANCE_CORE_TESTING_TEST_UTIL_H_
