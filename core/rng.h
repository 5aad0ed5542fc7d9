// File: core/rng.h
//
// A counter-based random number generator (Philox4x32-10, Salmon et al.,
// SC'11). A stream is a pure function of (seed, epoch, sample, view): the
// numbers a data-augmentation draws for sample 17 of epoch 3 are the same
// whatever the number of loader threads or the order they run in, and a
// resumed run reproduces them exactly.
//
//   tb::RngStream rng(seed, epoch, sample_index, view_index);
//   float scale = rng.Uniform(0.5f, 1.0f);
#ifndef TIMEBALANCE_CORE_RNG_H_
#define TIMEBALANCE_CORE_RNG_H_

#include <array>
#include <cstdint>
#include <vector>

namespace tb {

using PhiloxBlock = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// One Philox4x32 block with 10 rounds: the bijection of Random123.
PhiloxBlock Philox4x32(PhiloxBlock counter, PhiloxKey key);

class RngStream {
 public:
  // `purpose` separates independent uses with the same coordinates (e.g. the
  // sampler and the augmentation of one view).
  RngStream(uint64_t seed, uint64_t epoch, uint64_t sample, uint32_t view,
            uint32_t purpose = 0);

  uint32_t NextU32();
  uint64_t NextU64();
  // Uniform in [0, 1) with 24 random bits.
  float UniformFloat();
  // Uniform in [0, 1) with 53 random bits.
  double UniformDouble();
  float Uniform(float lo, float hi) { return lo + (hi - lo) * UniformFloat(); }
  // Uniform integer in [0, n), n > 0, without modulo bias.
  uint64_t UniformInt(uint64_t n);
  bool Bernoulli(double p) { return UniformDouble() < p; }
  // Standard normal (Box-Muller).
  double Normal();
  // A uniformly random permutation of 0..n-1 (Fisher-Yates).
  std::vector<int64_t> Permutation(int64_t n);

  // Number of 32-bit words drawn so far (the stream position).
  uint64_t position() const { return position_; }

 private:
  PhiloxKey key_;
  PhiloxBlock base_;
  uint64_t position_ = 0;
  PhiloxBlock buffer_{};
};

}  // namespace tb

#endif  // TIMEBALANCE_CORE_RNG_H_
