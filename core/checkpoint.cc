#include "core/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

torch::Tensor ScalarI64(int64_t v) { return torch::tensor({v}, torch::kInt64); }

}  // namespace

absl::Status SaveCheckpoint(const std::string& path, const CheckpointContents& contents) {
  const std::string tmp = TempFileName(path);
  absl::Status s = CallTorch("saving checkpoint " + path, [&] {
    torch::serialize::OutputArchive archive;
    for (const auto& [name, module] : contents.modules) {
      torch::serialize::OutputArchive sub;
      module->save(sub);
      archive.write("module/" + name, sub);
    }
    for (const auto& [name, optimizer] : contents.optimizers) {
      torch::serialize::OutputArchive sub;
      optimizer->save(sub);
      archive.write("optimizer/" + name, sub);
    }
    const TrainingPosition& p = contents.position;
    archive.write("position/step", ScalarI64(p.step));
    archive.write("position/epoch", ScalarI64(p.epoch));
    archive.write("position/seed", ScalarI64(static_cast<int64_t>(p.seed)));
    archive.write("position/config", c10::IValue(p.config_text));
    archive.save_to(tmp);
  });
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  return CommitTempFile(tmp, path);
}

namespace {

absl::StatusOr<TrainingPosition> ReadPosition(torch::serialize::InputArchive& archive,
                                              const std::string& path) {
  TrainingPosition p;
  return CallTorch("reading position from checkpoint " + path, [&] {
    torch::Tensor t;
    archive.read("position/step", t);
    p.step = t.item<int64_t>();
    archive.read("position/epoch", t);
    p.epoch = t.item<int64_t>();
    archive.read("position/seed", t);
    p.seed = static_cast<uint64_t>(t.item<int64_t>());
    c10::IValue config;
    archive.read("position/config", config);
    p.config_text = config.toStringRef();
    return p;
  });
}

absl::Status CheckReadable(const std::string& path) {
  if (!fs::exists(path)) return absl::NotFoundError("checkpoint not found: " + path);
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadCheckpoint(const std::string& path, CheckpointContents* contents) {
  RETURN_IF_ERROR(CheckReadable(path));
  torch::serialize::InputArchive archive;
  RETURN_IF_ERROR(CallTorch("opening checkpoint " + path, [&] { archive.load_from(path); }));
  for (auto& [name, module] : contents->modules) {
    RETURN_IF_ERROR(CallTorch("loading module '" + name + "' from " + path, [&] {
      torch::serialize::InputArchive sub;
      archive.read("module/" + name, sub);
      module->load(sub);
    }));
  }
  for (auto& [name, optimizer] : contents->optimizers) {
    RETURN_IF_ERROR(CallTorch("loading optimizer '" + name + "' from " + path, [&] {
      torch::serialize::InputArchive sub;
      archive.read("optimizer/" + name, sub);
      optimizer->load(sub);
    }));
  }
  ASSIGN_OR_RETURN(contents->position, ReadPosition(archive, path));
  return absl::OkStatus();
}

absl::StatusOr<TrainingPosition> ReadCheckpointPosition(const std::string& path) {
  RETURN_IF_ERROR(CheckReadable(path));
  torch::serialize::InputArchive archive;
  RETURN_IF_ERROR(CallTorch("opening checkpoint " + path, [&] { archive.load_from(path); }));
  return ReadPosition(archive, path);
}

std::string CheckpointPath(const std::string& dir, int64_t step) {
  return (fs::path(dir) / absl::StrFormat("ckpt_%08d.pt", step)).string();
}

namespace {

std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return found;
  static const std::regex kName("ckpt_(\\d+)\\.pt");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, kName)) {
      found.emplace_back(std::stoll(m[1].str()), entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir) {
  auto found = ListCheckpoints(dir);
  if (found.empty()) return absl::NotFoundError("no checkpoint (ckpt_*.pt) in " + dir);
  return found.back().second;
}

absl::Status PruneCheckpoints(const std::string& dir, int keep) {
  auto found = ListCheckpoints(dir);
  for (int i = 0; i + keep < static_cast<int>(found.size()); ++i) {
    std::error_code ec;
    fs::remove(found[i].second, ec);
    if (ec) return absl::InternalError("cannot remove " + found[i].second + ": " + ec.message());
  }
  return absl::OkStatus();
}

}  // namespace tb
