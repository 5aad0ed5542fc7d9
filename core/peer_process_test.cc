#include "core/peer_process.h"

#include <gtest/gtest.h>

namespace tb {
namespace {

TEST(JsonNumberField, ReadsNumbersAndNamesWhatIsMissing) {
  const std::string line = R"({"precision": "fp32", "clips_per_s": 1.28, "steps":5})";
  EXPECT_DOUBLE_EQ(*JsonNumberField(line, "clips_per_s"), 1.28);
  EXPECT_DOUBLE_EQ(*JsonNumberField(line, "steps"), 5);
  EXPECT_EQ(JsonNumberField(line, "median").status().code(), absl::StatusCode::kNotFound);
  const absl::Status text = JsonNumberField(line, "precision").status();
  EXPECT_NE(text.message().find("not a number"), std::string::npos) << text;
}

TEST(RunPeer, TakesTheTaggedLineAndReportsFailures) {
  EXPECT_EQ(*RunPeer(R"(echo 'noise'; echo 'PEER_X {"v": 2.5}'; echo 'PEER_X {"v": 9}')",
                     "PEER_X"),
            R"({"v": 2.5})");
  const absl::Status missing = RunPeer("echo hello", "PEER_X").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("hello"), std::string::npos) << missing;
  const absl::Status failed = RunPeer("echo oops; exit 3", "PEER_X").status();
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_NE(failed.message().find("oops"), std::string::npos) << failed;
}

}  // namespace
}  // namespace tb
