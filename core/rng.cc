#include "core/rng.h"

#include <cmath>
#include <utility>

#include <glog/logging.h>

namespace tb {
namespace {

constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kWeyl0 = 0x9E3779B9u;
constexpr uint32_t kWeyl1 = 0xBB67AE85u;

inline void MulHiLo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  *lo = static_cast<uint32_t>(p);
}

}  // namespace

PhiloxBlock Philox4x32(PhiloxBlock c, PhiloxKey k) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    MulHiLo(kMul0, c[0], &hi0, &lo0);
    MulHiLo(kMul1, c[2], &hi1, &lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

RngStream::RngStream(uint64_t seed, uint64_t epoch, uint64_t sample, uint32_t view,
                     uint32_t purpose) {
  key_ = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  // Word 0 counts blocks within the stream; the others name the stream. The
  // purpose and view share a word (16 bits each), epoch and sample 32 bits.
  CHECK_LT(view, 1u << 16) << "view index too large";
  CHECK_LT(purpose, 1u << 16) << "purpose too large";
  CHECK_LT(epoch, uint64_t{1} << 32);
  CHECK_LT(sample, uint64_t{1} << 32);
  base_ = {0u, (purpose << 16) | view, static_cast<uint32_t>(sample),
           static_cast<uint32_t>(epoch)};
}

uint32_t RngStream::NextU32() {
  const uint64_t word = position_ & 3;
  if (word == 0) {
    PhiloxBlock counter = base_;
    const uint64_t block = position_ >> 2;
    CHECK_LT(block, uint64_t{1} << 32) << "RNG stream exhausted";
    counter[0] = static_cast<uint32_t>(block);
    buffer_ = Philox4x32(counter, key_);
  }
  ++position_;
  return buffer_[word];
}

uint64_t RngStream::NextU64() {
  const uint64_t hi = NextU32();
  return (hi << 32) | NextU32();
}

float RngStream::UniformFloat() { return (NextU32() >> 8) * (1.0f / 16777216.0f); }

double RngStream::UniformDouble() {
  return (NextU64() >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t RngStream::UniformInt(uint64_t n) {
  CHECK_GT(n, 0u);
  // Rejection sampling: drop the top partial range.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
  uint64_t x;
  do {
    x = NextU64();
  } while (x >= limit);
  return x % n;
}

double RngStream::Normal() {
  double u1 = UniformDouble();
  while (u1 <= 0.0) u1 = UniformDouble();
  const double u2 = UniformDouble();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::vector<int64_t> RngStream::Permutation(int64_t n) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(p[i], p[UniformInt(static_cast<uint64_t>(i + 1))]);
  }
  return p;
}

}  // namespace tb
