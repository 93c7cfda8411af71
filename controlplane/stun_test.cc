#include "controlplane/stun.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"

namespace karl::stun {
namespace {

std::vector<uint8_t> Hex(std::string_view hex) {
  const std::string bytes = absl::HexStringToBytes(absl::string_view(hex.data(), hex.size()));
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// RFC 5769 test vectors (they are byte strings only: nothing is sent anywhere).
constexpr std::string_view kPassword = "VOkJxbRl1RmTxUk/WvJxBt";
// §2.1 Sample Request.
constexpr std::string_view kSampleRequest =
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e7400240004"
    "6e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56"
    "781ef2b5b2d3f249c1b571a280280004e57a3bcf";
// §2.2 Sample IPv4 Response: mapped address 192.0.2.1 port 32853, software "test vector".
constexpr std::string_view kSampleIpv4Response =
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147"
    "e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";
// §2.3 Sample IPv6 Response, up to and including its MESSAGE-INTEGRITY: mapped address
// 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
constexpr std::string_view kSampleIpv6ResponseToIntegrity =
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000140002a147"
    "0113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292c275bfe3ed41";

TEST(StunTest, ParsesTheRfc5769SampleRequestAndChecksItsHashes) {
  const std::vector<uint8_t> req = Hex(kSampleRequest);
  ASSERT_TRUE(LooksLikeStun(req));
  absl::StatusOr<Message> m = Parse(req);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, kBindingRequest);
  EXPECT_EQ(m->username, "evtj:h6vY");
  EXPECT_EQ(m->software, "STUN test client");
  EXPECT_EQ(m->priority, 0x6e0001ffu);
  EXPECT_EQ(m->ice_controlled, 0x932ff9b151263b36u);
  EXPECT_FALSE(m->ice_controlling.has_value());
  EXPECT_FALSE(m->use_candidate);
  EXPECT_TRUE(m->unknown_required.empty());
  EXPECT_TRUE(CheckIntegrity(req, *m, kPassword));
  EXPECT_TRUE(CheckFingerprint(req, *m));
  EXPECT_FALSE(CheckIntegrity(req, *m, "VOkJxbRl1RmTxUk/WvJxBu"));  // another password
}

TEST(StunTest, BuildsTheRfc5769SampleRequestByteForByte) {
  const std::vector<uint8_t> want = Hex(kSampleRequest);
  RequestSpec r;
  std::memcpy(r.transaction_id.data(), want.data() + 8, 12);
  r.software = "STUN test client";
  r.priority = 0x6e0001ff;
  r.ice_controlled = 0x932ff9b151263b36u;
  r.username = "evtj:h6vY";
  r.key = kPassword;
  r.pad = ' ';
  EXPECT_EQ(BindingRequest(r), want);
  // And what an ICE agent nominating with it sends parses back to the same fields.
  r.ice_controlled.reset();
  r.ice_controlling = 7;
  r.use_candidate = true;
  r.pad = 0;
  const std::vector<uint8_t> nominate = BindingRequest(r);
  absl::StatusOr<Message> m = Parse(nominate);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->use_candidate);
  EXPECT_EQ(m->ice_controlling, 7u);
  EXPECT_EQ(m->username, "evtj:h6vY");
  EXPECT_TRUE(CheckIntegrity(nominate, *m, kPassword));
  EXPECT_TRUE(CheckFingerprint(nominate, *m));
}

TEST(StunTest, ErrorResponsesCarryTheCodeTheUnknownAttributesAndAFingerprint) {
  std::array<uint8_t, 12> id{};
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(0xa0 + i);
  const std::vector<uint16_t> unknown = {0x0030, 0x7fff};
  const std::vector<uint8_t> e = BindingError(id, 420, "Unknown Attribute", unknown);
  // Header: error class of Binding, length, cookie, the request's transaction id.
  ASSERT_GE(e.size(), 20u);
  EXPECT_EQ(e[0], 0x01);
  EXPECT_EQ(e[1], 0x11);
  EXPECT_EQ(size_t{e[2]} << 8 | e[3], e.size() - 20);
  EXPECT_TRUE(std::equal(id.begin(), id.end(), e.begin() + 8));
  // ERROR-CODE: type 0x0009, length 4 + 17, class 4, number 20, the reason, 3 octets pad.
  EXPECT_EQ(std::vector<uint8_t>(e.begin() + 20, e.begin() + 28), Hex("0009001500000414"));
  EXPECT_EQ(std::string(e.begin() + 28, e.begin() + 45), "Unknown Attribute");
  // UNKNOWN-ATTRIBUTES: type 0x000a, length 4, the two types.
  EXPECT_EQ(std::vector<uint8_t>(e.begin() + 48, e.begin() + 56), Hex("000a000400307fff"));
  absl::StatusOr<Message> m = Parse(e);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->type, kBindingError);
  EXPECT_FALSE(m->integrity_at.has_value());
  EXPECT_TRUE(CheckFingerprint(e, *m));
  EXPECT_EQ(BindingError(id, 401, "Unauthorized")[27], 1);  // number 01 of class 4
}

TEST(StunTest, AnyChangedOctetFailsIntegrityOrFingerprint) {
  const std::vector<uint8_t> req = Hex(kSampleRequest);
  const size_t integrity_at = *Parse(req)->integrity_at;
  for (size_t i = 8; i < req.size(); ++i) {  // transaction id and every attribute octet
    std::vector<uint8_t> bad = req;
    bad[i] ^= 0x01;
    absl::StatusOr<Message> m = Parse(bad);
    if (!m.ok()) continue;  // a length or type octet: rejected outright
    if (i < integrity_at + 24) {
      EXPECT_FALSE(CheckIntegrity(bad, *m, kPassword)) << "octet " << i;
    }
    EXPECT_FALSE(CheckFingerprint(bad, *m)) << "octet " << i;
  }
}

TEST(StunTest, BuildsTheRfc5769Ipv4ResponseByteForByte) {
  const std::vector<uint8_t> req = Hex(kSampleRequest);
  const absl::StatusOr<Message> m = Parse(req);
  ASSERT_TRUE(m.ok());
  const std::vector<uint8_t> out = BindingSuccess(m->transaction_id, *IpAddress::Parse("192.0.2.1"),
                                                  32853, kPassword, "test vector", ' ');
  EXPECT_EQ(absl::BytesToHexString(std::string(out.begin(), out.end())), kSampleIpv4Response);
  // And it reads back: the response's own hashes hold.
  const absl::StatusOr<Message> back = Parse(out);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, kBindingSuccess);
  EXPECT_TRUE(CheckIntegrity(out, *back, kPassword));
  EXPECT_TRUE(CheckFingerprint(out, *back));
}

TEST(StunTest, BuildsTheRfc5769Ipv6ResponseThroughItsIntegrity) {
  const std::vector<uint8_t> req = Hex(kSampleRequest);
  const std::vector<uint8_t> out = BindingSuccess(
      Parse(req)->transaction_id, *IpAddress::Parse("2001:db8:1234:5678:11:2233:4455:6677"), 32853,
      kPassword, "test vector", ' ');
  const std::string hex = absl::BytesToHexString(std::string(out.begin(), out.end()));
  ASSERT_EQ(out.size(), 20u + 0x48);
  EXPECT_EQ(hex.substr(0, kSampleIpv6ResponseToIntegrity.size()), kSampleIpv6ResponseToIntegrity);
  const absl::StatusOr<Message> back = Parse(out);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(CheckIntegrity(out, *back, kPassword));
  EXPECT_TRUE(CheckFingerprint(out, *back));
}

TEST(StunTest, Crc32CheckValue) {
  const std::string check = "123456789";
  EXPECT_EQ(Crc32({reinterpret_cast<const uint8_t*>(check.data()), check.size()}), 0xcbf43926u);
}

TEST(StunTest, RtpAndRtcpAreNotStun) {
  std::vector<uint8_t> rtp(172, 0);
  rtp[0] = 0x80;  // RTP version 2
  EXPECT_FALSE(LooksLikeStun(rtp));
  std::vector<uint8_t> req = Hex(kSampleRequest);
  req.push_back(0);  // length field no longer matches the datagram
  EXPECT_FALSE(LooksLikeStun(req));
  req.pop_back();
  req[5] ^= 1;  // magic cookie
  EXPECT_FALSE(LooksLikeStun(req));
}

TEST(StunTest, MalformedMessagesAreErrorsThatSayWhere) {
  std::vector<uint8_t> req = Hex(kSampleRequest);
  EXPECT_FALSE(Parse(std::span<const uint8_t>(req).first(19)).ok());
  // An attribute whose length runs past the end (SOFTWARE's length made 0x0100).
  std::vector<uint8_t> bad = req;
  bad[22] = 0x01;
  bad[23] = 0x00;
  absl::StatusOr<Message> m = Parse(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("octet 20"), std::string_view::npos) << m.status();
  // PRIORITY with the wrong length.
  bad = req;
  bad[43] = 0x03;  // PRIORITY: header at octet 40, after SOFTWARE (20 + 4 + 16)
  m = Parse(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("length 3, not 4"), std::string_view::npos) << m.status();
  // An attribute after FINGERPRINT.
  bad = req;
  for (uint8_t b : {0x00, 0x25, 0x00, 0x00}) bad.push_back(b);  // USE-CANDIDATE
  bad[3] = static_cast<uint8_t>(bad[3] + 4);
  m = Parse(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("after FINGERPRINT"), std::string_view::npos) << m.status();
  // Random bytes never crash the parser.
  std::vector<uint8_t> noise(200);
  uint32_t x = 12345;
  for (int round = 0; round < 2000; ++round) {
    for (uint8_t& b : noise) b = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 24);
    noise[0] &= 0x3f;
    const size_t n = 20 + (x % 180);
    (void)Parse(std::span<const uint8_t>(noise).first(n));
  }
}

}  // namespace
}  // namespace karl::stun
