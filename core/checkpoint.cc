#include "core/checkpoint.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <ATen/Context.h>
#include <glog/logging.h>
#include <torch/cuda.h>
#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "core/torch_status.h"

namespace tb {
namespace fs = std::filesystem;
namespace {

torch::Tensor ScalarI64(int64_t v) { return torch::tensor({v}, torch::kInt64); }

std::vector<c10::Device> GeneratorDevices() {
  std::vector<c10::Device> devices = {c10::Device(c10::kCPU)};
  for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
    devices.emplace_back(c10::kCUDA, static_cast<c10::DeviceIndex>(i));
  }
  return devices;
}

// The recorded digest of `path`, or "" when it has no sidecar.
absl::StatusOr<std::string> RecordedDigest(const std::string& path) {
  absl::StatusOr<std::string> sidecar = ReadFileToString(ChecksumPath(path));
  if (absl::IsNotFound(sidecar.status())) return std::string();
  if (!sidecar.ok()) return sidecar.status();
  const std::string digest = sidecar->substr(0, sidecar->find_first_of(" \n"));
  if (digest.size() != 64) {
    return absl::DataLossError(absl::StrCat("checksum file ", ChecksumPath(path),
                                            " does not start with a SHA-256 digest"));
  }
  return digest;
}

// The checkpoint's bytes after checking them against the sidecar.
absl::StatusOr<std::string> ReadVerified(const std::string& path) {
  if (!fs::exists(path)) return absl::NotFoundError("checkpoint not found: " + path);
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  ASSIGN_OR_RETURN(std::string recorded, RecordedDigest(path));
  if (recorded.empty()) {
    LOG(WARNING) << "checkpoint " << path << " has no " << ChecksumPath(path)
                 << "; loading it unverified";
    return bytes;
  }
  const std::string actual = Sha256Hex(bytes);
  if (actual != recorded) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path, " is corrupt: its SHA-256 is ",
                                            actual, " but ", ChecksumPath(path), " records ",
                                            recorded));
  }
  return bytes;
}

}  // namespace

std::string CaptureGlobalRngState() {
  // [count][length, bytes]... with 8-byte little-endian integers.
  std::string packed;
  auto put = [&packed](uint64_t v) {
    for (int i = 0; i < 8; ++i) packed.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  const std::vector<c10::Device> devices = GeneratorDevices();
  put(devices.size());
  for (const c10::Device& device : devices) {
    at::Generator generator = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(generator.mutex());
    const torch::Tensor state = generator.get_state().contiguous();
    put(state.nbytes());
    packed.append(static_cast<const char*>(state.data_ptr()), state.nbytes());
  }
  return packed;
}

absl::Status RestoreGlobalRngState(const std::string& packed) {
  size_t at = 0;
  auto get = [&](uint64_t* v) {
    if (at + 8 > packed.size()) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(static_cast<uint8_t>(packed[at + i])) << (8 * i);
    at += 8;
    return true;
  };
  const std::vector<c10::Device> devices = GeneratorDevices();
  uint64_t count = 0;
  if (!get(&count) || count != devices.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint's random generator states are for ", count, " generator(s) but this "
        "machine has ", devices.size(), " (1 CPU + ", devices.size() - 1,
        " CUDA); resume on the same kind of machine"));
  }
  std::vector<std::string> states;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t n = 0;
    if (!get(&n) || at + n > packed.size()) {
      return absl::InvalidArgumentError("the checkpoint's random generator states are truncated");
    }
    states.push_back(packed.substr(at, n));
    at += n;
  }
  return CallTorch("restoring the random generators", [&] {
    for (size_t i = 0; i < devices.size(); ++i) {
      at::Generator generator = at::globalContext().defaultGenerator(devices[i]);
      std::lock_guard<std::mutex> lock(generator.mutex());
      torch::Tensor state = torch::empty({static_cast<int64_t>(states[i].size())}, torch::kUInt8);
      std::memcpy(state.data_ptr(), states[i].data(), states[i].size());
      generator.set_state(state);
    }
  });
}

std::string ChecksumPath(const std::string& path) { return path + ".sha256"; }

absl::Status VerifyCheckpoint(const std::string& path) { return ReadVerified(path).status(); }

std::string ModuleSha256(const torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  Sha256 sha;
  auto add = [&sha](const std::string& name, const torch::Tensor& t) {
    const torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const std::string header =
        absl::StrCat(name, " ", c10::toString(c.scalar_type()), " ", c10::str(c.sizes()), "\n");
    sha.Update(header.data(), header.size());
    sha.Update(c.data_ptr(), c.nbytes());
  };
  for (const auto& p : module.named_parameters(/*recurse=*/true)) add(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) add(b.key(), b.value());
  return sha.HexDigest();
}

absl::Status SaveCheckpoint(const std::string& path, const CheckpointContents& contents) {
  std::ostringstream bytes;
  RETURN_IF_ERROR(CallTorch("saving checkpoint " + path, [&] {
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
    for (size_t i = 0; i < p.rng_states.size(); ++i) {
      // Bytes as a uint8 tensor (a pickled string must be valid UTF-8).
      const std::string& bytes = p.rng_states[i];
      torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
      std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
      archive.write(absl::StrCat("position/rng/", i), t);
    }
    archive.write("position/rng_count", ScalarI64(static_cast<int64_t>(p.rng_states.size())));
    archive.save_to(bytes);
  }));
  const std::string data = bytes.str();
  // The sidecar goes first: a run killed between the two writes leaves a
  // sidecar without its checkpoint (ignored), never a checkpoint that cannot
  // be verified.
  RETURN_IF_ERROR(WriteFileAtomically(
      ChecksumPath(path),
      absl::StrCat(Sha256Hex(data), "  ", fs::path(path).filename().string(), "\n")));
  return WriteFileAtomically(path, data);
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
    // Checkpoints written before the generator states were recorded have
    // none.
    if (archive.try_read("position/rng_count", t)) {
      const int64_t count = t.item<int64_t>();
      for (int64_t i = 0; i < count; ++i) {
        torch::Tensor state;
        archive.read(absl::StrCat("position/rng/", i), state);
        state = state.contiguous();
        p.rng_states.emplace_back(static_cast<const char*>(state.data_ptr()), state.nbytes());
      }
    }
    return p;
  });
}

// LibTorch 1.13's archive reader (TorchScript's unpickler and type parser)
// can crash the process on a malformed archive: //core/fuzz:checkpoint_fuzzer
// found a SEGV in ScriptTypeParser::parseClassConstant after one changed bit
// (core/fuzz/regressions/checkpoint/libtorch_type_parser_segv). The checksum
// sidecar catches corruption of a checkpoint SaveCheckpoint wrote, but not a
// file without one, or one made elsewhere. And that crash is not
// deterministic: the same bytes parsed twice may crash once and throw once
// (seen as an intermittent SIGSEGV of the corpus test in the parent, after
// the child had parsed the bytes without crashing). So this process never
// parses the file's bytes: a child parses them, copies every entry into a
// fresh archive and sends that archive's bytes back through a pipe. This
// process parses only what LibTorch's writer wrote. A child that dies, or
// takes longer than kProbeSeconds, makes the load an error naming the file;
// an exception in the child comes back as its message.
constexpr int kProbeSeconds = 120;

// Copies every entry of `in` (nested archives, tensors, other values) into
// `out`. `training`, which every TorchScript module has, is not an entry.
void CopyArchive(torch::serialize::InputArchive& in, torch::serialize::OutputArchive& out) {
  for (const std::string& key : in.keys()) {
    if (key == "training") continue;
    torch::serialize::InputArchive nested_in;
    if (in.try_read(key, nested_in)) {
      torch::serialize::OutputArchive nested_out;
      CopyArchive(nested_in, nested_out);
      out.write(key, nested_out);
      continue;
    }
    torch::Tensor tensor;
    if (in.try_read(key, tensor)) {
      out.write(key, tensor);
      continue;
    }
    c10::IValue value;
    if (in.try_read(key, value)) {
      out.write(key, value);
      continue;
    }
    throw std::runtime_error("entry '" + key + "' cannot be read");
  }
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The child's side: parses `bytes`, writes the copy's bytes to `fd` and
// exits 0, or writes the exception's message and exits 3.
[[noreturn]] void ParseAndCopyInChild(const std::string& bytes, int fd) {
  // Die by the signal itself, quietly, instead of through a handler of this
  // process's (glog's, a sanitizer's, libFuzzer's); a hostile file crashing
  // the child is an expected outcome, not a bug to debug: no core file.
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, SIG_DFL);
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  std::string message;
  try {
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    torch::serialize::OutputArchive copy;
    CopyArchive(archive, copy);
    bool written = true;
    copy.save_to([&](const void* data, size_t size) -> size_t {
      written = written && WriteAll(fd, static_cast<const char*>(data), size);
      return size;
    });
    _exit(written ? 0 : 4);
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "unknown exception";
  }
  // The first line of LibTorch's messages is the message; the rest is a
  // C++ stack trace.
  message = message.substr(0, message.find('\n'));
  WriteAll(fd, message.data(), message.size());
  _exit(3);
}

// Parses `bytes` (the file `path`) in a child; returns the bytes of an
// archive with the same entries, written by LibTorch's writer.
absl::StatusOr<std::string> ParseInChild(const std::string& bytes, const std::string& path) {
  std::fflush(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe() failed probing checkpoint " + path);
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError("fork() failed probing checkpoint " + path);
  }
  if (pid == 0) {
    close(fds[0]);
    ParseAndCopyInChild(bytes, fds[1]);
  }
  close(fds[1]);
  const int flags = fcntl(fds[0], F_GETFL);
  fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
  std::string out;
  char buffer[1 << 16];
  int status = 0;
  bool exited = false;
  bool eof = false;
  for (int waited_ms = 0; !(exited && eof);) {
    bool progress = false;
    while (!eof) {
      const ssize_t n = read(fds[0], buffer, sizeof(buffer));
      if (n > 0) {
        out.append(buffer, static_cast<size_t>(n));
        progress = true;
      } else if (n == 0) {
        eof = true;
      } else {
        break;  // EAGAIN (nothing yet) or EINTR
      }
    }
    if (!exited) {
      const pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        exited = true;
        continue;
      }
      if (done < 0 && errno != EINTR) {
        close(fds[0]);
        return absl::InternalError("waitpid() failed probing checkpoint " + path);
      }
    }
    if (progress) continue;
    if (waited_ms >= kProbeSeconds * 1000) {
      if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
      }
      close(fds[0]);
      return absl::DataLossError(absl::StrCat("checkpoint ", path, " could not be parsed: ",
                                              "LibTorch's reader did not finish in ",
                                              kProbeSeconds, " s"));
    }
    usleep(5000);
    waited_ms += 5;
  }
  close(fds[0]);
  if (WIFSIGNALED(status)) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path,
                                            " is malformed: parsing it crashed LibTorch's reader (",
                                            strsignal(WTERMSIG(status)), ")"));
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 3) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", path, " cannot be read: ", out));
  }
  if (code != 0) {
    return absl::DataLossError(absl::StrCat("checkpoint ", path,
                                            " is malformed: parsing it ended LibTorch's reader "
                                            "with exit code ",
                                            code));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<torch::serialize::InputArchive>> OpenVerified(
    const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadVerified(path));
  ASSIGN_OR_RETURN(const std::string copy, ParseInChild(bytes, path));
  auto archive = std::make_unique<torch::serialize::InputArchive>();
  RETURN_IF_ERROR(CallTorch("opening checkpoint " + path, [&] {
    std::istringstream in(copy);
    archive->load_from(in);
  }));
  return archive;
}

}  // namespace

absl::Status LoadCheckpoint(const std::string& path, CheckpointContents* contents) {
  ASSIGN_OR_RETURN(std::unique_ptr<torch::serialize::InputArchive> archive, OpenVerified(path));
  // Not structured bindings: a lambda cannot capture those in C++17 (gcc
  // allows it, clang does not).
  for (auto& entry : contents->modules) {
    const std::string& name = entry.first;
    torch::nn::Module* module = entry.second;
    RETURN_IF_ERROR(CallTorch("loading module '" + name + "' from " + path, [&] {
      torch::serialize::InputArchive sub;
      archive->read("module/" + name, sub);
      module->load(sub);
    }));
  }
  for (auto& entry : contents->optimizers) {
    const std::string& name = entry.first;
    torch::optim::Optimizer* optimizer = entry.second;
    RETURN_IF_ERROR(CallTorch("loading optimizer '" + name + "' from " + path, [&] {
      torch::serialize::InputArchive sub;
      archive->read("optimizer/" + name, sub);
      optimizer->load(sub);
    }));
  }
  ASSIGN_OR_RETURN(contents->position, ReadPosition(*archive, path));
  return absl::OkStatus();
}

absl::StatusOr<TrainingPosition> ReadCheckpointPosition(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<torch::serialize::InputArchive> archive, OpenVerified(path));
  return ReadPosition(*archive, path);
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
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    absl::Status verified = VerifyCheckpoint(it->second);
    if (verified.ok()) return it->second;
    LOG(WARNING) << "skipping " << it->second << ": " << verified.message();
  }
  return absl::NotFoundError("no usable checkpoint (ckpt_*.pt) in " + dir);
}

absl::Status PruneCheckpoints(const std::string& dir, int keep) {
  auto found = ListCheckpoints(dir);
  std::error_code ec;
  for (int i = 0; i + keep < static_cast<int>(found.size()); ++i) {
    for (const std::string& file : {found[i].second, ChecksumPath(found[i].second)}) {
      fs::remove(file, ec);
      if (ec) return absl::InternalError("cannot remove " + file + ": " + ec.message());
    }
  }
  // Temporary files of writers that were killed before renaming them.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) {
      fs::remove(entry.path(), ec);
    }
  }
  return absl::OkStatus();
}

}  // namespace tb
