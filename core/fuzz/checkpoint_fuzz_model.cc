#include "core/fuzz/checkpoint_fuzz_model.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "core/torch_status.h"

namespace tb::fuzz {

CheckpointFuzzModel::CheckpointFuzzModel() {
  torch::manual_seed(0);
  net = torch::nn::Sequential(torch::nn::Linear(3, 4), torch::nn::BatchNorm1d(4),
                              torch::nn::Linear(4, 2));
  adam = std::make_unique<torch::optim::Adam>(net->parameters(),
                                              torch::optim::AdamOptions(1e-2));
}

CheckpointContents CheckpointFuzzModel::Contents() {
  CheckpointContents c;
  c.modules = {{"model", net.ptr().get()}};
  c.optimizers = {{"adam", adam.get()}};
  return c;
}

namespace {

void PutLe(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

bool GetLe(absl::string_view* in, int bytes, uint64_t* v) {
  if (in->size() < static_cast<size_t>(bytes)) return false;
  *v = 0;
  for (int i = 0; i < bytes; ++i) *v |= static_cast<uint64_t>(static_cast<uint8_t>((*in)[i])) << (8 * i);
  in->remove_prefix(bytes);
  return true;
}

}  // namespace

std::string PackRecords(const ArchiveRecords& records) {
  std::string out(kRecordsMagic);
  for (const auto& [name, data] : records) {
    PutLe(name.size(), 2, &out);
    out += name;
    PutLe(data.size(), 4, &out);
    out += data;
  }
  return out;
}

bool UnpackRecords(absl::string_view data, ArchiveRecords* records) {
  if (data.substr(0, kRecordsMagic.size()) != kRecordsMagic) return false;
  data.remove_prefix(kRecordsMagic.size());
  records->clear();
  while (!data.empty()) {
    uint64_t name_size = 0, data_size = 0;
    if (!GetLe(&data, 2, &name_size) || data.size() < name_size) return false;
    std::string name(data.substr(0, name_size));
    data.remove_prefix(name_size);
    if (!GetLe(&data, 4, &data_size) || data.size() < data_size) return false;
    records->emplace_back(std::move(name), std::string(data.substr(0, data_size)));
    data.remove_prefix(data_size);
  }
  return true;
}

absl::Status WriteArchive(const std::string& path, const ArchiveRecords& records) {
  return CallTorch("writing archive " + path, [&] {
    caffe2::serialize::PyTorchStreamWriter writer(path);
    for (const auto& [name, data] : records) writer.writeRecord(name, data.data(), data.size());
    writer.writeEndOfFile();
  });
}

absl::StatusOr<ArchiveRecords> ReadArchive(const std::string& path) {
  return CallTorch("reading archive " + path, [&] {
    caffe2::serialize::PyTorchStreamReader reader(path);
    ArchiveRecords records;
    for (const std::string& name : reader.getAllRecords()) {
      auto [ptr, size] = reader.getRecord(name);
      records.emplace_back(name, std::string(static_cast<const char*>(ptr.get()), size));
    }
    return records;
  });
}

}  // namespace tb::fuzz
