// File: core/testing/python_reference.h
//
// The one policy for tests that compare against a Python reference: they run
// /usr/bin/python3 (Debian's interpreter, not whatever `python3` is first on
// PATH) with Debian's python3-torch / python3-torchvision, which
// tools/install_deps.sh installs. A missing interpreter or module FAILS the
// test with a message naming the Debian package to install; nothing is
// skipped silently.
//
//   ASSERT_TRUE(RequirePythonModules({"torch", "torchvision"}).ok());
//   auto out = RunPythonReference("backbones/testdata/export_torchvision.py",
//                                 {TmpPath("")});
#ifndef TIMEBALANCE_CORE_TESTING_PYTHON_REFERENCE_H_
#define TIMEBALANCE_CORE_TESTING_PYTHON_REFERENCE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb::testing {

inline constexpr char kReferencePython[] = "/usr/bin/python3";

// The path of a file the test declares as data, from its workspace-relative
// name ("ssl/testdata/ssl_reference.py").
std::string RunfilePath(const std::string& workspace_relative);

// OK when kReferencePython imports every module; otherwise
// FailedPrecondition naming the module and the Debian package providing it.
absl::Status RequirePythonModules(const std::vector<std::string>& modules);

// Runs the test's data file `script` (workspace-relative) with `args` under
// kReferencePython after RequirePythonModules(modules); returns its stdout,
// or an error carrying its exit status and output.
absl::StatusOr<std::string> RunPythonReference(const std::string& script,
                                               const std::vector<std::string>& args,
                                               const std::vector<std::string>& modules = {
                                                   "torch"});

}  // namespace tb::testing

#endif  // TIMEBALANCE_CORE_TESTING_PYTHON_REFERENCE_H_
