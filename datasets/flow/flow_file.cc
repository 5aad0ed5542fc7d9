#include "datasets/flow/flow_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/file_util.h"
#include "core/status_macros.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMagicBytes = 8;
constexpr size_t kPrefixBytes = kMagicBytes + 4;
constexpr uint32_t kMaxHeaderBytes = 1 << 20;
constexpr int kMaxSide = 1 << 14;

void PutU32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetLE(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t Crc32(const char* data, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status Corrupt(const std::string& path, const std::string& reason) {
  return absl::DataLossError(absl::StrCat("flow file ", path, " is corrupt: ", reason));
}

// Reads exactly `n` bytes at `offset`; false on a short read or an error.
bool ReadAt(int fd, uint64_t offset, size_t n, char* out) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

bool LeftDelta(const FlowSettings& s) { return s.filter() == "left_delta"; }

}  // namespace

FlowSettings DefaultFlowSettings() {
  FlowSettings s;
  s.set_algorithm(kTvL1Algorithm);
  TvL1Parameters* p = s.mutable_tvl1();
  // Every field set explicitly, so the stored settings say the numbers.
  p->set_tau(p->tau());
  p->set_lambda(p->lambda());
  p->set_theta(p->theta());
  p->set_scales(p->scales());
  p->set_warps(p->warps());
  p->set_epsilon(p->epsilon());
  p->set_inner_iterations(p->inner_iterations());
  p->set_outer_iterations(p->outer_iterations());
  p->set_scale_step(p->scale_step());
  p->set_gamma(p->gamma());
  p->set_median_filtering(p->median_filtering());
  s.set_decode_short_side(128);
  s.mutable_quantization()->set_bound(20.0f);
  s.mutable_quantization()->set_levels(255);
  s.set_compression("zlib");
  s.set_zlib_level(9);
  s.set_filter("none");
  return s;
}

absl::Status ValidateFlowSettings(const FlowSettings& s) {
  auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError("flow settings: " + what);
  };
  if (s.algorithm() != kTvL1Algorithm) {
    return bad(absl::StrCat("unknown algorithm '", s.algorithm(), "' (known: ", kTvL1Algorithm,
                            ")"));
  }
  const TvL1Parameters& p = s.tvl1();
  if (!(p.tau() > 0) || !(p.lambda() > 0) || !(p.theta() > 0) || !(p.epsilon() > 0) ||
      !(p.scale_step() > 0 && p.scale_step() < 1) || p.scales() < 1 || p.warps() < 1 ||
      p.inner_iterations() < 1 || p.outer_iterations() < 1 || p.gamma() < 0 ||
      (p.median_filtering() != 1 && p.median_filtering() != 3 && p.median_filtering() != 5)) {
    return bad("TV-L1 parameters out of range: " + p.ShortDebugString());
  }
  if (s.decode_short_side() < 0 || s.decode_short_side() > kMaxSide) {
    return bad(absl::StrCat("decode_short_side ", s.decode_short_side(), " not in [0, ",
                            kMaxSide, "]"));
  }
  const FlowQuantization& q = s.quantization();
  if (!(q.bound() > 0 && std::isfinite(q.bound()))) {
    return bad(absl::StrCat("quantization bound ", q.bound(), " must be > 0"));
  }
  if (q.levels() < 2 || q.levels() > 256) {
    return bad(absl::StrCat("quantization levels ", q.levels(), " not in [2, 256]"));
  }
  if (s.compression() != "zlib") {
    return bad(absl::StrCat("unknown compression '", s.compression(), "' (known: zlib)"));
  }
  if (s.zlib_level() < 0 || s.zlib_level() > 9) {
    return bad(absl::StrCat("zlib_level ", s.zlib_level(), " not in [0, 9]"));
  }
  if (s.filter() != "left_delta" && s.filter() != "none") {
    return bad(absl::StrCat("unknown filter '", s.filter(), "' (known: left_delta, none)"));
  }
  return absl::OkStatus();
}

std::string FlowSettingsDifference(const FlowSettings& a, const FlowSettings& b) {
  std::vector<std::string> diffs;
  auto check = [&](const std::string& name, const std::string& x, const std::string& y) {
    if (x != y) diffs.push_back(absl::StrCat(name, " ", x, " vs ", y));
  };
  check("algorithm", a.algorithm(), b.algorithm());
  check("tvl1", "{" + a.tvl1().ShortDebugString() + "}", "{" + b.tvl1().ShortDebugString() + "}");
  check("decode_short_side", absl::StrCat(a.decode_short_side()),
        absl::StrCat(b.decode_short_side()));
  check("bound", absl::StrCat(a.quantization().bound()), absl::StrCat(b.quantization().bound()));
  check("levels", absl::StrCat(a.quantization().levels()),
        absl::StrCat(b.quantization().levels()));
  check("compression", a.compression(), b.compression());
  check("zlib_level", absl::StrCat(a.zlib_level()), absl::StrCat(b.zlib_level()));
  check("filter", a.filter(), b.filter());
  return absl::StrJoin(diffs, ", ");
}

float FlowQuantStep(const FlowQuantization& q) {
  return 2.0f * q.bound() / static_cast<float>(q.levels() - 1);
}

uint8_t QuantizeFlowValue(float v, const FlowQuantization& q) {
  const float bound = q.bound();
  if (!std::isfinite(v)) v = std::isnan(v) ? 0.0f : (v > 0 ? bound : -bound);
  v = std::clamp(v, -bound, bound);
  const float top = static_cast<float>(q.levels() - 1);
  const long level = std::lround((v + bound) * top / (2.0f * bound));
  return static_cast<uint8_t>(std::clamp<long>(level, 0, q.levels() - 1));
}

float DequantizeFlowValue(uint8_t level, const FlowQuantization& q) {
  return static_cast<float>(level) * FlowQuantStep(q) - q.bound();
}

void QuantizeFlowField(const float* xy, int width, int height, const FlowQuantization& q,
                       uint8_t* planes) {
  const size_t plane = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < plane; ++i) {
    planes[i] = QuantizeFlowValue(xy[2 * i], q);
    planes[plane + i] = QuantizeFlowValue(xy[2 * i + 1], q);
  }
}

absl::StatusOr<std::string> EncodeFlowField(const uint8_t* planes, int width, int height,
                                            const FlowSettings& settings) {
  const size_t n = 2 * static_cast<size_t>(width) * height;
  std::string filtered(reinterpret_cast<const char*>(planes), n);
  if (LeftDelta(settings)) {
    for (size_t row = 0; row < 2 * static_cast<size_t>(height); ++row) {
      char* r = filtered.data() + row * width;
      const uint8_t* in = planes + row * width;
      for (int x = 1; x < width; ++x) r[x] = static_cast<char>(in[x] - in[x - 1]);
    }
  }
  uLongf size = compressBound(static_cast<uLong>(n));
  std::string out(size, '\0');
  const int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                           reinterpret_cast<const Bytef*>(filtered.data()),
                           static_cast<uLong>(n), settings.zlib_level());
  if (rc != Z_OK) return absl::InternalError(absl::StrCat("zlib compress2 failed: ", rc));
  out.resize(size);
  return out;
}

absl::Status DecodeFlowField(std::string_view data, int width, int height,
                             const FlowSettings& settings, const std::string& what,
                             uint8_t* planes) {
  const size_t n = 2 * static_cast<size_t>(width) * height;
  uLongf out_size = static_cast<uLongf>(n);
  uLong in_size = static_cast<uLong>(data.size());
  const int rc = uncompress2(planes, &out_size, reinterpret_cast<const Bytef*>(data.data()),
                             &in_size);
  if (rc != Z_OK) {
    const char* reason = rc == Z_DATA_ERROR  ? "damaged zlib stream"
                         : rc == Z_BUF_ERROR ? "zlib stream longer than a field or cut short"
                                             : "zlib error";
    return absl::DataLossError(absl::StrCat(what, ": ", reason, " (", rc, ")"));
  }
  if (out_size != n || in_size != data.size()) {
    return absl::DataLossError(absl::StrCat(what, ": inflated to ", out_size, " bytes from ",
                                            in_size, " of ", data.size(), ", want ", n,
                                            " bytes from all of them"));
  }
  if (LeftDelta(settings)) {
    for (size_t row = 0; row < 2 * static_cast<size_t>(height); ++row) {
      uint8_t* r = planes + row * width;
      for (int x = 1; x < width; ++x) r[x] = static_cast<uint8_t>(r[x] + r[x - 1]);
    }
  }
  const int levels = settings.quantization().levels();
  if (levels < 256) {
    for (size_t i = 0; i < n; ++i) {
      if (planes[i] >= levels) {
        return absl::DataLossError(absl::StrCat(what, ": level ", static_cast<int>(planes[i]),
                                                " >= ", levels, " levels"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomicallyTo(const std::string& path, const std::string& data) {
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return absl::InternalError("cannot create folder " + parent.string() + ": " +
                                       ec.message());
  }
  return WriteFileAtomically(path, data);
}

absl::Status WriteFlowFile(const std::string& path, const FlowFileHeader& header,
                           const std::vector<std::string>& fields) {
  if (header.frame_count() != static_cast<int64_t>(fields.size()) + 1) {
    return absl::InternalError(absl::StrCat("WriteFlowFile ", path, ": frame_count ",
                                            header.frame_count(), " with ", fields.size(),
                                            " fields"));
  }
  std::string head;
  if (!header.SerializeToString(&head)) {
    return absl::InternalError("cannot serialise the header of " + path);
  }
  std::string out(kFlowFileMagic, kMagicBytes);
  PutU32(static_cast<uint32_t>(head.size()), &out);
  out += head;
  uint64_t offset = kPrefixBytes + head.size() + 8 * (fields.size() + 1) + 4;
  for (const std::string& f : fields) {
    PutU64(offset, &out);
    offset += f.size();
  }
  PutU64(offset, &out);
  PutU32(Crc32(out.data() + kMagicBytes, out.size() - kMagicBytes), &out);
  out.reserve(offset);
  for (const std::string& f : fields) out += f;
  return WriteFileAtomicallyTo(path, out);
}

absl::StatusOr<std::unique_ptr<FlowFile>> FlowFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError("flow file not found: " + path);
    return absl::NotFoundError(
        absl::StrCat("cannot open flow file ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<FlowFile> file(new FlowFile(path, fd));
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError("cannot stat", path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  unsigned char prefix[kPrefixBytes];
  if (size < kPrefixBytes || !ReadAt(fd, 0, kPrefixBytes, reinterpret_cast<char*>(prefix))) {
    return Corrupt(path, absl::StrCat("only ", size, " bytes"));
  }
  if (std::memcmp(prefix, kFlowFileMagic, kMagicBytes) != 0) {
    return Corrupt(path, "not a flow file (wrong magic bytes)");
  }
  const uint64_t head_size = GetLE(prefix + kMagicBytes, 4);
  if (head_size > kMaxHeaderBytes || kPrefixBytes + head_size > size) {
    return Corrupt(path, absl::StrCat("header of ", head_size, " bytes in a file of ", size));
  }
  std::string head(head_size, '\0');
  if (!ReadAt(fd, kPrefixBytes, head_size, head.data())) return Corrupt(path, "cannot read header");
  FlowFileHeader& h = file->header_;
  if (!h.ParseFromString(head)) return Corrupt(path, "unparsable header");
  if (h.version() != kFlowFileVersion) {
    return Corrupt(path, absl::StrCat("version ", h.version(), ", this reader knows ",
                                      kFlowFileVersion));
  }
  if (h.frame_count() < 1 || h.width() < 1 || h.height() < 1 || h.width() > kMaxSide ||
      h.height() > kMaxSide) {
    return Corrupt(path, absl::StrCat("header says ", h.frame_count(), " frames of ", h.width(),
                                      "x", h.height()));
  }
  const uint64_t fields = static_cast<uint64_t>(h.frame_count()) - 1;
  const uint64_t table_start = kPrefixBytes + head_size;
  const uint64_t data_start = table_start + 8 * (fields + 1) + 4;
  if (fields > size || data_start > size) {
    return Corrupt(path, absl::StrCat("file of ", size, " bytes is too short for the offsets of ",
                                      fields, " fields"));
  }
  std::string table(8 * (fields + 1) + 4, '\0');
  if (!ReadAt(fd, table_start, table.size(), table.data())) {
    return Corrupt(path, "cannot read offsets");
  }
  std::string checked = std::string(reinterpret_cast<const char*>(prefix) + kMagicBytes, 4) +
                        head + table.substr(0, table.size() - 4);
  const auto* t = reinterpret_cast<const unsigned char*>(table.data());
  if (Crc32(checked.data(), checked.size()) != GetLE(t + table.size() - 4, 4)) {
    return Corrupt(path, "header or offset table checksum mismatch");
  }
  if (absl::Status s = ValidateFlowSettings(h.settings()); !s.ok()) {
    return Corrupt(path, std::string(s.message()));
  }
  file->offsets_.resize(fields + 1);
  for (uint64_t f = 0; f <= fields; ++f) file->offsets_[f] = GetLE(t + 8 * f, 8);
  if (file->offsets_[0] != data_start) {
    return Corrupt(path, absl::StrCat("first field at ", file->offsets_[0], ", want ", data_start));
  }
  for (uint64_t f = 0; f < fields; ++f) {
    if (file->offsets_[f + 1] < file->offsets_[f]) {
      return Corrupt(path, absl::StrCat("offsets of fields ", f, " and ", f + 1, " decrease"));
    }
  }
  if (file->offsets_[fields] != size) {
    return Corrupt(path, absl::StrCat("truncated or extended: ", size, " bytes, the offsets say ",
                                      file->offsets_[fields]));
  }
  return file;
}

FlowFile::~FlowFile() { close(fd_); }

absl::Status FlowFile::ReadField(int64_t index, uint8_t* planes) const {
  if (index < 0 || index >= num_fields()) {
    return absl::OutOfRangeError(absl::StrCat("flow file ", path_, ": field ", index,
                                              " out of range [0, ", num_fields(), ")"));
  }
  const uint64_t begin = offsets_[index], end = offsets_[index + 1];
  std::string data(end - begin, '\0');
  if (!ReadAt(fd_, begin, data.size(), data.data())) {
    return Corrupt(path_, absl::StrCat("cannot read field ", index));
  }
  return DecodeFlowField(data, header_.width(), header_.height(), header_.settings(),
                         absl::StrCat("flow file ", path_, " is corrupt: field ", index), planes);
}

absl::Status FlowFile::ReadFieldFloat(int64_t index, float* xy) const {
  const size_t n = 2 * static_cast<size_t>(header_.width()) * header_.height();
  std::vector<uint8_t> levels(n);
  RETURN_IF_ERROR(ReadField(index, levels.data()));
  float table[256];
  for (int l = 0; l < 256; ++l) {
    table[l] = DequantizeFlowValue(static_cast<uint8_t>(l), header_.settings().quantization());
  }
  for (size_t i = 0; i < n; ++i) xy[i] = table[levels[i]];
  return absl::OkStatus();
}

}  // namespace tb
