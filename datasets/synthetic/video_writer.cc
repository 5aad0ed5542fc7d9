#include "datasets/synthetic/video_writer.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/mathematics.h>
#include <libswscale/swscale.h>
}

namespace tb {
namespace {

std::string AvError(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  if (av_strerror(code, buf, sizeof(buf)) < 0) {
    return absl::StrCat("libav error ", code);
  }
  return buf;
}

// Keeps the errno meaning of I/O failures so callers can tell a missing
// folder or a permission problem from an encoder failure.
absl::Status AvStatus(int code, const std::string& path, const std::string& what) {
  const std::string message = absl::StrCat(path, ": ", what, ": ", AvError(code));
  if (code == AVERROR(ENOENT)) return absl::NotFoundError(message);
  if (code == AVERROR(EACCES) || code == AVERROR(EPERM) || code == AVERROR(EROFS)) {
    return absl::PermissionDeniedError(message);
  }
  if (code == AVERROR(EINVAL)) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

}  // namespace

struct VideoWriter::Impl {
  AVFormatContext* format = nullptr;
  AVCodecContext* encoder = nullptr;
  AVStream* stream = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  SwsContext* sws = nullptr;
  int quality = 0;  // lambda for fixed-quantiser mode, 0 otherwise
  // The caller's RGB rows copied at a 64-byte-aligned stride with 64 bytes
  // of slack at the end: swscale's SIMD paths read past the end of a row,
  // and past the end of a tight buffer they can fault (seen under TSan,
  // whose allocator puts a buffer's end at a page boundary).
  std::vector<uint8_t> padded;
  int padded_stride = 0;
};

VideoWriter::VideoWriter(std::string path, int width, int height)
    : path_(std::move(path)),
      partial_path_(path_ + ".partial"),
      width_(width),
      height_(height),
      impl_(std::make_unique<Impl>()) {}

VideoWriter::~VideoWriter() { Release(); }

void VideoWriter::Release() {
  if (impl_ == nullptr) return;
  Impl& s = *impl_;
  if (s.format != nullptr) {
    if (s.format->pb != nullptr) avio_closep(&s.format->pb);
    avformat_free_context(s.format);
    s.format = nullptr;
  }
  avcodec_free_context(&s.encoder);
  av_frame_free(&s.frame);
  av_packet_free(&s.packet);
  sws_freeContext(s.sws);
  s.sws = nullptr;
  if (!closed_) std::remove(partial_path_.c_str());
  impl_.reset();
}

absl::StatusOr<std::unique_ptr<VideoWriter>> VideoWriter::Open(
    const std::string& path, int width, int height, double fps,
    const VideoWriterOptions& options) {
  if (width <= 0 || height <= 0 || width % 2 != 0 || height % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": frame size ", width, "x", height, " must be positive and even (yuv420p)"));
  }
  if (!(fps > 0) || !std::isfinite(fps)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": fps ", fps, " must be > 0"));
  }
  if (options.qscale > 31 || (options.qscale <= 0 && options.bit_rate <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": need qscale in [1, 31] or a positive bit_rate (qscale=", options.qscale,
        ", bit_rate=", options.bit_rate, ")"));
  }
  if (options.gop_size < 1 || options.max_b_frames < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": gop_size must be >= 1 and max_b_frames >= 0"));
  }
  const AVOutputFormat* container = av_guess_format(nullptr, path.c_str(), nullptr);
  if (container == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no container format for this file extension"));
  }
  const AVCodec* codec = avcodec_find_encoder_by_name(options.codec.c_str());
  if (codec == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": encoder '", options.codec, "' is not available"));
  }

  std::unique_ptr<VideoWriter> writer(new VideoWriter(path, width, height));
  Impl& s = *writer->impl_;
  const std::string& partial = writer->partial_path_;

  int ret = avformat_alloc_output_context2(&s.format, container, nullptr, partial.c_str());
  if (ret < 0) return AvStatus(ret, path, "cannot create the output context");
  // Without this the AVI/MP4 muxers embed the libavformat version string.
  s.format->flags |= AVFMT_FLAG_BITEXACT;

  s.stream = avformat_new_stream(s.format, nullptr);
  s.encoder = avcodec_alloc_context3(codec);
  s.frame = av_frame_alloc();
  s.packet = av_packet_alloc();
  if (s.stream == nullptr || s.encoder == nullptr || s.frame == nullptr ||
      s.packet == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": out of memory"));
  }

  // MPEG-4 part 2 stores the time base in 16 bits.
  const AVRational rate = av_d2q(fps, 65535);
  AVCodecContext* enc = s.encoder;
  enc->width = width;
  enc->height = height;
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->time_base = av_inv_q(rate);
  enc->framerate = rate;
  enc->gop_size = options.gop_size;
  enc->max_b_frames = options.max_b_frames;
  // Slice threading would make the bitstream depend on the thread count.
  enc->thread_count = 1;
  enc->flags |= AV_CODEC_FLAG_BITEXACT;
  if (options.qscale > 0) {
    enc->flags |= AV_CODEC_FLAG_QSCALE;
    enc->global_quality = FF_QP2LAMBDA * options.qscale;
    s.quality = enc->global_quality;
  } else {
    enc->bit_rate = options.bit_rate;
  }
  if (s.format->oformat->flags & AVFMT_GLOBALHEADER) {
    enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  }
  ret = avcodec_open2(enc, codec, nullptr);
  if (ret < 0) return AvStatus(ret, path, absl::StrCat("cannot open encoder ", options.codec));

  s.stream->time_base = enc->time_base;
  s.stream->avg_frame_rate = rate;
  ret = avcodec_parameters_from_context(s.stream->codecpar, enc);
  if (ret < 0) return AvStatus(ret, path, "cannot set stream parameters");

  // "file:" stops a ':' in the path from being read as a protocol name.
  ret = avio_open(&s.format->pb, absl::StrCat("file:", partial).c_str(), AVIO_FLAG_WRITE);
  if (ret < 0) return AvStatus(ret, path, "cannot open for writing");
  ret = avformat_write_header(s.format, nullptr);
  if (ret < 0) return AvStatus(ret, path, "cannot write the container header");

  s.frame->format = AV_PIX_FMT_YUV420P;
  s.frame->width = width;
  s.frame->height = height;
  ret = av_frame_get_buffer(s.frame, 0);
  if (ret < 0) return AvStatus(ret, path, "cannot allocate a frame");

  // SWS_BITEXACT + SWS_ACCURATE_RND: the same YUV on every CPU, not just on
  // this one (SIMD paths otherwise round differently).
  s.sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                         SWS_BILINEAR | SWS_ACCURATE_RND | SWS_BITEXACT, nullptr, nullptr,
                         nullptr);
  if (s.sws == nullptr) {
    return absl::InternalError(absl::StrCat(path, ": cannot create the RGB->YUV converter"));
  }
  return writer;
}

absl::Status VideoWriter::Encode(bool flush) {
  Impl& s = *impl_;
  int ret = avcodec_send_frame(s.encoder, flush ? nullptr : s.frame);
  if (ret < 0) return AvStatus(ret, path_, "encoder rejected a frame");
  while (true) {
    ret = avcodec_receive_packet(s.encoder, s.packet);
    if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) return absl::OkStatus();
    if (ret < 0) return AvStatus(ret, path_, "encoding failed");
    av_packet_rescale_ts(s.packet, s.encoder->time_base, s.stream->time_base);
    s.packet->stream_index = s.stream->index;
    ret = av_interleaved_write_frame(s.format, s.packet);  // unrefs the packet
    if (ret < 0) return AvStatus(ret, path_, "cannot write a packet");
  }
}

absl::Status VideoWriter::WriteFrame(const uint8_t* rgb) {
  if (impl_ == nullptr || closed_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  }
  Impl& s = *impl_;
  // The encoder may still reference the previous frame's buffers.
  int ret = av_frame_make_writable(s.frame);
  if (ret < 0) return AvStatus(ret, path_, "cannot make the frame writable");
  const size_t row_bytes = static_cast<size_t>(3 * width_);
  if (s.padded.empty()) {
    s.padded_stride = static_cast<int>((row_bytes + 63) / 64 * 64);
    s.padded.assign(static_cast<size_t>(s.padded_stride) * height_ + 64 + 63, 0);
  }
  // av_malloc-like alignment inside the vector.
  uint8_t* base = s.padded.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  for (int y = 0; y < height_; ++y) {
    std::memcpy(base + static_cast<size_t>(y) * s.padded_stride, rgb + y * row_bytes, row_bytes);
  }
  const uint8_t* src[1] = {base};
  const int src_stride[1] = {s.padded_stride};
  sws_scale(s.sws, src, src_stride, 0, height_, s.frame->data, s.frame->linesize);
  s.frame->pts = frames_written_;
  if (s.quality > 0) s.frame->quality = s.quality;
  absl::Status status = Encode(/*flush=*/false);
  if (!status.ok()) {
    Release();
    return status;
  }
  ++frames_written_;
  return absl::OkStatus();
}

absl::Status VideoWriter::Close() {
  if (impl_ == nullptr || closed_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  }
  Impl& s = *impl_;
  absl::Status status = Encode(/*flush=*/true);
  if (status.ok()) {
    const int ret = av_write_trailer(s.format);
    if (ret < 0) status = AvStatus(ret, path_, "cannot write the container trailer");
  }
  if (status.ok()) {
    const int ret = avio_closep(&s.format->pb);
    if (ret < 0) status = AvStatus(ret, path_, "cannot close the file");
  }
  if (status.ok() && std::rename(partial_path_.c_str(), path_.c_str()) != 0) {
    status = absl::InternalError(
        absl::StrCat(path_, ": cannot rename from ", partial_path_, ": ", std::strerror(errno)));
  }
  closed_ = status.ok();
  Release();
  return status;
}

}  // namespace tb
