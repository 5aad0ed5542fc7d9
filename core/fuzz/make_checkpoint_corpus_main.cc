// Writes the seed corpus of //core/fuzz:checkpoint_fuzzer: checkpoints of
// the fuzzer's model (core/fuzz/checkpoint_fuzz_model.h) as SaveCheckpoint
// writes them, before and after two Adam steps, each as raw archive bytes
// and in the fuzzer's records form.
//   bazel run //core/fuzz:make_checkpoint_corpus -- $PWD/core/fuzz/corpus/checkpoint
//   rm core/fuzz/corpus/checkpoint/*.sha256   (SaveCheckpoint's sidecars)
#include <cstdio>
#include <fstream>
#include <string>

#include <torch/torch.h>

#include "core/checkpoint.h"
#include "core/fuzz/checkpoint_fuzz_model.h"

namespace {

bool WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

bool Emit(const std::string& dir, const std::string& name, tb::fuzz::CheckpointFuzzModel& m,
          int64_t step) {
  tb::CheckpointContents c = m.Contents();
  c.position = {step, step / 2, 7, "run_dir: \"runs/x\"\nseed: 7\n"};
  const std::string raw = dir + "/raw_" + name;
  absl::Status s = tb::SaveCheckpoint(raw, c);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return false;
  }
  absl::StatusOr<tb::fuzz::ArchiveRecords> records = tb::fuzz::ReadArchive(raw);
  if (!records.ok()) {
    std::fprintf(stderr, "%s\n", records.status().ToString().c_str());
    return false;
  }
  return WriteFile(dir + "/records_" + name, tb::fuzz::PackRecords(*records));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_checkpoint_corpus OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  tb::fuzz::CheckpointFuzzModel m;
  if (!Emit(dir, "fresh", m, 0)) return 1;
  m.net->train();
  for (int i = 0; i < 2; ++i) {
    m.adam->zero_grad();
    m.net->forward(torch::randn({4, 3})).pow(2).mean().backward();
    m.adam->step();
  }
  if (!Emit(dir, "trained", m, 2)) return 1;
  return 0;
}
