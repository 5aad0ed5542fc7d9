#include "core/run_lock.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"

namespace tb {
namespace {

TEST(RunDirLock, SecondHolderIsRefusedNamingTheFirst) {
  const std::string dir = testing::TmpPath("locked_run");
  auto first = RunDirLock::Acquire(dir);
  ASSERT_TRUE(first.ok()) << first.status();
  // flock is per open file description: a second Acquire, even in this
  // process, is refused.
  auto second = RunDirLock::Acquire(dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by pid " + std::to_string(::getpid())),
            std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find(dir + "/lock"), std::string::npos);
  first->reset();
  EXPECT_TRUE(RunDirLock::Acquire(dir).ok()) << "released on destruction";
}

TEST(RunDirLock, ADeadHoldersLockIsReleased) {
  const std::string dir = testing::TmpPath("killed_run");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto lock = RunDirLock::Acquire(dir);
    if (!lock.ok()) _exit(3);
    ::kill(::getpid(), SIGKILL);  // dies holding the lock
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  auto after = RunDirLock::Acquire(dir);
  EXPECT_TRUE(after.ok()) << after.status();
}

}  // namespace
}  // namespace tb
