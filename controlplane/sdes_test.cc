#include "controlplane/sdes.h"

#include <gtest/gtest.h>

namespace karl {
namespace {

TEST(SdesTest, ParsesTheRfc4568Example) {
  // RFC 4568 §4: key||salt base64, lifetime 2^20, MKI 1 of 4 bytes.
  auto c = ParseSdesCrypto(
      "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tag, 1u);
  EXPECT_EQ(c->suite, dp::SrtpSuite::kAesCm128HmacSha1_80);
  ASSERT_EQ(c->key.size(), 16u);
  ASSERT_EQ(c->salt.size(), 14u);
  EXPECT_EQ(c->key[0], 0x3d);  // 'P','S' -> 0x3d 0x2d ...
  EXPECT_EQ(c->key[1], 0x2d);
  EXPECT_EQ(c->lifetime, uint64_t{1} << 20);
  EXPECT_EQ(c->mki, (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(FormatSdesCrypto(*c),
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4");
}

TEST(SdesTest, EverySuiteRoundTripsWithGeneratedKeys) {
  for (size_t i = 0; i < dp::kSrtpSuiteCount; ++i) {
    const auto suite = static_cast<dp::SrtpSuite>(i);
    auto gen = GenerateSdesCrypto(static_cast<uint32_t>(i + 1), suite);
    ASSERT_TRUE(gen.ok());
    EXPECT_EQ(gen->key.size(), dp::GetSrtpSuiteInfo(suite).master_key_len);
    EXPECT_EQ(gen->salt.size(), dp::GetSrtpSuiteInfo(suite).master_salt_len);
    const std::string text = FormatSdesCrypto(*gen);
    auto back = ParseSdesCrypto(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.status();
    EXPECT_EQ(back->suite, suite);
    EXPECT_EQ(back->key, gen->key);
    EXPECT_EQ(back->salt, gen->salt);
    EXPECT_FALSE(back->lifetime.has_value());
    EXPECT_TRUE(back->mki.empty());
  }
  auto a = GenerateSdesCrypto(1, dp::SrtpSuite::kAesCm128HmacSha1_80);
  auto b = GenerateSdesCrypto(1, dp::SrtpSuite::kAesCm128HmacSha1_80);
  EXPECT_NE(a->key, b->key) << "two generated keys are equal";
}

TEST(SdesTest, SessionParamsAndDecimalLifetimePassThrough) {
  auto c = ParseSdesCrypto(
      "7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000 "
      "UNENCRYPTED_SRTCP KDR=0");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->lifetime, 1000u);
  EXPECT_EQ(c->session_params, (std::vector<std::string>{"UNENCRYPTED_SRTCP", "KDR=0"}));
  EXPECT_EQ(FormatSdesCrypto(*c),
            "7 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1000 "
            "UNENCRYPTED_SRTCP KDR=0");
}

TEST(SdesTest, BadInputSaysWhatIsWrong) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "expected"},
      {"0 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "tag"},
      {"1 AES_CM_128_HMAC_SHA1_99 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "suite"},
      {"1 AES_CM_128_HMAC_SHA1_80 uri:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "inline"},
      {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkp!ywjNWhcYD0mXXtxaVBR", "base64"},
      {"1 AES_256_CM_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR", "needs 46"},
      {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^x", "lifetime"},
      {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0", "MKI"},
      {"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|300:1", "fit"},
      {"1 AES_CM_128_HMAC_SHA1_80 "
       "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR;inline:"
       "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
       "several"},
  };
  for (const auto& [text, needle] : cases) {
    auto c = ParseSdesCrypto(text);
    ASSERT_FALSE(c.ok()) << text;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(needle), std::string_view::npos)
        << text << " -> " << c.status().message();
  }
}

TEST(SdesTest, Base64IsStrictButPaddingIsOptional) {
  EXPECT_EQ(Base64Encode({}), "");
  EXPECT_EQ(Base64Encode({'f'}), "Zg==");
  EXPECT_EQ(Base64Encode({'f', 'o'}), "Zm8=");
  EXPECT_EQ(Base64Encode({'f', 'o', 'o'}), "Zm9v");  // RFC 4648 §10
  EXPECT_EQ(Base64Decode("Zm9vYg=="), (std::vector<uint8_t>{'f', 'o', 'o', 'b'}));
  // rtpengine sends SDES keys without '=' padding.
  EXPECT_EQ(Base64Decode("Zm8"), (std::vector<uint8_t>{'f', 'o'}));
  EXPECT_EQ(Base64Decode("Zm9vYg"), (std::vector<uint8_t>{'f', 'o', 'o', 'b'}));
  EXPECT_FALSE(Base64Decode("Zm9vY").has_value());
  EXPECT_FALSE(Base64Decode("Zm=").has_value());
  EXPECT_FALSE(Base64Decode("Z=9v").has_value());
  EXPECT_FALSE(Base64Decode("Zm9v\n").has_value());
  EXPECT_FALSE(Base64Decode("Zg==Zg==").has_value());
}

}  // namespace
}  // namespace karl
