// CRC32C known answers, the TFRecord framing of a hand-computed record, and
// ParseTfRecords catching every kind of damage with the right byte offset.
#include "core/tfrecord.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/crc32c.h"
#include "gtest/gtest.h"

namespace tb {
namespace {

TEST(Crc32cTest, KnownAnswers) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);  // the CRC catalogue's check value
  EXPECT_EQ(Crc32c("abc"), 0x364B3FB7u);
  // RFC 3720 (iSCSI) appendix B.4 test vectors.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  const std::string data = "The quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    const std::string head = data.substr(0, cut), tail = data.substr(cut);
    EXPECT_EQ(Crc32cExtend(Crc32c(head), tail.data(), tail.size()), Crc32c(data)) << cut;
  }
}

TEST(Crc32cTest, Mask) {
  EXPECT_EQ(MaskCrc32c(0), 0xA282EAD8u);
  // 0x364B3FB7 rotated right by 15 = 0x7F6E6C96; + 0xA282EAD8 = 0x1'21F1576E.
  EXPECT_EQ(MaskCrc32c(0x364B3FB7u), 0x21F1576Eu);
  for (uint32_t crc : {0u, 1u, 0x80000000u, 0xFFFFFFFFu, 0xE3069283u}) {
    EXPECT_EQ(UnmaskCrc32c(MaskCrc32c(crc)), crc);
    EXPECT_NE(MaskCrc32c(crc), crc);
  }
}

std::string Bytes(std::initializer_list<unsigned> values) {
  std::string out;
  for (unsigned v : values) out.push_back(static_cast<char>(v));
  return out;
}

TEST(TfRecordTest, FramesATinyRecord) {
  std::string framed;
  AppendTfRecord("abc", &framed);
  // Length 3 as uint64 LE; CRC32C of those 8 bytes is 0x576C35E3, masked
  // 0x0E4999B0; the data; masked CRC32C("abc") = 0x21F1576E (see above).
  const std::string expected = Bytes({0x03, 0, 0, 0, 0, 0, 0, 0,  //
                                      0xB0, 0x99, 0x49, 0x0E,     //
                                      'a', 'b', 'c',              //
                                      0x6E, 0x57, 0xF1, 0x21});
  EXPECT_EQ(framed, expected);
  EXPECT_EQ(Crc32c(framed.substr(0, 8)), 0x576C35E3u);

  // An empty record: only the framing.
  std::string empty;
  AppendTfRecord("", &empty);
  EXPECT_EQ(empty.size(), kTfRecordOverhead);
  EXPECT_EQ(empty.substr(12), Bytes({0xD8, 0xEA, 0x82, 0xA2}));  // MaskCrc32c(0)
}

std::string ThreeRecords() {
  std::string bytes;
  AppendTfRecord("first", &bytes);
  AppendTfRecord("", &bytes);
  AppendTfRecord(std::string(300, 'x'), &bytes);
  return bytes;
}

TEST(TfRecordTest, ParsesWhatItFramed) {
  auto records = ParseTfRecords(ThreeRecords(), "three.tfrecord");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].data, "first");
  EXPECT_EQ((*records)[0].offset, 0u);
  EXPECT_EQ((*records)[1].data, "");
  EXPECT_EQ((*records)[1].offset, 5 + kTfRecordOverhead);
  EXPECT_EQ((*records)[2].data, std::string(300, 'x'));
  EXPECT_EQ((*records)[2].offset, 5 + 2 * kTfRecordOverhead);
  auto none = ParseTfRecords("", "empty.tfrecord");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(TfRecordTest, EveryTruncationIsDataLossAtTheCutRecord) {
  const std::string bytes = ThreeRecords();
  const size_t second = 5 + kTfRecordOverhead, third = second + kTfRecordOverhead;
  for (size_t size = 1; size < bytes.size(); ++size) {
    if (size == second || size == third) continue;  // cut between records: valid
    auto records = ParseTfRecords(bytes.substr(0, size), "cut.tfrecord");
    ASSERT_FALSE(records.ok()) << "cut at " << size;
    EXPECT_EQ(records.status().code(), absl::StatusCode::kDataLoss);
    const size_t record = size < second ? 0 : size < third ? second : third;
    const std::string message(records.status().message());
    EXPECT_NE(message.find("cut.tfrecord"), std::string::npos) << message;
    EXPECT_NE(message.find(absl::StrCat("byte offset ", record, ":")), std::string::npos)
        << "cut at " << size << ": " << message;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  }
}

TEST(TfRecordTest, CorruptedBytesAreDataLossNamingTheCrc) {
  const std::string bytes = ThreeRecords();
  const size_t third = 5 + 2 * kTfRecordOverhead;

  std::string bad_data = bytes;
  bad_data[third + 12 + 150] ^= 0x01;
  auto records = ParseTfRecords(bad_data, "flip.tfrecord");
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(
      records.status().message().find(absl::StrCat("byte offset ", third, ": data CRC mismatch")),
      std::string::npos)
      << records.status();

  std::string bad_length = bytes;
  bad_length[third + 1] ^= 0x01;  // length 300 -> 44: would fit, but its CRC fails
  records = ParseTfRecords(bad_length, "flip.tfrecord");
  ASSERT_FALSE(records.ok());
  EXPECT_NE(
      records.status().message().find(absl::StrCat("byte offset ", third, ": length CRC mismatch")),
      std::string::npos)
      << records.status();

  std::string bad_data_crc = bytes;
  bad_data_crc[5 + 12] ^= 0x80;  // first record's data CRC
  records = ParseTfRecords(bad_data_crc, "flip.tfrecord");
  ASSERT_FALSE(records.ok());
  EXPECT_NE(records.status().message().find("byte offset 0: data CRC mismatch"), std::string::npos)
      << records.status();
}

}  // namespace
}  // namespace tb
