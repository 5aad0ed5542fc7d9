// import_weights: converts a PyTorch state dict (torch.save of a plain dict,
// e.g. torchvision's r3d_18 weights) into this project's checkpoint format,
// with the weights under the module name "model" that trainers use, so a run
// can start from or evaluate them.
//
//   bazel run //tools:import_weights -- --from=r3d18.pt --backbone='r3d18 {}' \
//       --num_classes=400 --out=runs/imported/checkpoints/ckpt_00000000.pt
//
// Missing, unexpected and mis-shaped parameter names are listed in the error
// (exit 1); --nostrict accepts missing/unexpected names (e.g. a different
// classifier head) and reports them.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <google/protobuf/text_format.h>
#include <torch/torch.h>

#include "backbones/backbone.h"
#include "backbones/state_dict_io.h"
#include "core/checkpoint.h"

DEFINE_string(from, "", "PyTorch state dict file (torch.save of a plain dict). Required.");
DEFINE_string(backbone, "", "BackboneConfig text proto, e.g. 'r3d18 {}'. Required.");
DEFINE_int32(num_classes, 400, "Classifier outputs of the backbone.");
DEFINE_string(out, "", "Checkpoint file to write (atomically). Required.");
DEFINE_bool(strict, true, "Require exactly the backbone's parameter names.");

namespace {

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "import_weights: error: %s\n", message.c_str());
  return code;
}

int Run() {
  if (FLAGS_from.empty() || FLAGS_backbone.empty() || FLAGS_out.empty()) {
    return Fail(2, "--from, --backbone and --out are required (see --helpshort)");
  }
  tb::BackboneConfig config;
  if (!google::protobuf::TextFormat::ParseFromString(FLAGS_backbone, &config)) {
    return Fail(2, "cannot parse --backbone='" + FLAGS_backbone + "' as a BackboneConfig");
  }
  config.set_num_classes(FLAGS_num_classes);
  auto model = tb::CreateBackbone(config);
  if (!model.ok()) return Fail(2, std::string(model.status().message()));
  auto state = tb::ReadPyTorchStateDict(FLAGS_from);
  if (!state.ok()) return Fail(1, std::string(state.status().message()));
  absl::Status loaded = tb::LoadStateDict(**model, *state, FLAGS_strict);
  if (!loaded.ok()) return Fail(1, FLAGS_from + ": " + std::string(loaded.message()));
  std::string config_text;
  google::protobuf::TextFormat::PrintToString(config, &config_text);
  tb::CheckpointContents contents;
  contents.modules = {{"model", model->get()}};
  contents.position.config_text = "backbone {\n" + config_text + "}\n";
  absl::Status saved = tb::SaveCheckpoint(FLAGS_out, contents);
  if (!saved.ok()) return Fail(1, std::string(saved.message()));
  std::printf("import_weights: %zu tensors from %s -> %s (%lld parameters)\n", state->size(),
              FLAGS_from.c_str(), FLAGS_out.c_str(),
              static_cast<long long>(tb::CountParameters(**model)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Converts a PyTorch state dict into a TimeBalance checkpoint.");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY")) {
    if (chdir(wd) != 0) std::perror("chdir BUILD_WORKING_DIRECTORY");
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return Run();
}
