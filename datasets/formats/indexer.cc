#include "datasets/formats/indexer.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/sha256.h"
#include "datasets/video_reader.h"

namespace tb {
namespace {

namespace fs = std::filesystem;

// Checks the file itself before FFmpeg sees it, for messages that say what
// is wrong rather than FFmpeg's generic ones.
absl::Status CheckFile(const std::string& path, int64_t* size) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return absl::NotFoundError("file not found");
  if (!fs::is_regular_file(st)) return absl::InvalidArgumentError("not a regular file");
  *size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) return absl::UnavailableError("cannot stat: " + ec.message());
  if (*size == 0) return absl::InvalidArgumentError("empty file (0 bytes)");
  return absl::OkStatus();
}

// Opens, verifies and hashes `path` into `out` (size, hash, video info).
absl::Status Describe(const std::string& path, bool verify_decode, ManifestVideo* out) {
  int64_t size = 0;
  RETURN_IF_ERROR(CheckFile(path, &size));
  ASSIGN_OR_RETURN(std::unique_ptr<VideoReader> reader, VideoReader::Open(path));
  const VideoInfo& info = reader->info();
  if (verify_decode) {
    std::vector<int64_t> ends = {0, info.frame_count - 1};
    RETURN_IF_ERROR(reader->ReadFrames(ends, /*short_side=*/16).status());
  }
  // Damage found by indexing or by the test decode: the file is not what it
  // claims to be, even though some frames decode.
  if (reader->damage().damaged()) {
    return absl::DataLossError("damaged: " + reader->damage().reason());
  }
  ASSIGN_OR_RETURN(std::string hash, Sha256File(path));
  out->set_frame_count(info.frame_count);
  out->set_fps(info.fps);
  out->set_width(info.width);
  out->set_height(info.height);
  out->set_size_bytes(size);
  out->set_content_hash("sha256:" + hash);
  return absl::OkStatus();
}

absl::StatusOr<ManifestVideo> IndexOne(const ListedVideo& v, const std::string& root,
                                       const IndexOptions& options, std::string* path) {
  ManifestVideo out;
  out.set_relative_path(v.relative_path);
  out.set_label(v.label);
  out.set_split(v.split);
  *path = JoinPath(root, v.relative_path);
  RETURN_IF_ERROR(Describe(*path, options.verify_decode, &out));
  if (!options.reencode) return out;
  const std::string relative = ReencodedRelativePath(v.relative_path);
  const std::string copy = JoinPath(options.reencode_dir, relative);
  RETURN_IF_ERROR(ReencodeVideo(*path, copy, options.reencode_options));
  out.set_source_content_hash(out.content_hash());
  out.set_source_relative_path(v.relative_path);
  out.set_relative_path(relative);
  *path = copy;
  RETURN_IF_ERROR(Describe(copy, options.verify_decode, &out));
  return out;
}

// FFmpeg-based messages start with the path; the report prints it anyway.
std::string Reason(const absl::Status& status, const std::string& path) {
  std::string message(status.message());
  if (absl::StartsWith(message, path + ": ")) message.erase(0, path.size() + 2);
  return message;
}

}  // namespace

absl::StatusOr<IndexResult> IndexDataset(const DatasetListing& listing, const std::string& root,
                                         const IndexOptions& options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads ", options.threads, " must be >= 1"));
  }
  if (options.reencode) {
    if (options.reencode_dir.empty()) {
      return absl::InvalidArgumentError("re-encoding needs a folder for the copies");
    }
    std::error_code ec;
    if (fs::equivalent(options.reencode_dir, root, ec)) {
      return absl::InvalidArgumentError("the re-encode folder must differ from the video root " +
                                        root);
    }
  }
  const int64_t n = static_cast<int64_t>(listing.videos.size());
  std::vector<absl::StatusOr<ManifestVideo>> results(n, absl::UnknownError("not indexed"));
  std::vector<std::string> paths(n);
  std::atomic<int64_t> next{0};
  std::mutex progress_mutex;
  int64_t done = 0;
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      results[i] = IndexOne(listing.videos[i], root, options, &paths[i]);
      if (options.progress) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        options.progress(++done, n);
      }
    }
  };
  std::vector<std::thread> workers;
  const int threads = static_cast<int>(std::min<int64_t>(options.threads, std::max<int64_t>(n, 1)));
  for (int t = 0; t < threads; ++t) workers.emplace_back(work);
  for (std::thread& t : workers) t.join();

  IndexResult result;
  Manifest& m = result.manifest;
  m.set_dataset(listing.dataset);
  m.set_format(listing.format);
  m.set_root(options.reencode ? options.reencode_dir : root);
  for (const std::string& name : listing.class_names) m.add_class_names(name);
  if (options.reencode) {
    m.set_source_root(root);
    ManifestReencode* r = m.mutable_reencode();
    r->set_short_side(options.reencode_options.short_side);
    r->set_gop(options.reencode_options.gop);
    r->set_codec(options.reencode_options.codec);
    r->set_qscale(options.reencode_options.qscale);
  }
  for (int64_t i = 0; i < n; ++i) {
    if (results[i].ok()) {
      *m.add_video() = *std::move(results[i]);
    } else {
      result.problems.push_back(
          {paths[i], Reason(results[i].status(), paths[i]), listing.videos[i].origin});
    }
  }
  return result;
}

}  // namespace tb
