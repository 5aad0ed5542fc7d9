#include "core/testing/reference_tensors.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/testing/python_reference.h"
#include "core/testing/test_util.h"

namespace tb::testing {

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadReferenceTensors(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open reference tensors ", path));
  std::map<std::string, torch::Tensor> tensors;
  std::string line;
  for (int line_number = 1; std::getline(in, line); ++line_number) {
    std::istringstream fields(line);
    std::string name;
    int64_t ndim = -1;
    fields >> name >> ndim;
    std::vector<int64_t> shape(ndim > 0 ? ndim : 0);
    int64_t count = 1;
    for (int64_t& s : shape) {
      fields >> s;
      count *= s;
    }
    std::vector<double> values(fields.fail() || count < 0 ? 0 : count);
    for (double& v : values) fields >> v;
    if (ndim < 0 || fields.fail()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": malformed reference tensor '", name, "'"));
    }
    tensors[name] = torch::tensor(values, torch::kDouble).view(shape);
  }
  return tensors;
}

absl::StatusOr<std::map<std::string, torch::Tensor>> RunReferenceTensors(
    const std::string& script, const std::string& out_name) {
  const std::string out = TmpPath(out_name);
  const absl::StatusOr<std::string> ran = RunPythonReference(script, {out});
  if (!ran.ok()) return ran.status();
  return ReadReferenceTensors(out);
}

}  // namespace tb::testing
