// Fuzz target: the checkpoint loader (core/checkpoint.h). The input is a
// checkpoint file's bytes, or its archive members in the records form
// (checkpoint_fuzz_model.h), which is packed into a valid archive first;
// either is loaded with LoadCheckpoint into a tiny model and its Adam
// optimizer, with a checksum sidecar that matches the bytes. Invariants: a load either fails with a status naming the file,
// or leaves every parameter, buffer and optimizer state tensor with the
// model's shape and dtype, so that training continues (a forward pass and an
// Adam step run).
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/checkpoint.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "core/fuzz/checkpoint_fuzz_model.h"
#include "core/fuzz/fuzz_util.h"

namespace {

struct TensorSignature {
  std::vector<int64_t> sizes;
  c10::ScalarType dtype;
};

std::vector<std::pair<std::string, TensorSignature>> Signature(torch::nn::Module& m) {
  std::vector<std::pair<std::string, TensorSignature>> out;
  for (const auto& p : m.named_parameters()) {
    out.push_back({p.key(), {p.value().sizes().vec(), p.value().scalar_type()}});
  }
  for (const auto& b : m.named_buffers()) {
    out.push_back({b.key(), {b.value().sizes().vec(), b.value().scalar_type()}});
  }
  return out;
}

std::string Describe(const std::pair<std::string, TensorSignature>& s) {
  return absl::StrCat(s.first, " ", c10::toString(s.second.dtype), " [",
                      absl::StrJoin(s.second.sizes, ", "), "]");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  tb::fuzz::ClearScratchDir();
  std::string path;
  tb::fuzz::ArchiveRecords records;
  if (tb::fuzz::UnpackRecords(bytes, &records)) {
    path = tb::fuzz::ScratchDir() + "/records.pt";
    // Names the archive writer refuses (duplicates) make no checkpoint.
    if (!tb::fuzz::WriteArchive(path, records).ok()) return 0;
  } else {
    path = tb::fuzz::WriteScratchFile("raw.pt", bytes);
  }

  // A matching SHA-256 sidecar, as SaveCheckpoint writes, so that the
  // archive parser (not the checksum check) sees the bytes.
  {
    const absl::StatusOr<std::string> written = tb::ReadFileToString(path);
    if (!written.ok()) return 0;
    if (!tb::WriteFileAtomically(tb::ChecksumPath(path),
                                 tb::Sha256Hex(*written) + "  " + path + "\n")
             .ok()) {
      return 0;
    }
  }

  tb::fuzz::CheckpointFuzzModel model;
  const auto before = Signature(*model.net);
  tb::CheckpointContents contents = model.Contents();
  const absl::Status status = tb::LoadCheckpoint(path, &contents);
  if (!status.ok()) {
    TB_FUZZ_CHECK(status.message().find(path) != absl::string_view::npos,
                  "the error does not name the file: " + status.ToString());
    return 0;
  }
  const auto after = Signature(*model.net);
  TB_FUZZ_CHECK(before.size() == after.size(), "parameters or buffers appeared or vanished");
  for (size_t i = 0; i < before.size(); ++i) {
    TB_FUZZ_CHECK(before[i].first == after[i].first && before[i].second.sizes ==
                  after[i].second.sizes && before[i].second.dtype == after[i].second.dtype,
                  absl::StrCat("loaded ", Describe(after[i]), " into ", Describe(before[i])));
  }
  // Training goes on from a checkpoint that loaded.
  try {
    model.net->train();
    model.adam->zero_grad();
    model.net->forward(torch::ones({2, 3})).sum().backward();
    model.adam->step();
  } catch (const std::exception& e) {
    TB_FUZZ_CHECK(false, std::string("a training step after a successful load threw: ") +
                             e.what());
  }
  return 0;
}
