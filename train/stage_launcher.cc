#include "train/stage_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

struct Child {
  std::string stage;
  std::string log;
  pid_t pid = -1;
  int threads = 1;
};

// The last `n` lines of a file.
std::string Tail(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<pid_t> Spawn(const StageLauncherOptions& options, const std::string& stage,
                            const std::string& log) {
  // Everything the child needs is prepared before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> args = options.argv;
  if (args.empty()) args.push_back("timebalance");
  args.push_back(options.task_flag + stage);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", log, ": ", std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("fork for ", options.task_noun, " ", stage, ": ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the parent died before prctl
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

}  // namespace

absl::StatusOr<bool> LaunchStages(const StageLauncherOptions& options,
                                  const std::vector<StageTask>& tasks, int jobs,
                                  int thread_budget, const StageHooks& hooks) {
  const fs::path logs = fs::path(options.run_dir) / "logs";
  for (const StageTask& t : tasks) {
    if (t.name.empty() || t.name == "." || t.name == ".." ||
        t.name.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(options.task_noun, " name \"", t.name,
                                                     "\" is not a plain file name (its log's)"));
    }
  }
  std::error_code ec;
  fs::create_directories(logs, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", logs.string(), ": ", ec.message()));
  enum class State { kWaiting, kReady, kRunning, kFinished };
  std::map<std::string, State> state;
  for (const StageTask& t : tasks) state[t.name] = State::kWaiting;
  std::vector<Child> running;
  bool interrupted = false, stopping = false;
  std::string failure;
  auto fail = [&](std::string message) {
    if (failure.empty()) failure = std::move(message);
  };
  auto stop_all = [&running, &stopping] {
    if (stopping) return;
    stopping = true;
    for (const Child& c : running) ::kill(c.pid, SIGTERM);
  };
  auto inputs_finished = [&state](const StageTask& t) {
    for (const std::string& in : t.inputs) {
      auto it = state.find(in);
      if (it != state.end() && it->second != State::kFinished) return false;
    }
    return true;
  };
  // Prepares what has become ready and starts what fits; a stage with
  // nothing to run finishes at once, which may ready its dependents, so this
  // repeats until nothing changes.
  auto schedule = [&] {
    for (bool changed = true; changed && !stopping;) {
      changed = false;
      for (const StageTask& t : tasks) {
        if (stopping) break;
        State& s = state[t.name];
        if (s == State::kWaiting && inputs_finished(t)) {
          absl::StatusOr<bool> run = hooks.prepare ? hooks.prepare(t.name) : true;
          if (!run.ok()) {
            fail(std::string(run.status().message()));
            stop_all();
            break;
          }
          s = *run ? State::kReady : State::kFinished;
          changed = true;
        }
        int used = 0;
        for (const Child& r : running) used += r.threads;
        const bool fits = running.empty() || used + t.threads <= thread_budget;
        if (s == State::kReady && static_cast<int>(running.size()) < jobs && fits) {
          Child c;
          c.stage = t.name;
          c.threads = t.threads;
          c.log = (logs / (c.stage + ".log")).string();
          absl::StatusOr<pid_t> pid = Spawn(options, c.stage, c.log);
          if (!pid.ok()) {
            fail(std::string(pid.status().message()));
            stop_all();
            break;
          }
          c.pid = *pid;
          running.push_back(c);
          s = State::kRunning;
          if (hooks.on_start) hooks.on_start(t);
        }
      }
    }
  };
  schedule();
  while (!running.empty()) {
    if (options.stop != nullptr && options.stop->load()) stop_all();
    bool reaped = false;
    for (size_t i = 0; i < running.size();) {
      int status = 0;
      const pid_t r = ::waitpid(running[i].pid, &status, WNOHANG);
      if (r == 0 || (r < 0 && errno == EINTR)) {
        ++i;
        continue;
      }
      reaped = true;
      const Child c = running[i];
      running.erase(running.begin() + static_cast<long>(i));
      const int code = r < 0 ? -1
                       : WIFEXITED(status) ? WEXITSTATUS(status)
                                           : 128 + WTERMSIG(status);
      if (code == 0) {
        state[c.stage] = State::kFinished;
        if (hooks.on_done) {
          absl::Status done = hooks.on_done(c.stage);
          if (!done.ok()) {
            fail(std::string(done.message()));
            stop_all();
          }
        }
        continue;
      }
      if (code == 128 + SIGINT || code == 128 + SIGTERM) {
        interrupted = true;
        stop_all();
        continue;
      }
      fail(absl::StrCat(options.task_noun, " ", c.stage, " (child process ", c.pid,
                        ") exited with ", code, "; the end of ", c.log, ":\n", Tail(c.log, 15)));
      stop_all();
    }
    if (reaped) {
      schedule();  // Once stopping, the stages not started stay pending.
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  if (!failure.empty()) return absl::InternalError(failure);
  if (!interrupted && !stopping) {
    for (const StageTask& t : tasks) {
      if (state[t.name] != State::kFinished) {
        return absl::InternalError(absl::StrCat(options.task_noun, " ", t.name,
                                                " never became ready: an input is not a ",
                                                options.task_noun,
                                                " of the graph or comes after it"));
      }
    }
  }
  return interrupted;
}

}  // namespace tb
