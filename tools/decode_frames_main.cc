// decode_frames: writes chosen frames of a video as raw RGB24 at native
// resolution, concatenated in request order (height * width * 3 bytes per
// frame, rows top to bottom), and prints one JSON line describing the video:
//
//   bazel run //tools:decode_frames -- --video=v.avi --frames=0,5,17 --out=f.rgb
//   {"video":"v.avi","width":320,"height":240,"frame_count":175,"fps":25,
//    "frames":[0,5,17],"out":"f.rgb","bytes":691200}
//
// Frame i is the i-th frame of a full decode in presentation order (the same
// frames as `ffmpeg -i v.avi -f rawvideo -pix_fmt rgb24`), decoded with
// VideoReader's frame-accurate seeking. A damaged video (cut short, corrupt
// packets, frames decoded with errors or out of timestamp order; see
// tb::Damage) is an error naming the file and the reason unless
// --allow_damaged, which writes the frames that decode and adds the reason to
// the JSON line ("damaged":true,"damage":"...").
//
// Exit codes: 0 ok; 1 the video cannot be read or decoded, is damaged, or the
// output cannot be written; 2 bad flags, or a frame index outside
// [0, frame_count).
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/file_util.h"
#include "datasets/video_reader.h"
#include "core/cli.h"

DEFINE_string(video, "", "Video file to decode. Required.");
DEFINE_string(frames, "", "Comma-separated 0-based frame indices, any order, repeats allowed.");
DEFINE_string(out, "", "Output file for the raw RGB24 frames. Required.");
DEFINE_bool(allow_damaged, false,
            "Decode a damaged video (cut short, corrupt packets, frames decoded with errors) "
            "instead of failing; the JSON line names the damage.");

namespace {

constexpr char kTool[] = "decode_frames";

// Exit code 1 naming the file and what is wrong with it.
int DamagedError(const tb::Damage& damage) {
  return tb::ToolError(kTool, tb::kExitDataError,
                       absl::StrCat(FLAGS_video, ": damaged: ", damage.reason(),
                                    " (--allow_damaged decodes it anyway)"));
}

int Run() {
  if (FLAGS_video.empty()) return tb::ToolError(kTool, tb::kExitUsageError, "--video is required");
  if (FLAGS_out.empty()) return tb::ToolError(kTool, tb::kExitUsageError, "--out is required");
  std::vector<int64_t> frames;
  for (absl::string_view item : absl::StrSplit(FLAGS_frames, ',', absl::SkipWhitespace())) {
    int64_t index = 0;
    if (!absl::SimpleAtoi(item, &index)) {
      return tb::ToolError(kTool, tb::kExitUsageError,
                           absl::StrCat("--frames: '", item, "' is not a frame index"));
    }
    frames.push_back(index);
  }
  if (frames.empty()) {
    return tb::ToolError(kTool, tb::kExitUsageError, "--frames: no frame indices given");
  }
  absl::StatusOr<std::unique_ptr<tb::VideoReader>> reader = tb::VideoReader::Open(FLAGS_video);
  if (!reader.ok()) {
    // FFmpeg's reasons already start with the path.
    return tb::ToolError(kTool, tb::kExitDataError, reader.status());
  }
  const tb::VideoInfo& info = (*reader)->info();
  const tb::Damage& damage = (*reader)->damage();
  if (damage.damaged() && !FLAGS_allow_damaged) return DamagedError(damage);
  for (int64_t index : frames) {
    if (index < 0 || index >= info.frame_count) {
      return tb::ToolError(kTool, tb::kExitUsageError,
                           absl::StrCat("frame index ", index, " is out of range: ", FLAGS_video,
                                        " has ", info.frame_count, " frames (0..",
                                        info.frame_count - 1, ")"));
    }
  }
  absl::StatusOr<tb::Frames> decoded = (*reader)->ReadFrames(frames, /*short_side=*/0);
  if (!decoded.ok()) return tb::ToolError(kTool, tb::kExitDataError, decoded.status());
  // Decoding can reveal damage the index did not show.
  if (damage.damaged() && !FLAGS_allow_damaged) return DamagedError(damage);
  absl::Status written = tb::WriteFileAtomically(
      FLAGS_out, std::string(decoded->rgb.begin(), decoded->rgb.end()));
  if (!written.ok()) return tb::ToolError(kTool, tb::kExitDataError, written);
  const std::string damage_json =
      damage.damaged() ? ",\"damage\":" + tb::JsonString(damage.reason()) : "";
  std::printf("{\"video\":%s,\"width\":%d,\"height\":%d,\"frame_count\":%lld,\"fps\":%.6g,"
              "\"frames\":[%s],\"out\":%s,\"bytes\":%zu,\"damaged\":%s%s}\n",
              tb::JsonString(FLAGS_video).c_str(), info.width, info.height,
              static_cast<long long>(info.frame_count), info.fps,
              absl::StrJoin(frames, ",").c_str(), tb::JsonString(FLAGS_out).c_str(),
              decoded->rgb.size(), damage.damaged() ? "true" : "false", damage_json.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (int rc = tb::InitTool(kTool,
                            "Writes frames of a video as raw RGB24 and prints its size, frame "
                            "count and fps as JSON.\n  decode_frames --video=V --frames=0,5,17 "
                            "--out=FILE [--allow_damaged]\nExit codes: 0 ok, 1 unreadable or "
                            "damaged video or I/O error, 2 bad flags or frame index.",
                            &argc, &argv)) {
    return rc;
  }
  return Run();
}
