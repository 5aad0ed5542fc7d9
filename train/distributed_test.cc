#include "train/distributed.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "backbones/sync_batch_norm.h"
#include "eval/precise_bn.h"
#include "core/collectives.h"
#include "ssl/losses.h"
#include "ssl/objective.h"

namespace tb {
namespace {

using Vars = std::map<std::string, std::string>;

absl::StatusOr<DistributedEnv> EnvOf(const Vars& vars) {
  return DistributedEnvFrom([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(DistributedEnv, NoLauncherIsOneProcess) {
  absl::StatusOr<DistributedEnv> env = EnvOf({});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->world_size, 1);
  EXPECT_EQ(env->launcher, "");
}

TEST(DistributedEnv, Torchrun) {
  absl::StatusOr<DistributedEnv> env =
      EnvOf({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
             {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29411"},
             {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "torchrun");
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 2);
  EXPECT_EQ(env->master_addr, "10.0.0.7");
  EXPECT_EQ(env->master_port, 29411);
  EXPECT_TRUE(env->agent_store);
  EXPECT_EQ(env->restart_attempt, "2");
}

TEST(DistributedEnv, RankAndWorldSizeByHand) {
  absl::StatusOr<DistributedEnv> env = EnvOf({{"RANK", "0"}, {"WORLD_SIZE", "2"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "env");
  EXPECT_EQ(env->local_rank, 0);
  EXPECT_EQ(env->master_addr, "127.0.0.1");
  EXPECT_FALSE(env->agent_store);
}

TEST(DistributedEnv, Slurm) {
  absl::StatusOr<DistributedEnv> env =
      EnvOf({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
             {"SLURM_NTASKS_PER_NODE", "4(x2)"}, {"SLURM_NODELIST", "gpu[07-08]"}});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->launcher, "slurm");
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_world_size, 4);
  EXPECT_EQ(env->master_addr, "gpu07");
  EXPECT_EQ(env->master_port, 29500);
}

TEST(DistributedEnv, FirstSlurmHost) {
  EXPECT_EQ(FirstSlurmHost("node1"), "node1");
  EXPECT_EQ(FirstSlurmHost("node1,node2"), "node1");
  EXPECT_EQ(FirstSlurmHost("gpu[003-005,9],cpu1"), "gpu003");
  EXPECT_EQ(FirstSlurmHost("rack[2,4]-n[1-3]"), "rack2-n[1-3]");
}

TEST(DistributedEnv, BadVariablesAreConfigErrors) {
  absl::StatusOr<DistributedEnv> env = EnvOf({{"WORLD_SIZE", "2"}});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(env.status().message().find("WORLD_SIZE is set but RANK is not"), std::string::npos)
      << env.status();
  env = EnvOf({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("RANK = 2: must be in [0, WORLD_SIZE = 2)"),
            std::string::npos)
      << env.status();
  env = EnvOf({{"RANK", "x"}, {"WORLD_SIZE", "2"}});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("RANK = \"x\""), std::string::npos) << env.status();
  env = EnvOf({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find("TORCHELASTIC_RESTART_COUNT"), std::string::npos);
}

// A TCP port nobody listens on right now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

DistributedConfig Config(int timeout_s = 30) {
  DistributedConfig config;
  config.set_timeout_s(timeout_s);
  return config;
}

// Runs `body(rank, collectives)` for `world` ranks on threads of this
// process, connected over loopback.
void RunRanks(int world,
              const std::function<void(int, std::shared_ptr<ProcessGroupCollectives>)>& body) {
  const int port = FreePort();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      DistributedEnv env;
      env.rank = r;
      env.world_size = world;
      env.master_port = port;
      env.launcher = "test";
      absl::StatusOr<std::shared_ptr<ProcessGroupCollectives>> group =
          ConnectProcessGroup(env, Config());
      ASSERT_TRUE(group.ok()) << group.status();
      body(r, *group);
    });
  }
  for (std::thread& t : threads) t.join();
}

TEST(ProcessGroupCollectives, AllReduceBroadcastGather) {
  RunRanks(2, [](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    EXPECT_EQ(c->rank(), rank);
    EXPECT_EQ(c->world_size(), 2);
    torch::Tensor a = torch::full({3}, rank + 1.0);
    torch::Tensor b = torch::arange(4, torch::kInt64) * (rank + 1);
    c->AllReduceSum({a, b});
    EXPECT_TRUE(torch::equal(a, torch::full({3}, 3.0)));
    EXPECT_TRUE(torch::equal(b, torch::arange(4, torch::kInt64) * 3));
    // A non-contiguous tensor is reduced through a copy and written back.
    torch::Tensor m = torch::ones({2, 3}).t();
    c->AllReduceSum({m});
    EXPECT_TRUE(torch::equal(m, torch::full({3, 2}, 2.0)));
    torch::Tensor x = torch::full({2}, rank * 10.0 + 5);
    c->Broadcast({x}, 1);
    EXPECT_TRUE(torch::equal(x, torch::full({2}, 15.0)));
    torch::Tensor g = c->AllGather(torch::full({1, 2}, static_cast<double>(rank)));
    EXPECT_TRUE(torch::equal(g, torch::tensor({0.0, 0.0, 1.0, 1.0}).view({2, 2})));
    c->Barrier();
  });
}

TEST(ProcessGroupCollectives, GradientsThroughCollectives) {
  RunRanks(2, [](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    // loss_r = sum_i w_r,i * s_i with s = x_0 + x_1: d loss_r / d x_rank =
    // w_r, and the all-reduce backward sums it over r.
    torch::Tensor x = torch::full({2}, rank + 1.0, torch::requires_grad());
    torch::Tensor s = AllReduceSumWithGradient(x, *c);
    (s * (rank + 1.0)).sum().backward();
    EXPECT_TRUE(torch::allclose(x.grad(), torch::full({2}, 3.0)));
    torch::Tensor y = torch::full({1, 2}, rank + 1.0, torch::requires_grad());
    torch::Tensor gathered = AllGatherWithGradient(y, *c);  // [2, 2]
    // loss_r = sum(gathered * (row index + 1) * (r + 1)).
    (gathered * torch::tensor({1.0, 2.0}).view({2, 1}) * (rank + 1.0)).sum().backward();
    // d/dy_rank summed over r: (rank + 1) * (1 + 2).
    EXPECT_TRUE(torch::allclose(y.grad(), torch::full({1, 2}, 3.0 * (rank + 1))));
  });
}

TEST(ProcessGroupCollectives, UnreachableMasterNamesTheAddress) {
  DistributedEnv env;
  env.rank = 1;
  env.world_size = 2;
  env.master_port = FreePort();
  absl::StatusOr<std::shared_ptr<ProcessGroupCollectives>> group =
      ConnectProcessGroup(env, Config(/*timeout_s=*/2));
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(group.status().message().find("127.0.0.1:" + std::to_string(env.master_port)),
            std::string::npos)
      << group.status();
}

TEST(ProcessGroupCollectives, NcclWithoutCudaIsAConfigError) {
  if (NcclAvailable()) GTEST_SKIP() << "this LibTorch has NCCL";
  DistributedConfig config = Config();
  config.set_backend(DistributedConfig::NCCL);
  absl::StatusOr<std::shared_ptr<ProcessGroupCollectives>> group =
      ConnectProcessGroup(DistributedEnv(), config);
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(group.status().message().find("distributed.backend = NCCL"), std::string::npos);
}

// A conv + BatchNorm + linear model; equal weights for equal seeds.
struct Net : torch::nn::Module {
  Net() {
    conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(2, 4, 3).padding(1)));
    bn = register_module("bn", SyncBatchNorm3d(torch::nn::BatchNorm3dOptions(4)));
    fc = register_module("fc", torch::nn::Linear(4, 3));
    unused = register_module("unused", torch::nn::Linear(2, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::relu(bn(conv(x)));
    return fc(h.mean({2, 3, 4}));
  }
  torch::nn::Conv3d conv{nullptr};
  SyncBatchNorm bn{nullptr};
  torch::nn::Linear fc{nullptr}, unused{nullptr};
};

// `n` nets with the weights of seed 1 (the one-process reference's).
std::vector<std::shared_ptr<Net>> SeededNets(int n) {
  std::vector<std::shared_ptr<Net>> nets;
  for (int r = 0; r < n; ++r) {
    torch::manual_seed(1);
    nets.push_back(std::make_shared<Net>());
  }
  return nets;
}

// One training step's loss: mean cross-entropy over the batch.
torch::Tensor Loss(Net& net, const torch::Tensor& x, const torch::Tensor& y) {
  return torch::nn::functional::cross_entropy(net.forward(x), y);
}

TEST(GradientSynchronizer, TwoRanksOfFourEqualOneRankOfEight) {
  torch::manual_seed(7);
  const torch::Tensor x = torch::randn({8, 2, 3, 5, 5});
  const torch::Tensor y = torch::randint(0, 3, {8}, torch::kInt64);
  // The reference: one process, the whole batch, LibTorch's BatchNorm.
  torch::manual_seed(1);
  auto reference = std::make_shared<Net>();
  reference->train();
  Loss(*reference, x, y).backward();
  std::vector<torch::Tensor> ref_grads;
  for (const torch::Tensor& p : reference->parameters()) ref_grads.push_back(p.grad());

  std::vector<std::shared_ptr<Net>> nets = SeededNets(2);
  RunRanks(2, [&](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    Net& net = *nets[rank];
    net.train();
    EXPECT_EQ(SetBatchNormCollectives(net, c), 1);
    // Small buckets: several all-reduces in flight during the backward pass.
    GradientSynchronizer sync(net.parameters(), c, /*bucket_bytes=*/16);
    EXPECT_GE(sync.num_buckets(), 4);
    for (int step = 0; step < 2; ++step) {
      for (torch::Tensor& p : net.parameters()) {
        if (p.grad().defined()) p.mutable_grad().zero_();
      }
      sync.Prepare();
      Loss(net, x.narrow(0, 4 * rank, 4), y.narrow(0, 4 * rank, 4)).backward();
      sync.Finish();
    }
  });
  for (int r = 0; r < 2; ++r) {
    const std::vector<torch::Tensor> params = nets[r]->parameters();
    ASSERT_EQ(params.size(), ref_grads.size());
    for (size_t i = 0; i < params.size(); ++i) {
      if (!ref_grads[i].defined()) {
        EXPECT_FALSE(params[i].grad().defined()) << "parameter " << i << " rank " << r;
        continue;
      }
      ASSERT_TRUE(params[i].grad().defined()) << "parameter " << i;
      EXPECT_LT((params[i].grad() - ref_grads[i]).abs().max().item<double>(), 1e-6)
          << "parameter " << i << " rank " << r;
    }
  }
  // Running statistics: the ranks updated them twice with the global
  // batch's statistics; the reference once so far, once more here.
  {
    torch::NoGradGuard no_grad;
    reference->forward(x);
  }
  for (int r = 0; r < 2; ++r) {
    EXPECT_LT((nets[r]->bn->running_mean - reference->bn->running_mean).abs().max().item<double>(),
              1e-6);
    EXPECT_LT((nets[r]->bn->running_var - reference->bn->running_var).abs().max().item<double>(),
              1e-5);
  }
}


// Precise-BN on 2 ranks, each forwarding half of every global batch (and
// without distributed.sync_batchnorm: precise-BN synchronises the layers
// itself, then puts them back), equals one process forwarding the global
// batches, on both ranks.
TEST(PreciseBn, TwoRanksOfFourEqualOneProcessOfEight) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> batches;
  for (int b = 0; b < 3; ++b) batches.push_back(torch::randn({8, 2, 3, 5, 5}) * (b + 1));
  const auto feed = [&](int offset, int size) {
    auto i = std::make_shared<int>(0);
    return [&batches, i, offset, size]() -> absl::StatusOr<torch::Tensor> {
      return batches[(*i)++].narrow(0, offset, size);
    };
  };
  torch::manual_seed(1);
  Net reference;
  reference.train();
  ASSERT_TRUE(RecomputeBatchNormStatistics(
                  reference, [&](const torch::Tensor& x) { reference.forward(x); }, 3,
                  feed(0, 8), torch::kCPU)
                  .ok());
  std::vector<std::shared_ptr<Net>> nets = SeededNets(2);
  RunRanks(2, [&](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    Net& net = *nets[rank];
    net.train();
    auto report = RecomputeBatchNormStatistics(
        net, [&](const torch::Tensor& x) { net.forward(x); }, 3, feed(4 * rank, 4), torch::kCPU,
        Precision::kFp32, c);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_FALSE(net.bn->synchronized());  // as it was
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_LT((nets[r]->bn->running_mean - reference.bn->running_mean).abs().max().item<double>(),
              1e-6);
    EXPECT_LT((nets[r]->bn->running_var - reference.bn->running_var).abs().max().item<double>(),
              1e-5);
  }
  EXPECT_TRUE(torch::equal(nets[0]->bn->running_var, nets[1]->bn->running_var));
}

// In-batch negatives over the global batch: NT-Xent of GlobalBatch()
// embeddings on 2 ranks x 3 videos, gradients averaged as the training loop
// does, equals one process's NT-Xent and gradient over the 6 videos.
TEST(GlobalBatch, NtXentOnTwoRanksEqualsOneProcess) {
  torch::manual_seed(3);
  const torch::Tensor xa = torch::randn({6, 5}), xb = torch::randn({6, 5});
  const torch::Tensor w0 = torch::randn({5, 4});
  torch::Tensor w1 = w0.clone().requires_grad_(true);
  const torch::Tensor loss1 = ssl::NtXent(xa.mm(w1), xb.mm(w1), 0.5);
  loss1.backward();
  const torch::Tensor grad1 = w1.grad().clone();
  EXPECT_TRUE(torch::equal(GlobalBatch(xa, 0, nullptr), xa));  // one process: itself
  std::vector<torch::Tensor> grads(2), losses(2);
  RunRanks(2, [&](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    torch::Tensor w = w0.clone().requires_grad_(true);
    const torch::Tensor a = GlobalBatch(xa.slice(0, 3 * rank, 3 * rank + 3).mm(w), 0, c.get());
    const torch::Tensor b = GlobalBatch(xb.slice(0, 3 * rank, 3 * rank + 3).mm(w), 0, c.get());
    ASSERT_EQ(a.size(0), 6);
    const torch::Tensor loss = ssl::NtXent(a, b, 0.5);
    loss.backward();
    torch::Tensor g = w.grad().clone();
    c->AllReduceSum({g});
    grads[rank] = g / 2;
    losses[rank] = loss.detach();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_NEAR(losses[r].item<double>(), loss1.item<double>(), 1e-6);
    EXPECT_TRUE(torch::allclose(grads[r], grad1, 1e-5, 1e-6)) << grads[r] << grad1;
  }
}

// MoCo's shuffled BN: keys computed on a batch drawn from all ranks come
// back to their own videos; with a batch-dependent embedding (x minus the
// batch mean, what BatchNorm does) each rank's key batch is a group of
// videos from both ranks, the same partition seen from every rank.
TEST(ShuffledBatchNorm, KeysReturnToTheirVideosAndBatchesMix) {
  const int64_t k = 2, b = 4, features = 3;
  // Row (clip j, video v of rank r) holds 100 r + 10 v + j + feature / 10.
  auto clips_of = [&](int rank) {
    torch::Tensor c = torch::empty({k * b, features});
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t v = 0; v < b; ++v) {
        for (int64_t f = 0; f < features; ++f) {
          c[j * b + v][f] = 100.0 * rank + 10.0 * v + j + f / 10.0;
        }
      }
    }
    return c;
  };
  std::vector<torch::Tensor> same(2), centred(2);
  RunRanks(2, [&](int rank, std::shared_ptr<ProcessGroupCollectives> c) {
    const torch::Tensor clips = clips_of(rank);
    same[rank] = ShuffledBatchNormEmbed([](const torch::Tensor& x) { return x * 2; }, clips, k,
                                        /*step=*/7, *c);
    centred[rank] = ShuffledBatchNormEmbed(
        [](const torch::Tensor& x) { return x - x.mean(0, /*keepdim=*/true); }, clips, k, 7, *c);
  });
  std::vector<double> group_means;
  for (int rank = 0; rank < 2; ++rank) {
    const torch::Tensor clips = clips_of(rank);
    EXPECT_TRUE(torch::equal(same[rank], clips * 2)) << "rank " << rank;
    // clips - key = the mean of the batch the clip was embedded in.
    const torch::Tensor shift = clips - centred[rank];
    for (int64_t row = 0; row < k * b; ++row) {
      const double m = shift[row][0].item<double>();
      bool known = false;
      for (double g : group_means) known |= std::abs(g - m) < 1e-3;
      if (!known) group_means.push_back(m);
    }
  }
  // Two batches of 8 clips in all (one per rank) that together hold every
  // clip once (so their means add up to rank 0's 15.5 plus rank 1's 115.5),
  // each mixing both ranks' videos (neither mean is 15.5 or 115.5).
  ASSERT_EQ(group_means.size(), 2u);
  EXPECT_NEAR(group_means[0] + group_means[1], 15.5 + 115.5, 1e-3);
  for (double m : group_means) EXPECT_TRUE(m > 16 && m < 115) << m;
}

}  // namespace
}  // namespace tb
