#include "datasets/video_reader.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
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

std::string Damage::reason() const {
  auto plural = [](int64_t n, const char* word) {
    return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
  };
  std::vector<std::string> parts;
  if (truncated) {
    parts.push_back(absl::StrCat("truncated: ", frame_count, " of ", declared_frames,
                                 " frames decodable"));
  }
  if (corrupt_packets > 0) {
    parts.push_back(absl::StrCat(plural(corrupt_packets, "corrupt packet"), " (first: packet ",
                                 first_corrupt_packet, ")"));
  }
  if (open_errors > 0) parts.push_back(plural(open_errors, "FFmpeg error") + " while indexing");
  if (bad_frames > 0) parts.push_back(plural(bad_frames, "frame") + " decoded with errors");
  if (misordered_frames > 0) {
    parts.push_back(plural(misordered_frames, "frame") + " out of timestamp order");
  }
  if (dropped_frames > 0) {
    parts.push_back(plural(dropped_frames, "frame") + " not produced by the decoder");
  }
  if (parts.empty()) return "";
  if (!first_message.empty()) parts.push_back("FFmpeg: " + first_message);
  return absl::StrJoin(parts, "; ");
}

namespace {

// Converts decoded frames to packed RGB24 of the output size. swscale is
// given an aligned destination so that it takes the same code path as the
// ffmpeg CLI; rows are copied out afterwards.
struct RgbConverter {
  int width = 0;
  int height = 0;
  int row_bytes = 0;
  int aligned_stride = 0;
  AvBuffer buffer;

  absl::Status Init(int out_width, int out_height, const std::string& path) {
    width = out_width;
    height = out_height;
    row_bytes = width * 3;
    aligned_stride = (row_bytes + 63) / 64 * 64;
    const size_t bytes = static_cast<size_t>(aligned_stride) * height + 64;
    buffer.reset(static_cast<uint8_t*>(av_malloc(bytes)));
    if (!buffer) return absl::ResourceExhaustedError(path + ": out of memory");
    return absl::OkStatus();
  }

  // `sws` is the reader's cached context, reused while sizes and formats stay.
  absl::Status Convert(const AVFrame& f, SwsPtr* sws, uint8_t* dst, const std::string& path) {
    bool full_range = f.color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat src_fmt =
        UndeprecatedFormat(static_cast<AVPixelFormat>(f.format), &full_range);
    SwsContext* ctx = sws_getCachedContext(sws->release(), f.width, f.height, src_fmt, width,
                                           height, AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr,
                                           nullptr, nullptr);
    sws->reset(ctx);
    if (ctx == nullptr) {
      return absl::InternalError(absl::StrCat(path, ": cannot convert from pixel format ",
                                              av_get_pix_fmt_name(src_fmt)));
    }
    int cs = f.colorspace;
    if (cs < 1 || cs > 10 || cs == AVCOL_SPC_FCC) cs = SWS_CS_DEFAULT;
    const int* coefficients = sws_getCoefficients(cs);
    sws_setColorspaceDetails(ctx, coefficients, full_range ? 1 : 0, coefficients, 1, 0, 1 << 16,
                             1 << 16);
    uint8_t* dst_planes[4] = {buffer.get(), nullptr, nullptr, nullptr};
    int dst_strides[4] = {aligned_stride, 0, 0, 0};
    const int rows = sws_scale(ctx, f.data, f.linesize, 0, f.height, dst_planes, dst_strides);
    if (rows != height) return absl::InternalError(path + ": pixel conversion failed");
    for (int y = 0; y < height; ++y) {
      std::memcpy(dst + static_cast<size_t>(y) * row_bytes,
                  buffer.get() + static_cast<size_t>(y) * aligned_stride, row_bytes);
    }
    return absl::OkStatus();
  }
};

// One ReadFrames call: the distinct frames it wants in ascending order, the
// output slot each goes to first, what is filled, and the work it may do.
struct ReadState {
  Frames* out = nullptr;
  size_t frame_bytes = 0;
  RgbConverter converter;
  std::vector<int64_t> wanted;
  std::vector<int64_t> first_slot;
  std::vector<bool> filled;
  size_t remaining = 0;
  size_t next = 0;            // smallest unfilled wanted frame
  int64_t retried_for = -1;   // a frame already given a second chance from the start
  bool from_start = false;    // the next step restarts at the stream's start
  bool restarted = false;     // the current decoding run began in this call
  int64_t reads_before = 0;   // the reader's counters when the call began
  int64_t seeks_before = 0;
  int64_t read_limit = 0;
  int64_t seek_limit = 0;
};

}  // namespace

struct VideoReader::Impl {
  std::string path;
  VideoInfo info;
  Damage damage;
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
  // Restart targets no seek could reach; they are reached by decoding on.
  std::unordered_set<int64_t> unseekable;

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
  int64_t packets_read = 0;    // by ReadFrames, from the demuxer

  // What FFmpeg reports: during Open() every error counts as damage; while
  // decoding, the latest message explains the next bad frame.
  bool indexing = false;
  std::string last_decoder_message;
  std::unordered_set<int64_t> bad_frame_set;  // frame index, or -1 - packet
  std::unordered_set<int64_t> misordered_set;
  std::unordered_set<int64_t> dropped_set;

  absl::Status OpenContainer();
  absl::Status OpenDecoder();
  absl::Status BuildIndex();
  absl::Status IndexPackets(std::vector<int64_t>* frame_packets, bool* all_pts);
  void BuildFrameTable(const std::vector<int64_t>& frame_packets);
  absl::Status Restart(int64_t packet);
  // Reads the next video packet of the file into `pkt`; *eof at its end.
  absl::Status ReadVideoPacket(bool* eof);
  // The next packet to decode (the one a restart peeked at, if any) and its
  // decode index.
  absl::Status NextVideoPacket(bool* eof, int64_t* decode_index);

  void NoteFfmpegError(const std::string& who, const std::string& text);
  // Records a damaged frame (or packet) `key` in `seen`, whose size goes to
  // *count; the latest decoder message, if any, explains the first finding.
  void NoteFrame(std::unordered_set<int64_t>* seen, int64_t* count, int64_t key);
  void NoteBadFrame(int64_t key) { NoteFrame(&bad_frame_set, &damage.bad_frames, key); }
  void NoteMisorderedFrame(int64_t q) {
    NoteFrame(&misordered_set, &damage.misordered_frames, q);
  }
  void NoteDroppedFrame(int64_t q) { NoteFrame(&dropped_set, &damage.dropped_frames, q); }

  // The steps of ReadFrames: plan the request, then repeatedly seek (or
  // not) and decode until every wanted frame is converted into place.
  absl::Status PlanRead(const std::vector<int64_t>& indices, int short_side, ReadState* st);
  absl::Status CheckBudget(ReadState* st);
  absl::Status DecodeUntilFilled(ReadState* st);
  absl::Status SeekFor(ReadState* st);
  absl::Status DecodePacket(int64_t d, ReadState* st);
  absl::Status FinishRun(ReadState* st);
  absl::Status ReceiveFrames(ReadState* st);
  int64_t IdentifyFrame();
  absl::Status Deliver(int64_t q, ReadState* st);
};

namespace {

// The reader whose Open() or ReadFrames() runs on this thread: FFmpeg's
// messages are attributed to it (decoders run single-threaded, so they log
// from the caller's thread).
thread_local VideoReader::Impl* t_reader = nullptr;

class LogScope {
 public:
  explicit LogScope(VideoReader::Impl* reader) : previous_(t_reader) { t_reader = reader; }
  ~LogScope() { t_reader = previous_; }
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  VideoReader::Impl* previous_;
};

void RecordingLogCallback(void* avcl, int level, const char* format, va_list args) {
  if (t_reader != nullptr && level <= AV_LOG_ERROR) {
    char line[1024];
    int print_prefix = 0;
    va_list copy;
    va_copy(copy, args);
    av_log_format_line2(avcl, level, format, copy, line, sizeof(line), &print_prefix);
    va_end(copy);
    const AVClass* cls = avcl != nullptr ? *static_cast<const AVClass* const*>(avcl) : nullptr;
    const char* who = cls != nullptr && cls->item_name != nullptr ? cls->item_name(avcl) : "";
    t_reader->NoteFfmpegError(who != nullptr ? who : "", line);
  }
  av_log_default_callback(avcl, level, format, args);
}

// FFmpeg prints decoder warnings (e.g. H.264 reference warnings right after a
// seek, which are expected and harmless here) straight to stderr from every
// loader thread. Real failures reach the caller as absl::Status or Damage, so
// only FFmpeg's errors are printed unless TB_FFMPEG_LOG_LEVEL (an av_log
// level number, e.g. 32 for info) asks for more. Errors are also recorded on
// the reader they concern.
void SetUpFfmpegLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* level = std::getenv("TB_FFMPEG_LOG_LEVEL");
    av_log_set_level(level != nullptr ? std::atoi(level) : AV_LOG_ERROR);
    av_log_set_callback(RecordingLogCallback);
  });
}

}  // namespace

void VideoReader::Impl::NoteFfmpegError(const std::string& who, const std::string& text) {
  std::string message(absl::StripAsciiWhitespace(text));
  if (message.empty()) return;
  if (!who.empty()) message = absl::StrCat(who, ": ", message);
  if (indexing) {
    ++damage.open_errors;
    if (damage.first_message.empty()) damage.first_message = message;
  } else {
    last_decoder_message = message;
  }
}

void VideoReader::Impl::NoteFrame(std::unordered_set<int64_t>* seen, int64_t* count,
                                  int64_t key) {
  if (!seen->insert(key).second) return;
  *count = static_cast<int64_t>(seen->size());
  if (damage.first_message.empty()) damage.first_message = last_decoder_message;
}

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

// Reads every packet of the file once. Each packet takes at least one byte
// of the file, so a demuxer that returns more packets than the file has
// bytes is going round in circles.
absl::Status VideoReader::Impl::IndexPackets(std::vector<int64_t>* frame_packets, bool* all_pts) {
  const int64_t file_bytes = fmt->pb != nullptr ? avio_size(fmt->pb) : -1;
  const int64_t max_packets = file_bytes > 0 ? file_bytes + 1024
                                             : std::numeric_limits<int64_t>::max();
  *all_pts = true;
  for (int64_t packets = 0;; ++packets) {
    if (packets > max_packets) {
      return absl::DataLossError(absl::StrCat(path, ": the demuxer returned more than ",
                                              max_packets, " packets from ", file_bytes,
                                              " bytes"));
    }
    const int rc = av_read_frame(fmt.get(), pkt.get());
    if (rc == AVERROR_EOF) break;
    if (rc < 0) return OpenError(path, "cannot read packet", rc);
    if (pkt->stream_index == stream) {
      const int64_t d = static_cast<int64_t>(packet_pts.size());
      packet_pts.push_back(pkt->pts);
      packet_dts.push_back(pkt->dts);
      packet_key.push_back((pkt->flags & AV_PKT_FLAG_KEY) != 0);
      if (pkt->pts == AV_NOPTS_VALUE || !pts_to_packet.emplace(pkt->pts, d).second) {
        *all_pts = false;
      }
      if ((pkt->flags & AV_PKT_FLAG_CORRUPT) && damage.corrupt_packets++ == 0) {
        damage.first_corrupt_packet = d;
      }
      if (MakesFrame(*pkt)) frame_packets->push_back(d);
    }
    av_packet_unref(pkt.get());
  }
  return absl::OkStatus();
}

// The packet to restart from for each frame: the last keyframe, in decode
// order, at or before the frame's packet that is not displayed after it.
void VideoReader::Impl::BuildFrameTable(const std::vector<int64_t>& frame_packets) {
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

absl::Status VideoReader::Impl::BuildIndex() {
  std::vector<int64_t> frame_packets;  // decode indices of packets that make frames
  bool all_pts = true;
  RETURN_IF_ERROR(IndexPackets(&frame_packets, &all_pts));
  if (frame_packets.empty()) {
    return absl::InvalidArgumentError(path + ": video stream has no frames");
  }
  info.frame_count = static_cast<int64_t>(frame_packets.size());
  by_timestamp = all_pts;
  if (by_timestamp) BuildFrameTable(frame_packets);

  AVStream* st = fmt->streams[stream];
  damage.frame_count = info.frame_count;
  damage.declared_frames = std::max<int64_t>(0, st->nb_frames);
  damage.truncated = damage.declared_frames > static_cast<int64_t>(packet_pts.size());
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
  // Decoding on from there reaches `target`; seeking to it again would only
  // land here again.
  if (target > 0) unseekable.insert(target);
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
    ++packets_read;
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

// Step 1, plan: checks the request, sizes the output and lists the distinct
// frames in ascending order, each with the first output slot it fills.
absl::Status VideoReader::Impl::PlanRead(const std::vector<int64_t>& indices, int short_side,
                                         ReadState* st) {
  const int64_t n = info.frame_count;
  for (int64_t i : indices) {
    if (i < 0 || i >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": frame index ", i, " out of range [0, ", n, ")"));
    }
  }
  if (short_side < 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": negative short side ", short_side));
  }
  Frames& out = *st->out;
  ScaledSize(info.width, info.height, short_side, &out.width, &out.height);
  out.count = static_cast<int64_t>(indices.size());
  st->frame_bytes = static_cast<size_t>(out.width) * out.height * 3;
  out.rgb.resize(st->frame_bytes * indices.size());
  st->wanted = indices;
  std::sort(st->wanted.begin(), st->wanted.end());
  st->wanted.erase(std::unique(st->wanted.begin(), st->wanted.end()), st->wanted.end());
  st->first_slot.assign(st->wanted.size(), -1);
  for (size_t s = 0; s < indices.size(); ++s) {
    const size_t w =
        std::lower_bound(st->wanted.begin(), st->wanted.end(), indices[s]) - st->wanted.begin();
    if (st->first_slot[w] < 0) st->first_slot[w] = static_cast<int64_t>(s);
  }
  st->filled.assign(st->wanted.size(), false);
  st->remaining = st->wanted.size();
  // An undamaged stream needs at most about two passes over its packets per
  // call and a seek or two per frame; these limits leave room to spare.
  st->reads_before = packets_read;
  st->seeks_before = seeks;
  st->read_limit = 4 * static_cast<int64_t>(packet_pts.size()) + 64;
  st->seek_limit = 2 * static_cast<int64_t>(st->wanted.size()) + 8;
  if (indices.empty()) return absl::OkStatus();
  return st->converter.Init(out.width, out.height, path);
}

absl::Status VideoReader::Impl::CheckBudget(ReadState* st) {
  const int64_t reads = packets_read - st->reads_before;
  const int64_t restarts = seeks - st->seeks_before;
  if (reads <= st->read_limit && restarts <= st->seek_limit) return absl::OkStatus();
  NoteBadFrame(st->wanted[st->next]);
  return absl::DataLossError(absl::StrCat(
      path, ": gave up on frame ", st->wanted[st->next], " after reading ", reads,
      " packets and seeking ", restarts, " times (limits ", st->read_limit, " and ",
      st->seek_limit, " for ", st->wanted.size(), " frames of a stream of ", packet_pts.size(),
      " packets): its timestamps, key frames and decoded frames disagree"));
}

// Steps 2 and 3 in turn until every wanted frame is in place: seek (or not)
// for the smallest missing frame, then decode one packet.
absl::Status VideoReader::Impl::DecodeUntilFilled(ReadState* st) {
  while (st->remaining > 0) {
    while (st->filled[st->next]) ++st->next;
    RETURN_IF_ERROR(CheckBudget(st));
    RETURN_IF_ERROR(SeekFor(st));
    bool eof = false;
    int64_t d = -1;
    RETURN_IF_ERROR(NextVideoPacket(&eof, &d));
    if (eof) {
      RETURN_IF_ERROR(FinishRun(st));
    } else {
      RETURN_IF_ERROR(DecodePacket(d, st));
    }
  }
  return absl::OkStatus();
}

// Step 2, seek: restarts decoding when the smallest missing frame cannot be
// reached by decoding on, or is reached sooner from its keyframe.
absl::Status VideoReader::Impl::SeekFor(ReadState* st) {
  const int64_t p = st->wanted[st->next];
  auto restart = [&](int64_t target) {
    st->restarted = true;
    return Restart(target);
  };
  if (st->from_start || (!trust_keyframes && !origin_verified)) {
    // A frame went missing, or a keyframe flag lied: decode from the very
    // beginning, which is what frame numbers are defined by.
    st->from_start = false;
    return restart(0);
  }
  if (by_timestamp) {
    const int64_t key = trust_keyframes ? frame_key[p] : 0;
    // After a restart the demuxer may sit before `origin` (seeks land on
    // an earlier keyframe at worst); reading on reaches it, as it reaches a
    // keyframe no seek could.
    const bool ahead = key > last_fed + 1 && key > origin && unseekable.count(key) == 0;
    // A run begun in this call outputs frames in presentation order, so a
    // frame behind its last output was not passed but is missing (or the
    // timestamps are wrong): the end of the stream settles that, not
    // another restart that would end the same way.
    const bool passed = p <= last_out && !st->restarted;
    if (!live || key < origin || passed || ahead) return restart(key);
  } else if (!live || p < counted_out) {
    return restart(0);
  }
  return absl::OkStatus();
}

// Step 3, decode: sends packet `d` (in `pkt`) to the decoder and takes the
// frames it makes.
absl::Status VideoReader::Impl::DecodePacket(int64_t d, ReadState* st) {
  last_fed = d;
  if (pkt->size <= 0) {
    av_packet_unref(pkt.get());
    return absl::OkStatus();
  }
  ++packets_sent;
  int rc = avcodec_send_packet(codec.get(), pkt.get());
  if (rc == AVERROR(EAGAIN)) {
    RETURN_IF_ERROR(ReceiveFrames(st));
    rc = avcodec_send_packet(codec.get(), pkt.get());
  }
  av_packet_unref(pkt.get());
  if (rc < 0) {
    NoteBadFrame(-1 - d);
    return absl::DataLossError(
        absl::StrCat(path, ": decoding packet ", d, " failed: ", AvError(rc)));
  }
  return ReceiveFrames(st);
}

// The end of the stream: drains the decoder; a wanted frame still missing
// gets one more decode from the start, then is an error.
absl::Status VideoReader::Impl::FinishRun(ReadState* st) {
  // The decoder must be flushed before it takes packets again.
  const int rc = avcodec_send_packet(codec.get(), nullptr);
  if (rc < 0 && rc != AVERROR_EOF) {
    return absl::DataLossError(absl::StrCat(path, ": decoding failed: ", AvError(rc)));
  }
  RETURN_IF_ERROR(ReceiveFrames(st));
  live = false;
  avcodec_flush_buffers(codec.get());
  if (st->remaining == 0) return absl::OkStatus();
  while (st->filled[st->next]) ++st->next;
  const int64_t p = st->wanted[st->next];
  if (st->retried_for == p) {
    NoteDroppedFrame(p);
    return absl::DataLossError(absl::StrCat(path, ": decoder did not produce frame ", p, " of ",
                                            info.frame_count));
  }
  st->retried_for = p;
  st->from_start = true;
  return absl::OkStatus();
}

// Takes every frame the decoder has ready.
absl::Status VideoReader::Impl::ReceiveFrames(ReadState* st) {
  for (;;) {
    const int rc = avcodec_receive_frame(codec.get(), frame.get());
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return absl::OkStatus();
    if (rc < 0) {
      NoteBadFrame(-1 - last_fed);
      return absl::DataLossError(absl::StrCat(path, ": decoding failed: ", AvError(rc)));
    }
    const int64_t q = IdentifyFrame();
    if (q >= 0) RETURN_IF_ERROR(Deliver(q, st));
    av_frame_unref(frame.get());
    if (!trust_keyframes && !origin_verified) return absl::OkStatus();
  }
}

// The presentation index of the decoded `frame`, or -1 when it cannot be
// trusted: unknown timestamp, decoded before the restart point was proven
// intra, or referencing frames before that point.
int64_t VideoReader::Impl::IdentifyFrame() {
  if (!by_timestamp) return counted_out++;
  auto it = pts_to_frame.find(frame->pts);
  if (it == pts_to_frame.end()) return -1;
  const int64_t q = it->second;
  if (!origin_verified && packet_pts[origin] == frame->pts) {
    if (frame->key_frame || frame->pict_type == AV_PICTURE_TYPE_I) {
      origin_verified = true;
    } else {
      trust_keyframes = false;
    }
  }
  if (!origin_verified || frame_key[q] < origin) return -1;
  return q;
}

// Step 4, convert: records what is wrong with frame q and, if it is wanted
// and not yet in place, converts it into its first output slot.
absl::Status VideoReader::Impl::Deliver(int64_t q, ReadState* st) {
  // Frames leave the decoder in presentation order, each one decodable from
  // `origin` (its key frame not before it) after the previous one; one that
  // does not, one skipped, or one the decoder marks as concealed or corrupt,
  // is damage.
  if (q <= last_out) NoteMisorderedFrame(q);
  for (int64_t r = last_out + 1; by_timestamp && last_out >= 0 && r < q; ++r) {
    if (frame_key[r] >= origin) NoteDroppedFrame(r);
  }
  if (frame->decode_error_flags != 0 || (frame->flags & AV_FRAME_FLAG_CORRUPT)) NoteBadFrame(q);
  last_out = std::max(last_out, q);
  auto w = std::lower_bound(st->wanted.begin(), st->wanted.end(), q);
  if (w == st->wanted.end() || *w != q) return absl::OkStatus();
  const size_t k = w - st->wanted.begin();
  if (st->filled[k]) return absl::OkStatus();
  uint8_t* dst = st->out->rgb.data() + st->first_slot[k] * st->frame_bytes;
  RETURN_IF_ERROR(st->converter.Convert(*frame, &sws, dst, path));
  st->filled[k] = true;
  --st->remaining;
  return absl::OkStatus();
}

VideoReader::VideoReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VideoReader::~VideoReader() = default;

const VideoInfo& VideoReader::info() const { return impl_->info; }
const Damage& VideoReader::damage() const { return impl_->damage; }
int64_t VideoReader::seek_count() const { return impl_->seeks; }
int64_t VideoReader::decoded_packet_count() const { return impl_->packets_sent; }
int64_t VideoReader::read_packet_count() const { return impl_->packets_read; }

absl::StatusOr<std::unique_ptr<VideoReader>> VideoReader::Open(const std::string& path) {
  SetUpFfmpegLogging();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  LogScope log_scope(impl.get());
  impl->indexing = true;
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
  impl->indexing = false;
  // The scan left the demuxer at the end of the file.
  impl->live = false;
  return std::unique_ptr<VideoReader>(new VideoReader(std::move(impl)));
}

absl::StatusOr<Frames> VideoReader::ReadFrames(const std::vector<int64_t>& indices,
                                               int short_side) {
  Impl& m = *impl_;
  LogScope log_scope(&m);
  Frames out;
  ReadState st;
  st.out = &out;
  RETURN_IF_ERROR(m.PlanRead(indices, short_side, &st));
  if (indices.empty()) return out;
  RETURN_IF_ERROR(m.DecodeUntilFilled(&st));
  // Repeated indices: copies of the slot each frame was decoded into.
  for (size_t s = 0; s < indices.size(); ++s) {
    const size_t w =
        std::lower_bound(st.wanted.begin(), st.wanted.end(), indices[s]) - st.wanted.begin();
    if (st.first_slot[w] != static_cast<int64_t>(s)) {
      std::memcpy(out.rgb.data() + s * st.frame_bytes,
                  out.rgb.data() + st.first_slot[w] * st.frame_bytes, st.frame_bytes);
    }
  }
  return out;
}

}  // namespace tb
