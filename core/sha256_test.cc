#include "core/sha256.h"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "core/testing/test_util.h"

namespace tb {
namespace {

std::string Digest(const std::string& text) {
  Sha256 h;
  h.Update(text.data(), text.size());
  return h.HexDigest();
}

TEST(Sha256, KnownAnswers) {  // FIPS 180-4 examples
  EXPECT_EQ(Digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Digest(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileMatchesSha256sumAndChunkingDoesNotMatter) {
  const std::string path = testing::TmpPath("sha_input.bin");
  std::string data;
  for (uint32_t i = 0; i < 300007; ++i) data += static_cast<char>((i * 7919u) >> 3);
  std::ofstream(path, std::ios::binary) << data;
  auto file = Sha256File(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const std::string cli = testing::RunCommand("sha256sum " + path);
  EXPECT_EQ(*file, cli.substr(0, 64));
  Sha256 pieces;
  for (size_t i = 0; i < data.size(); i += 61) {
    pieces.Update(data.data() + i, std::min<size_t>(61, data.size() - i));
  }
  EXPECT_EQ(pieces.HexDigest(), *file);
  auto missing = Sha256File(path + ".nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("sha_input.bin.nope"), std::string::npos);
}

}  // namespace
}  // namespace tb
