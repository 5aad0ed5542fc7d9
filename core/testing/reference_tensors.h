// File: core/testing/reference_tensors.h
//
// Tensors written by a Python reference script (run under the policy of
// python_reference.h) in the project's plain-text format, one tensor a line:
//   name ndim size_0 ... size_{ndim-1} value_0 value_1 ...
// values in row-major order, printed with repr (float64 round-trips exactly).
//
//   auto refs = RunReferenceTensors("ssl/testdata/tclr_reference.py", "tclr.txt");
//   ASSERT_TRUE(refs.ok()) << refs.status();
//   torch::Tensor loss = refs->at("ll");   // float64
#ifndef TIMEBALANCE_CORE_TESTING_REFERENCE_TENSORS_H_
#define TIMEBALANCE_CORE_TESTING_REFERENCE_TENSORS_H_

#include <map>
#include <string>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace tb::testing {

// Parses the file `path`; InvalidArgument names the first malformed line.
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadReferenceTensors(
    const std::string& path);

// Runs the test's data file `script` (workspace-relative) with one argument,
// TmpPath(out_name), under RunPythonReference (module "torch"), then reads
// that file.
absl::StatusOr<std::map<std::string, torch::Tensor>> RunReferenceTensors(
    const std::string& script, const std::string& out_name);

}  // namespace tb::testing

#endif  // TIMEBALANCE_CORE_TESTING_REFERENCE_TENSORS_H_
