// File: train/distributed.h
//
// Data-parallel training on PyTorch's c10d (docs/DISTRIBUTED.md):
//
//  - DistributedEnv: who this process is, from the launcher's environment:
//    torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
//    MASTER_PORT; with TORCHELASTIC_USE_AGENT_STORE=True every rank is a
//    client of the agent's TCPStore and prefixes its keys with the restart
//    attempt, as torchrun's Python workers do) or Slurm (SLURM_PROCID,
//    SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE, the first host of
//    SLURM_NODELIST; MASTER_PORT or 29500). No such variables: one process.
//  - ProcessGroupCollectives: core/collectives.h on a c10d ProcessGroup
//    (Gloo; NCCL where LibTorch has CUDA) over a TCPStore rendezvous. A
//    failed collective names the ranks that stopped answering (each rank
//    beats a heartbeat counter in the store; the ones whose counter stands
//    still are reported).
//  - GradientSynchronizer: averages gradients over the ranks in buckets,
//    each all-reduced asynchronously as soon as the backward pass has
//    produced all of its gradients (autograd hooks), overlapping
//    communication with the rest of the backward pass; c10d's Reducer does
//    the same for Python's DistributedDataParallel.
//
//   ASSIGN_OR_RETURN(DistributedEnv env, DistributedEnvFromEnvironment());
//   ASSIGN_OR_RETURN(auto group, ConnectProcessGroup(env, config.distributed()));
#ifndef TIMEBALANCE_TRAIN_DISTRIBUTED_H_
#define TIMEBALANCE_TRAIN_DISTRIBUTED_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/types.h>

#include "absl/status/statusor.h"
#include "configs/experiment.pb.h"
#include "core/collectives.h"

namespace tb {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // torchrun's agent hosts the store; keys go under /worker/attempt_<n>.
  bool agent_store = false;
  std::string restart_attempt = "0";
  // "torchrun", "env" (RANK and WORLD_SIZE set by hand or another
  // launcher), "slurm", or "" for one process.
  std::string launcher;
};

// Reads the variables through `get` (null for an unset variable). A
// variable that is set but malformed, WORLD_SIZE without RANK (or the
// reverse), or RANK outside [0, WORLD_SIZE) is InvalidArgument (exit 2),
// naming the variable.
absl::StatusOr<DistributedEnv> DistributedEnvFrom(
    const std::function<const char*(const char*)>& get);
absl::StatusOr<DistributedEnv> DistributedEnvFromEnvironment();

// The first host of a Slurm node list: "gpu[03-05,9],cpu1" -> "gpu03".
std::string FirstSlurmHost(const std::string& nodelist);

// "gloo" or "nccl".
std::string BackendName(DistributedConfig::Backend backend);

// Whether this build's LibTorch has CUDA and NCCL (a LIBTORCH distribution
// with libtorch_cuda; never Debian's).
bool NcclAvailable();

class ProcessGroupCollectives : public Collectives {
 public:
  ProcessGroupCollectives(const DistributedEnv& env, const DistributedConfig& config,
                          c10::intrusive_ptr<c10d::Store> store,
                          c10::intrusive_ptr<c10d::Store> heartbeat_store,
                          c10::intrusive_ptr<c10d::ProcessGroup> group);
  ~ProcessGroupCollectives() override;

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  void AllReduceSum(const std::vector<torch::Tensor>& tensors) override;
  void Broadcast(const std::vector<torch::Tensor>& tensors, int root) override;
  torch::Tensor AllGather(const torch::Tensor& input) override;
  void Barrier() override;

  // Waits for `work`; on failure throws std::runtime_error naming `what`
  // and the ranks that stopped answering.
  void Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);

  c10d::ProcessGroup& group() { return *group_; }
  const DistributedEnv& env() const { return env_; }
  const DistributedConfig& config() const { return config_; }
  // The device collectives run on: CPU for Gloo, cuda:LOCAL_RANK for NCCL.
  torch::Device device() const;

  // "ranks 1, 3 stopped answering" (heartbeats that stood still for 3 s),
  // or why that could not be told. Blocks about 3 s.
  std::string LostRanks();

 private:
  void Beat();

  const DistributedEnv env_;
  const DistributedConfig config_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Store> heartbeat_store_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
};

// Rendezvous: connects to (rank 0 without torchrun's agent: hosts) the
// TCPStore at MASTER_ADDR:MASTER_PORT and builds the process group.
// InvalidArgument (exit 2) for NCCL without CUDA; Unavailable (exit 1) when
// MASTER_ADDR:MASTER_PORT cannot be reached within timeout_s (the message
// names the address).
absl::StatusOr<std::shared_ptr<ProcessGroupCollectives>> ConnectProcessGroup(
    const DistributedEnv& env, const DistributedConfig& config);

// Averages the gradients of `parameters` over the ranks (see the file
// comment). Parameters that received no gradient on any rank keep none,
// as in a single process; a parameter used on some ranks only gets the
// average with zeros for the others. Not thread-safe; one backward pass
// between Prepare() and Finish().
class GradientSynchronizer {
 public:
  GradientSynchronizer(std::vector<torch::Tensor> parameters,
                       std::shared_ptr<ProcessGroupCollectives> collectives,
                       int64_t bucket_bytes);
  ~GradientSynchronizer();
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  // Before the backward pass.
  void Prepare();
  // After it: sends what is left, waits, writes the averages into .grad.
  // Throws (std::runtime_error) when a rank is lost.
  void Finish();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }

 private:
  struct Bucket {
    std::vector<size_t> parameters;
    std::vector<int64_t> offsets;  // of each parameter's gradient in `flat`
    int64_t numel = 0;             // gradient elements (usage flags follow)
    torch::Tensor flat;
    int pending = 0;                // parameters still without a gradient
    std::vector<char> received;     // per parameter, this step
    c10::intrusive_ptr<c10d::Work> work;
  };

  void OnGradient(size_t parameter, const torch::Tensor& grad);
  void LaunchReady();

  std::vector<torch::Tensor> parameters_;
  std::shared_ptr<ProcessGroupCollectives> collectives_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, int64_t>> where_;  // parameter -> (bucket, slot)
  std::vector<unsigned> hooks_;
  size_t next_launch_ = 0;
  bool armed_ = false;
};

}  // namespace tb

#endif  // TIMEBALANCE_TRAIN_DISTRIBUTED_H_
