// File: datasets/flow/tvl1_flow.h
//
// TV-L1 optical flow of a whole video with OpenCV's contrib implementation
// (cv::optflow::DualTVL1OpticalFlow, Debian's libopencv-contrib-dev):
// every frame is decoded by tb::VideoReader at the settings' short side (the
// size the loader decodes at), turned grey (cv::COLOR_RGB2GRAY), and each
// consecutive pair (t, t + 1) gives field t, quantised and compressed as
// datasets/flow/flow_file.h stores it. Frames are decoded in chunks, so
// memory does not grow with the video's length (the compressed fields are
// kept until the file is written).
//
// OpenCV's own threads are left as the caller set them (cv::setNumThreads);
// compute_flow runs one video per thread and sets them to 1.
#ifndef TIMEBALANCE_DATASETS_FLOW_TVL1_FLOW_H_
#define TIMEBALANCE_DATASETS_FLOW_TVL1_FLOW_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "datasets/flow/flow.pb.h"

namespace tb {

struct VideoFlow {
  FlowFileHeader header;
  std::vector<std::string> fields;  // encoded, frame_count - 1 of them
};

// Computes the flow of the video at `video_path` (recorded in the header as
// `relative_path`). Errors name the video; Cancelled when `stop` becomes
// true (checked between frame pairs).
absl::StatusOr<VideoFlow> ComputeVideoFlow(const std::string& video_path,
                                           const std::string& relative_path,
                                           const FlowSettings& settings,
                                           const std::atomic<bool>* stop = nullptr);

// The unquantised TV-L1 field from grey image `prev` to `next` (width x
// height bytes each) as [H, W, 2] floats (x, y per pixel).
std::vector<float> TvL1Field(const uint8_t* prev, const uint8_t* next, int width, int height,
                             const TvL1Parameters& parameters);

// cv::setNumThreads(threads) (process-wide).
void SetFlowLibraryThreads(int threads);

// "OpenCV <version>".
std::string FlowLibraryVersion();

}  // namespace tb

#endif  // TIMEBALANCE_DATASETS_FLOW_TVL1_FLOW_H_
