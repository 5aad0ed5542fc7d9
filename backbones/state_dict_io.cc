#include "backbones/state_dict_io.h"

#include <fstream>
#include <iterator>
#include <string_view>
#include <vector>

#include <ATen/core/Dict.h>
#include <ATen/core/ivalue.h>
#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {

absl::StatusOr<std::map<std::string, torch::Tensor>> ReadPyTorchStateDict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open state dict ", path));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (in.bad()) return absl::InternalError(absl::StrCat("cannot read state dict ", path));

  absl::StatusOr<c10::IValue> parsed =
      CallTorch("torch::pickle_load", [&] { return torch::pickle_load(bytes); });
  // LibTorch's unpickler turns every collections.OrderedDict into None (it
  // only expects the empty ones of tensors' backward hooks), so a saved
  // `model.state_dict()` either fails while its items are inserted into None
  // or comes back as None.
  constexpr char kOrderedDictHint[] =
      "; if it was saved from model.state_dict() (an OrderedDict), re-save it as a plain dict: "
      "torch.save(dict(model.state_dict()), path)";
  if (!parsed.ok()) {
    const bool maybe_ordered =
        std::string_view(bytes.data(), bytes.size()).find("OrderedDict") != std::string::npos;
    return absl::InvalidArgumentError(absl::StrCat("cannot read state dict ", path, " (",
                                                   parsed.status().message(), ")",
                                                   maybe_ordered ? kOrderedDictHint : ""));
  }
  const c10::IValue& root = *parsed;
  if (root.isNone()) {
    return absl::InvalidArgumentError(
        absl::StrCat("state dict ", path, " holds None", kOrderedDictHint));
  }
  if (!root.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat("state dict ", path, " must hold a dict of tensors, got ", root.tagKind()));
  }
  std::map<std::string, torch::Tensor> state;
  for (const auto& entry : root.toGenericDict()) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat("state dict ", path, " has a ", entry.key().tagKind(), " key"));
    }
    const std::string& name = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(absl::StrCat("state dict ", path, ": '", name, "' is a ",
                                                     entry.value().tagKind(), ", not a tensor"));
    }
    state.emplace(name, entry.value().toTensor());
  }
  return state;
}

absl::Status WritePyTorchStateDict(const std::string& path,
                                   const std::map<std::string, torch::Tensor>& state) {
  ASSIGN_OR_RETURN(std::vector<char> bytes,
                   CallTorch(absl::StrCat("serialising state dict ", path), [&] {
                     c10::Dict<std::string, torch::Tensor> dict;
                     // The file holds values only; CPU so that a machine
                     // without CUDA can read it; contiguous because a view
                     // would be saved together with its whole storage.
                     for (const auto& [name, t] : state) {
                       dict.insert(name, t.detach().to(torch::kCPU).contiguous());
                     }
                     return torch::pickle_save(c10::IValue(dict));
                   }));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot create ", path));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace tb
