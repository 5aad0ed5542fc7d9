#include "datasets/video_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace tb {
namespace {

struct FormatCloser {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct CodecFreer {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct AvFreer {
  void operator()(uint8_t* p) const { av_free(p); }
};

using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;
using AvBuffer = std::unique_ptr<uint8_t, AvFreer>;

std::string AvError(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof(buf));
  return buf;
}

absl::Status OpenError(const std::string& path, const std::string& what, int code) {
  const std::string msg = absl::StrCat(path, ": ", what, ": ", AvError(code));
  if (code == AVERROR(ENOENT)) return absl::NotFoundError(msg);
  if (code == AVERROR_INVALIDDATA) return absl::InvalidArgumentError(msg);
  return absl::UnavailableError(msg);
}

// The decoder drops frames of packets flagged as discardable (edit lists) and
// cannot be fed empty packets, so neither makes a frame of a full decode.
bool MakesFrame(const AVPacket& pkt) {
  return pkt.size > 0 && !(pkt.flags & AV_PKT_FLAG_DISCARD);
}

AVPixelFormat UndeprecatedFormat(AVPixelFormat f, bool* full_range) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full_range = true; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full_range = true; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full_range = true; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full_range = true; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full_range = true; return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

}  // namespace

void ScaledSize(int width, int height, int short_side, int* out_width, int* out_height) {
  if (short_side <= 0 || width <= 0 || height <= 0) {
    *out_width = width;
    *out_height = height;
    return;
  }
  if (width <= height) {
    *out_width = short_side;
    *out_height = static_cast<int>(
        std::max<long long>(1, std::llround(static_cast<double>(height) * short_side / width)));
  } else {
    *out_height = short_side;
    *out_width = static_cast<int>(
        std::max<long long>(1, std::llround(static_cast<double>(width) * short_side / height)));
  }
}

struct VideoReader::Impl {
  std::string path;
  VideoInfo info;
  FormatPtr fmt;
  CodecPtr codec;
  PacketPtr pkt;
  FramePtr frame;
  SwsPtr sws;
  int stream = -1;

  // Index built by Open(). Packets are in decode (file) order; frames in
  // presentation order.
  // Frames are identified by pts when every video packet carries a distinct
  // one; otherwise by counting output frames from the start of the stream.
  bool by_timestamp = true;
  // Becomes false when a keyframe flag proved to be a lie (the frame decoded
  // from it was not intra); from then on only the stream start is trusted.
  bool trust_keyframes = true;
  std::vector<int64_t> packet_pts;
  std::vector<int64_t> packet_dts;
  std::vector<bool> packet_key;
  std::unordered_map<int64_t, int64_t> pts_to_packet;
  std::unordered_map<int64_t, int64_t> pts_to_frame;
  std::vector<int64_t> frame_pts;   // presentation index -> pts
  std::vector<int64_t> frame_key;   // presentation index -> packet to start decoding from

  // Decoding state. `origin` is the packet decoding (re)started from; a frame
  // is only trusted if its own start packet is not before it, so leading
  // frames of an open GOP that reference the skipped past are never used.
  bool live = false;           // the decoder continues from `origin` without gaps
  bool have_pending = false;   // `pkt` holds the packet a restart landed on
  int64_t origin = 0;
  bool origin_verified = true;
  int64_t last_fed = -1;       // decode index of the last packet read
  int64_t last_out = -1;       // largest presentation index output since origin
  int64_t counted_out = 0;     // frames output since the start (counting mode)
  int64_t seeks = 0;
  int64_t packets_sent = 0;

  absl::Status OpenContainer();
  absl::Status OpenDecoder();
  absl::Status BuildIndex();
  absl::Status Restart(int64_t packet);
  // Reads the next video packet of the file into `pkt`; *eof at its end.
  absl::Status ReadVideoPacket(bool* eof);
  // The next packet to decode (the one a restart peeked at, if any) and its
  // decode index.
  absl::Status NextVideoPacket(bool* eof, int64_t* decode_index);
};

absl::Status VideoReader::Impl::OpenContainer() {
  AVFormatContext* raw = nullptr;
  int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (rc < 0) return OpenError(path, "cannot open", rc);
  fmt.reset(raw);
  return absl::OkStatus();
}

absl::Status VideoReader::Impl::OpenDecoder() {
  AVCodecParameters* par = fmt->streams[stream]->codecpar;
  const AVCodec* decoder = avcodec_find_decoder(par->codec_id);
  if (decoder == nullptr) {
    return absl::UnimplementedError(absl::StrCat(path, ": no decoder for codec ",
                                                 avcodec_get_name(par->codec_id)));
  }
  codec.reset(avcodec_alloc_context3(decoder));
  if (!codec) return absl::ResourceExhaustedError(path + ": cannot allocate decoder");
  int rc = avcodec_parameters_to_context(codec.get(), par);
  if (rc < 0) return OpenError(path, "bad codec parameters", rc);
  codec->thread_count = 1;
  codec->pkt_timebase = fmt->streams[stream]->time_base;
  rc = avcodec_open2(codec.get(), decoder, nullptr);
  if (rc < 0) return OpenError(path, "cannot open decoder", rc);
  return absl::OkStatus();
}

absl::Status VideoReader::Impl::BuildIndex() {
  std::vector<int64_t> frame_packets;  // decode indices of packets that make frames
  bool all_pts = true;
  for (;;) {
    const int rc = av_read_frame(fmt.get(), pkt.get());
    if (rc == AVERROR_EOF) break;
    if (rc < 0) return OpenError(path, "cannot read packet", rc);
    if (pkt->stream_index == stream) {
      const int64_t d = static_cast<int64_t>(packet_pts.size());
      packet_pts.push_back(pkt->pts);
      packet_dts.push_back(pkt->dts);
      packet_key.push_back((pkt->flags & AV_PKT_FLAG_KEY) != 0);
      if (pkt->pts == AV_NOPTS_VALUE || !pts_to_packet.emplace(pkt->pts, d).second) {
        all_pts = false;
      }
      if (MakesFrame(*pkt)) frame_packets.push_back(d);
    }
    av_packet_unref(pkt.get());
  }
  if (frame_packets.empty()) return absl::InvalidArgumentError(path + ": video stream has no frames");
  info.frame_count = static_cast<int64_t>(frame_packets.size());
  by_timestamp = all_pts;
  if (by_timestamp) {
    // The packet to restart from for a frame: the last keyframe, in decode
    // order, at or before the frame's packet that is not displayed after it.
    std::vector<int64_t> keys;
    std::vector<std::pair<int64_t, int64_t>> pts_and_key;
    size_t next_frame_packet = 0;
    for (int64_t d = 0; d < static_cast<int64_t>(packet_pts.size()); ++d) {
      if (packet_key[d]) keys.push_back(d);
      if (next_frame_packet < frame_packets.size() && frame_packets[next_frame_packet] == d) {
        ++next_frame_packet;
        int64_t j = static_cast<int64_t>(keys.size()) - 1;
        while (j >= 0 && packet_pts[keys[j]] > packet_pts[d]) --j;
        pts_and_key.emplace_back(packet_pts[d], j >= 0 ? keys[j] : 0);
      }
    }
    std::sort(pts_and_key.begin(), pts_and_key.end());
    for (const auto& [pts, key] : pts_and_key) {
      pts_to_frame.emplace(pts, static_cast<int64_t>(frame_pts.size()));
      frame_pts.push_back(pts);
      frame_key.push_back(key);
    }
  }

  AVStream* st = fmt->streams[stream];
  AVRational rate = st->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0) rate = st->r_frame_rate;
  if (rate.num > 0 && rate.den > 0) {
    info.fps = av_q2d(rate);
  } else if (by_timestamp && info.frame_count > 1 && frame_pts.back() > frame_pts.front()) {
    info.fps = (info.frame_count - 1) /
               (static_cast<double>(frame_pts.back() - frame_pts.front()) * av_q2d(st->time_base));
  }
  return absl::OkStatus();
}

// Positions the demuxer so that decoding restarts at packet `target` or at an
// earlier keyframe (decoding forward from there is merely slower), never
// later. Where a seek lands is checked by reading its first packet, which is
// kept for NextVideoPacket.
absl::Status VideoReader::Impl::Restart(int64_t target) {
  if (!trust_keyframes || !by_timestamp) target = 0;
  ++seeks;
  live = true;
  last_out = -1;
  counted_out = 0;
  have_pending = false;
  if (by_timestamp) {
    // Demuxers index keyframes by pts or by (possibly shifted) dts; the pts
    // usually lands exactly, the dts at worst one keyframe early.
    std::vector<int64_t> candidates;
    if (packet_pts[target] != AV_NOPTS_VALUE) candidates.push_back(packet_pts[target]);
    if (packet_dts[target] != AV_NOPTS_VALUE && packet_dts[target] != packet_pts[target]) {
      candidates.push_back(packet_dts[target]);
    }
    for (int64_t ts : candidates) {
      if (av_seek_frame(fmt.get(), stream, ts, AVSEEK_FLAG_BACKWARD) < 0) continue;
      bool eof = false;
      RETURN_IF_ERROR(ReadVideoPacket(&eof));
      if (eof) continue;
      auto it = pts_to_packet.find(pkt->pts);
      if (it != pts_to_packet.end() && it->second <= target &&
          (it->second == 0 || packet_key[it->second])) {
        avcodec_flush_buffers(codec.get());
        have_pending = true;
        origin = target;
        origin_verified = it->second == 0;
        last_fed = it->second - 1;
        return absl::OkStatus();
      }
      av_packet_unref(pkt.get());
    }
  }
  // Reopening is the one way back to the start that needs no timestamps.
  origin = 0;
  origin_verified = true;
  last_fed = -1;
  fmt.reset();
  RETURN_IF_ERROR(OpenContainer());
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    if (static_cast<int>(i) != stream) fmt->streams[i]->discard = AVDISCARD_ALL;
  }
  avcodec_flush_buffers(codec.get());
  return absl::OkStatus();
}

absl::Status VideoReader::Impl::ReadVideoPacket(bool* eof) {
  for (;;) {
    const int rc = av_read_frame(fmt.get(), pkt.get());
    if (rc == AVERROR_EOF) {
      *eof = true;
      return absl::OkStatus();
    }
    if (rc < 0) return OpenError(path, "cannot read packet", rc);
    if (pkt->stream_index == stream) {
      *eof = false;
      return absl::OkStatus();
    }
    av_packet_unref(pkt.get());
  }
}

absl::Status VideoReader::Impl::NextVideoPacket(bool* eof, int64_t* decode_index) {
  if (have_pending) {
    have_pending = false;
    *eof = false;
  } else {
    RETURN_IF_ERROR(ReadVideoPacket(eof));
    if (*eof) return absl::OkStatus();
  }
  int64_t d = last_fed + 1;
  if (by_timestamp) {
    auto it = pts_to_packet.find(pkt->pts);
    if (it != pts_to_packet.end()) d = it->second;
  }
  *decode_index = d;
  return absl::OkStatus();
}

VideoReader::VideoReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VideoReader::~VideoReader() = default;

const VideoInfo& VideoReader::info() const { return impl_->info; }
int64_t VideoReader::seek_count() const { return impl_->seeks; }
int64_t VideoReader::decoded_packet_count() const { return impl_->packets_sent; }

namespace {

// FFmpeg prints decoder warnings (e.g. H.264 reference warnings right after a
// seek, which are expected and harmless here) straight to stderr from every
// loader thread. Real failures reach the caller as absl::Status, so only
// FFmpeg's errors are printed unless TB_FFMPEG_LOG_LEVEL (an av_log level
// number, e.g. 32 for info) asks for more.
void QuietFfmpegLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* level = std::getenv("TB_FFMPEG_LOG_LEVEL");
    av_log_set_level(level != nullptr ? std::atoi(level) : AV_LOG_ERROR);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<VideoReader>> VideoReader::Open(const std::string& path) {
  QuietFfmpegLogging();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  RETURN_IF_ERROR(impl->OpenContainer());
  int best = av_find_best_stream(impl->fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  AVCodecParameters* par = best >= 0 ? impl->fmt->streams[best]->codecpar : nullptr;
  if (par == nullptr || par->width <= 0 || par->height <= 0 || par->codec_id == AV_CODEC_ID_NONE) {
    // Containers without a usable header need probing (which decodes a little).
    int rc = avformat_find_stream_info(impl->fmt.get(), nullptr);
    if (rc < 0) return OpenError(path, "cannot read stream info", rc);
    best = av_find_best_stream(impl->fmt.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (best < 0) return OpenError(path, "no video stream", best);
    par = impl->fmt->streams[best]->codecpar;
  }
  if (par->width <= 0 || par->height <= 0) {
    return absl::InvalidArgumentError(path + ": video stream has no frame size");
  }
  impl->stream = best;
  impl->info.width = par->width;
  impl->info.height = par->height;
  for (unsigned i = 0; i < impl->fmt->nb_streams; ++i) {
    if (static_cast<int>(i) != best) impl->fmt->streams[i]->discard = AVDISCARD_ALL;
  }
  impl->pkt.reset(av_packet_alloc());
  impl->frame.reset(av_frame_alloc());
  if (!impl->pkt || !impl->frame) return absl::ResourceExhaustedError(path + ": out of memory");
  RETURN_IF_ERROR(impl->OpenDecoder());
  RETURN_IF_ERROR(impl->BuildIndex());
  // The scan left the demuxer at the end of the file.
  impl->live = false;
  return std::unique_ptr<VideoReader>(new VideoReader(std::move(impl)));
}

absl::StatusOr<Frames> VideoReader::ReadFrames(const std::vector<int64_t>& indices,
                                               int short_side) {
  Impl& m = *impl_;
  const int64_t n = m.info.frame_count;
  for (int64_t i : indices) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(m.path, ": frame index ", i, " out of range [0, ", n, ")"));
    }
  }
  if (short_side < 0) {
    return absl::InvalidArgumentError(absl::StrCat(m.path, ": negative short side ", short_side));
  }
  Frames out;
  ScaledSize(m.info.width, m.info.height, short_side, &out.width, &out.height);
  out.count = static_cast<int64_t>(indices.size());
  const size_t frame_bytes = static_cast<size_t>(out.width) * out.height * 3;
  out.rgb.resize(frame_bytes * indices.size());
  if (indices.empty()) return out;

  std::vector<int64_t> wanted(indices);
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  // First output slot of each wanted frame; duplicates are copied at the end.
  std::vector<int64_t> first_slot(wanted.size(), -1);
  for (size_t s = 0; s < indices.size(); ++s) {
    const size_t w = std::lower_bound(wanted.begin(), wanted.end(), indices[s]) - wanted.begin();
    if (first_slot[w] < 0) first_slot[w] = static_cast<int64_t>(s);
  }
  std::vector<bool> filled(wanted.size(), false);
  size_t remaining = wanted.size();

  // swscale is given an aligned destination so that it takes the same code
  // path as the ffmpeg CLI; rows are copied out afterwards.
  const int row_bytes = out.width * 3;
  const int aligned_stride = (row_bytes + 63) / 64 * 64;
  AvBuffer rgb_buffer(static_cast<uint8_t*>(av_malloc(static_cast<size_t>(aligned_stride) *
                                                      out.height + 64)));
  if (!rgb_buffer) return absl::ResourceExhaustedError(m.path + ": out of memory");

  auto convert = [&](const AVFrame& f, uint8_t* dst) -> absl::Status {
    bool full_range = f.color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat src_fmt =
        UndeprecatedFormat(static_cast<AVPixelFormat>(f.format), &full_range);
    SwsContext* ctx = sws_getCachedContext(m.sws.release(), f.width, f.height, src_fmt, out.width,
                                           out.height, AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr,
                                           nullptr, nullptr);
    m.sws.reset(ctx);
    if (ctx == nullptr) {
      return absl::InternalError(absl::StrCat(m.path, ": cannot convert from pixel format ",
                                              av_get_pix_fmt_name(src_fmt)));
    }
    int cs = f.colorspace;
    if (cs < 1 || cs > 10 || cs == AVCOL_SPC_FCC) cs = SWS_CS_DEFAULT;
    const int* coefficients = sws_getCoefficients(cs);
    sws_setColorspaceDetails(ctx, coefficients, full_range ? 1 : 0, coefficients, 1, 0,
                             1 << 16, 1 << 16);
    uint8_t* dst_planes[4] = {rgb_buffer.get(), nullptr, nullptr, nullptr};
    int dst_strides[4] = {aligned_stride, 0, 0, 0};
    const int rows = sws_scale(ctx, f.data, f.linesize, 0, f.height, dst_planes, dst_strides);
    if (rows != out.height) {
      return absl::InternalError(absl::StrCat(m.path, ": pixel conversion failed"));
    }
    for (int y = 0; y < out.height; ++y) {
      std::memcpy(dst + static_cast<size_t>(y) * row_bytes,
                  rgb_buffer.get() + static_cast<size_t>(y) * aligned_stride, row_bytes);
    }
    return absl::OkStatus();
  };

  // Takes every frame the decoder has ready.
  auto receive = [&]() -> absl::Status {
    for (;;) {
      const int rc = avcodec_receive_frame(m.codec.get(), m.frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return absl::OkStatus();
      if (rc < 0) {
        return absl::DataLossError(absl::StrCat(m.path, ": decoding failed: ", AvError(rc)));
      }
      int64_t q = -1;
      if (m.by_timestamp) {
        auto it = m.pts_to_frame.find(m.frame->pts);
        if (it != m.pts_to_frame.end()) {
          q = it->second;
          if (!m.origin_verified && m.packet_pts[m.origin] == m.frame->pts) {
            if (m.frame->key_frame || m.frame->pict_type == AV_PICTURE_TYPE_I) {
              m.origin_verified = true;
            } else {
              m.trust_keyframes = false;
            }
          }
          // Frames decoded before the restart point was proven intra, or
          // whose references precede it, may be garbage.
          if (!m.origin_verified || m.frame_key[q] < m.origin) q = -1;
        }
      } else {
        q = m.counted_out++;
      }
      if (q >= 0) {
        m.last_out = std::max(m.last_out, q);
        auto w = std::lower_bound(wanted.begin(), wanted.end(), q);
        if (w != wanted.end() && *w == q) {
          const size_t k = w - wanted.begin();
          if (!filled[k]) {
            RETURN_IF_ERROR(convert(*m.frame, out.rgb.data() + first_slot[k] * frame_bytes));
            filled[k] = true;
            --remaining;
          }
        }
      }
      av_frame_unref(m.frame.get());
      if (!m.trust_keyframes && !m.origin_verified) return absl::OkStatus();
    }
  };

  size_t next = 0;            // smallest unfilled wanted frame
  int64_t retried_for = -1;   // a frame already given a second chance from the start
  bool from_start = false;
  while (remaining > 0) {
    while (filled[next]) ++next;
    const int64_t p = wanted[next];
    if (from_start || (!m.trust_keyframes && !m.origin_verified)) {
      // A frame went missing, or a keyframe flag lied: decode from the very
      // beginning, which is what frame numbers are defined by.
      from_start = false;
      RETURN_IF_ERROR(m.Restart(0));
    } else if (m.by_timestamp) {
      const int64_t key = m.trust_keyframes ? m.frame_key[p] : 0;
      // After a restart the demuxer may sit before `origin` (seeks land on
      // an earlier keyframe at worst); reading on reaches it.
      const bool ahead = key > m.last_fed + 1 && key > m.origin;
      if (!m.live || key < m.origin || p <= m.last_out || ahead) {
        RETURN_IF_ERROR(m.Restart(key));
      }
    } else if (!m.live || p < m.counted_out) {
      RETURN_IF_ERROR(m.Restart(0));
    }

    bool eof = false;
    int64_t d = -1;
    RETURN_IF_ERROR(m.NextVideoPacket(&eof, &d));
    if (eof) {
      // Drain the decoder; it must be flushed before it takes packets again.
      int rc = avcodec_send_packet(m.codec.get(), nullptr);
      if (rc < 0 && rc != AVERROR_EOF) {
        return absl::DataLossError(absl::StrCat(m.path, ": decoding failed: ", AvError(rc)));
      }
      RETURN_IF_ERROR(receive());
      m.live = false;
      avcodec_flush_buffers(m.codec.get());
      if (remaining > 0) {
        while (filled[next]) ++next;
        if (retried_for == wanted[next]) {
          return absl::DataLossError(absl::StrCat(m.path, ": decoder did not produce frame ",
                                                  wanted[next], " of ", n));
        }
        retried_for = wanted[next];
        from_start = true;
      }
      continue;
    }
    m.last_fed = d;
    if (m.pkt->size > 0) {
      ++m.packets_sent;
      int rc = avcodec_send_packet(m.codec.get(), m.pkt.get());
      if (rc == AVERROR(EAGAIN)) {
        RETURN_IF_ERROR(receive());
        rc = avcodec_send_packet(m.codec.get(), m.pkt.get());
      }
      av_packet_unref(m.pkt.get());
      if (rc < 0) {
        return absl::DataLossError(
            absl::StrCat(m.path, ": decoding packet ", d, " failed: ", AvError(rc)));
      }
      RETURN_IF_ERROR(receive());
    } else {
      av_packet_unref(m.pkt.get());
    }
  }

  for (size_t s = 0; s < indices.size(); ++s) {
    const size_t w = std::lower_bound(wanted.begin(), wanted.end(), indices[s]) - wanted.begin();
    if (first_slot[w] != static_cast<int64_t>(s)) {
      std::memcpy(out.rgb.data() + s * frame_bytes, out.rgb.data() + first_slot[w] * frame_bytes,
                  frame_bytes);
    }
  }
  return out;
}

}  // namespace tb
