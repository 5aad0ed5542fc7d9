// File: core/fuzz/checkpoint_fuzz_model.h
//
// The model and optimizer //core/fuzz:checkpoint_fuzzer loads checkpoints
// into, and the "records" input form of that fuzzer.
//
// A LibTorch checkpoint is a zip archive whose members carry CRC-32s, so
// mutated archive bytes almost never get past the zip reader. Besides raw
// archive bytes, the fuzzer therefore takes the archive's members in a
// simple length-prefixed form, which it packs into a valid archive before
// loading: then the mutations reach the pickled data and the tensor records.
//   records form: "TBREC1\n", then per member: u16 name length, name,
//   u32 data length, data (little-endian).
#ifndef TIMEBALANCE_CORE_FUZZ_CHECKPOINT_FUZZ_MODEL_H_
#define TIMEBALANCE_CORE_FUZZ_CHECKPOINT_FUZZ_MODEL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/adam.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/checkpoint.h"

namespace tb::fuzz {

// Linear(3, 4) -> BatchNorm1d(4) -> Linear(4, 2) with Adam: parameters,
// float and int64 buffers, optimizer state. Initialised from seed 0.
struct CheckpointFuzzModel {
  CheckpointFuzzModel();
  torch::nn::Sequential net;
  std::unique_ptr<torch::optim::Adam> adam;
  // {"model", net} and {"adam", adam}, position zero.
  CheckpointContents Contents();
};

using ArchiveRecords = std::vector<std::pair<std::string, std::string>>;

inline constexpr absl::string_view kRecordsMagic = "TBREC1\n";

// The records form of `records`, and back (false when `data` is not one).
std::string PackRecords(const ArchiveRecords& records);
bool UnpackRecords(absl::string_view data, ArchiveRecords* records);

// Writes `records` as a LibTorch archive (what SaveCheckpoint writes), and
// reads every member of one.
absl::Status WriteArchive(const std::string& path, const ArchiveRecords& records);
absl::StatusOr<ArchiveRecords> ReadArchive(const std::string& path);

}  // namespace tb::fuzz

#endif  // TIMEBALANCE_CORE_FUZZ_CHECKPOINT_FUZZ_MODEL_H_
