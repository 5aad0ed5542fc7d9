// File: core/crc32c.h
//
// CRC32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and
// final xor 0xFFFFFFFF), as used by TFRecord framing (core/tfrecord.h), and
// the "masked" form TFRecord stores, which keeps a CRC of data that itself
// contains CRCs from being degenerate. Table-driven, one byte per step:
// fast enough for event files (a few hundred bytes per training step).
#ifndef TIMEBALANCE_CORE_CRC32C_H_
#define TIMEBALANCE_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tb {

// The CRC32C of `data` continued from `crc`, the CRC32C of the bytes before
// it (0 for none): Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// TFRecord's mask: rotate right by 15 bits, then add 0xa282ead8 (mod 2^32).
uint32_t MaskCrc32c(uint32_t crc);
uint32_t UnmaskCrc32c(uint32_t masked);

}  // namespace tb

#endif  // TIMEBALANCE_CORE_CRC32C_H_
