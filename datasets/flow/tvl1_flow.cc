#include "datasets/flow/tvl1_flow.h"

#include <sys/stat.h>

#include <algorithm>
#include <memory>

#include <glog/logging.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/optflow.hpp>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "datasets/flow/flow_file.h"
#include "datasets/video_reader.h"

namespace tb {
namespace {

// Frames decoded per ReadFrames call.
constexpr int64_t kChunkFrames = 32;

cv::Ptr<cv::optflow::DualTVL1OpticalFlow> MakeTvL1(const TvL1Parameters& p) {
  return cv::optflow::DualTVL1OpticalFlow::create(
      p.tau(), p.lambda(), p.theta(), p.scales(), p.warps(), p.epsilon(), p.inner_iterations(),
      p.outer_iterations(), p.scale_step(), p.gamma(), p.median_filtering(),
      /*useInitialFlow=*/false);
}

}  // namespace

void SetFlowLibraryThreads(int threads) { cv::setNumThreads(threads); }

std::string FlowLibraryVersion() { return absl::StrCat("OpenCV ", CV_VERSION); }

std::vector<float> TvL1Field(const uint8_t* prev, const uint8_t* next, int width, int height,
                             const TvL1Parameters& parameters) {
  // cv::Mat over the caller's bytes (no copy; calc does not write them).
  const cv::Mat a(height, width, CV_8UC1, const_cast<uint8_t*>(prev));
  const cv::Mat b(height, width, CV_8UC1, const_cast<uint8_t*>(next));
  cv::Mat flow;
  MakeTvL1(parameters)->calc(a, b, flow);
  CHECK_EQ(flow.type(), CV_32FC2);
  CHECK(flow.isContinuous());
  const float* f = flow.ptr<float>();
  return std::vector<float>(f, f + 2 * static_cast<size_t>(width) * height);
}

absl::StatusOr<VideoFlow> ComputeVideoFlow(const std::string& video_path,
                                           const std::string& relative_path,
                                           const FlowSettings& settings,
                                           const std::atomic<bool>* stop) {
  RETURN_IF_ERROR(ValidateFlowSettings(settings));
  struct stat st;
  if (stat(video_path.c_str(), &st) != 0) {
    return absl::NotFoundError("video not found: " + video_path);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(video_path));
  const VideoInfo& info = reader->info();
  const int64_t n = info.frame_count;
  if (n < 1) return absl::DataLossError(video_path + ": no decodable frame");
  VideoFlow out;
  FlowFileHeader& h = out.header;
  h.set_version(kFlowFileVersion);
  *h.mutable_settings() = settings;
  h.set_relative_path(relative_path);
  h.set_source_size_bytes(static_cast<int64_t>(st.st_size));
  h.set_frame_count(n);
  h.set_source_width(info.width);
  h.set_source_height(info.height);
  h.set_fps(info.fps);
  h.set_library(FlowLibraryVersion());
  int width = 0, height = 0;
  ScaledSize(info.width, info.height, settings.decode_short_side(), &width, &height);
  h.set_width(width);
  h.set_height(height);

  cv::Ptr<cv::optflow::DualTVL1OpticalFlow> tvl1 = MakeTvL1(settings.tvl1());
  const size_t plane = static_cast<size_t>(width) * height;
  std::vector<uint8_t> levels(2 * plane);
  cv::Mat prev, next, flow;
  for (int64_t first = 0; first < n; first += kChunkFrames) {
    const int64_t last = std::min(n, first + kChunkFrames);
    std::vector<int64_t> indices;
    for (int64_t i = first; i < last; ++i) indices.push_back(i);
    ASSIGN_OR_RETURN(Frames frames, reader->ReadFrames(indices, settings.decode_short_side()));
    if (frames.width != width || frames.height != height) {
      return absl::InternalError(absl::StrCat(video_path, ": decoded ", frames.width, "x",
                                              frames.height, ", expected ", width, "x", height));
    }
    for (int64_t k = 0; k < frames.count; ++k) {
      if (stop != nullptr && stop->load()) {
        return absl::CancelledError("interrupted while computing the flow of " + video_path);
      }
      const cv::Mat rgb(height, width, CV_8UC3, frames.rgb.data() + k * plane * 3);
      cv::cvtColor(rgb, next, cv::COLOR_RGB2GRAY);
      if (!prev.empty()) {
        tvl1->calc(prev, next, flow);
        if (flow.type() != CV_32FC2 || flow.rows != height || flow.cols != width ||
            !flow.isContinuous()) {
          return absl::InternalError(video_path + ": unexpected flow matrix from OpenCV");
        }
        QuantizeFlowField(flow.ptr<float>(), width, height, settings.quantization(),
                          levels.data());
        ASSIGN_OR_RETURN(std::string encoded,
                         EncodeFlowField(levels.data(), width, height, settings));
        out.fields.push_back(std::move(encoded));
      }
      std::swap(prev, next);
    }
  }
  return out;
}

}  // namespace tb
