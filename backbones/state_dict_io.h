// File: backbones/state_dict_io.h
//
// Reads and writes PyTorch state dicts as files that Python's torch.load /
// torch.save understand, so weights trained with the reference PyTorch code
// (torchvision, the original TimeBalance release) can be imported and ours
// can be inspected in Python.
//
// The supported file is a *plain* dict of name -> tensor saved in PyTorch's
// zip format:
//
//   torch.save(dict(model.state_dict()), "weights.pt")
//
// `model.state_dict()` itself is an OrderedDict, which LibTorch's unpickler
// cannot rebuild (it turns collections.OrderedDict into None); such files are
// rejected with a message saying how to re-save them.
#ifndef TIMEBALANCE_BACKBONES_STATE_DICT_IO_H_
#define TIMEBALANCE_BACKBONES_STATE_DICT_IO_H_

#include <torch/types.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tb {

// Tensors of the dict saved at `path`, on the CPU. NotFound if the file
// cannot be opened; InvalidArgument if it is not a dict of str -> tensor.
absl::StatusOr<std::map<std::string, torch::Tensor>> ReadPyTorchStateDict(const std::string& path);

// Writes `state` so that `torch.load(path)` returns a dict of tensors.
absl::Status WritePyTorchStateDict(const std::string& path,
                                   const std::map<std::string, torch::Tensor>& state);

}  // namespace tb

#endif  // TIMEBALANCE_BACKBONES_STATE_DICT_IO_H_
