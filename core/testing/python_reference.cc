#include "core/testing/python_reference.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tb::testing {
namespace {

// Debian packages providing the modules the reference scripts import.
const std::map<std::string, std::string>& DebianPackages() {
  static const auto* packages = new std::map<std::string, std::string>{
      {"torch", "python3-torch"},
      {"torchvision", "python3-torchvision"},
      {"crc32c", "python3-crc32c"},
      {"cv2", "python3-opencv"},
      {"numpy", "python3-numpy"},
  };
  return *packages;
}

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `command` through the shell: its stdout into `out`, its stderr into
// `err`. Returns the exit code (-1 when it did not exit normally).
int Run(const std::string& command, std::string* out, std::string* err) {
  char err_path[] = "/tmp/python_reference_XXXXXX";
  const int fd = mkstemp(err_path);
  if (fd < 0) return -1;
  close(fd);
  FILE* pipe = popen(absl::StrCat(command, " 2>", err_path).c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  const int status = pclose(pipe);
  if (FILE* f = std::fopen(err_path, "r")) {
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) err->append(buf, n);
    std::fclose(f);
  }
  std::remove(err_path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : fallback;
}

}  // namespace

std::string RunfilePath(const std::string& workspace_relative) {
  return absl::StrCat(Env("TEST_SRCDIR", "."), "/", Env("TEST_WORKSPACE", "timebalance"), "/",
                      workspace_relative);
}

absl::Status RequirePythonModules(const std::vector<std::string>& modules) {
  for (const std::string& module : modules) {
    std::string out, err;
    if (Run(absl::StrCat(kReferencePython, " -c ", Quote("import " + module)), &out, &err) == 0) {
      continue;
    }
    auto package = DebianPackages().find(module);
    return absl::FailedPreconditionError(absl::StrCat(
        kReferencePython, " cannot import ", module, "; install the Debian package ",
        package != DebianPackages().end() ? package->second : "providing it",
        " (tools/install_deps.sh does): ", err));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RunPythonReference(const std::string& script,
                                               const std::vector<std::string>& args,
                                               const std::vector<std::string>& modules) {
  absl::Status available = RequirePythonModules(modules);
  if (!available.ok()) return available;
  std::string command = absl::StrCat(kReferencePython, " ", Quote(RunfilePath(script)));
  for (const std::string& a : args) absl::StrAppend(&command, " ", Quote(a));
  std::string out, err;
  const int code = Run(command, &out, &err);
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` exited with ", code, ":\n", out, err));
  }
  return out;
}

}  // namespace tb::testing
