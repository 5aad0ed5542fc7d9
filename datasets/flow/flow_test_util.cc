#include "datasets/flow/flow_test_util.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/testing/test_util.h"

namespace tb::testing {

bool WriteLosslessVideo(const std::string& path, int width, int height, int frames,
                        const std::function<void(int t, int x, int y, uint8_t* rgb)>& pixel) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::vector<uint8_t> raw(static_cast<size_t>(frames) * height * width * 3);
  for (int t = 0; t < frames; ++t) {
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        pixel(t, x, y, &raw[((static_cast<size_t>(t) * height + y) * width + x) * 3]);
      }
    }
  }
  const std::string raw_path = path + ".rgb";
  {
    std::ofstream out(raw_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  }
  const CommandResult r = RunWithOutput(
      "ffmpeg -nostdin -v error -y -f rawvideo -pix_fmt rgb24 -s " + std::to_string(width) + "x" +
      std::to_string(height) + " -r 25 -i '" + raw_path + "' -c:v ffv1 -pix_fmt bgr0 '" + path +
      "'");
  std::remove(raw_path.c_str());
  if (r.exit_code != 0) {
    std::fprintf(stderr, "ffmpeg failed for %s: %s\n", path.c_str(), r.err.c_str());
    return false;
  }
  return true;
}

CommandResult RunWithOutput(const std::string& command) {
  static int counter = 0;
  const std::string base = TmpPath("cmd_" + std::to_string(++counter));
  const std::string full =
      "(" + command + ") >'" + base + ".out' 2>'" + base + ".err' </dev/null";
  const int status = std::system(full.c_str());
  CommandResult r;
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = ReadAll(base + ".out");
  r.err = ReadAll(base + ".err");
  return r;
}

}  // namespace tb::testing
