#include "core/checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/threads.h"

namespace tb {
namespace {
namespace fs = std::filesystem;

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl() {
    fc = register_module("fc", torch::nn::Linear(4, 3));
    bn = register_module("bn", torch::nn::BatchNorm1d(3));
  }
  torch::Tensor forward(torch::Tensor x) { return bn(fc(x)); }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};
TORCH_MODULE(TinyNet);

std::string TestDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/ckpt_test";
  fs::create_directories(dir);
  return dir;
}

TEST(Checkpoint, RoundTripRestoresModelOptimizerAndPosition) {
  torch::manual_seed(0);
  TinyNet net;
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-2));
  for (int i = 0; i < 3; ++i) {  // build up Adam moments and BN statistics
    opt.zero_grad();
    net->forward(torch::randn({8, 4})).pow(2).mean().backward();
    opt.step();
  }
  const std::string path = CheckpointPath(TestDir(), 3);
  CheckpointContents saved{{{"model", net.get()}}, {{"opt", &opt}}, {3, 1, 99, "seed: 99"}};
  ASSERT_TRUE(SaveCheckpoint(path, saved).ok());

  torch::manual_seed(1);
  TinyNet other;
  torch::optim::Adam other_opt(other->parameters(), torch::optim::AdamOptions(1e-2));
  CheckpointContents loaded{{{"model", other.get()}}, {{"opt", &other_opt}}, {}};
  ASSERT_TRUE(LoadCheckpoint(path, &loaded).ok());
  EXPECT_EQ(loaded.position.step, 3);
  EXPECT_EQ(loaded.position.epoch, 1);
  EXPECT_EQ(loaded.position.seed, 99u);
  EXPECT_EQ(loaded.position.config_text, "seed: 99");
  auto a = net->named_parameters(), b = other->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()]));
  auto ba = net->named_buffers(), bb = other->named_buffers();
  for (const auto& item : ba) EXPECT_TRUE(torch::equal(item.value(), bb[item.key()]));

  // The next optimizer step is identical when the Adam state was restored.
  torch::Tensor x = torch::randn({8, 4});
  for (auto* pair : {&net, &other}) (*pair)->train();
  opt.zero_grad();
  net->forward(x).pow(2).mean().backward();
  opt.step();
  other_opt.zero_grad();
  other->forward(x).pow(2).mean().backward();
  other_opt.step();
  EXPECT_TRUE(torch::allclose(net->fc->weight, other->fc->weight));
}

TEST(Checkpoint, LatestAndPrune) {
  const std::string dir = TestDir() + "/prune";
  fs::create_directories(dir);
  TinyNet net;
  for (int step : {5, 20, 10}) {
    CheckpointContents c{{{"model", net.get()}}, {}, {step, 0, 1, ""}};
    ASSERT_TRUE(SaveCheckpoint(CheckpointPath(dir, step), c).ok());
  }
  auto latest = LatestCheckpoint(dir);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(*latest, CheckpointPath(dir, 20));
  ASSERT_TRUE(PruneCheckpoints(dir, 2).ok());
  EXPECT_FALSE(fs::exists(CheckpointPath(dir, 5)));
  EXPECT_TRUE(fs::exists(CheckpointPath(dir, 10)));
  // No temporary files are left behind.
  for (const auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
}

TEST(Checkpoint, ErrorsNameTheFile) {
  TinyNet net;
  CheckpointContents c{{{"model", net.get()}}, {}, {}};
  absl::Status missing = LoadCheckpoint("/nonexistent/ckpt.pt", &c);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("/nonexistent/ckpt.pt"), std::string::npos);

  const std::string garbage = TestDir() + "/garbage.pt";
  std::ofstream(garbage) << "not a checkpoint";
  absl::Status bad = LoadCheckpoint(garbage, &c);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("garbage.pt"), std::string::npos);
  EXPECT_EQ(bad.message().find("Exception raised from"), std::string::npos);
  EXPECT_EQ(LatestCheckpoint(TestDir() + "/empty").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(Checkpoint, ChecksumIsVerifiedAndACorruptLatestIsSkipped) {
  const std::string dir = TestDir() + "/checksum";
  fs::remove_all(dir);
  fs::create_directories(dir);
  TinyNet net;
  for (int step : {2, 4}) {
    CheckpointContents c{{{"model", net.get()}}, {}, {step, 0, 1, ""}};
    ASSERT_TRUE(SaveCheckpoint(CheckpointPath(dir, step), c).ok());
  }
  const std::string newest = CheckpointPath(dir, 4);
  // The sidecar is in `sha256sum` format.
  std::ifstream sidecar(ChecksumPath(newest));
  std::string digest, name;
  sidecar >> digest >> name;
  EXPECT_EQ(digest.size(), 64u);
  EXPECT_EQ(name, "ckpt_00000004.pt");
  EXPECT_TRUE(VerifyCheckpoint(newest).ok());

  // Flip one byte in the middle of the newest checkpoint.
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff middle = f.tellg() / 2;
    f.seekg(middle);
    char byte = 0;
    f.get(byte);
    f.seekp(middle);
    f.put(static_cast<char>(byte ^ 0x10));
  }
  CheckpointContents c{{{"model", net.get()}}, {}, {}};
  const absl::Status corrupt = LoadCheckpoint(newest, &c);
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(corrupt.message().find("ckpt_00000004.pt is corrupt"), std::string::npos) << corrupt;
  auto latest = LatestCheckpoint(dir);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(*latest, CheckpointPath(dir, 2));

  // A checkpoint without a sidecar (written before checksums) still loads.
  fs::remove(ChecksumPath(CheckpointPath(dir, 2)));
  EXPECT_TRUE(LoadCheckpoint(CheckpointPath(dir, 2), &c).ok());
}

TEST(Checkpoint, GlobalRngStateRoundTrips) {
  torch::manual_seed(5);
  torch::rand({3});
  const std::string state = CaptureGlobalRngState();
  ASSERT_GT(state.size(), 16u);
  const torch::Tensor first = torch::rand({4});
  const torch::Tensor dropout = torch::dropout(torch::ones({16}), 0.5, /*train=*/true);
  torch::manual_seed(123);  // anything in between
  ASSERT_TRUE(RestoreGlobalRngState(state).ok());
  EXPECT_TRUE(torch::equal(torch::rand({4}), first));
  EXPECT_TRUE(torch::equal(torch::dropout(torch::ones({16}), 0.5, true), dropout));
  EXPECT_EQ(RestoreGlobalRngState("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RestoreGlobalRngState(state.substr(0, state.size() - 1)).code(),
            absl::StatusCode::kInvalidArgument);

  // Saved and loaded with a checkpoint.
  const std::string path = TestDir() + "/rng.pt";
  TinyNet net;
  CheckpointContents saved{{{"model", net.get()}}, {}, {1, 0, 0, "", {state}}};
  ASSERT_TRUE(SaveCheckpoint(path, saved).ok());
  CheckpointContents loaded{{{"model", net.get()}}, {}, {}};
  ASSERT_TRUE(LoadCheckpoint(path, &loaded).ok());
  EXPECT_EQ(loaded.position.rng_states, std::vector<std::string>{state});
}

TEST(Checkpoint, ModuleSha256SeesEveryBit) {
  torch::manual_seed(3);
  TinyNet a;
  torch::manual_seed(3);
  TinyNet b;
  EXPECT_EQ(ModuleSha256(*a), ModuleSha256(*b));
  EXPECT_EQ(ModuleSha256(*a).size(), 64u);
  {
    torch::NoGradGuard no_grad;
    // The smallest change of one weight.
    float* w = b->fc->weight.data_ptr<float>();
    w[0] = std::nextafter(w[0], 1e9f);
  }
  EXPECT_NE(ModuleSha256(*a), ModuleSha256(*b));
  // Buffers count too: the same parameters, other BatchNorm statistics.
  torch::manual_seed(3);
  TinyNet c;
  EXPECT_EQ(ModuleSha256(*c), ModuleSha256(*a));
  c->bn->running_var.fill_(2);
  EXPECT_NE(ModuleSha256(*c), ModuleSha256(*a));
}

TEST(Threads, ConfigureThreadsSetsIntraOpCount) {
  EXPECT_EQ(ConfigureThreads(1), 1);
  EXPECT_GE(ConfigureThreads(0), 1);
}

}  // namespace
}  // namespace tb
