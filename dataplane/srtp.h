// SRTP/SRTCP per-stream crypto context: RFC 3711 framing done by Karl, the ciphers run by
// one of three engines (config `srtp.engine`, SrtpEngineKind).
//
// Implements RFC 3711 (SRTP: §3.2.3 a crypto context per SSRC, §3.3 packet processing,
// §3.3.1 index/ROC estimation with Appendix A, §3.3.2 replay list, §3.4 SRTCP, §4.1.1
// AES-CM, §4.2 HMAC-SHA1, §4.3 key derivation with key_derivation_rate 0, §9.2 key
// lifetime), RFC 6188 (AES-256-CM suites)
// and RFC 7714 (AEAD_AES_128_GCM / AEAD_AES_256_GCM for SRTP §8 and SRTCP §9, keys §11).
// Suite parameters follow RFC 4568 §6.2, RFC 6188 §7 and RFC 7714 §12.
//
// Engines (what runs the AES and HMAC of a context; the framing is Karl's for the first two):
//   kOpenssl  OpenSSL EVP AES and Karl's own HMAC-SHA1, one packet at a time. Key derivation
//             always runs here, and every context keeps these transforms as its fallback.
//   kIpsecMb  DPDK cryptodev crypto_ipsec_mb (aesni_mb): a worker's SrtpEngine hands a whole
//             burst of operations to its queue pair (srtp_engine.h); per-context sessions
//             are created here on the control plane and freed by the destructor.
//   kLibsrtp  libsrtp2's srtp_t sessions, framing included (the reference implementation).
//
// Thread: a context is created (allocation allowed) on the control plane and then owned
// by the one worker that owns its stream; its packets go through that worker's SrtpEngine.
// Per packet there is no allocation, exception, lock or system call, except that a kLibsrtp
// context lets libsrtp2 allocate its per-SSRC stream on the first packet of each SSRC.
//
// HMAC-SHA1 is computed with a SHA-1 of our own (FIPS 180-4; SHA-NI when present) over
// precomputed inner/outer pad states: OpenSSL 3.0 re-initialises EVP_MAC/EVP_MD contexts by
// duplicating provider state, which allocates twice on every packet (measured). AES-CM and AES-GCM
// run on EVP_CIPHER_CTX objects keyed once at creation; only the IV changes per packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

struct rte_crypto_op;

namespace karl::dp {

// The transform a job asks for (SrtpJob::op, srtp_engine.h).
enum class SrtpOp : uint8_t { kProtect, kUnprotect, kProtectRtcp, kUnprotectRtcp };

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

// Who runs the ciphers (config `srtp.engine`); see the file comment and srtp_engine.h.
enum class SrtpEngineKind : uint8_t { kIpsecMb, kOpenssl, kLibsrtp };

// The transforms a context will be asked for. A worker's ingress context only unprotects
// and its egress context only protects: saying so halves what a context holds (kIpsecMb:
// cryptodev sessions, about 1.4 KiB each, two per direction; kLibsrtp: an srtp_t per
// direction). A transform left out still works, in Karl's software transform.
enum class SrtpDirection : uint8_t { kBoth, kProtect, kUnprotect };

struct SrtpConfig {
  SrtpEngineKind engine = SrtpEngineKind::kOpenssl;
  SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
  std::span<const uint8_t> master_key;
  std::span<const uint8_t> master_salt;
  std::span<const uint8_t> mki;  // empty: no MKI in packets (RFC 3711 §3.1)
  uint32_t replay_window = 128;  // >= 128 (RFC 3711 §3.3.2 minimum is 64); libsrtp: < 32768
  bool srtcp = true;             // derive SRTCP keys; if false the RTCP calls fail
  SrtpDirection direction = SrtpDirection::kBoth;
};

struct SrtpJob;  // srtp_engine.h

// The private area of a cryptodev op of the kIpsecMb engine (after the rte_crypto_sym_op):
// what the device reads besides the packet (IV, AAD), the HMAC it writes, and a copy of
// the received SRTP trailer (the ROC is written over it for the HMAC).
struct SrtpOpScratch {
  uint8_t iv[16];
  uint8_t aad[16];
  uint8_t mac[20];
  uint8_t trailer[kSrtpMaxMkiLen + 10];  // MKI + HMAC-SHA1 tag
};

class alignas(64) SrtpContext {
 public:
  // Returns nullptr if a length is wrong for the suite, the window is < 128, the MKI is
  // longer than kSrtpMaxMkiLen, OpenSSL cannot set up a cipher, or the engine is not
  // ready (kIpsecMb: InitSrtpCrypto(kIpsecMb, ...) not done or a session cannot be made;
  // kLibsrtp: srtp_create fails, e.g. window >= 32768). Control plane only.
  static std::unique_ptr<SrtpContext> Create(const SrtpConfig& config);

  // Test and re-keying hook: skip key derivation and use these session keys for both
  // SRTP and SRTCP (RFC 7714 §16 vectors are given as session keys). Not for kLibsrtp
  // (libsrtp2 takes master keys only): nullptr.
  static std::unique_ptr<SrtpContext> CreateFromSessionKeys(
      SrtpSuite suite, const SrtpSessionKeys& rtp, const SrtpSessionKeys& rtcp,
      uint32_t replay_window = 128, SrtpEngineKind engine = SrtpEngineKind::kOpenssl);

  ~SrtpContext();
  SrtpContext(const SrtpContext&) = delete;
  SrtpContext& operator=(const SrtpContext&) = delete;

  // Contexts are packed in 2 MiB slabs (advised for transparent huge pages): a worker's
  // engine reads two lines of every context of a burst, and contexts scattered over the
  // heap among their OpenSSL objects cost a TLB miss each. (Plain new/delete under ASan.)
  static void* operator new(size_t size, std::align_val_t align);
  static void operator delete(void* p, std::align_val_t align) noexcept;

  SrtpEngineKind engine() const noexcept { return engine_; }
  SrtpSuite suite() const noexcept { return suite_; }
  // AES-256 keys (RFC 6188 and AEAD_AES_256_GCM), as the engine's key blocks are laid out.
  bool aes256() const noexcept { return aes256_; }

  // Single-packet transforms. A worker calls its SrtpEngine instead (a burst at a time);
  // these are for the control plane and tests. kOpenssl and kLibsrtp run inline; kIpsecMb
  // runs a burst of one through the control plane's queue pair, so for kIpsecMb contexts
  // only one (non-worker) thread at a time may use them.
  //
  // RFC 3711 §3.3: in place on the RTP packet pkt[0, *len) (RFC 3550 §5.1 header with its
  // CSRC list and extension). Encrypts the payload, appends MKI and tag; *len grows by
  // TrailerLen(). capacity is the writable size of pkt.
  SrtpStatus Protect(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  // Verifies, decrypts and strips the trailer; ROC, highest index and the replay window of
  // the packet's SSRC change (and a new SSRC gets its slot) only once the packet
  // authenticates (RFC 3711 §3.3 step 5-6). On any status
  // but kOk the packet's bytes are unspecified (it may have been decrypted in place).
  SrtpStatus Unprotect(uint8_t* pkt, uint32_t* len) noexcept;

  // RFC 3711 §3.4 / RFC 7714 §9: encrypts pkt[8, *len) of a (compound) RTCP packet,
  // appends E||SRTCP index, MKI and tag (GCM: tag, E||index, MKI).
  SrtpStatus ProtectRtcp(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  // Accepts E=0 (authenticated only) as well as E=1 packets.
  SrtpStatus UnprotectRtcp(uint8_t* pkt, uint32_t* len) noexcept;

  // Octets Protect adds (MKI + tag) and ProtectRtcp adds (4 + MKI + tag).
  uint32_t RtpTrailerLen() const noexcept { return mki_len_ + rtp_tag_len_; }
  uint32_t RtcpTrailerLen() const noexcept { return 4 + mki_len_ + rtcp_tag_len_; }

  // Crypto state is kept per SSRC (RFC 3711 §3.2.3: the context is keyed by SSRC; the
  // session keys, kdr 0, are the same for all): up to kSsrcSlots SSRCs per direction of
  // the RTP half (sender: ROC || highest SEQ sent; receiver: highest index and replay list)
  // and as many sender SSRCs per direction of the SRTCP half (next SRTCP index; replay
  // list). A new SSRC takes a free slot, else the least recently used one, whose state is
  // forgotten: an evicted SSRC that comes back starts afresh (ROC 0, empty replay list).
  // An unprotect installs its SSRC only once the packet authenticates, so a forged packet
  // never evicts a live SSRC. Slots are owned like the halves they belong to (D18).
  static constexpr uint32_t kSsrcSlots = 4;

  // ROC of the first SSRC of each direction (signalled out of band, e.g. on re-keying a
  // stream in progress). SSRCs after it start at ROC 0 (RFC 3711 §3.3.1). Only before the
  // first packet. kLibsrtp: ignored (libsrtp2 2.5 has no API to set it; its streams start
  // at ROC 0).
  void SetInitialRoc(uint32_t roc) noexcept {
    tx_first_roc_ = roc;
    rx_first_roc_ = roc;
  }
  // SRTCP index of the first ProtectRtcp of each sender SSRC (RFC 3711 §3.4 starts at 0;
  // libsrtp starts every SSRC at 1); SSRCs that already sent keep counting. kLibsrtp:
  // ignored (libsrtp2 numbers its SRTCP packets itself).
  void SetNextSrtcpIndex(uint32_t index) noexcept { srtcp_first_index_ = index; }

  // The extended index (ROC << 16 | SEQ) last accepted / sent for the SSRC that was used
  // last (0 before any), or for a given SSRC (nullopt if it has no slot); for tests and
  // stats. kLibsrtp: Karl's own bookkeeping of the packets libsrtp2 accepted / sent.
  uint64_t highest_rx_index() const noexcept {
    const RxSlot& s = rx_slots_[rx_order_ & 3];
    return s.used ? s.highest : 0;
  }
  uint64_t highest_tx_index() const noexcept {
    const TxSlot& s = tx_slots_[tx_order_ & 3];
    return s.used ? s.highest() : 0;
  }
  std::optional<uint64_t> highest_rx_index(uint32_t ssrc) const noexcept;
  std::optional<uint64_t> highest_tx_index(uint32_t ssrc) const noexcept;

  // RFC 3711 §9.2: packets under this master key, all SSRCs together (kKeyExhausted at
  // 2^48 SRTP or 2^31 SRTCP packets). SRTP counts sent and accepted packets apart (a key
  // serves one direction, D17; the counts live on the lines each direction writes
  // anyway): srtp_packets() is the larger. SRTCP counts both together. SetPacketCounts
  // carries counts over (a context re-created for a key in use; both SRTP directions get
  // `srtp`) and lets tests reach the limits. kLibsrtp: counted here, enforced by
  // libsrtp2's own key limit.
  uint64_t srtp_packets() const noexcept {
    return tx_packets_ > rx_packets_ ? tx_packets_ : rx_packets_;
  }
  uint64_t srtcp_packets() const noexcept { return srtcp_packets_; }
  void SetPacketCounts(uint64_t srtp, uint64_t srtcp) noexcept {
    tx_packets_ = srtp;
    rx_packets_ = srtp;
    srtcp_packets_ = srtcp;
  }
  const SrtpSessionKeys& rtp_keys() const noexcept { return rtp_.keys; }
  const SrtpSessionKeys& rtcp_keys() const noexcept { return rtcp_.keys; }

  // For the dataplane, a burst ahead of the engine's Run (which prefetches again, nearer
  // to use): the context lines a job of kind `op` reads first.
  void PrefetchContext(SrtpOp op) const noexcept { PrefetchLines(op); }
  // The engine session a job of kind `op` runs on (kIpsecMb: the cryptodev session or the
  // direct path's keys; else null) and the cache lines of it that are read (bit i: line
  // i), for prefetching them before the context is read.
  const void* DeviceSession(SrtpOp op) const noexcept;
  uint64_t DeviceSessionLines() const noexcept;

  // HMAC-SHA1 state after the key's inner and outer pad blocks (RFC 2104).
  struct HmacSha1Key {
    uint32_t inner[5];
    uint32_t outer[5];
  };

  // RFC 3711 §3.3.2 replay list as a ring bitmap over the last `size` indices: the
  // algorithm each SSRC slot runs on its own bitmap (ReplayCheck / ReplayAccept in
  // srtp.cc), as one standalone window for the reference-model test.
  class ReplayWindow {
   public:
    ReplayWindow() = default;
    ReplayWindow(const ReplayWindow&) = delete;
    ReplayWindow& operator=(const ReplayWindow&) = delete;
    void Init(uint32_t size);
    // kOk, or kReplay if the index was seen or is `size` or more below the highest.
    SrtpStatus Check(uint64_t index) const noexcept;
    void Accept(uint64_t index) noexcept;
    bool started() const noexcept { return started_; }
    uint64_t highest() const noexcept { return highest_; }
    const uint64_t* bits() const noexcept { return bits_; }  // for prefetching

   private:
    uint64_t* bits_ = inline_;  // bit (index % (64 * words_)): inline_ or heap_
    uint32_t words_ = 0;
    uint32_t size_ = 0;
    uint64_t highest_ = 0;
    bool started_ = false;
    uint64_t inline_[2] = {};
    std::vector<uint64_t> heap_;  // windows over 128 indices
  };

 private:
  friend class SoftwareSrtpEngine;
  friend class IpsecMbSrtpEngine;

  struct Half {  // the SRTP or the SRTCP half
    SrtpSessionKeys keys{};
    HmacSha1Key hmac{};
    void* enc = nullptr;  // EVP_CIPHER_CTX*, encrypt direction (AES-CTR or GCM)
    void* dec = nullptr;  // EVP_CIPHER_CTX*, GCM decrypt direction (unused for CTR)
  };
  enum : uint8_t { kProtectDir = 0, kUnprotectDir = 1 };

  // Per-SSRC state (see kSsrcSlots). A slot is free until `used`; it is (re)initialised
  // whole when an SSRC takes it.
  struct TxSlot {  // RTP sender (RFC 3711 §3.3.1: the sender keeps ROC and highest SEQ)
    uint32_t ssrc;
    uint32_t roc;  // ROC || SEQ of the highest index sent, in 12 octets a slot
    uint16_t seq;
    bool used;
    uint64_t highest() const noexcept { return uint64_t{roc} << 16 | seq; }
    void set_highest(uint64_t index) noexcept {
      roc = static_cast<uint32_t>(index >> 16);
      seq = static_cast<uint16_t>(index);
    }
  };
  struct alignas(64) RxSlot {  // RTP receiver, one cache line
    uint32_t ssrc;
    bool used;         // = started: installed by the first authenticated packet
    uint64_t highest;  // s_l with its ROC (§3.3.1)
    uint64_t bits[2];  // replay ring (§3.3.2) for windows up to 128, else rx_heap_bits_
    // kIpsecMb engine: the state as if every earlier unprotect of this SSRC in the burst
    // `burst_epoch` authenticated (the base for estimating the next one's index).
    uint64_t burst_epoch;
    uint64_t burst_highest;
  };
  struct SrtcpTxSlot {
    uint32_t ssrc;
    bool used;
    uint32_t next_index;  // SRTCP index of the next packet (§3.4)
  };
  struct SrtcpRxSlot {
    uint32_t ssrc;
    bool used;
    uint64_t highest;  // highest SRTCP index accepted
    uint64_t bits[2];  // replay ring for windows up to 128, else srtcp_heap_bits_
  };
  static_assert(sizeof(RxSlot) == 64 && sizeof(TxSlot) == 12);

  // How the kIpsecMb engine carries out one job (see srtp_engine.cc).
  enum class Step : uint8_t {
    kDone,    // finished in Prepare (an early verdict, or run in software there)
    kDevice,  // op filled in: enqueue it, then Finish
    kInline,  // run in software after the burst's device ops, in job order
  };
  struct Pending {
    uint64_t index;  // SRTP index or SRTCP index the device op was built with
    uint32_t n;      // octets before the trailer
    uint32_t hl;     // RTP header length (8 for RTCP)
    uint32_t e_index;
    Step step;
  };

  SrtpContext() = default;
  bool Init(SrtpEngineKind engine, SrtpSuite suite, const SrtpSessionKeys& rtp,
            const SrtpSessionKeys& rtcp, std::span<const uint8_t> mki, uint32_t replay_window,
            bool srtcp, SrtpDirection direction);
  bool InitLibsrtp(const SrtpConfig& config);

  // Per-packet slot helpers, defined (always inlined) in srtp.cc, which alone calls them.
  // Slot of `ssrc`, or -1; the last used one is tried first. No side effect.
  inline int FindTx(uint32_t ssrc) const noexcept;
  inline int FindRx(uint32_t ssrc) const noexcept;
  inline int FindSrtcpTx(uint32_t ssrc) const noexcept;
  inline int FindSrtcpRx(uint32_t ssrc) const noexcept;
  // RFC 3711 §3.3.1 / Appendix A: the index of seq for slot `slot` (-1: a new SSRC).
  inline SrtpStatus EstimateTx(int slot, uint16_t seq, uint64_t* index) const noexcept;
  inline SrtpStatus EstimateRx(int slot, uint16_t seq, uint64_t* index) const noexcept;
  // §3.3.2 against the committed replay list of slot `slot` (a new SSRC: kOk).
  inline SrtpStatus CheckRx(int slot, uint64_t index) const noexcept;
  inline SrtpStatus CheckSrtcpRx(int slot, uint64_t index) const noexcept;
  // The state moves (§3.3 step 6 / §3.4): into slot `slot`, or for -1 into a slot taken for
  // `ssrc` (a free one, else the least recently used, reset). Counts the packet (§9.2).
  inline void CommitTx(int slot, uint32_t ssrc, uint64_t index) noexcept;
  inline void CommitRx(int slot, uint32_t ssrc, uint64_t index) noexcept;
  inline void CommitSrtcpTx(int slot, uint32_t ssrc, uint32_t index) noexcept;
  inline void CommitSrtcpRx(int slot, uint32_t ssrc, uint64_t index) noexcept;
  inline uint64_t* RxBits(int slot) noexcept;
  inline const uint64_t* RxBits(int slot) const noexcept;
  inline uint64_t* SrtcpRxBits(int slot) noexcept;
  inline const uint64_t* SrtcpRxBits(int slot) const noexcept;

  // The software transforms (OpenSSL AES, Karl's HMAC-SHA1): the kOpenssl engine, and
  // the fallback of kIpsecMb contexts.
  SrtpStatus SoftProtect(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  SrtpStatus SoftUnprotect(uint8_t* pkt, uint32_t* len) noexcept;
  SrtpStatus SoftProtectRtcp(uint8_t* pkt, uint32_t* len, uint32_t capacity) noexcept;
  SrtpStatus SoftUnprotectRtcp(uint8_t* pkt, uint32_t* len) noexcept;
  // libsrtp2 (kLibsrtp contexts).
  SrtpStatus LibsrtpRun(const SrtpJob& job, uint32_t* len) noexcept;

  // One job on this context's own transform without cryptodev: software for kOpenssl and
  // kIpsecMb contexts, libsrtp2 for kLibsrtp.
  void RunInline(SrtpJob& job) noexcept;

  // kIpsecMb engine, per job in order: Prepare does the framing before the device runs
  // (lengths, index, IV, AAD, ROC / E||index placement) and fills op (whose m_src the
  // engine has set: pkt is `base` octets after its data start); Finish places the tag and
  // MKI or checks the tag, then checks and updates the replay state, in job order.
  // `epoch` names the burst: several unprotects of one SSRC of a context in a burst
  // estimate their index as if the earlier ones authenticate (per SSRC; a new SSRC's
  // guesses live in pending_*); Finish re-estimates from the committed state and redoes
  // the packet in software if that guess was wrong, so the verdicts equal one-at-a-time
  // processing.
  Step Prepare(SrtpJob& job, rte_crypto_op* op, uint32_t base, uint64_t epoch, Pending* p) noexcept;
  // Returns whether the job had to be redone in software (a device error, a wrong guess).
  bool Finish(SrtpJob& job, rte_crypto_op* op, const Pending& p) noexcept;
  Step PrepareRtp(SrtpJob& job, rte_crypto_op* op, uint32_t base, uint64_t epoch,
                  Pending* p) noexcept;
  Step PrepareRtcp(SrtpJob& job, rte_crypto_op* op, uint32_t base, Pending* p) noexcept;
  // The cache lines of the context a job of kind `op` reads first (the config line and
  // the slot line the common case uses), before anything in them is read. Inline: the
  // engine calls it for every job.
  void PrefetchLines(SrtpOp op) const noexcept {
    __builtin_prefetch(this, 0, 3);  // = rte_prefetch0
    switch (op) {
      case SrtpOp::kProtect:
        __builtin_prefetch(tx_slots_, 0, 3);
        break;
      case SrtpOp::kUnprotect:
        __builtin_prefetch(rx_slots_, 0, 3);  // the first SSRC's; PrefetchFor: another one
        break;
      case SrtpOp::kProtectRtcp:
      case SrtpOp::kUnprotectRtcp:
        __builtin_prefetch(rtcp_sessions_, 0, 3);
        __builtin_prefetch(reinterpret_cast<const char*>(rtcp_sessions_) + 64, 0, 3);
        break;
    }
  }
  static void CheckLayout() noexcept;  // static_asserts on the layout (srtp.cc)
  // Prefetches what Prepare and the device will read for this job beyond those lines (the
  // session, another SSRC's slot, a large replay bitmap). The engine calls it for a whole
  // burst before the first Prepare.
  void PrefetchFor(const SrtpJob& job) const noexcept;
  // Undoes a device unprotect built with the wrong index (its keystream and the ROC written
  // over the trailer) so the packet can be processed again.
  void UndoDeviceUnprotect(SrtpJob& job, rte_crypto_op* op, const Pending& p) noexcept;

  // Line 0: what every RTP packet of the kIpsecMb path reads (the engine prefetches it
  // and the slot line of the job's direction for a whole burst). Read-only after Init but
  // for the orders, the receive count and first ROC (the RTP owner's): a protect writes
  // only line 1, an unprotect line 0 and its slot's line (as before per-SSRC state).
  SrtpEngineKind engine_ = SrtpEngineKind::kOpenssl;
  SrtpSuite suite_ = SrtpSuite::kAesCm128HmacSha1_80;
  bool aead_ = false;
  bool aes256_ = false;  // the suite's keys are AES-256 (RFC 6188, AEAD_AES_256_GCM)
  bool srtcp_ = true;
  uint8_t rtp_tag_len_ = 0;
  uint8_t rtcp_tag_len_ = 0;
  uint8_t mki_len_ = 0;
  // Slot recency: four 2-bit slot numbers, the last used in bits 0-1, the least recently
  // used in bits 6-7 (the one a new SSRC evicts when no slot is free).
  uint8_t tx_order_ = 0b11100100;
  uint8_t rx_order_ = 0b11100100;
  uint8_t rtp_salt_[14] = {};   // = rtp_.keys.salt, next to the state it is used with
  uint32_t replay_size_ = 128;  // replay window (§3.3.2), of every slot of both halves
  uint32_t replay_words_ = 2;   // 64-bit words of a slot's ring: 2 = the inline bits
  // kIpsecMb: cryptodev sessions of the SRTP half [kProtectDir / kUnprotectDir], null where
  // not created (that transform runs in software). AES-CM: AES-CTR chained with HMAC-SHA1
  // (cipher then hash to protect, hash then cipher to unprotect); GCM: AEAD encrypt /
  // decrypt with a 12-octet AAD.
  void* rtp_sessions_[2] = {};
  uint64_t rx_packets_ = 0;    // §9.2: SRTP packets accepted, all SSRCs
  uint32_t rx_first_roc_ = 0;  // ROC of the first SSRC accepted (SetInitialRoc), then 0
  // Line 1: the RTP sender's state, the only line a protect writes.
  alignas(64) TxSlot tx_slots_[kSsrcSlots] = {};
  uint64_t tx_packets_ = 0;    // §9.2: SRTP packets sent, all SSRCs
  uint32_t tx_first_roc_ = 0;  // ROC of the first SSRC sent (SetInitialRoc), then 0
  // Lines 2-5: RTP receiver slots, one line each.
  RxSlot rx_slots_[kSsrcSlots] = {};

  // kIpsecMb engine, owner-private: the burst guesses of an SSRC that has no slot yet
  // (one per burst; a second new SSRC in the same burst runs in software).
  uint64_t pending_epoch_ = 0;
  uint64_t pending_highest_ = 0;
  uint32_t pending_ssrc_ = 0;
  uint8_t mki_[kSrtpMaxMkiLen] = {};
  uint64_t session_generation_ = 0;     // of the cryptodev setup the sessions belong to
  std::vector<uint64_t> rx_heap_bits_;  // windows over 128: replay_words_ per slot
  Half rtp_;
  Half rtcp_;
  // kLibsrtp: srtp_t sessions with an ssrc_any_outbound (protect) and an ssrc_any_inbound
  // (unprotect) template, each only if the config's direction asks for it.
  void* libsrtp_tx_ = nullptr;
  void* libsrtp_rx_ = nullptr;

  // The SRTCP half's state, after the RTP half's hot lines: its owner (the RTCP stream's
  // worker) may not be the RTP half's. Not on a line boundary of its own: the context stays
  // an odd number of cache lines long (see CheckLayout).
  void* rtcp_sessions_[2] = {};     // as rtp_sessions_
  uint64_t srtcp_packets_ = 0;      // §9.2, all SSRCs, both directions
  uint32_t srtcp_first_index_ = 0;  // SetNextSrtcpIndex
  uint8_t srtcp_tx_order_ = 0b11100100;
  uint8_t srtcp_rx_order_ = 0b11100100;
  SrtcpTxSlot srtcp_tx_slots_[kSsrcSlots] = {};
  SrtcpRxSlot srtcp_rx_slots_[kSsrcSlots] = {};
  std::vector<uint64_t> srtcp_heap_bits_;  // windows over 128
};

}  // namespace karl::dp
