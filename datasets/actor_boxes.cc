#include "datasets/actor_boxes.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tb {

std::string ActorBoxesPathFor(const std::string& video_path) { return video_path + ".actors"; }

absl::StatusOr<ActorBoxes> ReadActorBoxes(const std::string& path, float score_threshold) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "actor box file ", path,
        " is missing (one per video, written by the lab's detector; docs/DATA.md, \"Actor "
        "boxes\"; SynthActions trees written before the generator wrote them need "
        "make_synthetic --overwrite)"));
  }
  ActorBoxes boxes;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    int64_t frame = -1;
    ActorBox b;
    std::string extra;
    const bool parsed = static_cast<bool>(fields >> frame >> b.x0 >> b.y0 >> b.x1 >> b.y1 >>
                                          b.score) &&
                        !(fields >> extra);
    const auto unit = [](float v) { return v >= 0 && v <= 1; };
    if (!parsed || frame < 0 || !unit(b.x0) || !unit(b.y0) || !unit(b.x1) || !unit(b.y1) ||
        b.x0 >= b.x1 || b.y0 >= b.y1) {
      return absl::InvalidArgumentError(
          absl::StrCat("actor box file ", path, " line ", number, ": \"", line,
                       "\" is not \"frame x0 y0 x1 y1 score\" with 0 <= x0 < x1 <= 1 and "
                       "0 <= y0 < y1 <= 1"));
    }
    if (b.score >= score_threshold) boxes[frame].push_back(b);
  }
  return boxes;
}

void RenderActorMask(const ActorBoxes& boxes, const std::vector<int64_t>& frames,
                     int frame_height, int frame_width, const CropBox& crop, int out_size,
                     float* out) {
  const size_t plane = static_cast<size_t>(out_size) * out_size;
  const bool any = std::any_of(frames.begin(), frames.end(),
                               [&](int64_t f) { return boxes.count(f) > 0; });
  if (!any) {
    std::fill(out, out + frames.size() * plane, 1.0f);
    return;
  }
  for (size_t t = 0; t < frames.size(); ++t) {
    float* m = out + t * plane;
    std::fill(m, m + plane, 0.0f);
    const auto it = boxes.find(frames[t]);
    if (it == boxes.end()) continue;
    for (int i = 0; i < out_size; ++i) {
      const float v = (crop.y0 + (i + 0.5f) * crop.height / out_size) / frame_height;
      for (int j = 0; j < out_size; ++j) {
        const int source_j = crop.flip ? out_size - 1 - j : j;
        const float u = (crop.x0 + (source_j + 0.5f) * crop.width / out_size) / frame_width;
        for (const ActorBox& b : it->second) {
          if (u >= b.x0 && u < b.x1 && v >= b.y0 && v < b.y1) {
            m[static_cast<size_t>(i) * out_size + j] = 1.0f;
            break;
          }
        }
      }
    }
  }
}

}  // namespace tb
