// SRTP/SRTCP per-stream crypto context: the portable software engine on OpenSSL libcrypto.
//
// Implements RFC 3711 (SRTP: §3.3 packet processing, §3.3.1 index/ROC estimation with
// Appendix A, §3.3.2 replay list, §3.4 SRTCP, §4.1.1 AES-CM, §4.2 HMAC-SHA1, §4.3 key
// derivation with key_derivation_rate 0, §9.2 key lifetime), RFC 6188 (AES-256-CM suites)
// and RFC 7714 (AEAD_AES_128_GCM / AEAD_AES_256_GCM for SRTP §8 and SRTCP §9, keys §11).
// Suite parameters follow RFC 4568 §6.2, RFC 6188 §7 and RFC 7714 §12.
//
// Thread: a context is created (allocation allowed) on the control plane and then owned
// by the one worker that owns its stream; Protect/Unprotect/ProtectRtcp/UnprotectRtcp run
// only on that worker. Per packet there is no allocation, exception, lock or system call.
//
// HMAC-SHA1 is computed with a SHA-1 of our own (FIPS 180-4; SHA-NI when present) over
// precomputed inner/outer pad states: OpenSSL 3.0 re-initialises EVP_MAC/EVP_MD contexts by
// duplicating provider state, which allocates twice on every packet (measured). AES-CM and AES-GCM
// run on EVP_CIPHER_CTX objects keyed once at creation; only the IV changes per packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace karl::dp {

enum class SrtpSuite : uint8_t {
  kAesCm128HmacSha1_80,  // RFC 4568 §6.2.1
  kAesCm128HmacSha1_32,  // RFC 4568 §6.2.2
  kAes256CmHmacSha1_80,  // RFC 6188 §7.1
  kAes256CmHmacSha1_32,  // RFC 6188 §7.1
  kAeadAes128Gcm,        // RFC 7714 §12
  kAeadAes256Gcm,        // RFC 7714 §12
};

inline constexpr size_t kSrtpSuiteCount = 6;

// Lengths in octets of one suite's parameters.
struct SrtpSuiteInfo {
  std::string_view name;     // SDES crypto-suite name (RFC 4568 / RFC 7714 §14.2)
  uint8_t master_key_len;    // = session encryption key length
  uint8_t master_salt_len;   // 14 for AES-CM, 12 for GCM (RFC 7714 §12)
  uint8_t session_salt_len;  // 14 for AES-CM, 12 for GCM
  uint8_t auth_key_len;      // 20 for HMAC-SHA1 (RFC 3711 §4.2.1), 0 for AEAD
  uint8_t rtp_tag_len;       // 10 or 4 for HMAC-SHA1, 16 for GCM
  uint8_t rtcp_tag_len;      // 10 for every HMAC-SHA1 suite (RFC 4568 §6.2.2), 16 for GCM
  bool aead;
};

const SrtpSuiteInfo& GetSrtpSuiteInfo(SrtpSuite suite) noexcept;

// Per-packet verdicts. The worker maps them onto drop reasons.
enum class SrtpStatus : uint8_t {
  kOk,
  kAuthFailed,    // tag (or MKI) does not verify; the packet may have been altered in place
  kReplay,        // index already seen, or older than the replay window (RFC 3711 §3.3.2)
  kTooShort,      // header, CSRCs, extension or SRTP trailer past the packet end
  kNoRoom,        // capacity cannot hold the tag (and MKI / SRTCP index)
  kKeyExhausted,  // 2^48 SRTP or 2^31 SRTCP packets under this key (RFC 3711 §9.2)
};

// Maximum octets Protect/ProtectRtcp add: E||index (4) + MKI (up to 16) + tag (16).
inline constexpr uint32_t kSrtpMaxMkiLen = 16;
inline constexpr uint32_t kSrtpMaxTrailerLen = 4 + kSrtpMaxMkiLen + 16;

// RFC 3711 §4.3.1-§4.3.3 with key_derivation_rate 0: AES-CM PRF keyed with the master key
// (AES-128 or, RFC 6188 §5.1, AES-256), x = (label << 48) XOR master_salt, output the
// keystream of IV = x * 2^16. master_salt is 14 octets (a 12-octet GCM salt is padded
// with two zero octets on the right, RFC 7714 §11). Returns false on a bad key length.
bool SrtpKdf(std::span<const uint8_t> master_key, std::span<const uint8_t, 14> master_salt,
             uint8_t label, std::span<uint8_t> out) noexcept;

// HMAC-SHA1 runs on the x86 SHA extensions when the CPU has them (checked once at start),
// else on portable C++. Tests call this to exercise both; returns whether SHA-NI is in use.
// Not thread-safe: call before workers start.
bool SrtpUseShaNi(bool enable) noexcept;

// Session keys of one direction-independent half (SRTP or SRTCP) of a context.
struct SrtpSessionKeys {
  uint8_t enc_key[32];
  uint8_t salt[14];
  uint8_t auth_key[20];
};

struct SrtpConfig {
  SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
  std::span<const uint8_t> master_key;
  std::span<const uint8_t> master_salt;
  std::span<const uint8_t> mki;  // empty: no MKI in packets (RFC 3711 §3.1)
  uint32_t replay_window = 128;  // >= 128 (RFC 3711 §3.3.2 minimum is 64)
  bool srtcp = true;             // derive SRTCP keys; if false the RTCP calls fail
};

class SrtpContext {
 public:
  // Returns nullptr if a length is wrong for the suite, the window is < 128, the MKI is
  // longer than kSrtpMaxMkiLen or OpenSSL cannot set up a cipher. Control plane only.
  static std::unique_ptr<SrtpContext> Create(const SrtpConfig& config);

  // Test and re-keying hook: skip key derivation and use these session keys for both
  // SRTP and SRTCP (RFC 7714 §16 vectors are given as session keys).
  static std::unique_ptr<SrtpContext> CreateFromSessionKeys(SrtpSuite suite,
                                                            const SrtpSessionKeys& rtp,
                                                            const SrtpSessionKeys& rtcp,
                                                            uint32_t replay_window = 128);

  ~SrtpContext();
  SrtpContext(const SrtpContext&) = delete;
  SrtpContext& operator=(const SrtpContext&) = delete;

  // RFC 3711 §3.3: in place on the RTP packet pkt[0, *len) (RFC 3550 §5.1 header with its
  // CSRC list and extension). Encrypts the payload, appends MKI and tag; *len grows by
  // TrailerLen(). capacity is the writable size of pkt.
  SrtpStatus Protect(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  // Verifies, decrypts and strips the trailer; ROC, highest index and the replay window
  // change only once the packet authenticates (RFC 3711 §3.3 step 5-6).
  SrtpStatus Unprotect(uint8_t* pkt, uint32_t* len) noexcept;

  // RFC 3711 §3.4 / RFC 7714 §9: encrypts pkt[8, *len) of a (compound) RTCP packet,
  // appends E||SRTCP index, MKI and tag (GCM: tag, E||index, MKI).
  SrtpStatus ProtectRtcp(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  // Accepts E=0 (authenticated only) as well as E=1 packets.
  SrtpStatus UnprotectRtcp(uint8_t* pkt, uint32_t* len) noexcept;

  // Octets Protect adds (MKI + tag) and ProtectRtcp adds (4 + MKI + tag).
  uint32_t RtpTrailerLen() const noexcept { return mki_len_ + rtp_tag_len_; }
  uint32_t RtcpTrailerLen() const noexcept { return 4 + mki_len_ + rtcp_tag_len_; }

  // ROC to use for the first packet of a stream (signalled out of band, e.g. on re-keying
  // a stream in progress). Only before the first packet in that direction.
  void SetInitialRoc(uint32_t roc) noexcept { initial_roc_ = roc; }
  // SRTCP index of the next ProtectRtcp (RFC 3711 §3.4 starts at 0; libsrtp starts at 1).
  void SetNextSrtcpIndex(uint32_t index) noexcept { srtcp_next_index_ = index; }

  // The last accepted / sent extended index (ROC << 16 | SEQ); for tests and stats.
  uint64_t highest_rx_index() const noexcept { return rtp_window_.highest(); }
  uint64_t highest_tx_index() const noexcept { return tx_highest_; }
  const SrtpSessionKeys& rtp_keys() const noexcept { return rtp_.keys; }
  const SrtpSessionKeys& rtcp_keys() const noexcept { return rtcp_.keys; }

  // HMAC-SHA1 state after the key's inner and outer pad blocks (RFC 2104).
  struct HmacSha1Key {
    uint32_t inner[5];
    uint32_t outer[5];
  };

  // RFC 3711 §3.3.2 replay list as a ring bitmap over the last `size` indices. Owned by
  // the worker together with its context.
  class ReplayWindow {
   public:
    void Init(uint32_t size);
    // kOk, or kReplay if the index was seen or is `size` or more below the highest.
    SrtpStatus Check(uint64_t index) const noexcept;
    void Accept(uint64_t index) noexcept;
    bool started() const noexcept { return started_; }
    uint64_t highest() const noexcept { return highest_; }

   private:
    std::vector<uint64_t> bits_;  // bit (index % (64 * bits_.size()))
    uint32_t size_ = 0;
    uint64_t highest_ = 0;
    bool started_ = false;
  };

 private:
  struct Half {  // the SRTP or the SRTCP half
    SrtpSessionKeys keys{};
    HmacSha1Key hmac{};
    void* enc = nullptr;  // EVP_CIPHER_CTX*, encrypt direction (AES-CTR or GCM)
    void* dec = nullptr;  // EVP_CIPHER_CTX*, GCM decrypt direction (unused for CTR)
  };

  SrtpContext() = default;
  bool Init(SrtpSuite suite, const SrtpSessionKeys& rtp, const SrtpSessionKeys& rtcp,
            std::span<const uint8_t> mki, uint32_t replay_window, bool srtcp);
  // RFC 3711 §3.3.1 / Appendix A: the index of seq relative to the highest index.
  SrtpStatus EstimateIndex(bool started, uint64_t highest, uint16_t seq,
                           uint64_t* index) const noexcept;

  SrtpSuite suite_ = SrtpSuite::kAesCm128HmacSha1_80;
  bool aead_ = false;
  bool srtcp_ = true;
  uint8_t rtp_tag_len_ = 0;
  uint8_t rtcp_tag_len_ = 0;
  uint8_t mki_len_ = 0;
  uint8_t mki_[kSrtpMaxMkiLen] = {};
  Half rtp_;
  Half rtcp_;
  uint32_t initial_roc_ = 0;
  // Sender state (RFC 3711 §3.3.1: the sender keeps ROC and the highest SEQ).
  bool tx_started_ = false;
  uint64_t tx_highest_ = 0;
  uint32_t srtcp_next_index_ = 0;
  // Receiver state.
  ReplayWindow rtp_window_;
  ReplayWindow rtcp_window_;
};

}  // namespace karl::dp
