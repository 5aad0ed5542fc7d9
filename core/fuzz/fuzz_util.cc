#include "core/fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace tb::fuzz {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Fatal(const std::string& what) {
  std::fprintf(stderr, "fuzz_util: %s\n", what.c_str());
  std::abort();
}

std::string BaseDir() {
  const char* test_tmp = std::getenv("TEST_TMPDIR");
  if (test_tmp != nullptr && *test_tmp != '\0') return test_tmp;
  std::error_code ec;
  if (fs::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0) return "/dev/shm";
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
}

void RemoveScratch() {
  std::error_code ec;
  fs::remove_all(ScratchDir(), ec);
}

}  // namespace

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::string pattern = BaseDir() + "/tb_fuzz_XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) Fatal("cannot create a folder like " + pattern);
    auto* d = new std::string(pattern);
    std::atexit(RemoveScratch);
    return d;
  }();
  return *dir;
}

void ClearScratchDir() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(ScratchDir(), ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec) Fatal(absl::StrCat("cannot remove ", entry.path().string(), ": ", ec.message()));
  }
  if (ec) Fatal(absl::StrCat("cannot list ", ScratchDir(), ": ", ec.message()));
}

std::string TryWriteScratchFile(const std::string& relative, absl::string_view data) {
  const fs::path path = fs::path(ScratchDir()) / relative;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec || fs::is_directory(path, ec)) return "";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return "";
  return path.string();
}

std::string WriteScratchFile(const std::string& relative, absl::string_view data) {
  std::string path = TryWriteScratchFile(relative, data);
  if (path.empty()) Fatal("cannot write " + relative + " in " + ScratchDir());
  return path;
}

void InvariantFailed(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: fuzz target invariant does not hold: %s\n", file, line,
               what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace tb::fuzz
