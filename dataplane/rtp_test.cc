// Unit tests for dataplane/rtp.h. Expected values are worked out by hand from RFC 3550 /
// RFC 5761 / RFC 3551 in the comments beside them.
#include "dataplane/rtp.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace karl::dp {
namespace {

using Bytes = std::vector<uint8_t>;

void PutBe16(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

void PutBe32(Bytes& b, size_t at, uint32_t v) {
  PutBe16(b, at, static_cast<uint16_t>(v >> 16));
  PutBe16(b, at + 2, static_cast<uint16_t>(v));
}

// A `len`-octet RTP packet: first octet b0 (V/P/X/CC), second b1 (M/PT), then seq, ts,
// ssrc; the rest zero. Shorter than 12 octets: the fixed header cut at `len`.
Bytes Rtp(uint8_t b0, uint8_t b1, size_t len, uint16_t seq = 0x1234, uint32_t ts = 0xdeadbeef,
          uint32_t ssrc = 0x01020304) {
  Bytes b(len < 12 ? 12 : len, 0);
  b[0] = b0;
  b[1] = b1;
  PutBe16(b, 2, seq);
  PutBe32(b, 4, ts);
  PutBe32(b, 8, ssrc);
  b.resize(len);
  return b;
}

DropReason Parse(const Bytes& b, RtpHeaderInfo* info) {
  return ParseRtp(b.data(), static_cast<uint32_t>(b.size()), info);
}

// ---------------------------------------------------------------------------------------
// RTP header (RFC 3550 §5.1, A.1)

TEST(ParseRtp, MinimalHeaderIsValid) {
  // 0x80 = V=2 P=0 X=0 CC=0; 0x00 = M=0 PT=0; 12 octets, no payload.
  const Bytes b = Rtp(0x80, 0x00, 12);
  RtpHeaderInfo h{};
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.payload_type, 0);
  EXPECT_FALSE(h.marker);
  EXPECT_EQ(h.seq, 0x1234);
  EXPECT_EQ(h.timestamp, 0xdeadbeefu);
  EXPECT_EQ(h.ssrc, 0x01020304u);
  EXPECT_EQ(h.header_len, 12);
  EXPECT_EQ(h.payload_len, 0);
  EXPECT_EQ(h.padding_len, 0);
}

TEST(ParseRtp, MarkerAndPayloadType) {
  // 0x88 = M=1 PT=8 (PCMA); 20 ms of 8 kHz G.711 = 160 payload octets.
  const Bytes b = Rtp(0x80, 0x88, 12 + 160);
  RtpHeaderInfo h{};
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.payload_type, 8);
  EXPECT_TRUE(h.marker);
  EXPECT_EQ(h.payload_len, 160);
}

TEST(ParseRtp, ShorterThanFixedHeaderIsTruncated) {
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(Rtp(0x80, 0, 11), &h), DropReason::kRtpTruncated);
  EXPECT_EQ(ParseRtp(nullptr, 0, &h), DropReason::kRtpTruncated);
}

TEST(ParseRtp, VersionOtherThanTwoIsRejected) {
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(Rtp(0x40, 0, 20), &h), DropReason::kRtpBadVersion);  // V=1
  EXPECT_EQ(Parse(Rtp(0x00, 0, 20), &h), DropReason::kRtpBadVersion);  // V=0 (e.g. STUN)
  EXPECT_EQ(Parse(Rtp(0xc0, 0, 20), &h), DropReason::kRtpBadVersion);  // V=3
}

TEST(ParseRtp, FifteenCsrcs) {
  // CC=15: header = 12 + 15 * 4 = 72 octets.
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(Rtp(0x8f, 0, 71), &h), DropReason::kRtpTruncated);
  ASSERT_EQ(Parse(Rtp(0x8f, 0, 72), &h), DropReason::kCount);
  EXPECT_EQ(h.header_len, 72);
  EXPECT_EQ(h.payload_len, 0);
}

TEST(ParseRtp, ExtensionHeaderPastEndIsTruncated) {
  // X=1 (0x90): the 4-octet extension header needs 12 + 4 = 16 octets.
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(Rtp(0x90, 0, 15), &h), DropReason::kRtpTruncated);
}

TEST(ParseRtp, ExtensionWordsPastEndAreTruncated) {
  // X=1, extension length 2 words: header = 12 + 4 + 2 * 4 = 24 octets.
  Bytes b = Rtp(0x90, 0, 23);
  PutBe16(b, 12, 0xbede);  // RFC 8285 one-byte profile
  PutBe16(b, 14, 2);
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(b, &h), DropReason::kRtpTruncated);
  b.push_back(0);  // 24 octets
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.header_len, 24);
  EXPECT_EQ(h.payload_len, 0);
}

TEST(ParseRtp, ExtensionLengthNearMaximumDoesNotWrap) {
  // 0xffff words = 262140 octets of extension, far past any packet.
  Bytes b = Rtp(0x90, 0, 100);
  PutBe16(b, 14, 0xffff);
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(b, &h), DropReason::kRtpTruncated);
}

TEST(ParseRtp, CsrcsAndExtensionTogether) {
  // CC=2, X=1 (0x92), 1 extension word, 10 payload octets:
  // header = 12 + 2*4 + 4 + 1*4 = 28; len = 38.
  Bytes b = Rtp(0x92, 0, 38);
  PutBe16(b, 20 + 2, 1);  // extension header starts after the CSRCs at offset 20
  RtpHeaderInfo h{};
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.header_len, 28);
  EXPECT_EQ(h.payload_len, 10);
}

TEST(ParseRtp, PaddingCountZeroIsBad) {
  Bytes b = Rtp(0xa0, 0, 20);  // P=1, last octet 0
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(b, &h), DropReason::kRtpBadPadding);
}

TEST(ParseRtp, PaddingLargerThanBodyIsBad) {
  // 20 octets, header 12: at most 20 - 12 = 8 padding octets.
  Bytes b = Rtp(0xa0, 0, 20);
  b.back() = 9;
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(b, &h), DropReason::kRtpBadPadding);
  // With one CSRC (header 16) the limit is 20 - 16 = 4.
  Bytes c = Rtp(0xa1, 0, 20);
  c.back() = 5;
  EXPECT_EQ(Parse(c, &h), DropReason::kRtpBadPadding);
}

TEST(ParseRtp, ValidPadding) {
  // 12 header + 20 payload + 4 padding (last octet 4) = 36 octets.
  Bytes b = Rtp(0xa0, 0, 36);
  b.back() = 4;
  RtpHeaderInfo h{};
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.payload_len, 20);
  EXPECT_EQ(h.padding_len, 4);
  EXPECT_EQ(h.header_len + h.payload_len + h.padding_len, 36);
}

TEST(ParseRtp, PaddingOnlyPacketIsValid) {
  // 12 header + 8 padding, pad count 8 = len - header_len: payload 0 (bandwidth probe).
  Bytes b = Rtp(0xa0, 0, 20);
  b.back() = 8;
  RtpHeaderInfo h{};
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.payload_len, 0);
  EXPECT_EQ(h.padding_len, 8);
}

TEST(ParseRtp, LongerThanAUdpPayloadIsRejected) {
  Bytes b = Rtp(0x80, 0, 65536);
  RtpHeaderInfo h{};
  EXPECT_EQ(Parse(b, &h), DropReason::kRtpTruncated);
  b.pop_back();  // 65535 octets: payload 65523
  ASSERT_EQ(Parse(b, &h), DropReason::kCount);
  EXPECT_EQ(h.payload_len, 65535 - 12);
}

TEST(ParseRtp, OutputUntouchedOnError) {
  RtpHeaderInfo h{};
  h.seq = 77;
  EXPECT_EQ(Parse(Rtp(0x40, 0, 20), &h), DropReason::kRtpBadVersion);
  EXPECT_EQ(h.seq, 77);
}

// ---------------------------------------------------------------------------------------
// RTCP compound packets (RFC 3550 §6.1, §6.4, A.2)

// Appends an RTCP packet: common header (V=2, P, count, pt, length) and `body` octets of
// which the first four are `ssrc`. Length field = (4 + body) / 4 - 1.
void AppendRtcp(Bytes& b, uint8_t pt, uint8_t count, uint32_t ssrc, size_t body,
                bool padding = false) {
  Bytes pkt(4 + body, 0);
  pkt[0] = static_cast<uint8_t>(0x80 | (padding ? 0x20 : 0) | count);
  pkt[1] = pt;
  PutBe16(pkt, 2, static_cast<uint16_t>((4 + body) / 4 - 1));
  if (body >= 4) PutBe32(pkt, 4, ssrc);
  b.insert(b.end(), pkt.begin(), pkt.end());
}

DropReason Validate(const Bytes& b) {
  return ValidateRtcp(b.data(), static_cast<uint32_t>(b.size()));
}

Bytes Sr() {
  // SR without report blocks: 4 header + 4 SSRC + 20 sender info = 28 octets, length 6.
  Bytes b;
  AppendRtcp(b, 200, 0, 0xcafef00d, 24);
  return b;
}

TEST(ValidateRtcp, SrAlone) {
  const Bytes b = Sr();
  ASSERT_EQ(b.size(), 28u);
  EXPECT_EQ(b[3], 6);  // length field
  EXPECT_EQ(Validate(b), DropReason::kCount);
  EXPECT_EQ(RtcpSenderSsrc(b.data()), 0xcafef00du);
}

TEST(ValidateRtcp, SrPlusSdes) {
  // SDES, one chunk: SSRC 4 + CNAME item (type 1, len 3, "abc") 5 + null terminator 1 = 10,
  // padded to 12; packet 4 + 12 = 16 octets, length 3. Compound 28 + 16 = 44.
  Bytes b = Sr();
  AppendRtcp(b, 202, 1, 0xcafef00d, 12);
  b[28 + 8] = 1;
  b[28 + 9] = 3;
  std::memcpy(&b[28 + 10], "abc", 3);
  ASSERT_EQ(b.size(), 44u);
  EXPECT_EQ(b[28 + 3], 3);
  EXPECT_EQ(Validate(b), DropReason::kCount);
}

TEST(ValidateRtcp, RrPlusBye) {
  // RR with RC=0: 8 octets (length 1); BYE with SC=1: 8 octets (length 1). Total 16.
  Bytes b;
  AppendRtcp(b, 201, 0, 0x11111111, 4);
  AppendRtcp(b, 203, 1, 0x11111111, 4);
  ASSERT_EQ(b.size(), 16u);
  EXPECT_EQ(Validate(b), DropReason::kCount);
  EXPECT_EQ(RtcpSenderSsrc(b.data()), 0x11111111u);
}

TEST(ValidateRtcp, ByeFirstIsMalformed) {
  Bytes b;
  AppendRtcp(b, 203, 1, 0x11111111, 4);
  AppendRtcp(b, 201, 0, 0x11111111, 4);
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
}

TEST(ValidateRtcp, PaddingOnNonLastPacketIsMalformed) {
  Bytes b;
  AppendRtcp(b, 201, 0, 1, 8, /*padding=*/true);  // 12 octets: 4 of them padding
  b[11] = 4;
  AppendRtcp(b, 203, 1, 1, 4);
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
}

TEST(ValidateRtcp, PaddingOnLastPacket) {
  // RR (8) + BYE with 4 padding octets: 4 header + 4 SSRC + 4 pad = 12, length 2. Total 20.
  Bytes b;
  AppendRtcp(b, 201, 0, 1, 4);
  AppendRtcp(b, 203, 1, 1, 8, /*padding=*/true);
  ASSERT_EQ(b.size(), 20u);
  b.back() = 4;
  EXPECT_EQ(Validate(b), DropReason::kCount);
  b.back() = 0;  // pad count 0
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
  b.back() = 12;  // more than the BYE's 12 - 4 = 8 body octets
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
  b.back() = 8;  // the whole body: allowed by the count, but BYE's SSRC is then padding
  EXPECT_EQ(Validate(b), DropReason::kCount);
}

TEST(ValidateRtcp, LonePaddedRrIsAccepted) {
  // §6.4.1: padding goes on the last packet; a lone RR is both first and last.
  Bytes b;
  AppendRtcp(b, 201, 0, 1, 8, /*padding=*/true);
  b.back() = 4;
  EXPECT_EQ(Validate(b), DropReason::kCount);
}

TEST(ValidateRtcp, LengthFieldPastEndIsMalformed) {
  // RR (8) + BYE claiming length 2 (12 octets) in a 16-octet compound: 8 + 12 = 20 > 16.
  Bytes b;
  AppendRtcp(b, 201, 0, 1, 4);
  AppendRtcp(b, 203, 1, 1, 4);
  PutBe16(b, 8 + 2, 2);
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
}

TEST(ValidateRtcp, LengthFieldsShortOfEndAreMalformed) {
  // SR (28) followed by 4 octets that look like an SDES header claiming 24 octets:
  // 28 + 24 = 52 > 32.
  Bytes b = Sr();
  AppendRtcp(b, 202, 1, 0, 0);
  PutBe16(b, 28 + 2, 5);
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
}

TEST(ValidateRtcp, TrailingZerosAreABadVersion) {
  // The walk reaches a "packet" of zero octets: V=0.
  Bytes b = Sr();
  b.resize(b.size() + 4, 0);
  EXPECT_EQ(Validate(b), DropReason::kRtpBadVersion);
}

TEST(ValidateRtcp, LengthNotMultipleOfFourOrTooShort) {
  Bytes b = Sr();
  b.push_back(0);
  b.push_back(0);  // 30 octets
  EXPECT_EQ(Validate(b), DropReason::kRtcpMalformed);
  Bytes tiny;
  AppendRtcp(tiny, 201, 0, 0, 0);  // 4 octets < 8
  EXPECT_EQ(Validate(tiny), DropReason::kRtcpMalformed);
  EXPECT_EQ(ValidateRtcp(nullptr, 0), DropReason::kRtcpMalformed);
}

TEST(ValidateRtcp, BadVersionAnywhere) {
  Bytes first = Sr();
  first[0] = 0x40;  // V=1
  EXPECT_EQ(Validate(first), DropReason::kRtpBadVersion);
  Bytes second;
  AppendRtcp(second, 201, 0, 1, 4);
  AppendRtcp(second, 203, 1, 1, 4);
  second[8] = 0xc1;  // V=3 on the BYE
  EXPECT_EQ(Validate(second), DropReason::kRtpBadVersion);
}

TEST(ValidateRtcp, PacketTypeRange) {
  // After an RR: 192 (FIR) and 223 are accepted; 191 and 224 are not RTCP (RFC 5761 §4).
  for (const auto& [pt, want] : {std::pair<uint8_t, DropReason>{192, DropReason::kCount},
                                 {223, DropReason::kCount},
                                 {191, DropReason::kRtcpMalformed},
                                 {224, DropReason::kRtcpMalformed}}) {
    Bytes b;
    AppendRtcp(b, 201, 0, 1, 4);
    AppendRtcp(b, pt, 0, 1, 4);
    EXPECT_EQ(Validate(b), want) << "pt " << int{pt};
  }
}

TEST(ValidateRtcp, ReportBlocksMustFit) {
  // SR with RC=1 needs 28 + 24 = 52 octets (length 12).
  Bytes short_sr;
  AppendRtcp(short_sr, 200, 1, 1, 24);
  EXPECT_EQ(Validate(short_sr), DropReason::kRtcpMalformed);
  Bytes sr;
  AppendRtcp(sr, 200, 1, 1, 48);
  ASSERT_EQ(sr.size(), 52u);
  EXPECT_EQ(Validate(sr), DropReason::kCount);
  // An SR of 24 octets cannot hold its sender info (28 needed).
  Bytes tiny_sr;
  AppendRtcp(tiny_sr, 200, 0, 1, 20);
  EXPECT_EQ(Validate(tiny_sr), DropReason::kRtcpMalformed);
  // RR with RC=2 needs 8 + 2 * 24 = 56 octets.
  Bytes rr;
  AppendRtcp(rr, 201, 2, 1, 48);
  EXPECT_EQ(Validate(rr), DropReason::kRtcpMalformed);
  AppendRtcp(rr, 202, 0, 0, 0);  // does not help: the RR's own length is what counts
  EXPECT_EQ(Validate(rr), DropReason::kRtcpMalformed);
  Bytes rr2;
  AppendRtcp(rr2, 201, 2, 1, 52);
  EXPECT_EQ(Validate(rr2), DropReason::kCount);
}

// ---------------------------------------------------------------------------------------
// RFC 5761 §4 demultiplexing: second octet (M bit + PT) 192..223 is RTCP.

TEST(LooksLikeRtcp, Boundaries) {
  auto second_octet = [](uint8_t v) {
    const uint8_t p[12] = {0x80, v};
    return LooksLikeRtcp(p, sizeof p);
  };
  EXPECT_FALSE(second_octet(0x80 | 63));  // PT 63 + M = 191
  EXPECT_TRUE(second_octet(0x80 | 64));   // PT 64 + M = 192 (FIR)
  EXPECT_TRUE(second_octet(0x80 | 72));   // 200 = SR
  EXPECT_TRUE(second_octet(0x80 | 73));   // 201 = RR
  EXPECT_TRUE(second_octet(0x80 | 95));   // PT 95 + M = 223
  EXPECT_FALSE(second_octet(0x80 | 96));  // PT 96 + M = 224: dynamic RTP
  EXPECT_FALSE(second_octet(64));         // PT 64 without M = 64: RTP
  EXPECT_FALSE(second_octet(95));         // 95: RTP
  EXPECT_FALSE(second_octet(0));          // PCMU
  EXPECT_FALSE(second_octet(96));         // dynamic, no marker
  const uint8_t one[1] = {0x80};
  EXPECT_FALSE(LooksLikeRtcp(one, 1));
}

// ---------------------------------------------------------------------------------------
// RFC 3551 clock rates

TEST(ClockRate, StaticTable) {
  for (uint8_t pt : {0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18}) {
    EXPECT_EQ(ClockRateForPayloadType(pt), 8000u) << int{pt};
  }
  EXPECT_EQ(ClockRateForPayloadType(6), 16000u);
  EXPECT_EQ(ClockRateForPayloadType(10), 44100u);
  EXPECT_EQ(ClockRateForPayloadType(11), 44100u);
  EXPECT_EQ(ClockRateForPayloadType(14), 90000u);
  EXPECT_EQ(ClockRateForPayloadType(16), 11025u);
  EXPECT_EQ(ClockRateForPayloadType(17), 22050u);
  for (uint8_t pt : {25, 26, 28, 31, 32, 33, 34}) {
    EXPECT_EQ(ClockRateForPayloadType(pt), 90000u) << int{pt};
  }
  EXPECT_EQ(ClockRateForPayloadType(96), 8000u);
  EXPECT_EQ(ClockRateForPayloadType(127), 8000u);
  EXPECT_EQ(ClockRateForPayloadType(1), 8000u);  // reserved
  EXPECT_EQ(ClockRateForPayloadType(200), 8000u);
  static_assert(ClockRateForPayloadType(31) == 90000);
}

TEST(NsToRtpTimestampUnits, ExactAndWrapping) {
  EXPECT_EQ(NsToRtpTimestampUnits(0, 8000), 0u);
  EXPECT_EQ(NsToRtpTimestampUnits(20'000'000, 8000), 160u);  // 20 ms at 8 kHz
  EXPECT_EQ(NsToRtpTimestampUnits(1'000'000'000, 90000), 90000u);
  EXPECT_EQ(NsToRtpTimestampUnits(124'999, 8000), 0u);  // floor(0.999992)
  EXPECT_EQ(NsToRtpTimestampUnits(125'000, 8000), 1u);  // one 8 kHz tick = 125 µs
  // (10^18 + 5*10^8) ns * 90000 / 10^9 = 90000000045000; mod 2^32 = 3255324616.
  EXPECT_EQ(NsToRtpTimestampUnits(1'000'000'000'500'000'000ull, 90000), 3255324616u);
  // floor((2^64-1) * 8000 / 10^9) mod 2^32 = 3171266412 (computed with exact integers).
  EXPECT_EQ(NsToRtpTimestampUnits(UINT64_MAX, 8000), 3171266412u);
  // floor((2^64-1) * (2^32-1) / 10^9) mod 2^32 = 1780626091.
  EXPECT_EQ(NsToRtpTimestampUnits(UINT64_MAX, UINT32_MAX), 1780626091u);
}

// ---------------------------------------------------------------------------------------
// Per-stream statistics: RFC 3550 A.1 (sequence), A.3 (expected/lost), A.8 (jitter)

constexpr uint32_t kSsrc = 0x5eed5eed;

RtpHeaderInfo Pkt(uint16_t seq, uint32_t ts = 0, uint32_t ssrc = kSsrc, uint8_t pt = 0) {
  RtpHeaderInfo h{};
  h.payload_type = pt;
  h.seq = seq;
  h.timestamp = ts;
  h.ssrc = ssrc;
  h.header_len = 12;
  h.payload_len = 160;
  return h;
}

void Feed(RtpStreamStats& s, std::initializer_list<uint16_t> seqs) {
  for (uint16_t seq : seqs) s.Update(Pkt(seq), 0);
}

void FeedRange(RtpStreamStats& s, uint32_t first, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) s.Update(Pkt(static_cast<uint16_t>(first + i)), 0);
}

TEST(RtpStreamStats, ZeroBytesIsTheInitialState) {
  RtpStreamStats s;
  std::memset(&s, 0xff, sizeof s);  // as if reused memory
  std::memset(&s, 0, sizeof s);
  EXPECT_EQ(s.Expected(), 0u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.JitterMs(), 0.0);
  FeedRange(s, 10, 3);  // 10 probation, 11 validates, 12
  EXPECT_EQ(s.Received(), 2u);
  EXPECT_EQ(s.Expected(), 2u);
}

TEST(RtpStreamStats, ProbationNeedsMinSequential) {
  RtpStreamStats s{};
  Feed(s, {100});
  // New source: max_seq = 99, probation = 2; 100 == 99 + 1 -> probation 1, not counted.
  EXPECT_TRUE(s.have_ssrc);
  EXPECT_EQ(s.probation, 1);
  EXPECT_EQ(s.Received(), 0u);
  EXPECT_EQ(s.Expected(), 0u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.packets, 1u);
  EXPECT_EQ(s.not_validated, 1u);
  // Not sequential (105 != 101): probation back to MIN_SEQUENTIAL - 1 = 1, max_seq = 105.
  Feed(s, {105});
  EXPECT_EQ(s.probation, 1);
  EXPECT_EQ(s.Received(), 0u);
  // 106 == 105 + 1: probation 0 -> init_seq(106), received = 1, base_seq = 106.
  Feed(s, {106});
  EXPECT_EQ(s.probation, 0);
  EXPECT_EQ(s.Received(), 1u);
  EXPECT_EQ(s.base_seq, 106u);
  EXPECT_EQ(s.Expected(), 1u);
  EXPECT_EQ(s.packets, 3u);
  EXPECT_EQ(s.not_validated, 2u);
}

TEST(RtpStreamStats, ProbationAcrossWrap) {
  // 65535 then 0 are sequential modulo 2^16.
  RtpStreamStats s{};
  Feed(s, {65535, 0, 1});
  EXPECT_EQ(s.Received(), 2u);  // 0 validates (base 0), 1
  EXPECT_EQ(s.cycles, 0u);
  EXPECT_EQ(s.Expected(), 2u);
  EXPECT_EQ(s.Lost(), 0);
}

TEST(RtpStreamStats, InOrder) {
  RtpStreamStats s{};
  FeedRange(s, 100, 10);  // 100..109
  // 100 is in probation; 101 validates (base 101); 102..109 counted: received 9.
  // expected = 109 - 101 + 1 = 9.
  EXPECT_EQ(s.Received(), 9u);
  EXPECT_EQ(s.Expected(), 9u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.ExtendedMaxSeq(), 109u);
  EXPECT_EQ(s.packets, 10u);
  EXPECT_EQ(s.late_or_duplicate, 0u);
}

TEST(RtpStreamStats, WrapIncrementsCycles) {
  RtpStreamStats s{};
  FeedRange(s, 65530, 12);  // 65530..65535, 0..5
  // base 65531; cycles 65536 at 65535 -> 0; extended max = 65536 + 5 = 65541;
  // expected = 65541 - 65531 + 1 = 11 = received.
  EXPECT_EQ(s.cycles, 65536u);
  EXPECT_EQ(s.ExtendedMaxSeq(), 65541u);
  EXPECT_EQ(s.Expected(), 11u);
  EXPECT_EQ(s.Received(), 11u);
  EXPECT_EQ(s.Lost(), 0);
}

TEST(RtpStreamStats, SingleLoss) {
  RtpStreamStats s{};
  Feed(s, {10, 11, 12, 13, 14, /* 15 lost */ 16, 17, 18, 19, 20});
  // base 11, max 20: expected 10; received 9 (11..14, 16..20).
  EXPECT_EQ(s.Expected(), 10u);
  EXPECT_EQ(s.Received(), 9u);
  EXPECT_EQ(s.Lost(), 1);
}

TEST(RtpStreamStats, ReorderWithinMisorder) {
  RtpStreamStats s{};
  Feed(s, {10, 11, 12, 14, 13, 15});
  // 13 arrives after 14: udelta = 13 - 14 = 65535 > 65536 - 100 -> reordered, counted.
  // expected = 15 - 11 + 1 = 5 = received.
  EXPECT_EQ(s.Received(), 5u);
  EXPECT_EQ(s.Expected(), 5u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.late_or_duplicate, 1u);
  EXPECT_EQ(s.max_seq, 15);
}

TEST(RtpStreamStats, Duplicate) {
  RtpStreamStats s{};
  Feed(s, {10, 11, 12, 12, 13});
  // A.1 counts the duplicate: received 4 (11, 12, 12, 13), expected 13 - 11 + 1 = 3,
  // lost = 3 - 4 = -1 (A.3: negative when duplicates arrive).
  EXPECT_EQ(s.Received(), 4u);
  EXPECT_EQ(s.Expected(), 3u);
  EXPECT_EQ(s.Lost(), -1);
  EXPECT_EQ(s.late_or_duplicate, 1u);
}

TEST(RtpStreamStats, DropoutAndMisorderBoundaries) {
  // max_seq 1000 after 999, 1000. udelta 2999 (seq 3999) is a permissible gap: lost 2998.
  RtpStreamStats gap{};
  Feed(gap, {999, 1000, 3999});
  EXPECT_EQ(gap.Received(), 2u);
  EXPECT_EQ(gap.Expected(), 3000u);  // 3999 - 1000 + 1
  EXPECT_EQ(gap.Lost(), 2998);
  // udelta 3000 (seq 4000) is a very large jump: not counted.
  RtpStreamStats jump{};
  Feed(jump, {999, 1000, 4000});
  EXPECT_EQ(jump.Received(), 1u);
  EXPECT_EQ(jump.not_validated, 2u);  // 999 (probation) and 4000
  EXPECT_EQ(jump.bad_seq, 4001u);
  // 99 behind max (seq 901, udelta 65437 > 65436) is reordered: counted.
  RtpStreamStats late{};
  Feed(late, {999, 1000, 901});
  EXPECT_EQ(late.Received(), 2u);
  EXPECT_EQ(late.late_or_duplicate, 1u);
  // 100 behind (seq 900, udelta 65436 <= 65436) is a large jump: not counted.
  RtpStreamStats far{};
  Feed(far, {999, 1000, 900});
  EXPECT_EQ(far.Received(), 1u);
  EXPECT_EQ(far.bad_seq, 901u);
}

TEST(RtpStreamStats, LargeJumpThenTwoSequentialRestarts) {
  RtpStreamStats s{};
  Feed(s, {10, 11, 12});
  ASSERT_EQ(s.Received(), 2u);
  // 5000: udelta 4988 >= MAX_DROPOUT -> bad_seq = 5001, not counted.
  Feed(s, {5000});
  EXPECT_EQ(s.Received(), 2u);
  EXPECT_EQ(s.bad_seq, 5001u);
  EXPECT_EQ(s.seq_restarts, 0u);
  // 5001 == bad_seq -> init_seq(5001): base 5001, received restarts at 1.
  Feed(s, {5001});
  EXPECT_EQ(s.seq_restarts, 1u);
  EXPECT_EQ(s.base_seq, 5001u);
  EXPECT_EQ(s.Received(), 1u);
  Feed(s, {5002});
  EXPECT_EQ(s.Received(), 2u);
  EXPECT_EQ(s.Expected(), 2u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.packets, 6u);
  EXPECT_EQ(s.not_validated, 2u);  // 10 and 5000
}

TEST(RtpStreamStats, StrayJumpIsIgnored) {
  RtpStreamStats s{};
  Feed(s, {10, 11, 12, 5000, 13});
  // 5000 is not followed by 5001: the stream goes on at 13 with nothing lost.
  EXPECT_EQ(s.Received(), 3u);
  EXPECT_EQ(s.Expected(), 3u);  // 13 - 11 + 1
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.seq_restarts, 0u);
}

TEST(RtpStreamStats, ExpectedAndLostAcrossWrap) {
  // Sent 65500..65535 (36) and 0..99 (100); lost 65510, 0 and 50.
  RtpStreamStats s{};
  for (uint32_t i = 65500; i < 65536 + 100; ++i) {
    const uint16_t seq = static_cast<uint16_t>(i);
    if (seq == 65510 || seq == 0 || seq == 50) continue;
    s.Update(Pkt(seq), 0);
  }
  // base 65501 (65500 is probation); extended max = 65536 + 99 = 65635;
  // expected = 65635 - 65501 + 1 = 135; received = 135 - 3 = 132.
  EXPECT_EQ(s.ExtendedMaxSeq(), 65635u);
  EXPECT_EQ(s.Expected(), 135u);
  EXPECT_EQ(s.Received(), 132u);
  EXPECT_EQ(s.Lost(), 3);
}

TEST(RtpStreamStats, SsrcChangeIsCountedAndRestartsSequence) {
  RtpStreamStats s{};
  FeedRange(s, 10, 5);  // received 4
  ASSERT_EQ(s.Received(), 4u);
  ASSERT_EQ(s.ssrc_changes, 0u);
  constexpr uint32_t kOther = 0x0badcafe;
  s.Update(Pkt(7000, 0, kOther), 0);
  EXPECT_EQ(s.ssrc, kOther);
  EXPECT_EQ(s.ssrc_changes, 1u);
  EXPECT_EQ(s.probation, 1);  // a new source starts in probation again
  EXPECT_EQ(s.Received(), 0u);
  EXPECT_EQ(s.Expected(), 0u);
  s.Update(Pkt(7001, 0, kOther), 0);
  s.Update(Pkt(7002, 0, kOther), 0);
  EXPECT_EQ(s.base_seq, 7001u);
  EXPECT_EQ(s.Received(), 2u);
  EXPECT_EQ(s.Expected(), 2u);
  EXPECT_EQ(s.Lost(), 0);
  EXPECT_EQ(s.packets, 8u);
}

// 8 kHz (PT 0), 20 ms packets: timestamp step 160, arrival step 20 000 000 ns. The base
// arrival is not a whole second so both halves of NsToRtpTimestampUnits are exercised:
// 123 456 789 ns * 8000 / 1e9 = 987.65 -> 987, and every +20 ms adds exactly 160.
constexpr uint64_t kBaseNs = 123'456'789;
constexpr uint64_t kMs = 1'000'000;

TEST(RtpStreamStats, JitterZeroForConstantSpacing) {
  RtpStreamStats s{};
  for (uint32_t i = 0; i < 50; ++i) {
    s.Update(Pkt(static_cast<uint16_t>(1000 + i), 5000 + 160 * i), kBaseNs + 20 * kMs * i);
  }
  EXPECT_EQ(s.jitter, 0.0);
  EXPECT_EQ(s.JitterMs(), 0.0);
}

TEST(RtpStreamStats, JitterHandComputed) {
  // Packet i: seq 1000 + i, timestamp 160 i, sent every 20 ms; packet 3 arrives 10 ms
  // late (80 timestamp units at 8 kHz). D(i-1, i) = transit_i - transit_{i-1}:
  //   p0: probation, not counted          J = 0
  //   p1: validates, first transit        J = 0
  //   p2: D = 0                           J = 0
  //   p3: D = +80                         J = 0 + (80 - 0) / 16     = 5        (0.625 ms)
  //   p4: D = -80 (back on time), |D|=80  J = 5 + (80 - 5) / 16     = 9.6875   (1.2109375 ms)
  //   p5: D = 0                           J = 9.6875 * 15/16        = 9.08203125
  //   p6: D = 0                           J = 9.08203125 * 15/16    = 8.514404296875
  RtpStreamStats s{};
  auto feed = [&](uint32_t i, uint64_t late_ns) {
    s.Update(Pkt(static_cast<uint16_t>(1000 + i), 160 * i), kBaseNs + 20 * kMs * i + late_ns);
  };
  feed(0, 0);
  feed(1, 0);
  feed(2, 0);
  EXPECT_EQ(s.jitter, 0.0);
  feed(3, 10 * kMs);
  EXPECT_DOUBLE_EQ(s.jitter, 5.0);
  EXPECT_DOUBLE_EQ(s.JitterMs(), 0.625);  // 5 / 8000 s
  EXPECT_EQ(s.JitterTimestampUnits(), 5u);
  feed(4, 0);
  EXPECT_DOUBLE_EQ(s.jitter, 9.6875);
  EXPECT_DOUBLE_EQ(s.JitterMs(), 1.2109375);
  EXPECT_EQ(s.JitterTimestampUnits(), 9u);
  feed(5, 0);
  EXPECT_DOUBLE_EQ(s.jitter, 9.08203125);
  feed(6, 0);
  EXPECT_DOUBLE_EQ(s.jitter, 8.514404296875);
  EXPECT_EQ(s.Lost(), 0);
}

TEST(RtpStreamStats, JitterAcrossTimestampWrap) {
  // Timestamps wrap 2^32 in the middle; the 10 ms late packet still gives J = 5.
  RtpStreamStats s{};
  const uint32_t ts0 = 0xffffffffu - 300;
  for (uint32_t i = 0; i < 5; ++i) {
    const uint64_t late = i == 4 ? 10 * kMs : 0;
    s.Update(Pkt(static_cast<uint16_t>(i), ts0 + 160 * i), kBaseNs + 20 * kMs * i + late);
  }
  EXPECT_DOUBLE_EQ(s.jitter, 5.0);
}

TEST(RtpStreamStats, JitterUsesConfiguredClockRate) {
  // Video at 90 kHz on dynamic PT 96, 25 frames/s: 40 ms = 3600 units. One packet 1 ms
  // late = 90 units: J = 90 / 16 = 5.625 units = 5.625 / 90 ms = 0.0625 ms.
  RtpStreamStats s{};
  s.clock_rate = 90000;
  for (uint32_t i = 0; i < 4; ++i) {
    const uint64_t late = i == 3 ? 1 * kMs : 0;
    s.Update(Pkt(static_cast<uint16_t>(i), 3600 * i, kSsrc, 96), kBaseNs + 40 * kMs * i + late);
  }
  EXPECT_DOUBLE_EQ(s.jitter, 5.625);
  EXPECT_DOUBLE_EQ(s.JitterMs(), 0.0625);
}

TEST(RtpStreamStats, JitterRateFromStaticPayloadType) {
  // PT 34 (H263) is 90 kHz in RFC 3551: same figures as above without configuration.
  RtpStreamStats s{};
  for (uint32_t i = 0; i < 4; ++i) {
    const uint64_t late = i == 3 ? 1 * kMs : 0;
    s.Update(Pkt(static_cast<uint16_t>(i), 3600 * i, kSsrc, 34), kBaseNs + 40 * kMs * i + late);
  }
  EXPECT_DOUBLE_EQ(s.jitter, 5.625);
}

TEST(RtpStreamStats, SsrcChangeResetsJitter) {
  RtpStreamStats s{};
  for (uint32_t i = 0; i < 4; ++i) {
    s.Update(Pkt(static_cast<uint16_t>(i), 160 * i),
             kBaseNs + 20 * kMs * i + (i == 3 ? 10 * kMs : 0));
  }
  ASSERT_DOUBLE_EQ(s.jitter, 5.0);
  s.Update(Pkt(500, 777, 0x0badcafe), kBaseNs + 100 * kMs);
  EXPECT_EQ(s.jitter, 0.0);
  EXPECT_EQ(s.ssrc_changes, 1u);
}

TEST(RtpStreamStats, RestartDoesNotTakeDAcrossTheJump) {
  // After a large jump and restart the timestamps jump too; the first D is taken between
  // the two packets after the restart, not across it.
  RtpStreamStats s{};
  for (uint32_t i = 0; i < 3; ++i) {
    s.Update(Pkt(static_cast<uint16_t>(i), 160 * i), kBaseNs + 20 * kMs * i);
  }
  s.Update(Pkt(40000, 999999), kBaseNs + 60 * kMs);         // bad_seq = 40001
  s.Update(Pkt(40001, 999999 + 160), kBaseNs + 80 * kMs);   // restart, new transit
  s.Update(Pkt(40002, 999999 + 320), kBaseNs + 100 * kMs);  // D = 0
  EXPECT_EQ(s.seq_restarts, 1u);
  EXPECT_EQ(s.jitter, 0.0);
}

}  // namespace
}  // namespace karl::dp
