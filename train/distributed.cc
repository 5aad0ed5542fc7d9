#include "train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <utility>

#include <glog/logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/cuda.h>
#ifdef TB_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"

namespace tb {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kHeartbeatPrefix[] = "tb/heartbeat/";

absl::StatusOr<int> IntVariable(const std::function<const char*(const char*)>& get,
                                const char* name, int fallback) {
  const char* value = get(name);
  if (value == nullptr) return fallback;
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("environment variable ", name, " = \"", value, "\": expected an integer"));
  }
  return parsed;
}

// The first line of a c10d/Gloo exception (they carry file paths and,
// for c10::Error, a C++ backtrace after the first line).
std::string FirstLine(const std::string& what) {
  return std::string(what.substr(0, what.find('\n')));
}

}  // namespace

std::string FirstSlurmHost(const std::string& nodelist) {
  // Hosts are separated by commas outside brackets; a bracketed range
  // "[03-05,9]" expands to its first number, keeping its zero padding.
  const size_t end = [&] {
    int depth = 0;
    for (size_t i = 0; i < nodelist.size(); ++i) {
      if (nodelist[i] == '[') ++depth;
      if (nodelist[i] == ']') --depth;
      if (nodelist[i] == ',' && depth == 0) return i;
    }
    return nodelist.size();
  }();
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  const size_t close = first.find(']', open);
  std::string range = first.substr(open + 1, close == std::string::npos ? std::string::npos
                                                                        : close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  return first.substr(0, open) + range +
         (close == std::string::npos ? "" : first.substr(close + 1));
}

absl::StatusOr<DistributedEnv> DistributedEnvFrom(
    const std::function<const char*(const char*)>& get) {
  DistributedEnv env;
  const bool has_rank = get("RANK") != nullptr;
  const bool has_world = get("WORLD_SIZE") != nullptr;
  if (has_rank != has_world) {
    return absl::InvalidArgumentError(absl::StrCat(
        "environment variable ", has_rank ? "RANK" : "WORLD_SIZE", " is set but ",
        has_rank ? "WORLD_SIZE" : "RANK",
        " is not: a data-parallel launch sets both (torchrun does; see docs/DISTRIBUTED.md)"));
  }
  if (has_rank) {
    env.launcher = get("TORCHELASTIC_RESTART_COUNT") != nullptr ? "torchrun" : "env";
    ASSIGN_OR_RETURN(env.rank, IntVariable(get, "RANK", 0));
    ASSIGN_OR_RETURN(env.world_size, IntVariable(get, "WORLD_SIZE", 1));
    ASSIGN_OR_RETURN(env.local_rank, IntVariable(get, "LOCAL_RANK", env.rank));
    ASSIGN_OR_RETURN(env.local_world_size,
                     IntVariable(get, "LOCAL_WORLD_SIZE", env.world_size));
    if (get("MASTER_ADDR") != nullptr) env.master_addr = get("MASTER_ADDR");
    ASSIGN_OR_RETURN(env.master_port, IntVariable(get, "MASTER_PORT", env.master_port));
    const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent != nullptr && std::string(agent) == "True";
    if (env.agent_store) {
      const char* attempt = get("TORCHELASTIC_RESTART_COUNT");
      if (attempt == nullptr) {
        return absl::InvalidArgumentError(
            "environment variable TORCHELASTIC_USE_AGENT_STORE = True but "
            "TORCHELASTIC_RESTART_COUNT is not set");
      }
      env.restart_attempt = attempt;
    }
  } else if (get("SLURM_PROCID") != nullptr && get("SLURM_NTASKS") != nullptr) {
    env.launcher = "slurm";
    ASSIGN_OR_RETURN(env.rank, IntVariable(get, "SLURM_PROCID", 0));
    ASSIGN_OR_RETURN(env.world_size, IntVariable(get, "SLURM_NTASKS", 1));
    ASSIGN_OR_RETURN(env.local_rank, IntVariable(get, "SLURM_LOCALID", 0));
    // "4" or "4(x2)" per node; the first node's count.
    if (const char* per_node = get("SLURM_NTASKS_PER_NODE")) {
      int n = 0;
      if (absl::SimpleAtoi(std::string(per_node).substr(0, std::string(per_node).find('(')),
                           &n)) {
        env.local_world_size = n;
      }
    } else {
      env.local_world_size = env.world_size;
    }
    if (get("MASTER_ADDR") != nullptr) {
      env.master_addr = get("MASTER_ADDR");
    } else if (const char* nodes = get("SLURM_NODELIST")) {
      env.master_addr = FirstSlurmHost(nodes);
    } else if (const char* nodes2 = get("SLURM_JOB_NODELIST")) {
      env.master_addr = FirstSlurmHost(nodes2);
    }
    ASSIGN_OR_RETURN(env.master_port, IntVariable(get, "MASTER_PORT", env.master_port));
  } else {
    return env;
  }
  const char* rank_name = env.launcher == "slurm" ? "SLURM_PROCID" : "RANK";
  const char* world_name = env.launcher == "slurm" ? "SLURM_NTASKS" : "WORLD_SIZE";
  if (env.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", world_name, " = ",
                                                   env.world_size, ": must be at least 1"));
  }
  if (env.rank < 0 || env.rank >= env.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", rank_name, " = ",
                                                   env.rank, ": must be in [0, ", world_name,
                                                   " = ", env.world_size, ")"));
  }
  if (env.master_port <= 0 || env.master_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "environment variable MASTER_PORT = ", env.master_port, ": not a TCP port"));
  }
  return env;
}

absl::StatusOr<DistributedEnv> DistributedEnvFromEnvironment() {
  return DistributedEnvFrom([](const char* name) { return std::getenv(name); });
}

std::string BackendName(DistributedConfig::Backend backend) {
  return backend == DistributedConfig::NCCL ? "nccl" : "gloo";
}

bool NcclAvailable() {
#ifdef TB_WITH_NCCL
  return torch::cuda::is_available();
#else
  return false;
#endif
}

// ---------------------------------------------------------------- collectives

ProcessGroupCollectives::ProcessGroupCollectives(const DistributedEnv& env,
                                                 const DistributedConfig& config,
                                                 c10::intrusive_ptr<c10d::Store> store,
                                                 c10::intrusive_ptr<c10d::Store> heartbeat_store,
                                                 c10::intrusive_ptr<c10d::ProcessGroup> group)
    : env_(env),
      config_(config),
      store_(std::move(store)),
      heartbeat_store_(std::move(heartbeat_store)),
      group_(std::move(group)) {
  heartbeat_ = std::thread([this] { Beat(); });
}

ProcessGroupCollectives::~ProcessGroupCollectives() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

void ProcessGroupCollectives::Beat() {
  const std::string key = absl::StrCat(kHeartbeatPrefix, env_.rank);
  while (!stop_) {
    try {
      heartbeat_store_->add(key, 1);
    } catch (const std::exception& e) {
      // The store went away (its host was lost or the run is ending): the
      // next collective reports it.
      return;
    }
    for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(milliseconds(100));
  }
}

std::string ProcessGroupCollectives::LostRanks() {
  auto read = [&](std::vector<int64_t>* counts) -> bool {
    try {
      counts->clear();
      for (int r = 0; r < env_.world_size; ++r) {
        counts->push_back(store_->add(absl::StrCat(kHeartbeatPrefix, r), 0));
      }
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  std::vector<int64_t> before, after;
  const std::string store_name = absl::StrCat(env_.master_addr, ":", env_.master_port);
  if (!read(&before)) {
    return absl::StrCat("the rendezvous store at ", store_name, " is gone too (",
                        env_.agent_store ? "torchrun's agent hosts it"
                                         : "rank 0 hosts it: rank 0 was lost",
                        ")");
  }
  std::this_thread::sleep_for(seconds(3));
  if (!read(&after)) {
    return absl::StrCat("the rendezvous store at ", store_name, " went away while checking");
  }
  std::vector<std::string> lost;
  for (int r = 0; r < env_.world_size; ++r) {
    if (r != env_.rank && after[r] == before[r]) lost.push_back(absl::StrCat(r));
  }
  if (lost.empty()) return "every rank's heartbeat is still alive";
  return absl::StrCat(lost.size() == 1 ? "rank " : "ranks ", absl::StrJoin(lost, ", "),
                      lost.size() == 1 ? " stopped" : " stopped",
                      " answering (no heartbeat for 3 s)");
}

void ProcessGroupCollectives::Wait(const c10::intrusive_ptr<c10d::Work>& work,
                                   const std::string& what) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error(absl::StrCat(what, " failed on rank ", env_.rank, " of ",
                                          env_.world_size, ": ", FirstLine(e.what()), "; ",
                                          LostRanks()));
  }
}

torch::Device ProcessGroupCollectives::device() const {
  if (config_.backend() == DistributedConfig::NCCL) {
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env_.local_rank));
  }
  return torch::kCPU;
}

namespace {

// The tensor a collective runs on: `t` itself when it is contiguous and on
// the collectives' device, else a copy (copied back by Restore()).
struct OnDevice {
  torch::Tensor original;
  torch::Tensor work;
  OnDevice(const torch::Tensor& t, const torch::Device& device) : original(t) {
    work = (t.is_contiguous() && t.device() == device) ? t : t.to(device).contiguous();
  }
  void Restore() {
    if (!work.is_same(original)) original.copy_(work);
  }
};

}  // namespace

void ProcessGroupCollectives::AllReduceSum(const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  std::vector<OnDevice> on;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (const torch::Tensor& t : tensors) {
    on.emplace_back(t, device());
    std::vector<at::Tensor> one = {on.back().work};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    works.push_back(group_->allreduce(one, options));
  }
  for (size_t i = 0; i < works.size(); ++i) {
    Wait(works[i], "all-reduce");
    on[i].Restore();
  }
}

void ProcessGroupCollectives::Broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  torch::NoGradGuard no_grad;
  std::vector<OnDevice> on;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (const torch::Tensor& t : tensors) {
    on.emplace_back(t, device());
    std::vector<at::Tensor> one = {on.back().work};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    works.push_back(group_->broadcast(one, options));
  }
  for (size_t i = 0; i < works.size(); ++i) {
    Wait(works[i], "broadcast");
    on[i].Restore();
  }
}

torch::Tensor ProcessGroupCollectives::AllGather(const torch::Tensor& input) {
  torch::NoGradGuard no_grad;
  OnDevice in(input, device());
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < env_.world_size; ++r) outputs[0].push_back(torch::empty_like(in.work));
  std::vector<at::Tensor> inputs = {in.work};
  Wait(group_->allgather(outputs, inputs), "all-gather");
  return torch::cat(outputs[0]).to(input.device());
}

void ProcessGroupCollectives::Barrier() { Wait(group_->barrier(), "barrier"); }

absl::StatusOr<std::shared_ptr<ProcessGroupCollectives>> ConnectProcessGroup(
    const DistributedEnv& env, const DistributedConfig& config) {
  if (config.backend() == DistributedConfig::NCCL && !NcclAvailable()) {
    return absl::InvalidArgumentError(
        "config field distributed.backend = NCCL: this LibTorch has no CUDA/NCCL (Debian's "
        "is CPU-only); use GLOO, or set LIBTORCH to a CUDA LibTorch and rebuild");
  }
  if (config.timeout_s() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("config field distributed.timeout_s = ",
                                                   config.timeout_s(), ": must be positive"));
  }
  const milliseconds timeout = seconds(config.timeout_s());
  const std::string address = absl::StrCat(env.master_addr, ":", env.master_port);
  auto connect = [&](bool server, bool count_worker) -> absl::StatusOr<
                                                         c10::intrusive_ptr<c10d::Store>> {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.isServer = server;
    options.timeout = timeout;
    if (count_worker) options.numWorkers = env.world_size;
    options.waitWorkers = count_worker;
    try {
      c10::intrusive_ptr<c10d::Store> store =
          c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
      if (env.agent_store) {
        store = c10::make_intrusive<c10d::PrefixStore>(
            absl::StrCat("/worker/attempt_", env.restart_attempt), store);
      }
      return store;
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(
          "rank ", env.rank, " of ", env.world_size, ": cannot ",
          server ? "serve the rendezvous store at " : "reach the rendezvous store at ", address,
          " (MASTER_ADDR:MASTER_PORT) within distributed.timeout_s = ", config.timeout_s(),
          " s: ", FirstLine(e.what())));
    }
  };
  const bool serve = !env.agent_store && env.rank == 0;
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> store, connect(serve, true));
  ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> heartbeat_store, connect(false, false));

  c10::intrusive_ptr<c10d::ProcessGroup> group;
  try {
    if (config.backend() == DistributedConfig::NCCL) {
#ifdef TB_WITH_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size,
                                                          options);
#endif
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
      const bool loopback =
          absl::StartsWith(env.master_addr, "127.") || env.master_addr == "localhost";
      if (interface != nullptr && *interface != '\0') {
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (loopback) {
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      options->threads = 2;
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size,
                                                          options);
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("rank ", env.rank, " of ", env.world_size,
                                               ": cannot form the ", BackendName(config.backend()),
                                               " process group through ", address, ": ",
                                               FirstLine(e.what())));
  }
  return std::make_shared<ProcessGroupCollectives>(env, config, store, heartbeat_store, group);
}

// ------------------------------------------------------------- gradient sync

GradientSynchronizer::GradientSynchronizer(std::vector<torch::Tensor> parameters,
                                           std::shared_ptr<ProcessGroupCollectives> collectives,
                                           int64_t bucket_bytes)
    : collectives_(std::move(collectives)) {
  // Each tensor once (a parameter may be listed by two modules).
  for (const torch::Tensor& p : parameters) {
    if (!p.requires_grad()) continue;
    const bool seen = std::any_of(parameters_.begin(), parameters_.end(),
                                  [&](const torch::Tensor& q) { return q.is_same(p); });
    if (!seen) parameters_.push_back(p);
  }
  // Buckets in reverse order of the parameters (the backward pass produces
  // the last layers' gradients first), one dtype per bucket.
  where_.resize(parameters_.size());
  int64_t bytes = 0;
  for (size_t k = parameters_.size(); k-- > 0;) {
    const torch::Tensor& p = parameters_[k];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    if (buckets_.empty() || bytes >= bucket_bytes ||
        parameters_[buckets_.back().parameters.front()].scalar_type() != p.scalar_type()) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    where_[k] = {buckets_.size() - 1, static_cast<int64_t>(b.parameters.size())};
    b.parameters.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
    bytes += size;
  }
  for (Bucket& b : buckets_) {
    const torch::Tensor& first = parameters_[b.parameters.front()];
    // The gradients, then one usage flag per parameter (1 where this rank
    // produced a gradient), summed together.
    b.flat = torch::zeros({b.numel + static_cast<int64_t>(b.parameters.size())},
                          first.options().device(collectives_->device()).requires_grad(false));
  }
  for (size_t k = 0; k < parameters_.size(); ++k) {
    hooks_.push_back(parameters_[k].register_hook(
        [this, k](const torch::Tensor& grad) { OnGradient(k, grad); }));
  }
}

GradientSynchronizer::~GradientSynchronizer() {
  for (size_t k = 0; k < parameters_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
}

void GradientSynchronizer::Prepare() {
  for (Bucket& b : buckets_) {
    b.flat.zero_();
    b.pending = static_cast<int>(b.parameters.size());
    b.received.assign(b.parameters.size(), 0);
    b.work.reset();
  }
  next_launch_ = 0;
  armed_ = true;
}

void GradientSynchronizer::OnGradient(size_t parameter, const torch::Tensor& grad) {
  if (!armed_) return;  // a backward pass outside the training step
  const auto [bucket, slot] = where_[parameter];
  Bucket& b = buckets_[bucket];
  if (b.work) {
    throw std::runtime_error(absl::StrCat(
        "parameter ", parameter, " received a second gradient after its bucket was sent "
        "(a parameter used by two backward passes in one step is not supported)"));
  }
  torch::NoGradGuard no_grad;
  const int64_t n = parameters_[parameter].numel();
  b.flat.narrow(0, b.offsets[slot], n).add_(grad.reshape({n}).to(b.flat.device()));
  if (!b.received[slot]) {
    b.received[slot] = 1;
    b.flat.narrow(0, b.numel + slot, 1).fill_(1);
    --b.pending;
  }
  LaunchReady();
}

void GradientSynchronizer::LaunchReady() {
  // In bucket order, so that every rank issues the same sequence of
  // all-reduces whatever order its hooks fire in.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    std::vector<at::Tensor> one = {b.flat};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    b.work = collectives_->group().allreduce(one, options);
  }
}

void GradientSynchronizer::Finish() {
  CHECK(armed_) << "GradientSynchronizer::Finish() without Prepare()";
  armed_ = false;
  // Parameters that got no gradient here count as zeros (their flag is 0).
  for (Bucket& b : buckets_) b.pending = 0;
  LaunchReady();
  torch::NoGradGuard no_grad;
  const double world = collectives_->world_size();
  for (Bucket& b : buckets_) {
    collectives_->Wait(b.work, "gradient all-reduce");
    b.work.reset();
    for (size_t slot = 0; slot < b.parameters.size(); ++slot) {
      torch::Tensor& p = parameters_[b.parameters[slot]];
      const bool used = b.flat[b.numel + static_cast<int64_t>(slot)].item<double>() > 0;
      if (!used) continue;  // no rank produced a gradient: none, as in one process
      const torch::Tensor mean =
          b.flat.narrow(0, b.offsets[slot], p.numel()).view(p.sizes()).div(world);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(mean);
      } else {
        p.mutable_grad() = mean.to(p.device()).clone();
      }
    }
  }
}

}  // namespace tb
