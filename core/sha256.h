// File: core/sha256.h
//
// SHA-256 (FIPS 180-4), written here because the build links no crypto
// library. Used for the content hashes of manifests (so a manifest entry can
// be checked with the standard `sha256sum` tool), the labeled lists' digests
// and the fingerprints of pipeline stages and comparison cells.
#ifndef TIMEBALANCE_CORE_SHA256_H_
#define TIMEBALANCE_CORE_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tb {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  // Lower-case hex of the digest; the object must not be updated afterwards.
  std::string HexDigest();

 private:
  void Block(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

// HexDigest of `data`: the fingerprint of a config text, a list, a record.
std::string Sha256Hex(const std::string& data);

// HexDigest of the file's bytes; errors name the file.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_SHA256_H_
