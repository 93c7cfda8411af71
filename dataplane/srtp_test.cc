// Tests of the SRTP/SRTCP engine: RFC 3711 Appendix B, RFC 6188 §7.2 and RFC 7714 §16
// known answers, packet-for-packet differential runs against libsrtp2 for every suite in
// both directions (ROC wrap, gaps, reordering, RTCP, MKI), replay window edges,
// authentication failures, short packets and key lifetime.
#include "dataplane/srtp.h"

#include <gtest/gtest.h>
#include <openssl/crypto.h>
#include <srtp2/srtp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tests/common/libsrtp_oracle.h"

// Every heap allocation OpenSSL makes moves this counter; the hot-path test checks that it
// stands still across packets. (Karl's own per-packet code has no new/malloc at all.)
namespace {
std::atomic<uint64_t> g_allocations{0};

void* CountingMalloc(size_t n, const char*, int) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n);
}
void* CountingRealloc(void* p, size_t n, const char*, int) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::realloc(p, n);
}
void CountingFree(void* p, const char*, int) { std::free(p); }
// Before main, so before OpenSSL's first allocation.
const bool kOpenSslCounting =
    CRYPTO_set_mem_functions(CountingMalloc, CountingRealloc, CountingFree) == 1;
}  // namespace

namespace karl::dp {

// Readable gtest output for verdicts and suites (found by ADL).
void PrintTo(SrtpStatus s, std::ostream* os) {
  constexpr const char* kNames[] = {"kOk",       "kAuthFailed", "kReplay",
                                    "kTooShort", "kNoRoom",     "kKeyExhausted"};
  *os << kNames[static_cast<size_t>(s)];
}
void PrintTo(SrtpSuite s, std::ostream* os) { *os << GetSrtpSuiteInfo(s).name; }

namespace {

using Bytes = std::vector<uint8_t>;

Bytes Hex(std::string_view s) {
  Bytes out;
  auto nib = [](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    return static_cast<uint8_t>(c - 'A' + 10);
  };
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(nib(s[i]) << 4 | nib(s[i + 1])));
  }
  return out;
}

Bytes Span(const uint8_t* p, size_t n) { return Bytes(p, p + n); }

class LibSrtpEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { ASSERT_EQ(srtp_init(), srtp_err_status_ok); }
  void TearDown() override { srtp_shutdown(); }
};
[[maybe_unused]] ::testing::Environment* const kLibSrtpEnv =
    ::testing::AddGlobalTestEnvironment(new LibSrtpEnvironment);

constexpr SrtpSuite kAllSuites[] = {
    SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAesCm128HmacSha1_32,
    SrtpSuite::kAes256CmHmacSha1_80, SrtpSuite::kAes256CmHmacSha1_32,
    SrtpSuite::kAeadAes128Gcm,       SrtpSuite::kAeadAes256Gcm,
};

using test::LibSrtp;  // libsrtp2 as the oracle (tests/common/libsrtp_oracle.h)

struct Keys {
  Bytes key;
  Bytes salt;
  Bytes KeySalt() const {
    Bytes ks = key;
    ks.insert(ks.end(), salt.begin(), salt.end());
    return ks;
  }
};

Keys RandomKeys(SrtpSuite suite, std::mt19937& rng) {
  const SrtpSuiteInfo& info = GetSrtpSuiteInfo(suite);
  Keys k;
  for (int i = 0; i < info.master_key_len; ++i) k.key.push_back(static_cast<uint8_t>(rng()));
  for (int i = 0; i < info.master_salt_len; ++i) k.salt.push_back(static_cast<uint8_t>(rng()));
  return k;
}

std::unique_ptr<SrtpContext> MakeKarl(SrtpSuite suite, const Keys& k, const Bytes& mki = {},
                                      uint32_t window = 128) {
  SrtpConfig c;
  c.suite = suite;
  c.master_key = k.key;
  c.master_salt = k.salt;
  c.mki = mki;
  c.replay_window = window;
  return SrtpContext::Create(c);
}

// An RTP packet (RFC 3550 §5.1) with `cc` CSRCs, an optional extension of `ext_words`
// words, a random payload of `payload` octets and optional padding.
Bytes MakeRtp(std::mt19937& rng, uint16_t seq, uint32_t ssrc, size_t payload, int cc = 0,
              int ext_words = -1, bool padding = false) {
  Bytes p;
  const bool pad = padding && payload > 0;
  p.push_back(static_cast<uint8_t>(0x80 | (pad ? 0x20 : 0) | (ext_words >= 0 ? 0x10 : 0) | cc));
  p.push_back(static_cast<uint8_t>(rng() & 0xff));  // M + PT
  p.push_back(static_cast<uint8_t>(seq >> 8));
  p.push_back(static_cast<uint8_t>(seq));
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(rng()));
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(ssrc >> (24 - 8 * i)));
  for (int i = 0; i < 4 * cc; ++i) p.push_back(static_cast<uint8_t>(rng()));
  if (ext_words >= 0) {
    p.push_back(0xbe);
    p.push_back(0xde);
    p.push_back(static_cast<uint8_t>(ext_words >> 8));
    p.push_back(static_cast<uint8_t>(ext_words));
    for (int i = 0; i < 4 * ext_words; ++i) p.push_back(static_cast<uint8_t>(rng()));
  }
  for (size_t i = 0; i < payload; ++i) p.push_back(static_cast<uint8_t>(rng()));
  if (pad) p.back() = static_cast<uint8_t>(1 + rng() % std::min<size_t>(payload, 255));
  return p;
}

Bytes MakeRandomRtp(std::mt19937& rng, uint16_t seq, uint32_t ssrc, size_t max_payload) {
  const int cc = rng() % 3 == 0 ? static_cast<int>(rng() % 16) : 0;
  const int ext = rng() % 3 == 0 ? static_cast<int>(rng() % 8) : -1;
  return MakeRtp(rng, seq, ssrc, rng() % (max_payload + 1), cc, ext, rng() % 5 == 0);
}

// A compound RTCP packet: SR (RFC 3550 §6.4.1, no report blocks) + SDES-like chunk.
Bytes MakeRtcp(std::mt19937& rng, uint32_t ssrc) {
  Bytes p = {0x80, 200, 0, 6};
  for (int i = 0; i < 4; ++i) p.push_back(static_cast<uint8_t>(ssrc >> (24 - 8 * i)));
  for (int i = 0; i < 20; ++i) p.push_back(static_cast<uint8_t>(rng()));
  const uint16_t words = static_cast<uint16_t>(1 + rng() % 40);
  p.push_back(0x81);
  p.push_back(202);
  p.push_back(static_cast<uint8_t>(words >> 8));
  p.push_back(static_cast<uint8_t>(words));
  for (int i = 0; i < 4 * words; ++i) p.push_back(static_cast<uint8_t>(rng()));
  return p;
}

SrtpStatus KarlProtect(SrtpContext& c, const Bytes& plain, Bytes* out, bool rtcp = false) {
  *out = plain;
  out->resize(plain.size() + kSrtpMaxTrailerLen);
  uint32_t len = static_cast<uint32_t>(plain.size());
  const SrtpStatus st = rtcp ? c.ProtectRtcp(out->data(), &len, static_cast<uint32_t>(out->size()))
                             : c.Protect(out->data(), &len, static_cast<uint32_t>(out->size()));
  out->resize(len);
  return st;
}

SrtpStatus KarlUnprotect(SrtpContext& c, Bytes* pkt, bool rtcp = false) {
  uint32_t len = static_cast<uint32_t>(pkt->size());
  const SrtpStatus st = rtcp ? c.UnprotectRtcp(pkt->data(), &len) : c.Unprotect(pkt->data(), &len);
  if (st == SrtpStatus::kOk) pkt->resize(len);
  return st;
}

// ---- Known answers ---------------------------------------------------------------------------

TEST(SrtpVectors, Rfc3711B2AesCmKeystream) {
  SrtpSessionKeys k{};
  const Bytes key = Hex("2B7E151628AED2A6ABF7158809CF4F3C");
  const Bytes salt = Hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD");
  std::memcpy(k.enc_key, key.data(), 16);
  std::memcpy(k.salt, salt.data(), 14);
  auto ctx = SrtpContext::CreateFromSessionKeys(SrtpSuite::kAesCm128HmacSha1_80, k, k);
  ASSERT_NE(ctx, nullptr);
  // ROC 0, SEQ 0, SSRC 0: the payload of zeros comes out as the keystream segment of
  // 1,044,512 octets (65,282 blocks).
  const uint32_t segment = 1044512;
  Bytes pkt(12 + segment + kSrtpMaxTrailerLen, 0);
  pkt[0] = 0x80;
  uint32_t len = 12 + segment;
  ASSERT_EQ(ctx->Protect(pkt.data(), &len, static_cast<uint32_t>(pkt.size())), SrtpStatus::kOk);
  const uint8_t* ks = pkt.data() + 12;
  EXPECT_EQ(Span(ks, 48), Hex("E03EAD0935C95E80E166B16DD92B4EB4"
                              "D23513162B02D0F72A43A2FE4A5F97AB"
                              "41E95B3BB0A2E8DD477901E4FCA894C0"));
  EXPECT_EQ(Span(ks + 0xfeff * 16, 48), Hex("EC8CDF7398607CB0F2D21675EA9EA1E4"
                                            "362B7C3C6773516318A077D7FC5073AE"
                                            "6A2CC3787889374FBEB4C81B17BA6C44"));
}

TEST(SrtpVectors, Rfc3711B3KeyDerivation) {
  const Keys k{Hex("E1F97A0D3E018BE0D64FA32C06DE4139"), Hex("0EC675AD498AFEEBB6960B3AABE6")};
  auto ctx = MakeKarl(SrtpSuite::kAesCm128HmacSha1_80, k);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(Span(ctx->rtp_keys().enc_key, 16), Hex("C61E7A93744F39EE10734AFE3FF7A087"));
  EXPECT_EQ(Span(ctx->rtp_keys().salt, 14), Hex("30CBBC08863D8C85D49DB34A9AE1"));
  EXPECT_EQ(Span(ctx->rtp_keys().auth_key, 20), Hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
  // The PRF keystream continues past 20 octets (B.3 lists 94 octets of auth key output).
  uint8_t salt[14];
  std::memcpy(salt, k.salt.data(), 14);
  Bytes longer(32);
  ASSERT_TRUE(SrtpKdf(k.key, salt, 0x01, longer));
  EXPECT_EQ(longer, Hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE"));
}

TEST(SrtpVectors, Rfc6188Section72Aes256KeyDerivation) {
  const Keys k{Hex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6"),
               Hex("3b04803de51ee7c96423ab5b78d2")};
  auto ctx = MakeKarl(SrtpSuite::kAes256CmHmacSha1_80, k);
  ASSERT_NE(ctx, nullptr);
  EXPECT_EQ(Span(ctx->rtp_keys().enc_key, 32),
            Hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4"));
  EXPECT_EQ(Span(ctx->rtp_keys().salt, 14), Hex("fa31791685ca444a9e07c6c64e93"));
  EXPECT_EQ(Span(ctx->rtp_keys().auth_key, 20), Hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05"));
}

// RFC 7714 §16.1 / §17.1: AEAD_AES_128_GCM with the session key and salt given directly.
class Rfc7714 : public ::testing::Test {
 protected:
  void SetUp() override {
    SrtpSessionKeys k{};
    const Bytes key = Hex("000102030405060708090a0b0c0d0e0f");
    const Bytes salt = Hex("517569642070726f2071756f");
    std::memcpy(k.enc_key, key.data(), 16);
    std::memcpy(k.salt, salt.data(), 12);
    ctx_ = SrtpContext::CreateFromSessionKeys(SrtpSuite::kAeadAes128Gcm, k, k);
    ASSERT_NE(ctx_, nullptr);
  }
  std::unique_ptr<SrtpContext> ctx_;
  const Bytes rtp_ =
      Hex("8040f17b8041f8d35501a0b247616c6c696120657374206f6d6e697320646976697361"
          "20696e207061727465732074726573");
  const Bytes srtp_ =
      Hex("8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f"
          "42a5f47a51c7d19b36de3adf8833899d7f27beb16a9152cf765ee4390cce");
};

TEST_F(Rfc7714, SrtpPacket) {
  Bytes out;
  ASSERT_EQ(KarlProtect(*ctx_, rtp_, &out), SrtpStatus::kOk);
  EXPECT_EQ(out, srtp_);
  ASSERT_EQ(KarlUnprotect(*ctx_, &out), SrtpStatus::kOk);
  EXPECT_EQ(out, rtp_);
}

TEST_F(Rfc7714, SrtcpPacket) {
  const Bytes rtcp =
      Hex("81c8000d4d6172734e5450314e545032525450200000042a0000e9304c756e61deadbeef"
          "deadbeefdeadbeefdeadbeefdeadbeef");
  const Bytes srtcp =
      Hex("81c8000d4d61727363e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1"
          "730d6fda4ce09b4686303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4");
  ctx_->SetNextSrtcpIndex(0x5d4);
  Bytes out;
  ASSERT_EQ(KarlProtect(*ctx_, rtcp, &out, true), SrtpStatus::kOk);
  EXPECT_EQ(out, srtcp);
  ASSERT_EQ(KarlUnprotect(*ctx_, &out, true), SrtpStatus::kOk);
  EXPECT_EQ(out, rtcp);
  // §17.1 authenticated-only SRTCP (E = 0): tag over the whole packet, nothing encrypted.
  Bytes tagged = rtcp;
  const Bytes trailer = Hex("841dd9683dd78ec92ae58790125f62b3000005d4");
  tagged.insert(tagged.end(), trailer.begin(), trailer.end());
  auto rx = SrtpContext::CreateFromSessionKeys(SrtpSuite::kAeadAes128Gcm, ctx_->rtcp_keys(),
                                               ctx_->rtcp_keys());
  ASSERT_EQ(KarlUnprotect(*rx, &tagged, true), SrtpStatus::kOk);
  EXPECT_EQ(tagged, rtcp);
}

// ---- Differential against libsrtp2 ----------------------------------------------------------

class SrtpDiff : public ::testing::TestWithParam<SrtpSuite> {};

// Each plaintext protected by Karl and by libsrtp2 (same bytes), unprotected by the
// other side's receiver.
void RunInOrder(SrtpSuite suite, const Bytes& mki, uint16_t first_seq, int count,
                size_t max_payload, uint32_t seed) {
  std::mt19937 rng(seed);
  const Keys k = RandomKeys(suite, rng);
  auto k_tx = MakeKarl(suite, k, mki);
  auto k_rx = MakeKarl(suite, k, mki);
  ASSERT_NE(k_tx, nullptr);
  ASSERT_NE(k_rx, nullptr);
  LibSrtp l_tx(suite, k.KeySalt(), true, mki);
  LibSrtp l_rx(suite, k.KeySalt(), false, mki);
  ASSERT_EQ(l_tx.status(), srtp_err_status_ok);
  ASSERT_EQ(l_rx.status(), srtp_err_status_ok);
  const uint32_t ssrc = static_cast<uint32_t>(rng());
  uint16_t seq = first_seq;
  for (int i = 0; i < count; ++i) {
    const Bytes plain = MakeRandomRtp(rng, seq, ssrc, max_payload);
    Bytes karl, lib = plain;
    ASSERT_EQ(KarlProtect(*k_tx, plain, &karl), SrtpStatus::kOk) << i;
    ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok) << i;
    ASSERT_EQ(karl, lib) << "packet " << i << " seq " << seq;
    ASSERT_EQ(l_rx.Unprotect(&karl), srtp_err_status_ok) << i;
    ASSERT_EQ(karl, plain) << i;
    ASSERT_EQ(KarlUnprotect(*k_rx, &lib), SrtpStatus::kOk) << i;
    ASSERT_EQ(lib, plain) << i;
    seq = static_cast<uint16_t>(seq + 1 + (rng() % 8 == 0 ? rng() % 20 : 0));  // gaps
  }
}

TEST_P(SrtpDiff, RtpRandomPacketsWithGaps) { RunInOrder(GetParam(), {}, 1000, 500, 1200, 1); }

TEST_P(SrtpDiff, RtpWithMki) { RunInOrder(GetParam(), {0xde, 0xad, 0xbe, 0xef}, 7, 100, 300, 2); }

// The portable SHA-1 as well as the SHA-NI one (when the CPU has it) against libsrtp2.
TEST_P(SrtpDiff, RtpPortableSha1) {
  const bool had_sha_ni = SrtpUseShaNi(false);
  RunInOrder(GetParam(), {}, 40000, 200, 1200, 13);
  SrtpUseShaNi(had_sha_ni);
}

TEST_P(SrtpDiff, RtpAcrossRocWrap) {
  const SrtpSuite suite = GetParam();
  std::mt19937 rng(3);
  const Keys k = RandomKeys(suite, rng);
  auto k_tx = MakeKarl(suite, k);
  auto k_rx = MakeKarl(suite, k);
  LibSrtp l_tx(suite, k.KeySalt(), true);
  LibSrtp l_rx(suite, k.KeySalt(), false);
  ASSERT_EQ(l_tx.status(), srtp_err_status_ok);
  const uint32_t ssrc = 0x12345678;
  uint16_t seq = 65500;
  for (int i = 0; i < 66000; ++i, ++seq) {
    const Bytes plain = MakeRtp(rng, seq, ssrc, rng() % 64);
    Bytes karl, lib = plain;
    ASSERT_EQ(KarlProtect(*k_tx, plain, &karl), SrtpStatus::kOk) << i;
    ASSERT_EQ(l_tx.Protect(&lib), srtp_err_status_ok) << i;
    ASSERT_EQ(karl, lib) << "packet " << i;
    ASSERT_EQ(l_rx.Unprotect(&karl), srtp_err_status_ok) << i;
    ASSERT_EQ(KarlUnprotect(*k_rx, &lib), SrtpStatus::kOk) << i;
    ASSERT_EQ(lib, plain) << i;
  }
  // 65500 + 66000 - 1 = 131499 = ROC 2, SEQ 0x01AB.
  EXPECT_EQ(k_tx->highest_tx_index(), 131499u);
  EXPECT_EQ(k_rx->highest_rx_index(), 131499u);
}

// Reordered (shuffled in blocks of 32) and gapped streams across a SEQ wrap: each
// receiver accepts every packet of the other's sender once, and rejects a repeat.
TEST_P(SrtpDiff, RtpReorderedAcrossWrap) {
  const SrtpSuite suite = GetParam();
  std::mt19937 rng(4);
  const Keys k = RandomKeys(suite, rng);
  auto k_tx = MakeKarl(suite, k);
  auto k_rx = MakeKarl(suite, k);
  LibSrtp l_tx(suite, k.KeySalt(), true);
  LibSrtp l_rx(suite, k.KeySalt(), false);
  const uint32_t ssrc = 0xcafebabe;
  std::vector<Bytes> plain, from_karl, from_lib;
  uint16_t seq = 65000;
  for (int i = 0; i < 1024; ++i) {
    plain.push_back(MakeRandomRtp(rng, seq, ssrc, 300));
    Bytes a, b = plain.back();
    ASSERT_EQ(KarlProtect(*k_tx, plain.back(), &a), SrtpStatus::kOk);
    ASSERT_EQ(l_tx.Protect(&b), srtp_err_status_ok);
    from_karl.push_back(a);
    from_lib.push_back(b);
    seq = static_cast<uint16_t>(seq + 1 + (rng() % 10 == 0 ? 1 : 0));
  }
  std::vector<size_t> order(plain.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = 0; i < order.size(); i += 32) {
    std::shuffle(order.begin() + static_cast<long>(i),
                 order.begin() + static_cast<long>(std::min(i + 32, order.size())), rng);
  }
  for (size_t i : order) {
    if (i % 13 == 5) continue;  // lost packets
    Bytes a = from_karl[i];
    ASSERT_EQ(l_rx.Unprotect(&a), srtp_err_status_ok) << i;
    ASSERT_EQ(a, plain[i]);
    Bytes b = from_lib[i];
    ASSERT_EQ(KarlUnprotect(*k_rx, &b), SrtpStatus::kOk) << i;
    ASSERT_EQ(b, plain[i]);
  }
  for (size_t i = plain.size() - 20; i < plain.size(); ++i) {
    if (i % 13 == 5) continue;
    Bytes a = from_karl[i];
    EXPECT_EQ(l_rx.Unprotect(&a), srtp_err_status_replay_fail) << i;
    Bytes b = from_lib[i];
    EXPECT_EQ(KarlUnprotect(*k_rx, &b), SrtpStatus::kReplay) << i;
  }
}

TEST_P(SrtpDiff, RtcpCompoundPackets) {
  const SrtpSuite suite = GetParam();
  for (const Bytes& mki : {Bytes{}, Bytes{1, 2, 3}}) {
    std::mt19937 rng(5);
    const Keys k = RandomKeys(suite, rng);
    auto k_tx = MakeKarl(suite, k, mki);
    auto k_rx = MakeKarl(suite, k, mki);
    LibSrtp l_tx(suite, k.KeySalt(), true, mki);
    LibSrtp l_rx(suite, k.KeySalt(), false, mki);
    k_tx->SetNextSrtcpIndex(1);  // libsrtp2 sends its first SRTCP packet with index 1
    const uint32_t ssrc = 0x0badf00d;
    std::vector<Bytes> plain, from_lib;
    for (int i = 0; i < 200; ++i) {
      plain.push_back(MakeRtcp(rng, ssrc));
      Bytes karl, lib = plain.back();
      ASSERT_EQ(KarlProtect(*k_tx, plain.back(), &karl, true), SrtpStatus::kOk);
      ASSERT_EQ(l_tx.Protect(&lib, true), srtp_err_status_ok);
      ASSERT_EQ(karl, lib) << i;
      // libsrtp2 2.5 finds the SRTCP MKI with the SRTP tag length, so with an MKI on the
      // _32 suites it cannot read even its own SRTCP (srtp_err_status_bad_mki). There the
      // byte equality above is the check of Karl's output.
      const bool lib_reads_rtcp_mki = mki.empty() || GetSrtpSuiteInfo(suite).rtp_tag_len ==
                                                         GetSrtpSuiteInfo(suite).rtcp_tag_len;
      if (lib_reads_rtcp_mki) {
        ASSERT_EQ(l_rx.Unprotect(&karl, true), srtp_err_status_ok) << i;
        ASSERT_EQ(karl, plain.back());
      }
      from_lib.push_back(lib);
    }
    // Karl's receiver takes libsrtp2's packets reordered, then refuses a repeat.
    std::vector<size_t> order(plain.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (size_t i = 0; i < order.size(); i += 64) {  // displacement stays inside 128
      std::shuffle(order.begin() + static_cast<long>(i),
                   order.begin() + static_cast<long>(std::min(i + 64, order.size())), rng);
    }
    for (size_t i : order) {
      Bytes b = from_lib[i];
      ASSERT_EQ(KarlUnprotect(*k_rx, &b, true), SrtpStatus::kOk) << i;
      ASSERT_EQ(b, plain[i]);
    }
    Bytes again = from_lib.back();
    EXPECT_EQ(KarlUnprotect(*k_rx, &again, true), SrtpStatus::kReplay);
  }
}

// RFC 3711 §3.2.3: one key, two SSRCs, each with its own ROC, SEQ and replay list. SSRC A
// crosses a ROC wrap while B starts near SEQ 0 (estimated against A's highest index, B's
// first packet would get ROC + 1). RTP both ways and SRTCP both ways, against libsrtp2.
TEST_P(SrtpDiff, TwoSsrcsInterleaved) {
  const SrtpSuite suite = GetParam();
  std::mt19937 rng(21);
  const Keys k = RandomKeys(suite, rng);
  auto k_tx = MakeKarl(suite, k);
  auto k_rx = MakeKarl(suite, k);
  LibSrtp l_tx(suite, k.KeySalt(), true);
  LibSrtp l_rx(suite, k.KeySalt(), false);
  k_tx->SetNextSrtcpIndex(1);  // libsrtp2 starts every SSRC's SRTCP index at 1
  const uint32_t ssrc[2] = {0xa1a1a1a1, 0xb2b2b2b2};
  uint16_t seq[2] = {65450, 3};
  for (int i = 0; i < 400; ++i) {
    const int s = static_cast<int>(rng() % 2);
    const bool rtcp = rng() % 8 == 0;
    const Bytes plain = rtcp ? MakeRtcp(rng, ssrc[s]) : MakeRandomRtp(rng, seq[s]++, ssrc[s], 200);
    Bytes karl, lib = plain;
    ASSERT_EQ(KarlProtect(*k_tx, plain, &karl, rtcp), SrtpStatus::kOk) << i;
    ASSERT_EQ(l_tx.Protect(&lib, rtcp), srtp_err_status_ok) << i;
    ASSERT_EQ(karl, lib) << "packet " << i << " of SSRC " << s;
    ASSERT_EQ(l_rx.Unprotect(&karl, rtcp), srtp_err_status_ok) << i;
    ASSERT_EQ(karl, plain) << i;
    ASSERT_EQ(KarlUnprotect(*k_rx, &lib, rtcp), SrtpStatus::kOk) << i;
    ASSERT_EQ(lib, plain) << i;
  }
  ASSERT_GT(seq[0], 0u);
  ASSERT_LT(seq[0], 1000u);  // A wrapped: ROC 1
  EXPECT_EQ(k_tx->highest_tx_index(ssrc[0]), (uint64_t{1} << 16) | uint16_t(seq[0] - 1));
  EXPECT_EQ(k_rx->highest_rx_index(ssrc[0]), (uint64_t{1} << 16) | uint16_t(seq[0] - 1));
  EXPECT_EQ(k_tx->highest_tx_index(ssrc[1]), uint64_t{uint16_t(seq[1] - 1)});
  EXPECT_EQ(k_rx->highest_rx_index(ssrc[1]), uint64_t{uint16_t(seq[1] - 1)});
  EXPECT_EQ(k_rx->highest_rx_index(0x12345678), std::nullopt);
  EXPECT_EQ(k_tx->srtp_packets() + k_tx->srtcp_packets(), 400u);
}

INSTANTIATE_TEST_SUITE_P(AllSuites, SrtpDiff, ::testing::ValuesIn(kAllSuites),
                         [](const ::testing::TestParamInfo<SrtpSuite>& info) {
                           std::string name(GetSrtpSuiteInfo(info.param).name);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---- Replay window, authentication, lengths, lifetime ---------------------------------------

class SrtpEdges : public ::testing::TestWithParam<SrtpSuite> {
 protected:
  void SetUp() override {
    std::mt19937 rng(6);
    keys_ = RandomKeys(GetParam(), rng);
    tx_ = MakeKarl(GetParam(), keys_);
    rx_ = MakeKarl(GetParam(), keys_);
    ASSERT_NE(tx_, nullptr);
    ASSERT_NE(rx_, nullptr);
  }
  Bytes Srtp(uint16_t seq, size_t payload = 40) {
    std::mt19937 rng(seq);
    Bytes out;
    EXPECT_EQ(KarlProtect(*tx_, MakeRtp(rng, seq, 0x11223344, payload, 2, 1), &out),
              SrtpStatus::kOk);
    return out;
  }
  SrtpStatus Rx(Bytes pkt) { return KarlUnprotect(*rx_, &pkt); }

  Keys keys_;
  std::unique_ptr<SrtpContext> tx_, rx_;
};

TEST_P(SrtpEdges, ReplayWindowEdges) {
  std::vector<Bytes> pkts;
  for (uint16_t s = 0; s <= 300; ++s) pkts.push_back(Srtp(s));
  ASSERT_EQ(Rx(pkts[300]), SrtpStatus::kOk);
  EXPECT_EQ(Rx(pkts[300]), SrtpStatus::kReplay);    // duplicate
  EXPECT_EQ(Rx(pkts[300 - 127]), SrtpStatus::kOk);  // oldest in a 128 window, once
  EXPECT_EQ(Rx(pkts[300 - 127]), SrtpStatus::kReplay);
  EXPECT_EQ(Rx(pkts[300 - 128]), SrtpStatus::kReplay);  // just too old
  EXPECT_EQ(Rx(pkts[200]), SrtpStatus::kOk);
  EXPECT_EQ(Rx(pkts[299]), SrtpStatus::kOk);
  EXPECT_EQ(rx_->highest_rx_index(), 300u);
}

TEST_P(SrtpEdges, LargerConfiguredWindow) {
  rx_ = MakeKarl(GetParam(), keys_, {}, 1000);
  ASSERT_NE(rx_, nullptr);
  std::vector<Bytes> pkts;
  for (uint16_t s = 0; s <= 1200; ++s) pkts.push_back(Srtp(s, 4));
  ASSERT_EQ(Rx(pkts[1200]), SrtpStatus::kOk);
  EXPECT_EQ(Rx(pkts[201]), SrtpStatus::kOk);
  EXPECT_EQ(Rx(pkts[200]), SrtpStatus::kReplay);
  EXPECT_EQ(Rx(pkts[201]), SrtpStatus::kReplay);
  EXPECT_EQ(MakeKarl(GetParam(), keys_, {}, 127), nullptr);
}

TEST_P(SrtpEdges, AuthFailureOnAnyFlippedBit) {
  const Bytes good = Srtp(10, 100);
  const size_t header = 12 + 8 + 8;  // 2 CSRCs, 1-word extension
  for (size_t pos : {size_t{1}, size_t{9}, header - 1, header, header + 50, good.size() - 1}) {
    Bytes bad = good;
    bad[pos] ^= 0x04;
    EXPECT_EQ(Rx(bad), SrtpStatus::kAuthFailed) << pos;
  }
  // A forged packet far ahead moves nothing: the genuine one still passes afterwards.
  Bytes ahead = Srtp(5000);
  ahead[ahead.size() - 1] ^= 1;
  EXPECT_EQ(Rx(ahead), SrtpStatus::kAuthFailed);
  EXPECT_EQ(Rx(good), SrtpStatus::kOk);
  EXPECT_EQ(rx_->highest_rx_index(), 10u);
}

TEST_P(SrtpEdges, RtcpAuthFailureAndReplay) {
  std::mt19937 rng(8);
  Bytes out;
  ASSERT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 1), &out, true), SrtpStatus::kOk);
  for (size_t pos : {size_t{2}, size_t{8}, out.size() - 1, out.size() - rx_->RtcpTrailerLen()}) {
    Bytes bad = out;
    bad[pos] ^= 0x10;
    EXPECT_EQ(KarlUnprotect(*rx_, &bad, true), SrtpStatus::kAuthFailed) << pos;
  }
  Bytes ok = out;
  EXPECT_EQ(KarlUnprotect(*rx_, &ok, true), SrtpStatus::kOk);
  ok = out;
  EXPECT_EQ(KarlUnprotect(*rx_, &ok, true), SrtpStatus::kReplay);
}

TEST_P(SrtpEdges, TooShortAndNoRoom) {
  uint8_t buf[64] = {0x80};
  uint32_t len = 11;
  EXPECT_EQ(tx_->Protect(buf, &len, sizeof(buf)), SrtpStatus::kTooShort);
  buf[0] = 0x8f;  // 15 CSRCs announced, none present
  len = 20;
  EXPECT_EQ(tx_->Protect(buf, &len, sizeof(buf)), SrtpStatus::kTooShort);
  buf[0] = 0x90;  // extension header past the end
  len = 14;
  EXPECT_EQ(tx_->Protect(buf, &len, sizeof(buf)), SrtpStatus::kTooShort);
  buf[0] = 0x80;
  len = 20;
  EXPECT_EQ(tx_->Protect(buf, &len, 20 + tx_->RtpTrailerLen() - 1), SrtpStatus::kNoRoom);
  len = 7;
  EXPECT_EQ(tx_->ProtectRtcp(buf, &len, sizeof(buf)), SrtpStatus::kTooShort);
  len = 8;
  EXPECT_EQ(tx_->ProtectRtcp(buf, &len, 8 + tx_->RtcpTrailerLen() - 1), SrtpStatus::kNoRoom);
  // Received packets shorter than header + trailer.
  Bytes p = Srtp(1, 0);
  p.resize(12 + 8 + 8 + rx_->RtpTrailerLen() - 1);
  EXPECT_EQ(Rx(p), SrtpStatus::kTooShort);
  len = 8 + rx_->RtcpTrailerLen() - 1;
  EXPECT_EQ(rx_->UnprotectRtcp(buf, &len), SrtpStatus::kTooShort);
}

TEST_P(SrtpEdges, RocEstimationEdges) {
  // Highest 65535 (ROC 0): SEQ 0 is ROC 1; a late 65534 stays ROC 0 (Appendix A).
  tx_->SetInitialRoc(0);
  const Bytes a = Srtp(65534), b = Srtp(65535), c = Srtp(0), d = Srtp(40000);
  EXPECT_EQ(Rx(b), SrtpStatus::kOk);
  EXPECT_EQ(Rx(c), SrtpStatus::kOk);
  EXPECT_EQ(rx_->highest_rx_index(), 65536u);
  EXPECT_EQ(Rx(a), SrtpStatus::kOk);
  EXPECT_EQ(rx_->highest_rx_index(), 65536u);
  // SEQ 40000 after highest SEQ 0 of ROC 1 is guessed ROC 0: far too old.
  EXPECT_EQ(Rx(d), SrtpStatus::kReplay);
}

TEST_P(SrtpEdges, KeyLifetime) {
  // RFC 3711 §9.2: an SSRC's 48-bit index is exhausted after ROC 2^32-1, SEQ 65535.
  tx_->SetInitialRoc(0xffffffffu);
  EXPECT_FALSE(Srtp(65535).empty());
  std::mt19937 rng(9);
  Bytes out;
  EXPECT_EQ(KarlProtect(*tx_, MakeRtp(rng, 0, 0x11223344, 10), &out), SrtpStatus::kKeyExhausted);
  // SRTCP: the 31-bit index of an SSRC.
  tx_->SetNextSrtcpIndex(0x7fffffffu);
  EXPECT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 1), &out, true), SrtpStatus::kOk);
  EXPECT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 1), &out, true), SrtpStatus::kKeyExhausted);
}

// §9.2 counts packets per master key: every SSRC of a context together (SRTP sent and
// accepted apart: a key serves one direction).
TEST_P(SrtpEdges, KeyLifetimeCountsEverySsrc) {
  std::mt19937 rng(19);
  Bytes out;
  const Bytes a = Srtp(1), b = Srtp(2);
  tx_->SetPacketCounts((uint64_t{1} << 48) - 2, (uint64_t{1} << 31) - 2);
  ASSERT_EQ(KarlProtect(*tx_, MakeRtp(rng, 10, 0xa, 10), &out), SrtpStatus::kOk);
  ASSERT_EQ(KarlProtect(*tx_, MakeRtp(rng, 20, 0xb, 10), &out), SrtpStatus::kOk);
  EXPECT_EQ(tx_->srtp_packets(), uint64_t{1} << 48);
  EXPECT_EQ(KarlProtect(*tx_, MakeRtp(rng, 11, 0xa, 10), &out), SrtpStatus::kKeyExhausted);
  EXPECT_EQ(KarlProtect(*tx_, MakeRtp(rng, 5, 0xc, 10), &out), SrtpStatus::kKeyExhausted);
  ASSERT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 0xa), &out, true), SrtpStatus::kOk);
  ASSERT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 0xb), &out, true), SrtpStatus::kOk);
  EXPECT_EQ(KarlProtect(*tx_, MakeRtcp(rng, 0xc), &out, true), SrtpStatus::kKeyExhausted);
  // The receiving side counts what it accepts.
  rx_->SetPacketCounts((uint64_t{1} << 48) - 1, 0);
  EXPECT_EQ(Rx(a), SrtpStatus::kOk);
  EXPECT_EQ(Rx(b), SrtpStatus::kKeyExhausted);
}

TEST_P(SrtpEdges, MkiMismatchRejected) {
  std::mt19937 rng(10);
  auto tx = MakeKarl(GetParam(), keys_, {1, 2});
  auto rx = MakeKarl(GetParam(), keys_, {1, 3});
  Bytes out;
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 1, 1, 10), &out), SrtpStatus::kOk);
  EXPECT_EQ(KarlUnprotect(*rx, &out), SrtpStatus::kAuthFailed);
}

INSTANTIATE_TEST_SUITE_P(AllSuites, SrtpEdges, ::testing::ValuesIn(kAllSuites),
                         [](const ::testing::TestParamInfo<SrtpSuite>& info) {
                           return std::string(GetSrtpSuiteInfo(info.param).name);
                         });

TEST(SrtpConfigTest, RejectsWrongLengths) {
  const Bytes k16(16, 1), k32(32, 1), s14(14, 2), s12(12, 2);
  auto make = [](SrtpSuite s, const Bytes& k, const Bytes& salt) {
    SrtpConfig c;
    c.suite = s;
    c.master_key = k;
    c.master_salt = salt;
    return SrtpContext::Create(c) != nullptr;
  };
  EXPECT_TRUE(make(SrtpSuite::kAesCm128HmacSha1_80, k16, s14));
  EXPECT_FALSE(make(SrtpSuite::kAesCm128HmacSha1_80, k32, s14));
  EXPECT_FALSE(make(SrtpSuite::kAesCm128HmacSha1_80, k16, s12));
  EXPECT_TRUE(make(SrtpSuite::kAes256CmHmacSha1_32, k32, s14));
  EXPECT_TRUE(make(SrtpSuite::kAeadAes128Gcm, k16, s12));
  EXPECT_FALSE(make(SrtpSuite::kAeadAes128Gcm, k16, s14));
  EXPECT_TRUE(make(SrtpSuite::kAeadAes256Gcm, k32, s12));
  EXPECT_EQ(GetSrtpSuiteInfo(SrtpSuite::kAesCm128HmacSha1_32).rtp_tag_len, 4);
  EXPECT_EQ(GetSrtpSuiteInfo(SrtpSuite::kAesCm128HmacSha1_32).rtcp_tag_len, 10);
  EXPECT_EQ(GetSrtpSuiteInfo(SrtpSuite::kAeadAes256Gcm).rtp_tag_len, 16);
}

// The hot-path rule: once a context exists, no packet makes OpenSSL allocate (EVP_CIPHER_CTX
// re-initialisation with only a new IV reuses the provider context).
TEST(SrtpHotPath, NoAllocationPerPacket) {
  ASSERT_TRUE(kOpenSslCounting);
  for (SrtpSuite suite : kAllSuites) {
    std::mt19937 rng(11);
    const Keys k = RandomKeys(suite, rng);
    const uint64_t at_start = g_allocations.load();
    auto tx = MakeKarl(suite, k, {9});
    auto rx = MakeKarl(suite, k, {9});
    std::vector<Bytes> rtp, rtcp;
    for (uint16_t i = 0; i < 200; ++i) {
      rtp.push_back(MakeRandomRtp(rng, static_cast<uint16_t>(65400 + i), 7, 1200));
      rtp.back().resize(rtp.back().size() + kSrtpMaxTrailerLen);
      rtcp.push_back(MakeRtcp(rng, 7));
      rtcp.back().resize(rtcp.back().size() + kSrtpMaxTrailerLen);
    }
    std::vector<uint32_t> rtp_len, rtcp_len;
    for (size_t i = 0; i < rtp.size(); ++i) {
      rtp_len.push_back(static_cast<uint32_t>(rtp[i].size() - kSrtpMaxTrailerLen));
      rtcp_len.push_back(static_cast<uint32_t>(rtcp[i].size() - kSrtpMaxTrailerLen));
    }
    const uint64_t before = g_allocations.load();
    int ok = 0;
    for (size_t i = 0; i < rtp.size(); ++i) {
      const uint32_t cap = static_cast<uint32_t>(rtp[i].size());
      ok += tx->Protect(rtp[i].data(), &rtp_len[i], cap) == SrtpStatus::kOk;
      ok += rx->Unprotect(rtp[i].data(), &rtp_len[i]) == SrtpStatus::kOk;
      const uint32_t rcap = static_cast<uint32_t>(rtcp[i].size());
      ok += tx->ProtectRtcp(rtcp[i].data(), &rtcp_len[i], rcap) == SrtpStatus::kOk;
      ok += rx->UnprotectRtcp(rtcp[i].data(), &rtcp_len[i]) == SrtpStatus::kOk;
    }
    const uint64_t after = g_allocations.load();
    EXPECT_GT(before, at_start) << "the counter sees context creation";
    EXPECT_EQ(ok, 800) << GetSrtpSuiteInfo(suite).name;
    EXPECT_EQ(after - before, 0u) << GetSrtpSuiteInfo(suite).name;
  }
}

TEST(SrtpConfigTest, SrtcpDisabled) {
  std::mt19937 rng(12);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  SrtpConfig c;
  c.master_key = k.key;
  c.master_salt = k.salt;
  c.srtcp = false;
  auto ctx = SrtpContext::Create(c);
  ASSERT_NE(ctx, nullptr);
  Bytes out;
  EXPECT_EQ(KarlProtect(*ctx, MakeRtcp(rng, 1), &out, true), SrtpStatus::kAuthFailed);
  EXPECT_EQ(KarlProtect(*ctx, MakeRtp(rng, 1, 1, 10), &out), SrtpStatus::kOk);
}

// The ring bitmap against a plain model (set of seen indices + highest), with window sizes
// that are and are not multiples of 64, and jumps shorter and longer than the ring.
TEST(SrtpReplayWindow, MatchesReferenceModel) {
  for (uint32_t size : {128u, 200u, 1000u}) {
    SrtpContext::ReplayWindow w;
    w.Init(size);
    std::set<uint64_t> seen;
    uint64_t highest = 0;
    std::mt19937_64 rng(size);
    uint64_t base = 1000;
    for (int i = 0; i < 200000; ++i) {
      const uint64_t r = rng() % 100;
      if (r < 2) base += rng() % 3000;  // jump
      const uint64_t idx = base + rng() % (size + 64) - std::min<uint64_t>(base, size / 2);
      if (r < 60) base += 1;
      const bool model_ok =
          seen.empty() || idx > highest || (highest - idx < size && !seen.count(idx));
      ASSERT_EQ(w.Check(idx) == SrtpStatus::kOk, model_ok) << size << " " << i << " " << idx;
      if (model_ok && rng() % 4 != 0) {  // some packets fail authentication: not accepted
        w.Accept(idx);
        seen.insert(idx);
        highest = std::max(highest, idx);
        ASSERT_EQ(w.highest(), highest);
      }
    }
  }
}

// RFC 3711 §3.4: SRTCP sent unencrypted (E = 0) but authenticated is accepted as is.
TEST(SrtpRtcp, UnencryptedSrtcpFromLibsrtp) {
  for (SrtpSuite suite : {SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAes256CmHmacSha1_32}) {
    std::mt19937 rng(14);
    const Keys k = RandomKeys(suite, rng);
    LibSrtp l_tx(suite, k.KeySalt(), true, {}, true);
    ASSERT_EQ(l_tx.status(), srtp_err_status_ok);
    auto rx = MakeKarl(suite, k);
    for (int i = 0; i < 20; ++i) {
      const Bytes plain = MakeRtcp(rng, 42);
      Bytes lib = plain;
      ASSERT_EQ(l_tx.Protect(&lib, true), srtp_err_status_ok);
      ASSERT_EQ(lib[plain.size()] & 0x80, 0) << "E flag clear";
      ASSERT_TRUE(std::equal(plain.begin(), plain.end(), lib.begin()));
      ASSERT_EQ(KarlUnprotect(*rx, &lib, true), SrtpStatus::kOk);
      ASSERT_EQ(lib, plain);
    }
  }
}

// A ROC signalled out of band (RFC 3711 §3.3.1) must match on both sides.
TEST(SrtpRoc, InitialRocMustAgree) {
  std::mt19937 rng(15);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  auto tx = MakeKarl(SrtpSuite::kAesCm128HmacSha1_80, k);
  auto rx_same = MakeKarl(SrtpSuite::kAesCm128HmacSha1_80, k);
  auto rx_zero = MakeKarl(SrtpSuite::kAesCm128HmacSha1_80, k);
  tx->SetInitialRoc(5);
  rx_same->SetInitialRoc(5);
  Bytes out;
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 100, 9, 50), &out), SrtpStatus::kOk);
  EXPECT_EQ(tx->highest_tx_index(), (uint64_t{5} << 16) | 100);
  Bytes copy = out;
  EXPECT_EQ(KarlUnprotect(*rx_zero, &copy), SrtpStatus::kAuthFailed);
  EXPECT_EQ(KarlUnprotect(*rx_same, &out), SrtpStatus::kOk);
  EXPECT_EQ(rx_same->highest_rx_index(), (uint64_t{5} << 16) | 100);
}

// A signalled ROC is the first SSRC's (the stream in progress); SSRCs that appear later
// start at ROC 0 (RFC 3711 §3.3.1). A forged first packet does not use it up.
TEST(SrtpRoc, InitialRocIsTheFirstSsrcs) {
  std::mt19937 rng(16);
  const Keys k = RandomKeys(SrtpSuite::kAeadAes128Gcm, rng);
  auto tx = MakeKarl(SrtpSuite::kAeadAes128Gcm, k);
  auto rx = MakeKarl(SrtpSuite::kAeadAes128Gcm, k);
  tx->SetInitialRoc(7);
  rx->SetInitialRoc(7);
  Bytes a, b;
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 100, 0xa, 50), &a), SrtpStatus::kOk);
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 60000, 0xb, 50), &b), SrtpStatus::kOk);
  EXPECT_EQ(tx->highest_tx_index(0xa), (uint64_t{7} << 16) | 100);
  EXPECT_EQ(tx->highest_tx_index(0xb), 60000u);
  Bytes forged = b;
  forged.back() ^= 1;
  EXPECT_EQ(KarlUnprotect(*rx, &forged), SrtpStatus::kAuthFailed);
  EXPECT_EQ(KarlUnprotect(*rx, &a), SrtpStatus::kOk);
  EXPECT_EQ(KarlUnprotect(*rx, &b), SrtpStatus::kOk);
  EXPECT_EQ(rx->highest_rx_index(0xa), (uint64_t{7} << 16) | 100);
  EXPECT_EQ(rx->highest_rx_index(0xb), 60000u);
}

// The slots of one context, one SSRC after another: the least recently used goes when a
// fifth SSRC comes; the SSRC that comes back then starts afresh.
TEST(SrtpSsrcSlots, LeastRecentlyUsedIsReusedAndStartsAfresh) {
  std::mt19937 rng(17);
  const Keys k = RandomKeys(SrtpSuite::kAesCm128HmacSha1_80, rng);
  auto tx = MakeKarl(SrtpSuite::kAesCm128HmacSha1_80, k);
  ASSERT_EQ(SrtpContext::kSsrcSlots, 4u);
  Bytes out;
  for (uint32_t ssrc = 1; ssrc <= 4; ++ssrc) {
    ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 65535, ssrc, 10), &out), SrtpStatus::kOk);
    ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 0, ssrc, 10), &out), SrtpStatus::kOk);  // ROC 1
  }
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 1, 1, 10), &out), SrtpStatus::kOk);  // 1 used last
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 9, 5, 10), &out), SrtpStatus::kOk);  // evicts 2
  EXPECT_EQ(tx->highest_tx_index(2), std::nullopt);
  for (uint32_t ssrc : {1u, 3u, 4u, 5u}) EXPECT_NE(tx->highest_tx_index(ssrc), std::nullopt);
  // SSRC 2 comes back: a fresh state, ROC 0 (it was at ROC 1), in the slot of the least
  // recently used SSRC now (3).
  ASSERT_EQ(KarlProtect(*tx, MakeRtp(rng, 1, 2, 10), &out), SrtpStatus::kOk);
  EXPECT_EQ(tx->highest_tx_index(2), 1u);
  EXPECT_EQ(tx->highest_tx_index(3), std::nullopt);
  EXPECT_EQ(tx->highest_tx_index(1), 65537u);
}

}  // namespace
}  // namespace karl::dp
