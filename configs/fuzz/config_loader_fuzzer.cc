// Fuzz target: the experiment config loader (configs/config_loader.h) with
// overrides and every component linked (//backbones:all,
// //ssl:all_objectives, //semisup:all_trainers), so that every component's
// Validate runs. The input is the config file's text; each line that is
// exactly "#override" (a comment to the text-proto parser) starts an
// override fragment. LoadExperimentConfig parses, merges the overrides,
// resolves defaults and validates the experiment and every pipeline stage.
// Invariants: an error is InvalidArgument or NotFound with a message; a
// config that loads round-trips through its text form (what the binaries
// write as run_dir/config.pbtxt) and loads again to the same config.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "configs/config_loader.h"
#include "core/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(bytes, "\n#override\n");
  // More fragments add nothing the merge of two does not; keep inputs fast.
  if (parts.size() > 5) return 0;
  const std::string text = parts[0];
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  const std::string path = tb::fuzz::WriteScratchFile("config.pbtxt", text);

  absl::StatusOr<tb::ExperimentConfig> config = tb::LoadExperimentConfig(path, overrides);
  if (!config.ok()) {
    const absl::StatusCode code = config.status().code();
    TB_FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                      code == absl::StatusCode::kNotFound,
                  config.status().ToString());
    TB_FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  // What a run writes to run_dir/config.pbtxt is read back as it was.
  const std::string resolved = tb::ExperimentToText(*config);
  absl::StatusOr<tb::ExperimentConfig> parsed = tb::ParseExperimentText(resolved, "resolved");
  TB_FUZZ_CHECK(parsed.ok(), parsed.status().ToString() + "\n" + resolved);
  // Compared as text: a NaN is equal to itself there.
  TB_FUZZ_CHECK(tb::ExperimentToText(*parsed) == resolved,
                "the text form does not parse back to the config:\n" + resolved);
  // Loading the resolved config again gives the same config.
  const std::string resolved_path = tb::fuzz::WriteScratchFile("resolved.pbtxt", resolved);
  absl::StatusOr<tb::ExperimentConfig> again = tb::LoadExperimentConfig(resolved_path, {});
  TB_FUZZ_CHECK(again.ok(), again.status().ToString() + "\n" + resolved);
  TB_FUZZ_CHECK(tb::ExperimentToText(*again) == resolved,
                "loading the resolved config changes it:\n" + resolved);
  return 0;
}
