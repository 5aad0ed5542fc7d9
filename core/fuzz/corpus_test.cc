// The corpus test of a fuzz target (tb_fuzz_target in core/fuzz/fuzz.bzl):
// feeds every file of the folders given as arguments (the target's seed
// corpus and its regressions/ folder of reproducers of fixed findings) to the
// target's LLVMFuzzerTestOneInput. An input that crashes, trips a sanitizer
// or breaks one of the target's invariants (TB_FUZZ_CHECK aborts) fails the
// test; so does a folder that is missing or empty, or a target that returns
// non-zero (libFuzzer reserves other values).
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace {

std::vector<std::string>* g_folders = nullptr;

TEST(FuzzCorpus, EveryInputRuns) {
  namespace fs = std::filesystem;
  ASSERT_FALSE(g_folders->empty()) << "no corpus folder given";
  for (const std::string& folder : *g_folders) {
    std::error_code ec;
    ASSERT_TRUE(fs::is_directory(folder, ec)) << folder << " is not a folder";
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(folder, ec)) {
      if (entry.is_regular_file() && entry.path().filename() != "README.md") {
        files.push_back(entry.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    EXPECT_FALSE(files.empty()) << folder << " holds no input";
    for (const std::string& file : files) {
      SCOPED_TRACE(file);
      std::ifstream in(file, std::ios::binary);
      ASSERT_TRUE(in) << "cannot read " << file;
      const std::string bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()),
                                       bytes.size()),
                0);
    }
    std::cout << folder << ": " << files.size() << " inputs" << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> folders(argv + 1, argv + argc);
  g_folders = &folders;
  return RUN_ALL_TESTS();
}
