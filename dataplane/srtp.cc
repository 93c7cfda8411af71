#include "dataplane/srtp.h"

#include <cpuid.h>
#include <immintrin.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <rte_crypto.h>
#include <rte_cryptodev.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <srtp2/srtp.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <mutex>
#include <new>
#include <vector>

#include "dataplane/srtp_engine.h"

namespace karl::dp {
namespace {

constexpr SrtpSuiteInfo kSuites[kSrtpSuiteCount] = {
    {"AES_CM_128_HMAC_SHA1_80", 16, 14, 14, 20, 10, 10, false},
    {"AES_CM_128_HMAC_SHA1_32", 16, 14, 14, 20, 4, 10, false},
    {"AES_256_CM_HMAC_SHA1_80", 32, 14, 14, 20, 10, 10, false},
    {"AES_256_CM_HMAC_SHA1_32", 32, 14, 14, 20, 4, 10, false},
    {"AEAD_AES_128_GCM", 16, 12, 12, 0, 16, 16, true},
    {"AEAD_AES_256_GCM", 32, 12, 12, 0, 16, 16, true},
};

// RFC 3711 §4.3.2 labels.
constexpr uint8_t kLabelRtpEnc = 0x00;
constexpr uint8_t kLabelRtpAuth = 0x01;
constexpr uint8_t kLabelRtpSalt = 0x02;
constexpr uint8_t kLabelRtcpEnc = 0x03;
constexpr uint8_t kLabelRtcpAuth = 0x04;
constexpr uint8_t kLabelRtcpSalt = 0x05;

constexpr uint64_t kMaxRoc = 0xffffffffu;
constexpr uint32_t kMaxSrtcpIndex = 0x7fffffffu;  // RFC 3711 §3.4, 31 bits

inline uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Load32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
inline void Store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// ---- SHA-1 (FIPS 180-4 §6.1) and HMAC (RFC 2104) ------------------------------------------

inline uint32_t Rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

// Rounds unrolled five at a time with the message schedule in a 16-word ring, so the
// state rotation is register renaming instead of moves.
#define KARL_SHA1_W(t) \
  (w[(t)&15] = Rotl(w[((t) + 13) & 15] ^ w[((t) + 8) & 15] ^ w[((t) + 2) & 15] ^ w[(t)&15], 1))
#define KARL_SHA1_R(a, b, c, d, e, f, k, wt) \
  do {                                       \
    e += Rotl(a, 5) + (f) + (k) + (wt);      \
    b = Rotl(b, 30);                         \
  } while (0)
#define KARL_SHA1_F1(b, c, d) (d ^ (b & (c ^ d)))
#define KARL_SHA1_F2(b, c, d) (b ^ c ^ d)
#define KARL_SHA1_F3(b, c, d) ((b & c) | (d & (b | c)))

void Sha1Compress(uint32_t h[5], const uint8_t block[64]) noexcept {
  uint32_t w[16];
  for (int t = 0; t < 16; ++t) w[t] = Load32(block + 4 * t);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
#define KARL_SHA1_5(F, K, W0, W1, W2, W3, W4)    \
  KARL_SHA1_R(a, b, c, d, e, F(b, c, d), K, W0); \
  KARL_SHA1_R(e, a, b, c, d, F(a, b, c), K, W1); \
  KARL_SHA1_R(d, e, a, b, c, F(e, a, b), K, W2); \
  KARL_SHA1_R(c, d, e, a, b, F(d, e, a), K, W3); \
  KARL_SHA1_R(b, c, d, e, a, F(c, d, e), K, W4)
  KARL_SHA1_5(KARL_SHA1_F1, 0x5a827999, w[0], w[1], w[2], w[3], w[4]);
  KARL_SHA1_5(KARL_SHA1_F1, 0x5a827999, w[5], w[6], w[7], w[8], w[9]);
  KARL_SHA1_5(KARL_SHA1_F1, 0x5a827999, w[10], w[11], w[12], w[13], w[14]);
  KARL_SHA1_5(KARL_SHA1_F1, 0x5a827999, w[15], KARL_SHA1_W(16), KARL_SHA1_W(17), KARL_SHA1_W(18),
              KARL_SHA1_W(19));
  for (int t = 20; t < 40; t += 5) {
    KARL_SHA1_5(KARL_SHA1_F2, 0x6ed9eba1, KARL_SHA1_W(t), KARL_SHA1_W(t + 1), KARL_SHA1_W(t + 2),
                KARL_SHA1_W(t + 3), KARL_SHA1_W(t + 4));
  }
  for (int t = 40; t < 60; t += 5) {
    KARL_SHA1_5(KARL_SHA1_F3, 0x8f1bbcdc, KARL_SHA1_W(t), KARL_SHA1_W(t + 1), KARL_SHA1_W(t + 2),
                KARL_SHA1_W(t + 3), KARL_SHA1_W(t + 4));
  }
  for (int t = 60; t < 80; t += 5) {
    KARL_SHA1_5(KARL_SHA1_F2, 0xca62c1d6, KARL_SHA1_W(t), KARL_SHA1_W(t + 1), KARL_SHA1_W(t + 2),
                KARL_SHA1_W(t + 3), KARL_SHA1_W(t + 4));
  }
#undef KARL_SHA1_5
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}
#undef KARL_SHA1_W
#undef KARL_SHA1_R
#undef KARL_SHA1_F1
#undef KARL_SHA1_F2
#undef KARL_SHA1_F3

// The same compression on the x86 SHA extensions (SHA1RNDS4 does four rounds, SHA1NEXTE
// derives E, SHA1MSG1/SHA1MSG2 run the FIPS 180-4 §6.1.2 message schedule four words at a
// time). Group j covers rounds 4j..4j+3 and uses schedule words W[4j..4j+3].
__attribute__((target("sha,sse4.1,ssse3"))) void Sha1CompressShaNi(
    uint32_t h[5], const uint8_t block[64]) noexcept {
  const __m128i kByteSwap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
  __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)), 0x1b);
  __m128i e0 = _mm_set_epi32(static_cast<int>(h[4]), 0, 0, 0);
  const __m128i abcd_save = abcd;
  const __m128i e_save = e0;
  __m128i e1;
  __m128i m[4];
  for (int i = 0; i < 4; ++i) {
    m[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16 * i)),
                            kByteSwap);
  }
  // Group 0.
  e0 = _mm_add_epi32(e0, m[0]);
  e1 = abcd;
  abcd = _mm_sha1rnds4_epu32(abcd, e0, 0);
#define KARL_SHA1NI_GROUP(j)                                                                   \
  do {                                                                                         \
    __m128i& e_cur = ((j)&1) ? e1 : e0;                                                        \
    __m128i& e_next = ((j)&1) ? e0 : e1;                                                       \
    e_cur = _mm_sha1nexte_epu32(e_cur, m[(j) % 4]);                                            \
    e_next = abcd;                                                                             \
    if ((j) >= 3 && (j) <= 18)                                                                 \
      m[((j) + 1) % 4] = _mm_sha1msg2_epu32(m[((j) + 1) % 4], m[(j) % 4]);                     \
    abcd = _mm_sha1rnds4_epu32(abcd, e_cur, (j) / 5);                                          \
    if ((j) >= 1 && (j) <= 16)                                                                 \
      m[((j) + 3) % 4] = _mm_sha1msg1_epu32(m[((j) + 3) % 4], m[(j) % 4]);                     \
    if ((j) >= 2 && (j) <= 17) m[((j) + 2) % 4] = _mm_xor_si128(m[((j) + 2) % 4], m[(j) % 4]); \
  } while (0)
  KARL_SHA1NI_GROUP(1);
  KARL_SHA1NI_GROUP(2);
  KARL_SHA1NI_GROUP(3);
  KARL_SHA1NI_GROUP(4);
  KARL_SHA1NI_GROUP(5);
  KARL_SHA1NI_GROUP(6);
  KARL_SHA1NI_GROUP(7);
  KARL_SHA1NI_GROUP(8);
  KARL_SHA1NI_GROUP(9);
  KARL_SHA1NI_GROUP(10);
  KARL_SHA1NI_GROUP(11);
  KARL_SHA1NI_GROUP(12);
  KARL_SHA1NI_GROUP(13);
  KARL_SHA1NI_GROUP(14);
  KARL_SHA1NI_GROUP(15);
  KARL_SHA1NI_GROUP(16);
  KARL_SHA1NI_GROUP(17);
  KARL_SHA1NI_GROUP(18);
  KARL_SHA1NI_GROUP(19);
#undef KARL_SHA1NI_GROUP
  // After group 19 (odd), e0 holds ABCD from before it: derive the final E from it.
  e0 = _mm_sha1nexte_epu32(e0, e_save);
  abcd = _mm_add_epi32(abcd, abcd_save);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), _mm_shuffle_epi32(abcd, 0x1b));
  h[4] = static_cast<uint32_t>(_mm_extract_epi32(e0, 3));
}

bool CpuHasShaNi() noexcept {
  unsigned a, b, c, d;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0 || (b & (1u << 29)) == 0) return false;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  return (c & (1u << 19)) != 0 && (c & (1u << 9)) != 0;  // SSE4.1, SSSE3
}

// Chosen once per process (cpuid is an instruction, not a system call).
bool g_use_sha_ni = CpuHasShaNi();

inline void Sha1Block(uint32_t h[5], const uint8_t block[64]) noexcept {
  if (g_use_sha_ni) {
    Sha1CompressShaNi(h, block);
  } else {
    Sha1Compress(h, block);
  }
}

constexpr uint32_t kSha1Init[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};

// Streaming SHA-1 that may start from a state after whole blocks (the HMAC pads).
struct Sha1 {
  uint32_t h[5];
  uint8_t buf[64];
  uint32_t buf_len;
  uint64_t total;  // octets hashed including the starting blocks

  void Start(const uint32_t state[5], uint64_t prefix_len) noexcept {
    std::memcpy(h, state, sizeof(h));
    buf_len = 0;
    total = prefix_len;
  }
  void Update(const uint8_t* p, size_t n) noexcept {
    total += n;
    if (buf_len != 0) {
      const size_t take = std::min<size_t>(n, 64 - buf_len);
      std::memcpy(buf + buf_len, p, take);
      buf_len += static_cast<uint32_t>(take);
      p += take;
      n -= take;
      if (buf_len < 64) return;
      Sha1Block(h, buf);
      buf_len = 0;
    }
    while (n >= 64) {
      Sha1Block(h, p);
      p += 64;
      n -= 64;
    }
    if (n != 0) {
      std::memcpy(buf, p, n);
      buf_len = static_cast<uint32_t>(n);
    }
  }
  void Final(uint8_t out[20]) noexcept {
    const uint64_t bits = total * 8;
    buf[buf_len++] = 0x80;
    if (buf_len > 56) {
      std::memset(buf + buf_len, 0, 64 - buf_len);
      Sha1Block(h, buf);
      buf_len = 0;
    }
    std::memset(buf + buf_len, 0, 56 - buf_len);
    for (int i = 0; i < 8; ++i) buf[56 + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    Sha1Block(h, buf);
    for (int i = 0; i < 5; ++i) Store32(out + 4 * i, h[i]);
  }
};

void HmacSha1Init(const uint8_t* key, size_t key_len, SrtpContext::HmacSha1Key* out) noexcept {
  uint8_t k[64] = {};
  std::memcpy(k, key, std::min<size_t>(key_len, 64));  // SRTP keys are 20 octets, < 64
  uint8_t pad[64];
  for (int i = 0; i < 64; ++i) pad[i] = k[i] ^ 0x36;
  std::memcpy(out->inner, kSha1Init, sizeof(kSha1Init));
  Sha1Compress(out->inner, pad);
  for (int i = 0; i < 64; ++i) pad[i] = k[i] ^ 0x5c;
  std::memcpy(out->outer, kSha1Init, sizeof(kSha1Init));
  Sha1Compress(out->outer, pad);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(pad, sizeof(pad));
}

// HMAC-SHA1(key, a || b) (RFC 3711 §4.2: b is the ROC for SRTP, empty for SRTCP).
void HmacSha1(const SrtpContext::HmacSha1Key& key, const uint8_t* a, size_t a_len, const uint8_t* b,
              size_t b_len, uint8_t out[20]) noexcept {
  Sha1 s;
  s.Start(key.inner, 64);
  s.Update(a, a_len);
  if (b_len != 0) s.Update(b, b_len);
  uint8_t inner[20];
  s.Final(inner);
  s.Start(key.outer, 64);
  s.Update(inner, 20);
  s.Final(out);
}

// ---- AES via EVP ----------------------------------------------------------------------------

EVP_CIPHER_CTX* Ctx(void* p) { return static_cast<EVP_CIPHER_CTX*>(p); }

const EVP_CIPHER* CtrCipher(size_t key_len) {
  return key_len == 32 ? EVP_aes_256_ctr() : key_len == 16 ? EVP_aes_128_ctr() : nullptr;
}
const EVP_CIPHER* GcmCipher(size_t key_len) {
  return key_len == 32 ? EVP_aes_256_gcm() : key_len == 16 ? EVP_aes_128_gcm() : nullptr;
}

// In-place AES-CTR with a 16-octet initial counter (RFC 3711 §4.1.1: the counter is the
// IV plus the block number, which is exactly CTR mode on the full 128-bit block).
bool CtrXor(void* ctx, const uint8_t iv[16], uint8_t* data, size_t n) noexcept {
  if (EVP_EncryptInit_ex(Ctx(ctx), nullptr, nullptr, nullptr, iv) != 1) return false;
  if (n == 0) return true;
  int out_len = 0;
  return EVP_EncryptUpdate(Ctx(ctx), data, &out_len, data, static_cast<int>(n)) == 1;
}

// AES-GCM seal in place; the 16-octet tag goes to tag.
bool GcmSeal(void* ctx, const uint8_t iv[12], const uint8_t* aad1, size_t aad1_len,
             const uint8_t* aad2, size_t aad2_len, uint8_t* data, size_t n, uint8_t* tag) noexcept {
  EVP_CIPHER_CTX* c = Ctx(ctx);
  int out_len = 0;
  if (EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv) != 1) return false;
  if (EVP_EncryptUpdate(c, nullptr, &out_len, aad1, static_cast<int>(aad1_len)) != 1) {
    return false;
  }
  if (aad2_len != 0 &&
      EVP_EncryptUpdate(c, nullptr, &out_len, aad2, static_cast<int>(aad2_len)) != 1) {
    return false;
  }
  if (n != 0 && EVP_EncryptUpdate(c, data, &out_len, data, static_cast<int>(n)) != 1) {
    return false;
  }
  if (EVP_EncryptFinal_ex(c, data + n, &out_len) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
}

// AES-GCM open in place; false if the tag does not verify.
bool GcmOpen(void* ctx, const uint8_t iv[12], const uint8_t* aad1, size_t aad1_len,
             const uint8_t* aad2, size_t aad2_len, uint8_t* data, size_t n,
             const uint8_t* tag) noexcept {
  EVP_CIPHER_CTX* c = Ctx(ctx);
  int out_len = 0;
  uint8_t tag_copy[16];
  std::memcpy(tag_copy, tag, 16);
  if (EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, iv) != 1) return false;
  if (EVP_DecryptUpdate(c, nullptr, &out_len, aad1, static_cast<int>(aad1_len)) != 1) {
    return false;
  }
  if (aad2_len != 0 &&
      EVP_DecryptUpdate(c, nullptr, &out_len, aad2, static_cast<int>(aad2_len)) != 1) {
    return false;
  }
  if (n != 0 && EVP_DecryptUpdate(c, data, &out_len, data, static_cast<int>(n)) != 1) {
    return false;
  }
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag_copy) != 1) return false;
  return EVP_DecryptFinal_ex(c, data + n, &out_len) == 1;
}

// RFC 3550 §5.1: length of the fixed header, CSRC list and header extension, or 0.
uint32_t RtpHeaderLen(const uint8_t* p, uint32_t len) noexcept {
  if (len < 12) return 0;
  uint32_t hl = 12 + 4u * (p[0] & 0x0f);
  if (p[0] & 0x10) {
    if (hl + 4 > len) return 0;
    hl += 4 + 4u * Load16(p + hl + 2);
  }
  return hl <= len ? hl : 0;
}

// The IVs are built in registers and stored whole: built octet by octet in place and then
// XORed with the salt as wider words, each wide load spanned several narrow stores still in
// the store buffer, which cannot forward them (a profile of the engine put a fifth of
// PrepareRtp's time on that one load). Octet order: the host is little-endian (x86-64).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);

// RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16): octets 4-7 of the
// salt XOR the SSRC, octets 8-13 XOR the 48-bit index, octets 14-15 zero.
void AesCmIv(const uint8_t salt[14], uint32_t ssrc, uint64_t index, uint8_t iv[16]) noexcept {
  uint64_t s0;
  uint32_t s1_lo;
  uint16_t s1_hi;
  std::memcpy(&s0, salt, 8);
  std::memcpy(&s1_lo, salt + 8, 4);   // octets 8-13 as two loads (one 6-octet memcpy went
  std::memcpy(&s1_hi, salt + 12, 2);  // through the stack: the same stall as above)
  const uint64_t s1 = uint64_t{s1_hi} << 32 | s1_lo;
  const uint64_t w0 = s0 ^ uint64_t { __builtin_bswap32(ssrc) } << 32;
  const uint64_t w1 = s1 ^ __builtin_bswap64(index << 16);
  std::memcpy(iv, &w0, 8);
  std::memcpy(iv + 8, &w1, 8);
}

// RFC 7714 §8.1 (SRTP) and §9.1 (SRTCP): 12-octet IV = (00 00 || SSRC || hi32 || lo16) XOR
// salt, with hi32 || lo16 = ROC || SEQ for SRTP and 0000 || 0 || index for SRTCP.
void GcmIv(const uint8_t salt[12], uint32_t ssrc, uint64_t index48, uint8_t iv[12]) noexcept {
  uint64_t s0;
  uint32_t s1;
  std::memcpy(&s0, salt, 8);
  std::memcpy(&s1, salt + 8, 4);
  // Octets 0-7: 00 00, the SSRC, the index's top 16 bits; octets 8-11: its low 32.
  const uint64_t w0 = s0 ^ __builtin_bswap64(uint64_t{ssrc} << 16 | (index48 >> 32 & 0xffff));
  const uint32_t w1 = s1 ^ __builtin_bswap32(static_cast<uint32_t>(index48));
  std::memcpy(iv, &w0, 8);
  std::memcpy(iv + 8, &w1, 4);
}

}  // namespace

bool SrtpUseShaNi(bool enable) noexcept {
  g_use_sha_ni = enable && CpuHasShaNi();
  return g_use_sha_ni;
}

const SrtpSuiteInfo& GetSrtpSuiteInfo(SrtpSuite suite) noexcept {
  return kSuites[static_cast<size_t>(suite)];
}

bool SrtpKdf(std::span<const uint8_t> master_key, std::span<const uint8_t, 14> master_salt,
             uint8_t label, std::span<uint8_t> out) noexcept {
  const EVP_CIPHER* cipher = CtrCipher(master_key.size());
  if (cipher == nullptr) return false;
  // §4.3.1: key_id = label || r with r = 0 (kdr 0), x = key_id XOR master_salt; the label
  // lands on octet 7 of the 14-octet salt (the 48-bit r occupies octets 8..13).
  uint8_t iv[16] = {};
  std::memcpy(iv, master_salt.data(), 14);
  iv[7] ^= label;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return false;
  bool ok = EVP_EncryptInit_ex(ctx, cipher, nullptr, master_key.data(), iv) == 1;
  std::fill(out.begin(), out.end(), uint8_t{0});
  int out_len = 0;
  ok = ok &&
       EVP_EncryptUpdate(ctx, out.data(), &out_len, out.data(), static_cast<int>(out.size())) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

// ---- Replay lists (RFC 3711 §3.3.2) and SSRC slots ------------------------------------------

namespace {

constexpr uint64_t kMaxSrtpPackets = uint64_t{1} << 48;   // §9.2, per master key
constexpr uint64_t kMaxSrtcpPackets = uint64_t{1} << 31;  // §9.2, per master key

// Per-packet helpers of the slots: always inlined into the transforms (called from several
// places, GCC would otherwise keep them out of line), so the common window of 128 indices
// becomes a constant ring (words = 2) instead of a division.
#define KARL_HOT inline __attribute__((always_inline))

// A replay list is a ring bitmap of `words` 64-bit words: bit (index % (64 * words)) says
// whether that index was accepted, for the `size` indices up to `highest`.
KARL_HOT SrtpStatus ReplayCheck(const uint64_t* bits, uint32_t words, uint32_t size,
                                uint64_t highest, uint64_t index) noexcept {
  if (index > highest) return SrtpStatus::kOk;
  if (highest - index >= size) return SrtpStatus::kReplay;  // too old
  const uint64_t bit = index % (64 * uint64_t{words});
  return (bits[bit / 64] >> (bit % 64)) & 1 ? SrtpStatus::kReplay : SrtpStatus::kOk;
}

// The first accepted index of a list.
KARL_HOT void ReplayStart(uint64_t* bits, uint32_t words, uint64_t* highest,
                          uint64_t index) noexcept {
  std::fill(bits, bits + words, uint64_t{0});
  *highest = index;
  const uint64_t bit = index % (64 * uint64_t{words});
  bits[bit / 64] |= uint64_t{1} << (bit % 64);
}

KARL_HOT void ReplayAccept(uint64_t* bits, uint32_t words, uint64_t* highest,
                           uint64_t index) noexcept {
  const uint64_t ring = 64 * uint64_t{words};
  if (index > *highest) {
    const uint64_t advance = index - *highest;
    if (advance >= ring) {
      std::fill(bits, bits + words, uint64_t{0});
    } else {
      // Clear the slots of the indices highest+1 .. index (they held indices a ring ago),
      // a word at a time.
      uint64_t pos = (*highest + 1) % ring;
      uint64_t left = advance;
      while (left != 0) {
        const uint64_t off = pos % 64;
        const uint64_t take = std::min({left, 64 - off, ring - pos});
        const uint64_t mask = take == 64 ? ~uint64_t{0} : ((uint64_t{1} << take) - 1) << off;
        bits[pos / 64] &= ~mask;
        pos = (pos + take) % ring;
        left -= take;
      }
    }
    *highest = index;
  }
  const uint64_t bit = index % ring;
  bits[bit / 64] |= uint64_t{1} << (bit % 64);
}

// RFC 3711 §3.3.1 / Appendix A: the index of seq relative to the highest index of its SSRC,
// or for an SSRC with no state yet (`started` false) ROC first_roc.
KARL_HOT SrtpStatus EstimateIndex(bool started, uint64_t highest, uint16_t seq, uint32_t first_roc,
                                  uint64_t* index) noexcept {
  if (!started) {
    *index = uint64_t{first_roc} << 16 | seq;
    return SrtpStatus::kOk;
  }
  // Appendix A: v is ROC-1, ROC or ROC+1, whichever puts the index nearest s_l.
  const int64_t roc = static_cast<int64_t>(highest >> 16);
  const uint32_t s_l = static_cast<uint32_t>(highest & 0xffff);
  int64_t v = roc;
  if (s_l < 32768) {
    if (seq > s_l && seq - s_l > 32768) v = roc - 1;
  } else {
    if (s_l - 32768 > seq) v = roc + 1;
  }
  if (v < 0) return SrtpStatus::kReplay;  // before the first packet of the stream
  if (static_cast<uint64_t>(v) > kMaxRoc) return SrtpStatus::kKeyExhausted;  // §9.2
  *index = static_cast<uint64_t>(v) << 16 | seq;
  return SrtpStatus::kOk;
}

// Slot recency (SrtpContext::tx_order_ and friends): four 2-bit slot numbers, the most
// recently used in bits 0-1. Moves `slot` to the front.
KARL_HOT uint8_t TouchSlot(uint8_t order, unsigned slot) noexcept {
  if ((order & 3u) == slot) return order;
  unsigned p = 1;
  while (((order >> (2 * p)) & 3u) != slot) ++p;
  const unsigned newer = order & ((1u << (2 * p)) - 1);       // positions 0 .. p-1
  const unsigned older = order & ~((1u << (2 * p + 2)) - 1);  // positions p+1 .. 3
  return static_cast<uint8_t>((older & 0xffu) | (newer << 2) | slot);
}

template <class Slot>
KARL_HOT int FindSlot(const Slot* slots, uint8_t order, uint32_t ssrc) noexcept {
  const unsigned last = order & 3u;
  if (slots[last].used && slots[last].ssrc == ssrc) return static_cast<int>(last);
  for (unsigned i = 0; i < SrtpContext::kSsrcSlots; ++i) {
    if (slots[i].used && slots[i].ssrc == ssrc) return static_cast<int>(i);
  }
  return -1;
}

// The slot a new SSRC takes: the first free one, else the least recently used.
template <class Slot>
KARL_HOT unsigned TakeSlot(const Slot* slots, uint8_t order) noexcept {
  for (unsigned i = 0; i < SrtpContext::kSsrcSlots; ++i) {
    if (!slots[i].used) return i;
  }
  return order >> 6;
}

}  // namespace

void SrtpContext::ReplayWindow::Init(uint32_t size) {
  size_ = size;
  words_ = (size + 63) / 64;
  if (words_ <= std::size(inline_)) {
    heap_.clear();
    bits_ = inline_;
  } else {
    heap_.assign(words_, 0);
    bits_ = heap_.data();
  }
  std::fill(bits_, bits_ + words_, uint64_t{0});
  highest_ = 0;
  started_ = false;
}

SrtpStatus SrtpContext::ReplayWindow::Check(uint64_t index) const noexcept {
  if (!started_) return SrtpStatus::kOk;
  return ReplayCheck(bits_, words_, size_, highest_, index);
}

void SrtpContext::ReplayWindow::Accept(uint64_t index) noexcept {
  if (!started_) {
    started_ = true;
    ReplayStart(bits_, words_, &highest_, index);
  } else {
    ReplayAccept(bits_, words_, &highest_, index);
  }
}

static_assert(SrtpContext::kSsrcSlots == 4, "the slot orders hold four 2-bit slot numbers");

KARL_HOT int SrtpContext::FindTx(uint32_t ssrc) const noexcept {
  return FindSlot(tx_slots_, tx_order_, ssrc);
}
KARL_HOT int SrtpContext::FindRx(uint32_t ssrc) const noexcept {
  return FindSlot(rx_slots_, rx_order_, ssrc);
}
KARL_HOT int SrtpContext::FindSrtcpTx(uint32_t ssrc) const noexcept {
  return FindSlot(srtcp_tx_slots_, srtcp_tx_order_, ssrc);
}
KARL_HOT int SrtpContext::FindSrtcpRx(uint32_t ssrc) const noexcept {
  return FindSlot(srtcp_rx_slots_, srtcp_rx_order_, ssrc);
}

KARL_HOT uint64_t* SrtpContext::RxBits(int slot) noexcept {
  return replay_words_ == 2 ? rx_slots_[slot].bits
                            : rx_heap_bits_.data() + size_t{replay_words_} * slot;
}
KARL_HOT const uint64_t* SrtpContext::RxBits(int slot) const noexcept {
  return const_cast<SrtpContext*>(this)->RxBits(slot);
}
KARL_HOT uint64_t* SrtpContext::SrtcpRxBits(int slot) noexcept {
  return replay_words_ == 2 ? srtcp_rx_slots_[slot].bits
                            : srtcp_heap_bits_.data() + size_t{replay_words_} * slot;
}
KARL_HOT const uint64_t* SrtpContext::SrtcpRxBits(int slot) const noexcept {
  return const_cast<SrtpContext*>(this)->SrtcpRxBits(slot);
}

KARL_HOT SrtpStatus SrtpContext::EstimateTx(int slot, uint16_t seq,
                                            uint64_t* index) const noexcept {
  return slot >= 0 ? EstimateIndex(true, tx_slots_[slot].highest(), seq, 0, index)
                   : EstimateIndex(false, 0, seq, tx_first_roc_, index);
}
KARL_HOT SrtpStatus SrtpContext::EstimateRx(int slot, uint16_t seq,
                                            uint64_t* index) const noexcept {
  return slot >= 0 ? EstimateIndex(true, rx_slots_[slot].highest, seq, 0, index)
                   : EstimateIndex(false, 0, seq, rx_first_roc_, index);
}

// The window of 128 (inline bits, words = 2) as a constant ring; larger ones on the heap.
KARL_HOT SrtpStatus SrtpContext::CheckRx(int slot, uint64_t index) const noexcept {
  if (slot < 0) return SrtpStatus::kOk;
  const RxSlot& r = rx_slots_[slot];
  if (replay_words_ == 2) return ReplayCheck(r.bits, 2, replay_size_, r.highest, index);
  return ReplayCheck(RxBits(slot), replay_words_, replay_size_, r.highest, index);
}
KARL_HOT SrtpStatus SrtpContext::CheckSrtcpRx(int slot, uint64_t index) const noexcept {
  if (slot < 0) return SrtpStatus::kOk;
  const SrtcpRxSlot& r = srtcp_rx_slots_[slot];
  if (replay_words_ == 2) return ReplayCheck(r.bits, 2, replay_size_, r.highest, index);
  return ReplayCheck(SrtcpRxBits(slot), replay_words_, replay_size_, r.highest, index);
}

KARL_HOT void SrtpContext::CommitTx(int slot, uint32_t ssrc, uint64_t index) noexcept {
  if (slot < 0) {
    slot = static_cast<int>(TakeSlot(tx_slots_, tx_order_));
    tx_slots_[slot].ssrc = ssrc;
    tx_slots_[slot].used = true;
    tx_slots_[slot].set_highest(index);
    tx_first_roc_ = 0;
  } else if (index > tx_slots_[slot].highest()) {
    tx_slots_[slot].set_highest(index);
  }
  tx_order_ = TouchSlot(tx_order_, static_cast<unsigned>(slot));
  ++tx_packets_;
}

KARL_HOT void SrtpContext::CommitRx(int slot, uint32_t ssrc, uint64_t index) noexcept {
  if (slot < 0) {
    slot = static_cast<int>(TakeSlot(rx_slots_, rx_order_));
    RxSlot& r = rx_slots_[slot];
    r.ssrc = ssrc;
    r.used = true;
    r.burst_epoch = 0;
    r.burst_highest = 0;
    ReplayStart(RxBits(slot), replay_words_, &r.highest, index);
    rx_first_roc_ = 0;
  } else if (replay_words_ == 2) {
    ReplayAccept(rx_slots_[slot].bits, 2, &rx_slots_[slot].highest, index);
  } else {
    ReplayAccept(RxBits(slot), replay_words_, &rx_slots_[slot].highest, index);
  }
  rx_order_ = TouchSlot(rx_order_, static_cast<unsigned>(slot));
  ++rx_packets_;
}

KARL_HOT void SrtpContext::CommitSrtcpTx(int slot, uint32_t ssrc, uint32_t index) noexcept {
  if (slot < 0) {
    slot = static_cast<int>(TakeSlot(srtcp_tx_slots_, srtcp_tx_order_));
    srtcp_tx_slots_[slot].ssrc = ssrc;
    srtcp_tx_slots_[slot].used = true;
  }
  srtcp_tx_slots_[slot].next_index = index + 1;
  srtcp_tx_order_ = TouchSlot(srtcp_tx_order_, static_cast<unsigned>(slot));
  ++srtcp_packets_;
}

KARL_HOT void SrtpContext::CommitSrtcpRx(int slot, uint32_t ssrc, uint64_t index) noexcept {
  if (slot < 0) {
    slot = static_cast<int>(TakeSlot(srtcp_rx_slots_, srtcp_rx_order_));
    srtcp_rx_slots_[slot].ssrc = ssrc;
    srtcp_rx_slots_[slot].used = true;
    ReplayStart(SrtcpRxBits(slot), replay_words_, &srtcp_rx_slots_[slot].highest, index);
  } else if (replay_words_ == 2) {
    ReplayAccept(srtcp_rx_slots_[slot].bits, 2, &srtcp_rx_slots_[slot].highest, index);
  } else {
    ReplayAccept(SrtcpRxBits(slot), replay_words_, &srtcp_rx_slots_[slot].highest, index);
  }
  srtcp_rx_order_ = TouchSlot(srtcp_rx_order_, static_cast<unsigned>(slot));
  ++srtcp_packets_;
}

std::optional<uint64_t> SrtpContext::highest_rx_index(uint32_t ssrc) const noexcept {
  const int slot = FindRx(ssrc);
  if (slot < 0) return std::nullopt;
  return rx_slots_[slot].highest;
}

std::optional<uint64_t> SrtpContext::highest_tx_index(uint32_t ssrc) const noexcept {
  const int slot = FindTx(ssrc);
  if (slot < 0) return std::nullopt;
  return tx_slots_[slot].highest();
}

// ---- SrtpContext ---------------------------------------------------------------------------

#if !defined(__SANITIZE_ADDRESS__)
namespace {

// Fixed-size slots carved from 2 MiB slabs. Control plane (contexts are made and destroyed
// there), under a mutex; slabs are kept for reuse, never returned.
class ContextSlab {
 public:
  void* Allocate(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty() && !Grow(size)) return nullptr;
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void Free(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(p);
  }

 private:
  static constexpr size_t kSlab = size_t{2} << 20;

  bool Grow(size_t size) {
    // Twice the size, then keep the 2 MiB-aligned half so one huge page can back it.
    void* m = mmap(nullptr, 2 * kSlab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    const uintptr_t start = reinterpret_cast<uintptr_t>(m);
    const uintptr_t aligned = (start + kSlab - 1) & ~(kSlab - 1);
    if (aligned != start) munmap(m, aligned - start);
    if (aligned + kSlab != start + 2 * kSlab) {
      munmap(reinterpret_cast<void*>(aligned + kSlab), start + kSlab - aligned);
    }
    madvise(reinterpret_cast<void*>(aligned), kSlab, MADV_HUGEPAGE);
    for (size_t off = kSlab - size; off + size <= kSlab; off -= size) {
      free_.push_back(reinterpret_cast<void*>(aligned + off));  // handed out low to high
      if (off < size) break;
    }
    return true;
  }

  std::mutex mu_;
  std::vector<void*> free_;
};

ContextSlab& Slab() {
  static ContextSlab* slab = new ContextSlab();  // never destroyed: contexts may outlive main
  return *slab;
}

}  // namespace
#endif

void* SrtpContext::operator new(size_t size, std::align_val_t align) {
#if defined(__SANITIZE_ADDRESS__)
  return ::operator new(size, align);
#else
  static_assert(sizeof(SrtpContext) % 64 == 0);
  if (static_cast<size_t>(align) > 64 || size != sizeof(SrtpContext)) {
    return ::operator new(size, align);
  }
  if (void* p = Slab().Allocate(size)) return p;
  throw std::bad_alloc();
#endif
}

void SrtpContext::operator delete(void* p, std::align_val_t align) noexcept {
#if defined(__SANITIZE_ADDRESS__)
  ::operator delete(p, align);
#else
  (void)align;
  if (p != nullptr) Slab().Free(p);
#endif
}

std::unique_ptr<SrtpContext> SrtpContext::Create(const SrtpConfig& config) {
  if (static_cast<size_t>(config.suite) >= kSrtpSuiteCount) return nullptr;
  const SrtpSuiteInfo& info = GetSrtpSuiteInfo(config.suite);
  if (config.master_key.size() != info.master_key_len ||
      config.master_salt.size() != info.master_salt_len) {
    return nullptr;
  }
  // RFC 7714 §11: the 96-bit GCM master salt enters the RFC 3711 KDF padded to 112 bits.
  uint8_t salt[14] = {};
  std::memcpy(salt, config.master_salt.data(), config.master_salt.size());
  SrtpSessionKeys rtp{}, rtcp{};
  const auto key = config.master_key;
  const size_t klen = info.master_key_len;
  bool ok = SrtpKdf(key, salt, kLabelRtpEnc, {rtp.enc_key, klen}) &&
            SrtpKdf(key, salt, kLabelRtpSalt, {rtp.salt, info.session_salt_len}) &&
            SrtpKdf(key, salt, kLabelRtcpEnc, {rtcp.enc_key, klen}) &&
            SrtpKdf(key, salt, kLabelRtcpSalt, {rtcp.salt, info.session_salt_len});
  if (!info.aead) {
    ok = ok && SrtpKdf(key, salt, kLabelRtpAuth, {rtp.auth_key, info.auth_key_len}) &&
         SrtpKdf(key, salt, kLabelRtcpAuth, {rtcp.auth_key, info.auth_key_len});
  }
  OPENSSL_cleanse(salt, sizeof(salt));
  std::unique_ptr<SrtpContext> ctx;
  if (ok) {
    ctx.reset(new SrtpContext());
    ok = ctx->Init(config.engine, config.suite, rtp, rtcp, config.mki, config.replay_window,
                   config.srtcp, config.direction) &&
         (config.engine != SrtpEngineKind::kLibsrtp || ctx->InitLibsrtp(config));
  }
  OPENSSL_cleanse(&rtp, sizeof(rtp));
  OPENSSL_cleanse(&rtcp, sizeof(rtcp));
  if (!ok) return nullptr;
  return ctx;
}

std::unique_ptr<SrtpContext> SrtpContext::CreateFromSessionKeys(SrtpSuite suite,
                                                                const SrtpSessionKeys& rtp,
                                                                const SrtpSessionKeys& rtcp,
                                                                uint32_t replay_window,
                                                                SrtpEngineKind engine) {
  if (static_cast<size_t>(suite) >= kSrtpSuiteCount) return nullptr;
  if (engine == SrtpEngineKind::kLibsrtp) return nullptr;
  std::unique_ptr<SrtpContext> ctx(new SrtpContext());
  if (!ctx->Init(engine, suite, rtp, rtcp, {}, replay_window, true, SrtpDirection::kBoth)) {
    return nullptr;
  }
  return ctx;
}

namespace {

// A cryptodev session for one half and direction of a kIpsecMb context (RFC 3711 §4.1.1
// AES-CM = AES-CTR on a full 16-octet counter block; §4.2 HMAC-SHA1, generated in full and
// truncated by Karl; RFC 7714 §8-9 AES-GCM, 16-octet tag, 12-octet AAD).
void* MakeSession(bool aead, bool protect, const SrtpSessionKeys& keys, uint16_t key_len) {
  const uint16_t iv_offset = srtp_internal::OpScratchOffset() + offsetof(SrtpOpScratch, iv);
  rte_crypto_sym_xform cipher, auth, gcm;
  std::memset(&cipher, 0, sizeof(cipher));
  std::memset(&auth, 0, sizeof(auth));
  std::memset(&gcm, 0, sizeof(gcm));
  if (aead) {
    gcm.type = RTE_CRYPTO_SYM_XFORM_AEAD;
    gcm.aead.op = protect ? RTE_CRYPTO_AEAD_OP_ENCRYPT : RTE_CRYPTO_AEAD_OP_DECRYPT;
    gcm.aead.algo = RTE_CRYPTO_AEAD_AES_GCM;
    gcm.aead.key.data = keys.enc_key;
    gcm.aead.key.length = key_len;
    gcm.aead.iv.offset = iv_offset;
    gcm.aead.iv.length = 12;
    gcm.aead.digest_length = 16;
    gcm.aead.aad_length = 12;
    return srtp_internal::CreateEngineSession(&gcm);
  }
  cipher.type = RTE_CRYPTO_SYM_XFORM_CIPHER;
  cipher.cipher.op = RTE_CRYPTO_CIPHER_OP_ENCRYPT;  // CTR: the same keystream both ways
  cipher.cipher.algo = RTE_CRYPTO_CIPHER_AES_CTR;
  cipher.cipher.key.data = keys.enc_key;
  cipher.cipher.key.length = key_len;
  cipher.cipher.iv.offset = iv_offset;
  cipher.cipher.iv.length = 16;
  auth.type = RTE_CRYPTO_SYM_XFORM_AUTH;
  auth.auth.op = RTE_CRYPTO_AUTH_OP_GENERATE;  // unprotect compares the tag itself
  auth.auth.algo = RTE_CRYPTO_AUTH_SHA1_HMAC;
  auth.auth.key.data = keys.auth_key;
  auth.auth.key.length = 20;
  auth.auth.digest_length = 20;
  if (protect) {  // encrypt, then the tag over the ciphertext (RFC 3711 §3.3)
    cipher.next = &auth;
    return srtp_internal::CreateEngineSession(&cipher);
  }
  auth.next = &cipher;  // the tag over what arrived, then decrypt
  return srtp_internal::CreateEngineSession(&auth);
}

}  // namespace

bool SrtpContext::Init(SrtpEngineKind engine, SrtpSuite suite, const SrtpSessionKeys& rtp,
                       const SrtpSessionKeys& rtcp, std::span<const uint8_t> mki,
                       uint32_t replay_window, bool srtcp, SrtpDirection direction) {
  const SrtpSuiteInfo& info = GetSrtpSuiteInfo(suite);
  if (replay_window < 128 || mki.size() > kSrtpMaxMkiLen) return false;
  engine_ = engine;
  suite_ = suite;
  aead_ = info.aead;
  aes256_ = info.master_key_len == 32;
  srtcp_ = srtcp;
  rtp_tag_len_ = info.rtp_tag_len;
  rtcp_tag_len_ = info.rtcp_tag_len;
  mki_len_ = static_cast<uint8_t>(mki.size());
  if (!mki.empty()) std::memcpy(mki_, mki.data(), mki.size());
  rtp_.keys = rtp;
  rtcp_.keys = rtcp;
  std::memcpy(rtp_salt_, rtp.salt, sizeof(rtp_salt_));
  const EVP_CIPHER* cipher =
      aead_ ? GcmCipher(info.master_key_len) : CtrCipher(info.master_key_len);
  for (Half* h : {&rtp_, &rtcp_}) {
    h->enc = EVP_CIPHER_CTX_new();
    if (h->enc == nullptr ||
        EVP_EncryptInit_ex(Ctx(h->enc), cipher, nullptr, h->keys.enc_key, nullptr) != 1) {
      return false;
    }
    if (aead_) {
      h->dec = EVP_CIPHER_CTX_new();
      if (h->dec == nullptr ||
          EVP_DecryptInit_ex(Ctx(h->dec), cipher, nullptr, h->keys.enc_key, nullptr) != 1) {
        return false;
      }
    } else {
      HmacSha1Init(h->keys.auth_key, info.auth_key_len, &h->hmac);
    }
  }
  // Every slot's replay ring: inline up to 128 indices, else replay_words_ per slot on
  // the heap (allocated here, once).
  replay_size_ = replay_window;
  replay_words_ = (replay_window + 63) / 64;
  if (replay_words_ > 2) {
    rx_heap_bits_.assign(size_t{replay_words_} * kSsrcSlots, 0);
    srtcp_heap_bits_.assign(size_t{replay_words_} * kSsrcSlots, 0);
  }
  if (engine == SrtpEngineKind::kIpsecMb) {
    session_generation_ = srtp_internal::CryptodevGeneration();
    if (session_generation_ == 0) return false;  // InitSrtpCrypto(kIpsecMb) not done
    const bool protect = direction != SrtpDirection::kUnprotect;
    const bool unprotect = direction != SrtpDirection::kProtect;
    for (Half* h : {&rtp_, &rtcp_}) {
      if (h == &rtcp_ && !srtcp_) break;
      void** sessions = h == &rtp_ ? rtp_sessions_ : rtcp_sessions_;
      if (protect) {
        sessions[kProtectDir] = MakeSession(aead_, true, h->keys, info.master_key_len);
        if (sessions[kProtectDir] == nullptr) return false;
      }
      if (unprotect) {
        sessions[kUnprotectDir] = MakeSession(aead_, false, h->keys, info.master_key_len);
        if (sessions[kUnprotectDir] == nullptr) return false;
      }
    }
  }
  return true;
}

SrtpContext::~SrtpContext() {
  for (Half* h : {&rtp_, &rtcp_}) {
    EVP_CIPHER_CTX_free(Ctx(h->enc));
    EVP_CIPHER_CTX_free(Ctx(h->dec));
  }
  // rte_cryptodev_sym_session_free zeroes the sessions' key material (FreeEngineSession
  // zeroes the direct path's keys itself).
  for (void** half : {rtp_sessions_, rtcp_sessions_}) {
    for (int dir : {kProtectDir, kUnprotectDir}) {
      srtp_internal::FreeEngineSession(half[dir], aead_, session_generation_);
    }
  }
  if (libsrtp_tx_ != nullptr) srtp_dealloc(static_cast<srtp_t>(libsrtp_tx_));
  if (libsrtp_rx_ != nullptr) srtp_dealloc(static_cast<srtp_t>(libsrtp_rx_));
  OPENSSL_cleanse(&rtp_.keys, sizeof(rtp_.keys));
  OPENSSL_cleanse(&rtcp_.keys, sizeof(rtcp_.keys));
  OPENSSL_cleanse(&rtp_.hmac, sizeof(rtp_.hmac));
  OPENSSL_cleanse(&rtcp_.hmac, sizeof(rtcp_.hmac));
}
SrtpStatus SrtpContext::SoftProtect(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept {
  const uint32_t n = *len;
  const uint32_t hl = RtpHeaderLen(pkt, n);
  if (hl == 0) return SrtpStatus::kTooShort;
  if (capacity < n || capacity - n < RtpTrailerLen()) return SrtpStatus::kNoRoom;
  // §3.3.1 per SSRC (§3.2.3): the sender state of this packet's SSRC.
  const uint32_t ssrc = Load32(pkt + 8);
  const int slot = FindTx(ssrc);
  uint64_t index;
  const SrtpStatus st = EstimateTx(slot, Load16(pkt + 2), &index);
  if (st != SrtpStatus::kOk) return st;
  if (tx_packets_ >= kMaxSrtpPackets) return SrtpStatus::kKeyExhausted;  // §9.2
  const uint32_t roc = static_cast<uint32_t>(index >> 16);
  if (aead_) {
    // RFC 7714 §8: AAD is the header; the tag follows the ciphertext, then the MKI.
    uint8_t iv[12];
    GcmIv(rtp_.keys.salt, ssrc, index, iv);
    if (!GcmSeal(rtp_.enc, iv, pkt, hl, nullptr, 0, pkt + hl, n - hl, pkt + n)) {
      return SrtpStatus::kAuthFailed;
    }
    std::memcpy(pkt + n + rtp_tag_len_, mki_, mki_len_);
  } else {
    // RFC 3711 §3.3: encrypt the payload, append MKI, then the tag over header ||
    // encrypted payload || ROC (§4.2).
    uint8_t iv[16];
    AesCmIv(rtp_.keys.salt, ssrc, index, iv);
    if (!CtrXor(rtp_.enc, iv, pkt + hl, n - hl)) return SrtpStatus::kAuthFailed;
    std::memcpy(pkt + n, mki_, mki_len_);
    uint8_t roc_be[4], mac[20];
    Store32(roc_be, roc);
    HmacSha1(rtp_.hmac, pkt, n, roc_be, 4, mac);
    std::memcpy(pkt + n + mki_len_, mac, rtp_tag_len_);
  }
  CommitTx(slot, ssrc, index);
  *len = n + RtpTrailerLen();
  return SrtpStatus::kOk;
}

SrtpStatus SrtpContext::SoftUnprotect(uint8_t* pkt, uint32_t* len) noexcept {
  const uint32_t total = *len;
  const uint32_t trailer = RtpTrailerLen();
  if (total < trailer) return SrtpStatus::kTooShort;
  const uint32_t n = total - trailer;  // header + payload
  const uint32_t hl = RtpHeaderLen(pkt, n);
  if (hl == 0) return SrtpStatus::kTooShort;
  if (rx_packets_ >= kMaxSrtpPackets) return SrtpStatus::kKeyExhausted;  // §9.2
  // §3.3.1 estimate and §3.3.2 replay check against this SSRC's state (§3.2.3; a new SSRC
  // is estimated from a fresh state), before spending cycles on the tag.
  const uint32_t ssrc = Load32(pkt + 8);
  const int slot = FindRx(ssrc);
  uint64_t index;
  SrtpStatus st = EstimateRx(slot, Load16(pkt + 2), &index);
  if (st != SrtpStatus::kOk) return st;
  st = CheckRx(slot, index);
  if (st != SrtpStatus::kOk) return st;
  if (aead_) {
    if (mki_len_ != 0 && CRYPTO_memcmp(pkt + n + rtp_tag_len_, mki_, mki_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    uint8_t iv[12];
    GcmIv(rtp_.keys.salt, ssrc, index, iv);
    if (!GcmOpen(rtp_.dec, iv, pkt, hl, nullptr, 0, pkt + hl, n - hl, pkt + n)) {
      return SrtpStatus::kAuthFailed;
    }
  } else {
    if (mki_len_ != 0 && CRYPTO_memcmp(pkt + n, mki_, mki_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    uint8_t roc_be[4], mac[20];
    Store32(roc_be, static_cast<uint32_t>(index >> 16));
    HmacSha1(rtp_.hmac, pkt, n, roc_be, 4, mac);
    if (CRYPTO_memcmp(mac, pkt + n + mki_len_, rtp_tag_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    uint8_t iv[16];
    AesCmIv(rtp_.keys.salt, ssrc, index, iv);
    if (!CtrXor(rtp_.enc, iv, pkt + hl, n - hl)) return SrtpStatus::kAuthFailed;
  }
  // §3.3 step 6: only an authenticated packet moves ROC, s_l and the replay list, and
  // only it installs a new SSRC (a forged one never evicts a live SSRC).
  CommitRx(slot, ssrc, index);
  *len = n;
  return SrtpStatus::kOk;
}

SrtpStatus SrtpContext::SoftProtectRtcp(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept {
  const uint32_t n = *len;
  if (!srtcp_) return SrtpStatus::kAuthFailed;
  if (n < 8) return SrtpStatus::kTooShort;
  if (capacity < n || capacity - n < RtcpTrailerLen()) return SrtpStatus::kNoRoom;
  if (srtcp_packets_ >= kMaxSrtcpPackets) return SrtpStatus::kKeyExhausted;  // §9.2
  // The SRTCP index of the sender SSRC (§3.4, per SSRC as §3.2.3).
  const uint32_t ssrc = Load32(pkt + 4);
  const int slot = FindSrtcpTx(ssrc);
  const uint32_t index = slot >= 0 ? srtcp_tx_slots_[slot].next_index : srtcp_first_index_;
  if (index > kMaxSrtcpIndex) return SrtpStatus::kKeyExhausted;  // the 31-bit index is used up
  const uint32_t e_index = 0x80000000u | index;                  // E = 1: always encrypted
  if (aead_) {
    // RFC 7714 §9: AAD = first 8 octets || E||index; ciphertext || tag || E||index || MKI.
    uint8_t iv[12], ei[4];
    Store32(ei, e_index);
    GcmIv(rtcp_.keys.salt, ssrc, index, iv);
    if (!GcmSeal(rtcp_.enc, iv, pkt, 8, ei, 4, pkt + 8, n - 8, pkt + n)) {
      return SrtpStatus::kAuthFailed;
    }
    std::memcpy(pkt + n + 16, ei, 4);
    std::memcpy(pkt + n + 20, mki_, mki_len_);
  } else {
    // RFC 3711 §3.4: encrypted portion || E||index || MKI || tag, the tag over all but MKI.
    uint8_t iv[16];
    AesCmIv(rtcp_.keys.salt, ssrc, index, iv);
    if (!CtrXor(rtcp_.enc, iv, pkt + 8, n - 8)) return SrtpStatus::kAuthFailed;
    Store32(pkt + n, e_index);
    std::memcpy(pkt + n + 4, mki_, mki_len_);
    uint8_t mac[20];
    HmacSha1(rtcp_.hmac, pkt, n + 4, nullptr, 0, mac);
    std::memcpy(pkt + n + 4 + mki_len_, mac, rtcp_tag_len_);
  }
  CommitSrtcpTx(slot, ssrc, index);
  *len = n + RtcpTrailerLen();
  return SrtpStatus::kOk;
}

SrtpStatus SrtpContext::SoftUnprotectRtcp(uint8_t* pkt, uint32_t* len) noexcept {
  const uint32_t total = *len;
  if (!srtcp_) return SrtpStatus::kAuthFailed;
  const uint32_t trailer = RtcpTrailerLen();
  if (total < 8 + trailer) return SrtpStatus::kTooShort;
  if (srtcp_packets_ >= kMaxSrtcpPackets) return SrtpStatus::kKeyExhausted;  // §9.2
  const uint32_t n = total - trailer;  // the RTCP compound packet
  const uint32_t ssrc = Load32(pkt + 4);
  const int slot = FindSrtcpRx(ssrc);
  if (aead_) {
    const uint8_t* tag = pkt + n;
    const uint8_t* ei = pkt + n + 16;
    const uint32_t e_index = Load32(ei);
    const uint32_t index = e_index & kMaxSrtcpIndex;
    const SrtpStatus st = CheckSrtcpRx(slot, index);
    if (st != SrtpStatus::kOk) return st;
    if (mki_len_ != 0 && CRYPTO_memcmp(pkt + n + 20, mki_, mki_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    uint8_t iv[12];
    GcmIv(rtcp_.keys.salt, ssrc, index, iv);
    const bool ok = (e_index & 0x80000000u)
                        ? GcmOpen(rtcp_.dec, iv, pkt, 8, ei, 4, pkt + 8, n - 8, tag)
                        // RFC 7714 §9.2 (E=0): the whole packet is AAD, nothing encrypted.
                        : GcmOpen(rtcp_.dec, iv, pkt, n, ei, 4, nullptr, 0, tag);
    if (!ok) return SrtpStatus::kAuthFailed;
    CommitSrtcpRx(slot, ssrc, index);
  } else {
    const uint8_t* ei = pkt + n;
    const uint32_t e_index = Load32(ei);
    const uint32_t index = e_index & kMaxSrtcpIndex;
    const SrtpStatus st = CheckSrtcpRx(slot, index);
    if (st != SrtpStatus::kOk) return st;
    if (mki_len_ != 0 && CRYPTO_memcmp(pkt + n + 4, mki_, mki_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    uint8_t mac[20];
    HmacSha1(rtcp_.hmac, pkt, n + 4, nullptr, 0, mac);
    if (CRYPTO_memcmp(mac, pkt + n + 4 + mki_len_, rtcp_tag_len_) != 0) {
      return SrtpStatus::kAuthFailed;
    }
    if (e_index & 0x80000000u) {
      uint8_t iv[16];
      AesCmIv(rtcp_.keys.salt, ssrc, index, iv);
      if (!CtrXor(rtcp_.enc, iv, pkt + 8, n - 8)) return SrtpStatus::kAuthFailed;
    }
    CommitSrtcpRx(slot, ssrc, index);
  }
  *len = n;
  return SrtpStatus::kOk;
}

// ---- Single-packet calls and the one-at-a-time path -----------------------------------------

namespace {

SrtpStatus RunOnControlPlane(SrtpContext* ctx, SrtpOp op, uint8_t* pkt, uint32_t* len,
                             uint32_t capacity) noexcept {
  SrtpEngine* engine = srtp_internal::ControlPlaneEngine();
  if (engine == nullptr) return SrtpStatus::kAuthFailed;  // CloseSrtpCrypto already ran
  SrtpJob job;
  job.ctx = ctx;
  job.pkt = pkt;
  job.len = *len;
  job.capacity = capacity;
  job.op = op;
  engine->Run(&job, 1);
  if (job.status == SrtpStatus::kOk) *len = job.len;
  return job.status;
}

}  // namespace

SrtpStatus SrtpContext::Protect(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept {
  if (engine_ == SrtpEngineKind::kOpenssl) return SoftProtect(pkt, len, capacity);
  if (engine_ == SrtpEngineKind::kIpsecMb) {
    return RunOnControlPlane(this, SrtpOp::kProtect, pkt, len, capacity);
  }
  SrtpJob job;
  job.pkt = pkt;
  job.len = *len;
  job.capacity = capacity;
  job.op = SrtpOp::kProtect;
  return LibsrtpRun(job, len);
}

SrtpStatus SrtpContext::Unprotect(uint8_t* pkt, uint32_t* len) noexcept {
  if (engine_ == SrtpEngineKind::kOpenssl) return SoftUnprotect(pkt, len);
  if (engine_ == SrtpEngineKind::kIpsecMb) {
    return RunOnControlPlane(this, SrtpOp::kUnprotect, pkt, len, *len);
  }
  SrtpJob job;
  job.pkt = pkt;
  job.len = *len;
  job.capacity = *len;
  job.op = SrtpOp::kUnprotect;
  return LibsrtpRun(job, len);
}

SrtpStatus SrtpContext::ProtectRtcp(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept {
  if (engine_ == SrtpEngineKind::kOpenssl) return SoftProtectRtcp(pkt, len, capacity);
  if (engine_ == SrtpEngineKind::kIpsecMb) {
    return RunOnControlPlane(this, SrtpOp::kProtectRtcp, pkt, len, capacity);
  }
  SrtpJob job;
  job.pkt = pkt;
  job.len = *len;
  job.capacity = capacity;
  job.op = SrtpOp::kProtectRtcp;
  return LibsrtpRun(job, len);
}

SrtpStatus SrtpContext::UnprotectRtcp(uint8_t* pkt, uint32_t* len) noexcept {
  if (engine_ == SrtpEngineKind::kOpenssl) return SoftUnprotectRtcp(pkt, len);
  if (engine_ == SrtpEngineKind::kIpsecMb) {
    return RunOnControlPlane(this, SrtpOp::kUnprotectRtcp, pkt, len, *len);
  }
  SrtpJob job;
  job.pkt = pkt;
  job.len = *len;
  job.capacity = *len;
  job.op = SrtpOp::kUnprotectRtcp;
  return LibsrtpRun(job, len);
}

void SrtpContext::RunInline(SrtpJob& job) noexcept {
  if (engine_ == SrtpEngineKind::kLibsrtp) {
    job.status = LibsrtpRun(job, &job.len);
    return;
  }
  switch (job.op) {
    case SrtpOp::kProtect:
      job.status = SoftProtect(job.pkt, &job.len, job.capacity);
      break;
    case SrtpOp::kUnprotect:
      job.status = SoftUnprotect(job.pkt, &job.len);
      break;
    case SrtpOp::kProtectRtcp:
      job.status = SoftProtectRtcp(job.pkt, &job.len, job.capacity);
      break;
    case SrtpOp::kUnprotectRtcp:
      job.status = SoftUnprotectRtcp(job.pkt, &job.len);
      break;
  }
}

// ---- libsrtp2 ---------------------------------------------------------------------------------

namespace {

bool g_libsrtp_up = false;  // control plane

void SetLibsrtpPolicy(SrtpSuite suite, srtp_crypto_policy_t* rtp, srtp_crypto_policy_t* rtcp) {
  switch (suite) {
    case SrtpSuite::kAesCm128HmacSha1_80:
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(rtp);
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(rtcp);
      break;
    case SrtpSuite::kAesCm128HmacSha1_32:
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(rtp);
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(rtcp);  // RFC 4568 §6.2.2
      break;
    case SrtpSuite::kAes256CmHmacSha1_80:
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(rtp);
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(rtcp);
      break;
    case SrtpSuite::kAes256CmHmacSha1_32:
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(rtp);
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(rtcp);
      break;
    case SrtpSuite::kAeadAes128Gcm:
      srtp_crypto_policy_set_aes_gcm_128_16_auth(rtp);
      srtp_crypto_policy_set_aes_gcm_128_16_auth(rtcp);
      break;
    case SrtpSuite::kAeadAes256Gcm:
      srtp_crypto_policy_set_aes_gcm_256_16_auth(rtp);
      srtp_crypto_policy_set_aes_gcm_256_16_auth(rtcp);
      break;
  }
}

SrtpStatus FromLibsrtp(srtp_err_status_t st) noexcept {
  switch (st) {
    case srtp_err_status_ok:
      return SrtpStatus::kOk;
    case srtp_err_status_replay_fail:
    case srtp_err_status_replay_old:
      return SrtpStatus::kReplay;
    case srtp_err_status_key_expired:
      return SrtpStatus::kKeyExhausted;
    case srtp_err_status_bad_param:
    case srtp_err_status_parse_err:
      return SrtpStatus::kTooShort;
    default:
      return SrtpStatus::kAuthFailed;  // auth_fail, bad_mki, cipher_fail, ...
  }
}

}  // namespace

bool srtp_internal::EnsureLibsrtp() noexcept {
  if (!g_libsrtp_up) g_libsrtp_up = srtp_init() == srtp_err_status_ok;
  return g_libsrtp_up;
}

void srtp_internal::ShutdownLibsrtp() noexcept {
  if (g_libsrtp_up) srtp_shutdown();
  g_libsrtp_up = false;
}

bool SrtpContext::InitLibsrtp(const SrtpConfig& config) {
  if (!srtp_internal::EnsureLibsrtp() || config.replay_window >= 0x8000) return false;
  // libsrtp2 takes non-const key pointers; it copies them in srtp_create.
  uint8_t key[32 + 14];
  uint8_t mki[kSrtpMaxMkiLen];
  std::memcpy(key, config.master_key.data(), config.master_key.size());
  std::memcpy(key + config.master_key.size(), config.master_salt.data(), config.master_salt.size());
  if (!config.mki.empty()) std::memcpy(mki, config.mki.data(), config.mki.size());
  srtp_master_key_t master;
  master.key = key;
  master.mki_id = mki;
  master.mki_size = static_cast<unsigned>(config.mki.size());
  srtp_master_key_t* masters[1] = {&master};
  bool ok = true;
  for (void** session : {&libsrtp_tx_, &libsrtp_rx_}) {
    const bool tx = session == &libsrtp_tx_;
    if (config.direction == (tx ? SrtpDirection::kUnprotect : SrtpDirection::kProtect)) continue;
    srtp_policy_t p;
    std::memset(&p, 0, sizeof(p));
    SetLibsrtpPolicy(config.suite, &p.rtp, &p.rtcp);
    p.ssrc.type = tx ? ssrc_any_outbound : ssrc_any_inbound;
    if (config.mki.empty()) {
      p.key = key;
    } else {
      p.keys = masters;
      p.num_master_keys = 1;
    }
    p.window_size = config.replay_window;
    p.allow_repeat_tx = 0;
    srtp_t s = nullptr;
    ok = ok && srtp_create(&s, &p) == srtp_err_status_ok;
    *session = s;
  }
  OPENSSL_cleanse(key, sizeof(key));
  return ok;
}

// libsrtp2 2.5 writes nothing past the trailer it appends (read in its srtp.c and
// aes_gcm_nss.c: the tag goes right after the ciphertext, then the MKI / E||index), so the
// capacity check is the same as Karl's. srtp_protect/srtp_unprotect allocate only when an
// SSRC is seen for the first time (the ssrc_any_* template is cloned into a stream).
SrtpStatus SrtpContext::LibsrtpRun(const SrtpJob& job, uint32_t* len) noexcept {
  const bool protect = job.op == SrtpOp::kProtect || job.op == SrtpOp::kProtectRtcp;
  if ((protect ? libsrtp_tx_ : libsrtp_rx_) == nullptr) {
    // A direction the config left out (SrtpConfig::direction): Karl's software transform,
    // which produces the same packets.
    uint8_t* pkt = job.pkt;
    switch (job.op) {
      case SrtpOp::kProtect:
        return SoftProtect(pkt, len, job.capacity);
      case SrtpOp::kUnprotect:
        return SoftUnprotect(pkt, len);
      case SrtpOp::kProtectRtcp:
        return SoftProtectRtcp(pkt, len, job.capacity);
      case SrtpOp::kUnprotectRtcp:
        return SoftUnprotectRtcp(pkt, len);
    }
  }
  const uint32_t n = job.len;
  int out = static_cast<int>(n);
  const unsigned use_mki = mki_len_ != 0 ? 1 : 0;
  srtp_t tx = static_cast<srtp_t>(libsrtp_tx_);
  srtp_t rx = static_cast<srtp_t>(libsrtp_rx_);
  srtp_err_status_t st = srtp_err_status_fail;
  switch (job.op) {
    case SrtpOp::kProtect: {
      if (RtpHeaderLen(job.pkt, n) == 0) return SrtpStatus::kTooShort;
      if (job.capacity < n || job.capacity - n < RtpTrailerLen()) return SrtpStatus::kNoRoom;
      st = srtp_protect_mki(tx, job.pkt, &out, use_mki, 0);
      break;
    }
    case SrtpOp::kUnprotect:
      if (n < RtpTrailerLen() || RtpHeaderLen(job.pkt, n - RtpTrailerLen()) == 0) {
        return SrtpStatus::kTooShort;
      }
      st = srtp_unprotect_mki(rx, job.pkt, &out, use_mki);
      break;
    case SrtpOp::kProtectRtcp:
      if (!srtcp_) return SrtpStatus::kAuthFailed;
      if (n < 8) return SrtpStatus::kTooShort;
      if (job.capacity < n || job.capacity - n < RtcpTrailerLen()) return SrtpStatus::kNoRoom;
      st = srtp_protect_rtcp_mki(tx, job.pkt, &out, use_mki, 0);
      break;
    case SrtpOp::kUnprotectRtcp:
      if (!srtcp_) return SrtpStatus::kAuthFailed;
      if (n < 8 + RtcpTrailerLen()) return SrtpStatus::kTooShort;
      st = srtp_unprotect_rtcp_mki(rx, job.pkt, &out, use_mki);
      break;
  }
  const SrtpStatus status = FromLibsrtp(st);
  if (status != SrtpStatus::kOk) return status;
  *len = static_cast<uint32_t>(out);
  // Karl's own bookkeeping of what libsrtp2 (which keeps its own stream per SSRC, made
  // once a packet of a new SSRC authenticates) sent and accepted: highest_*_index() and the
  // §9.2 counts. libsrtp2 enforces its own key limit.
  uint64_t index;
  switch (job.op) {
    case SrtpOp::kProtect: {
      const uint32_t ssrc = Load32(job.pkt + 8);
      const int slot = FindTx(ssrc);
      if (EstimateTx(slot, Load16(job.pkt + 2), &index) == SrtpStatus::kOk) {
        CommitTx(slot, ssrc, index);
      }
      break;
    }
    case SrtpOp::kUnprotect: {
      const uint32_t ssrc = Load32(job.pkt + 8);
      const int slot = FindRx(ssrc);
      if (EstimateRx(slot, Load16(job.pkt + 2), &index) == SrtpStatus::kOk &&
          CheckRx(slot, index) == SrtpStatus::kOk) {
        CommitRx(slot, ssrc, index);
      }
      break;
    }
    case SrtpOp::kProtectRtcp:
    case SrtpOp::kUnprotectRtcp:
      ++srtcp_packets_;
      break;
  }
  return SrtpStatus::kOk;
}

// ---- The kIpsecMb engine's framing -------------------------------------------------------------

namespace {

// RFC 7714 §8.2 / §9.3: the AAD the GCM sessions are made for (a 12-octet RTP header with
// no CSRC or extension; SRTCP's first 8 octets || E||index).
constexpr uint32_t kGcmAadLen = 12;

// The symmetric op after an rte_crypto_op (its C++ declaration is a zero-length array,
// which GCC 12's -Warray-bounds refuses to index).
inline rte_crypto_sym_op* SymOp(rte_crypto_op* op) noexcept {
  return reinterpret_cast<rte_crypto_sym_op*>(reinterpret_cast<uint8_t*>(op) +
                                              sizeof(rte_crypto_op));
}

// Where SrtpOpScratch starts in an op of the engine's op pool (after the symmetric op).
constexpr uint32_t kScratchOffset = sizeof(rte_crypto_op) + sizeof(rte_crypto_sym_op);

SrtpOpScratch* Scratch(rte_crypto_op* op) noexcept {
  return rte_crypto_op_ctod_offset(op, SrtpOpScratch*, kScratchOffset);
}
rte_iova_t ScratchIova(rte_crypto_op* op, size_t field) noexcept {
  return rte_crypto_op_ctophys_offset(op, kScratchOffset + field);
}

void AttachSession(rte_crypto_op* op, void* session) noexcept {
  op->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
  op->sess_type = RTE_CRYPTO_OP_WITH_SESSION;
  SymOp(op)->session = session;
}

// The device ran the op (successfully or to a failed tag check), so the packet changed.
bool DeviceRan(const rte_crypto_op* op) noexcept {
  return op->status == RTE_CRYPTO_OP_STATUS_SUCCESS ||
         op->status == RTE_CRYPTO_OP_STATUS_AUTH_FAILED;
}

}  // namespace

// The layout PrefetchLines and the hot path rely on: the config line, then the sender
// slots' line, then one line per receiver slot; the SRTCP half after the RTP half's lines.
void SrtpContext::CheckLayout() noexcept {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
  static_assert(offsetof(SrtpContext, tx_slots_) == 64);
  static_assert(offsetof(SrtpContext, rx_slots_) == 128);
  static_assert(offsetof(SrtpContext, rtcp_sessions_) >=
                offsetof(SrtpContext, rx_slots_) + sizeof(RxSlot) * kSsrcSlots + 64);
#pragma GCC diagnostic pop
  // Contexts sit side by side in the slabs and the engine reads the same lines of each:
  // with a power-of-two size (or any even number of lines) those lines fall into a
  // fraction of the cache sets (a 1,024-octet context looked 5-10% slower on the
  // ipsec_mb GCM path with 1,000 streams than this one).
  static_assert(sizeof(SrtpContext) % 128 == 64, "an odd number of cache lines");
}

const void* SrtpContext::DeviceSession(SrtpOp op) const noexcept {
  const bool protect = op == SrtpOp::kProtect || op == SrtpOp::kProtectRtcp;
  const bool rtcp = op == SrtpOp::kProtectRtcp || op == SrtpOp::kUnprotectRtcp;
  const int dir = protect ? kProtectDir : kUnprotectDir;
  return rtcp ? rtcp_sessions_[dir] : rtp_sessions_[dir];
}

uint64_t SrtpContext::DeviceSessionLines() const noexcept {
  return srtp_internal::g_session_prefetch_lines[aead_ ? 1 : 0][aes256() ? 1 : 0];
}

void SrtpContext::PrefetchFor(const SrtpJob& job) const noexcept {
  if (const void* session = DeviceSession(job.op)) {
    srtp_internal::PrefetchLines(session, DeviceSessionLines());
  }
  if (job.op == SrtpOp::kProtect || job.op == SrtpOp::kProtectRtcp) return;
  const bool rtcp = job.op == SrtpOp::kUnprotectRtcp;
  const unsigned last = (rtcp ? srtcp_rx_order_ : rx_order_) & 3u;
  if (!rtcp && last != 0) rte_prefetch0(&rx_slots_[last]);
  if (replay_words_ != 2)
    rte_prefetch0(rtcp ? SrtcpRxBits(static_cast<int>(last)) : RxBits(static_cast<int>(last)));
}

SrtpContext::Step SrtpContext::Prepare(SrtpJob& job, rte_crypto_op* op, uint32_t base,
                                       uint64_t epoch, Pending* p) noexcept {
  p->step = Step::kDone;
  if (engine_ != SrtpEngineKind::kIpsecMb) {
    // Another engine's context: protects now (the sender state is not shared with any
    // unprotect), unprotects in order after the device ops.
    if (job.op == SrtpOp::kProtect || job.op == SrtpOp::kProtectRtcp) {
      RunInline(job);
      return p->step = Step::kDone;
    }
    return p->step = Step::kInline;
  }
  if (job.op == SrtpOp::kProtect || job.op == SrtpOp::kUnprotect) {
    return p->step = PrepareRtp(job, op, base, epoch, p);
  }
  return p->step = PrepareRtcp(job, op, base, p);
}

SrtpContext::Step SrtpContext::PrepareRtp(SrtpJob& job, rte_crypto_op* op, uint32_t base,
                                          uint64_t epoch, Pending* p) noexcept {
  uint8_t* pkt = job.pkt;
  rte_crypto_sym_op* sym = SymOp(op);
  SrtpOpScratch* s = Scratch(op);
  const rte_mbuf* m = sym->m_src;
  if (job.op == SrtpOp::kProtect) {
    const uint32_t n = job.len;
    const uint32_t hl = RtpHeaderLen(pkt, n);
    if (hl == 0 || job.capacity < n || job.capacity - n < RtpTrailerLen() ||
        rtp_sessions_[kProtectDir] == nullptr || (aead_ && hl != kGcmAadLen) ||
        tx_packets_ >= kMaxSrtpPackets) {
      job.status = SoftProtect(pkt, &job.len, job.capacity);  // and its early verdicts
      return Step::kDone;
    }
    const uint32_t ssrc = Load32(pkt + 8);
    const int slot = FindTx(ssrc);
    uint64_t index;
    const SrtpStatus st = EstimateTx(slot, Load16(pkt + 2), &index);
    if (st != SrtpStatus::kOk) {
      job.status = st;
      return Step::kDone;
    }
    // The sender's state moves now, in job order (nothing on the device can undo a send).
    CommitTx(slot, ssrc, index);
    if (aead_) {
      // RFC 7714 §8.1-8.2: IV from SSRC and ROC||SEQ, AAD = the header, tag after the
      // ciphertext (then the MKI, written by Finish).
      GcmIv(rtp_salt_, ssrc, index, s->iv);
      std::memcpy(s->aad, pkt, kGcmAadLen);
      sym->aead.data.offset = base + hl;
      sym->aead.data.length = n - hl;
      sym->aead.digest.data = pkt + n;
      sym->aead.digest.phys_addr = rte_pktmbuf_iova_offset(m, base + n);
      sym->aead.aad.data = s->aad;
      sym->aead.aad.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, aad));
    } else {
      // RFC 3711 §3.3 / §4.2: encrypt the payload, then HMAC over header || ciphertext ||
      // ROC; the ROC goes where the trailer will be (Finish writes MKI and tag over it).
      AesCmIv(rtp_salt_, ssrc, index, s->iv);
      Store32(pkt + n, static_cast<uint32_t>(index >> 16));
      sym->cipher.data.offset = base + hl;
      sym->cipher.data.length = n - hl;
      sym->auth.data.offset = base;
      sym->auth.data.length = n + 4;
      sym->auth.digest.data = s->mac;
      sym->auth.digest.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, mac));
    }
    AttachSession(op, rtp_sessions_[kProtectDir]);
    p->index = index;
    p->n = n;
    p->hl = hl;
    return Step::kDevice;
  }

  // Unprotect. Anything that is not plainly a candidate for the device runs in software
  // after the device ops, in job order, where its verdict is exactly the one-at-a-time one.
  const uint32_t total = job.len;
  const uint32_t trailer = RtpTrailerLen();
  if (total < trailer) {
    job.status = SrtpStatus::kTooShort;
    return Step::kDone;
  }
  const uint32_t n = total - trailer;
  const uint32_t hl = RtpHeaderLen(pkt, n);
  if (hl == 0) {
    job.status = SrtpStatus::kTooShort;
    return Step::kDone;
  }
  // The base of the guess: this SSRC's state as the burst's earlier unprotects of it would
  // leave it if they authenticate; for an SSRC with no slot, the one new SSRC the burst may
  // guess for (pending_*), else a fresh state. Other SSRCs' packets do not matter.
  const uint32_t ssrc = Load32(pkt + 8);
  const int slot = FindRx(ssrc);
  bool started = true;
  uint64_t highest = 0;
  uint32_t first_roc = 0;
  if (slot >= 0) {
    const RxSlot& r = rx_slots_[slot];
    highest = r.burst_epoch == epoch ? r.burst_highest : r.highest;
  } else if (pending_epoch_ == epoch) {
    if (pending_ssrc_ != ssrc) return Step::kInline;  // a second new SSRC in this burst
    highest = pending_highest_;
  } else {
    started = false;
    first_roc = rx_first_roc_;
  }
  uint64_t index;
  if (EstimateIndex(started, highest, Load16(pkt + 2), first_roc, &index) != SrtpStatus::kOk ||
      CheckRx(slot, index) != SrtpStatus::kOk || rx_packets_ >= kMaxSrtpPackets ||
      (mki_len_ != 0 && CRYPTO_memcmp(pkt + n + (aead_ ? rtp_tag_len_ : 0), mki_, mki_len_))) {
    return Step::kInline;  // the software path gives the verdict (replay, MKI) in order
  }
  const uint64_t guess = started ? std::max(highest, index) : index;
  if (slot >= 0) {
    rx_slots_[slot].burst_epoch = epoch;
    rx_slots_[slot].burst_highest = guess;
  } else {
    pending_epoch_ = epoch;
    pending_ssrc_ = ssrc;
    pending_highest_ = guess;
  }
  if (rtp_sessions_[kUnprotectDir] == nullptr || (aead_ && hl != kGcmAadLen)) return Step::kInline;
  if (aead_) {
    GcmIv(rtp_salt_, ssrc, index, s->iv);
    std::memcpy(s->aad, pkt, kGcmAadLen);
    sym->aead.data.offset = base + hl;
    sym->aead.data.length = n - hl;
    sym->aead.digest.data = pkt + n;  // the received tag; the device checks it
    sym->aead.digest.phys_addr = rte_pktmbuf_iova_offset(m, base + n);
    sym->aead.aad.data = s->aad;
    sym->aead.aad.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, aad));
  } else {
    // HMAC over header || payload || ROC (RFC 3711 §4.2): keep the received MKI and tag,
    // put the estimated ROC after the payload, then decrypt. Finish compares the tags.
    std::memcpy(s->trailer, pkt + n, trailer);
    AesCmIv(rtp_salt_, ssrc, index, s->iv);
    Store32(pkt + n, static_cast<uint32_t>(index >> 16));
    sym->auth.data.offset = base;
    sym->auth.data.length = n + 4;
    sym->auth.digest.data = s->mac;
    sym->auth.digest.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, mac));
    sym->cipher.data.offset = base + hl;
    sym->cipher.data.length = n - hl;
  }
  AttachSession(op, rtp_sessions_[kUnprotectDir]);
  p->index = index;
  p->n = n;
  p->hl = hl;
  return Step::kDevice;
}

SrtpContext::Step SrtpContext::PrepareRtcp(SrtpJob& job, rte_crypto_op* op, uint32_t base,
                                           Pending* p) noexcept {
  uint8_t* pkt = job.pkt;
  rte_crypto_sym_op* sym = SymOp(op);
  SrtpOpScratch* s = Scratch(op);
  const rte_mbuf* m = sym->m_src;
  if (job.op == SrtpOp::kProtectRtcp) {
    const uint32_t n = job.len;
    const uint32_t ssrc = n >= 8 ? Load32(pkt + 4) : 0;
    const int slot = FindSrtcpTx(ssrc);
    const uint32_t index = slot >= 0 ? srtcp_tx_slots_[slot].next_index : srtcp_first_index_;
    if (!srtcp_ || n < 8 || job.capacity < n || job.capacity - n < RtcpTrailerLen() ||
        index > kMaxSrtcpIndex || srtcp_packets_ >= kMaxSrtcpPackets ||
        rtcp_sessions_[kProtectDir] == nullptr) {
      job.status = SoftProtectRtcp(pkt, &job.len, job.capacity);
      return Step::kDone;
    }
    CommitSrtcpTx(slot, ssrc, index);
    const uint32_t e_index = 0x80000000u | index;  // E = 1: always encrypted
    if (aead_) {
      // RFC 7714 §9: AAD = first 8 octets || E||index; ciphertext || tag || E||index || MKI.
      GcmIv(rtcp_.keys.salt, ssrc, index, s->iv);
      std::memcpy(s->aad, pkt, 8);
      Store32(s->aad + 8, e_index);
      sym->aead.data.offset = base + 8;
      sym->aead.data.length = n - 8;
      sym->aead.digest.data = pkt + n;
      sym->aead.digest.phys_addr = rte_pktmbuf_iova_offset(m, base + n);
      sym->aead.aad.data = s->aad;
      sym->aead.aad.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, aad));
    } else {
      // RFC 3711 §3.4: encrypted portion || E||index || MKI || tag over all but the MKI.
      AesCmIv(rtcp_.keys.salt, ssrc, index, s->iv);
      Store32(pkt + n, e_index);
      sym->cipher.data.offset = base + 8;
      sym->cipher.data.length = n - 8;
      sym->auth.data.offset = base;
      sym->auth.data.length = n + 4;
      sym->auth.digest.data = s->mac;
      sym->auth.digest.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, mac));
    }
    AttachSession(op, rtcp_sessions_[kProtectDir]);
    p->index = index;
    p->e_index = e_index;
    p->n = n;
    p->hl = 8;
    return Step::kDevice;
  }

  const uint32_t total = job.len;
  const uint32_t trailer = RtcpTrailerLen();
  if (!srtcp_) {
    job.status = SrtpStatus::kAuthFailed;
    return Step::kDone;
  }
  if (total < 8 + trailer) {
    job.status = SrtpStatus::kTooShort;
    return Step::kDone;
  }
  const uint32_t n = total - trailer;
  const uint8_t* ei = pkt + n + (aead_ ? 16 : 0);
  const uint32_t e_index = Load32(ei);
  const uint32_t index = e_index & kMaxSrtcpIndex;
  const uint8_t* mki = pkt + n + (aead_ ? 20 : 4);
  const uint32_t ssrc = Load32(pkt + 4);
  if (srtcp_packets_ >= kMaxSrtcpPackets ||
      CheckSrtcpRx(FindSrtcpRx(ssrc), index) != SrtpStatus::kOk ||
      (mki_len_ != 0 && CRYPTO_memcmp(mki, mki_, mki_len_) != 0) ||
      rtcp_sessions_[kUnprotectDir] == nullptr || (aead_ && (e_index & 0x80000000u) == 0)) {
    return Step::kInline;  // replay, MKI, no session, or GCM with E=0 (variable AAD)
  }
  if (aead_) {
    GcmIv(rtcp_.keys.salt, ssrc, index, s->iv);
    std::memcpy(s->aad, pkt, 8);
    Store32(s->aad + 8, e_index);
    sym->aead.data.offset = base + 8;
    sym->aead.data.length = n - 8;
    sym->aead.digest.data = pkt + n;
    sym->aead.digest.phys_addr = rte_pktmbuf_iova_offset(m, base + n);
    sym->aead.aad.data = s->aad;
    sym->aead.aad.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, aad));
  } else {
    AesCmIv(rtcp_.keys.salt, ssrc, index, s->iv);
    sym->auth.data.offset = base;
    sym->auth.data.length = n + 4;  // through E||index
    sym->auth.digest.data = s->mac;
    sym->auth.digest.phys_addr = ScratchIova(op, offsetof(SrtpOpScratch, mac));
    sym->cipher.data.offset = base + 8;
    sym->cipher.data.length = (e_index & 0x80000000u) ? n - 8 : 0;  // E=0: authenticated only
  }
  AttachSession(op, rtcp_sessions_[kUnprotectDir]);
  p->index = index;
  p->e_index = e_index;
  p->n = n;
  p->hl = 8;
  return Step::kDevice;
}

bool SrtpContext::Finish(SrtpJob& job, rte_crypto_op* op, const Pending& p) noexcept {
  uint8_t* pkt = job.pkt;
  const uint32_t n = p.n;
  const SrtpOpScratch* s = Scratch(op);
  switch (job.op) {
    case SrtpOp::kProtect:
      if (!DeviceRan(op)) {  // a device error: redo in software (same index, same state)
        job.status = SoftProtect(pkt, &job.len, job.capacity);
        return true;
      }
      if (aead_) {
        std::memcpy(pkt + n + rtp_tag_len_, mki_, mki_len_);
      } else {
        std::memcpy(pkt + n, mki_, mki_len_);
        std::memcpy(pkt + n + mki_len_, s->mac, rtp_tag_len_);
      }
      job.len = n + RtpTrailerLen();
      job.status = SrtpStatus::kOk;
      return false;

    case SrtpOp::kUnprotect: {
      if (!DeviceRan(op)) {
        if (!aead_) std::memcpy(pkt + n, s->trailer, RtpTrailerLen());
        job.status = SoftUnprotect(pkt, &job.len);
        return true;
      }
      if (rx_packets_ >= kMaxSrtpPackets) {  // reached by the burst's earlier packets
        job.status = SrtpStatus::kKeyExhausted;
        return false;
      }
      // §3.3.1 once more, now from the state the earlier jobs really left for this SSRC
      // (its slot may be new, or gone to another SSRC): if the burst's guess was wrong, the
      // device used the wrong ROC; undo and go one at a time.
      const uint32_t ssrc = Load32(pkt + 8);
      const int slot = FindRx(ssrc);
      uint64_t index;
      if (EstimateRx(slot, Load16(pkt + 2), &index) != SrtpStatus::kOk || index != p.index) {
        UndoDeviceUnprotect(job, op, p);
        job.status = SoftUnprotect(pkt, &job.len);
        return true;
      }
      if (CheckRx(slot, index) != SrtpStatus::kOk) {  // a repeat within the burst
        job.status = SrtpStatus::kReplay;
        return false;
      }
      const bool ok = aead_ ? op->status == RTE_CRYPTO_OP_STATUS_SUCCESS
                            : CRYPTO_memcmp(s->mac, s->trailer + mki_len_, rtp_tag_len_) == 0;
      if (!ok) {
        job.status = SrtpStatus::kAuthFailed;
        return false;
      }
      CommitRx(slot, ssrc, index);  // §3.3 step 6, in job order
      job.len = n;
      job.status = SrtpStatus::kOk;
      return false;
    }

    case SrtpOp::kProtectRtcp:
      if (!DeviceRan(op)) {  // the index is spent; software takes the next one
        job.status = SoftProtectRtcp(pkt, &job.len, job.capacity);
        return true;
      }
      if (aead_) {
        Store32(pkt + n + 16, p.e_index);
        std::memcpy(pkt + n + 20, mki_, mki_len_);
      } else {
        std::memcpy(pkt + n + 4, mki_, mki_len_);
        std::memcpy(pkt + n + 4 + mki_len_, s->mac, rtcp_tag_len_);
      }
      job.len = n + RtcpTrailerLen();
      job.status = SrtpStatus::kOk;
      return false;

    case SrtpOp::kUnprotectRtcp: {
      if (!DeviceRan(op)) {
        job.status = SoftUnprotectRtcp(pkt, &job.len);
        return true;
      }
      if (srtcp_packets_ >= kMaxSrtcpPackets) {
        job.status = SrtpStatus::kKeyExhausted;
        return false;
      }
      const uint32_t ssrc = Load32(pkt + 4);
      const int slot = FindSrtcpRx(ssrc);
      if (CheckSrtcpRx(slot, p.index) != SrtpStatus::kOk) {
        job.status = SrtpStatus::kReplay;
        return false;
      }
      const bool ok = aead_ ? op->status == RTE_CRYPTO_OP_STATUS_SUCCESS
                            : CRYPTO_memcmp(s->mac, pkt + n + 4 + mki_len_, rtcp_tag_len_) == 0;
      if (!ok) {
        job.status = SrtpStatus::kAuthFailed;
        return false;
      }
      CommitSrtcpRx(slot, ssrc, p.index);
      job.len = n;
      job.status = SrtpStatus::kOk;
      return false;
    }
  }
  return false;
}

void SrtpContext::UndoDeviceUnprotect(SrtpJob& job, rte_crypto_op* op, const Pending& p) noexcept {
  uint8_t* pkt = job.pkt;
  const uint32_t ssrc = Load32(pkt + 8);
  const uint32_t len = p.n - p.hl;
  if (aead_) {
    // GCM decryption is CTR from inc32(J0): encrypting again with the same IV restores the
    // ciphertext (the tag computed on the way is thrown away).
    uint8_t iv[12], tag[16];
    GcmIv(rtp_.keys.salt, ssrc, p.index, iv);
    GcmSeal(rtp_.enc, iv, pkt, p.hl, nullptr, 0, pkt + p.hl, len, tag);
  } else {
    uint8_t iv[16];
    AesCmIv(rtp_.keys.salt, ssrc, p.index, iv);
    CtrXor(rtp_.enc, iv, pkt + p.hl, len);
    std::memcpy(pkt + p.n, Scratch(op)->trailer, RtpTrailerLen());
  }
}

}  // namespace karl::dp
