// File: datasets/flow/flow_test_util.h
//
// Helpers of the datasets/flow tests: lossless fixture videos made with the
// ffmpeg CLI from frames the test computes (FFV1 RGB in Matroska, decoded
// by tb::VideoReader and by `ffmpeg -pix_fmt rgb24` to the same bytes), and
// running a command for its exit code and output.
#ifndef TIMEBALANCE_DATASETS_FLOW_FLOW_TEST_UTIL_H_
#define TIMEBALANCE_DATASETS_FLOW_FLOW_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>

namespace tb::testing {

// Writes `frames` frames of width x height to `path` (.mkv, FFV1 bgr0,
// 25 fps); pixel(t, x, y, rgb) fills rgb[0..2] of frame t. Creates the
// parent folder. False (with a message on stderr) if ffmpeg fails.
bool WriteLosslessVideo(const std::string& path, int width, int height, int frames,
                        const std::function<void(int t, int x, int y, uint8_t* rgb)>& pixel);

struct CommandResult {
  int exit_code = -1;  // the command's exit status; 128 + n when killed by signal n
  std::string out, err;
};

// Runs `command` through /bin/sh with stdout and stderr captured.
CommandResult RunWithOutput(const std::string& command);


}  // namespace tb::testing

#endif  // TIMEBALANCE_DATASETS_FLOW_FLOW_TEST_UTIL_H_
