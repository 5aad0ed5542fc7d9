// Fuzz target: VideoReader (datasets/video_reader.h) on arbitrary bytes; the
// seed corpus is tiny videos of every codec the project reads
// (make_video_corpus.sh), so mutations start from real streams. The bytes
// are written to a file (no extension: FFmpeg probes the content), opened,
// and read twice: frames 0, last, middle, 1 (forward, back, forward: seeks
// and restarts), then a third of the way in, at short side 16. Invariants:
// an error names the file; an open video has a size and frames; read frames
// have the promised size; damage() explains itself exactly when it says the
// file is damaged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/fuzz/fuzz_util.h"
#include "datasets/video_reader.h"

namespace {

void CheckDamage(const tb::Damage& d) {
  TB_FUZZ_CHECK(d.damaged() == !d.reason().empty(), "damage without reason or reason without: " +
                                                        d.reason());
}

void CheckError(const absl::Status& s, const std::string& path) {
  TB_FUZZ_CHECK(s.message().find(path) != absl::string_view::npos,
                "the error does not name the file: " + s.ToString());
}

}  // namespace

// FFmpeg's messages would flood the fuzzer's output; the reader records the
// errors whatever the printed level (video_reader.cc, RecordingLogCallback).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("TB_FFMPEG_LOG_LEVEL", "-8", /*overwrite=*/0);  // AV_LOG_QUIET
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string path = tb::fuzz::WriteScratchFile("video", bytes);
  absl::StatusOr<std::unique_ptr<tb::VideoReader>> reader = tb::VideoReader::Open(path);
  if (!reader.ok()) {
    CheckError(reader.status(), path);
    return 0;
  }
  const tb::VideoInfo& info = (*reader)->info();
  TB_FUZZ_CHECK(info.width > 0 && info.height > 0 && info.frame_count > 0,
                absl::StrCat(info.width, "x", info.height, ", ", info.frame_count, " frames"));
  CheckDamage((*reader)->damage());
  const int64_t n = info.frame_count;
  for (const std::vector<int64_t>& frames :
       {std::vector<int64_t>{0, n - 1, n / 2, std::min<int64_t>(1, n - 1)},
        std::vector<int64_t>{n / 3}}) {
    absl::StatusOr<tb::Frames> out = (*reader)->ReadFrames(frames, 16);
    if (!out.ok()) {
      CheckError(out.status(), path);
    } else {
      TB_FUZZ_CHECK(out->count == static_cast<int64_t>(frames.size()) &&
                        out->rgb.size() == static_cast<size_t>(out->count) * out->width *
                                               out->height * 3 &&
                        std::min(out->width, out->height) == 16,
                    absl::StrCat(out->count, " frames of ", out->width, "x", out->height, " in ",
                                 out->rgb.size(), " bytes"));
    }
    CheckDamage((*reader)->damage());
  }
  return 0;
}
