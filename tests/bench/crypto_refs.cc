// rte_cryptodev_sym_cpu_crypto_process (RawCpuCryptoMpps) is experimental in DPDK 22.11.
#define ALLOW_EXPERIMENTAL_API 1
#include "tests/bench/crypto_refs.h"

#include <intel-ipsec-mb.h>
#include <rte_crypto.h>
#include <rte_cryptodev.h>
#include <rte_mbuf.h>
#include <srtp2/srtp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

namespace karl::bench {
namespace {

using dp::SrtpContext;
using dp::SrtpEngineKind;
using dp::SrtpJob;
using dp::SrtpOp;
using dp::SrtpStatus;
using dp::SrtpSuite;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The figure: the median of the rates of the slices of timed work (each a few ms), so a
// neighbour's burst of activity or a preemption on a shared machine does not move it.
class SliceRates {
 public:
  void Add(uint64_t packets, Clock::duration d) {
    total_ += d;
    count_ += packets;
    if (Seconds(d) > 0) rates_.push_back(static_cast<double>(packets) / Seconds(d) / 1e6);
  }
  double seconds() const { return Seconds(total_); }
  uint64_t packets() const { return count_; }
  double MedianMpps() {
    if (rates_.empty()) return -1;
    std::sort(rates_.begin(), rates_.end());
    return rates_[rates_.size() / 2];
  }

 private:
  std::vector<double> rates_;
  Clock::duration total_{};
  uint64_t count_ = 0;
};

struct StreamKeys {
  uint8_t key[32];
  uint8_t salt[14];
};

std::vector<StreamKeys> MakeKeys(unsigned n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<StreamKeys> keys(n);
  for (StreamKeys& k : keys) {
    for (uint8_t& b : k.key) b = static_cast<uint8_t>(rng());
    for (uint8_t& b : k.salt) b = static_cast<uint8_t>(rng());
  }
  return keys;
}

// A 12-octet RTP header (RFC 3550 §5.1) and `payload` octets.
void WriteRtp(uint8_t* p, uint16_t seq, uint32_t ssrc, uint32_t payload) {
  p[0] = 0x80;
  p[1] = 0;  // PCMU
  p[2] = static_cast<uint8_t>(seq >> 8);
  p[3] = static_cast<uint8_t>(seq);
  const uint32_t ts = uint32_t{seq} * 160;
  for (int i = 0; i < 4; ++i) p[4 + i] = static_cast<uint8_t>(ts >> (24 - 8 * i));
  for (int i = 0; i < 4; ++i) p[8 + i] = static_cast<uint8_t>(ssrc >> (24 - 8 * i));
  std::memset(p + 12, 0xd5, payload);
}

// Room per packet: header, payload, the largest trailer, rounded to cache lines.
uint32_t Slot(uint32_t payload) { return (12 + payload + dp::kSrtpMaxTrailerLen + 63) / 64 * 64; }

std::unique_ptr<SrtpContext> MakeContext(SrtpEngineKind kind, SrtpSuite suite, const StreamKeys& k,
                                         dp::SrtpDirection direction) {
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(suite);
  dp::SrtpConfig c;
  c.engine = kind;
  c.suite = suite;
  c.master_key = {k.key, info.master_key_len};
  c.master_salt = {k.salt, info.master_salt_len};
  c.srtcp = false;  // RTP only: half the cryptodev sessions
  c.direction = direction;
  return SrtpContext::Create(c);
}

void SetLibsrtpPolicy(SrtpSuite suite, srtp_crypto_policy_t* p) {
  switch (suite) {
    case SrtpSuite::kAesCm128HmacSha1_80:
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(p);
      break;
    case SrtpSuite::kAesCm128HmacSha1_32:
      srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(p);
      break;
    case SrtpSuite::kAes256CmHmacSha1_80:
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80(p);
      break;
    case SrtpSuite::kAes256CmHmacSha1_32:
      srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32(p);
      break;
    case SrtpSuite::kAeadAes128Gcm:
      srtp_crypto_policy_set_aes_gcm_128_16_auth(p);
      break;
    case SrtpSuite::kAeadAes256Gcm:
      srtp_crypto_policy_set_aes_gcm_256_16_auth(p);
      break;
  }
}

rte_crypto_sym_op* SymOp(rte_crypto_op* op) {
  return reinterpret_cast<rte_crypto_sym_op*>(reinterpret_cast<uint8_t*>(op) +
                                              sizeof(rte_crypto_op));
}

// One cryptodev session per stream for a protect, as the engine's cryptodev path makes
// them (AES-CTR chained with HMAC-SHA1 generating 20 octets, or AES-GCM encrypt with a
// 12-octet IV and AAD); fewer than keys.size() if the device runs out.
std::vector<void*> MakeProtectSessions(const dp::SrtpSuiteInfo& info,
                                       const std::vector<StreamKeys>& keys, uint16_t iv_offset) {
  uint8_t auth_key[20];
  std::memset(auth_key, 0x3c, sizeof(auth_key));
  std::vector<void*> sessions;
  for (const StreamKeys& k : keys) {
    rte_crypto_sym_xform cipher, auth, aead;
    std::memset(&cipher, 0, sizeof(cipher));
    std::memset(&auth, 0, sizeof(auth));
    std::memset(&aead, 0, sizeof(aead));
    void* session = nullptr;
    if (info.aead) {
      aead.type = RTE_CRYPTO_SYM_XFORM_AEAD;
      aead.aead.op = RTE_CRYPTO_AEAD_OP_ENCRYPT;
      aead.aead.algo = RTE_CRYPTO_AEAD_AES_GCM;
      aead.aead.key.data = k.key;
      aead.aead.key.length = info.master_key_len;
      aead.aead.iv.offset = iv_offset;
      aead.aead.iv.length = 12;
      aead.aead.digest_length = 16;
      aead.aead.aad_length = 12;
      session = dp::srtp_internal::CreateCryptodevSession(&aead);
    } else {
      cipher.type = RTE_CRYPTO_SYM_XFORM_CIPHER;
      cipher.cipher.op = RTE_CRYPTO_CIPHER_OP_ENCRYPT;
      cipher.cipher.algo = RTE_CRYPTO_CIPHER_AES_CTR;
      cipher.cipher.key.data = k.key;
      cipher.cipher.key.length = info.master_key_len;
      cipher.cipher.iv.offset = iv_offset;
      cipher.cipher.iv.length = 16;
      auth.type = RTE_CRYPTO_SYM_XFORM_AUTH;
      auth.auth.op = RTE_CRYPTO_AUTH_OP_GENERATE;
      auth.auth.algo = RTE_CRYPTO_AUTH_SHA1_HMAC;
      auth.auth.key.data = auth_key;
      auth.auth.key.length = 20;
      auth.auth.digest_length = 20;
      cipher.next = &auth;
      session = dp::srtp_internal::CreateCryptodevSession(&cipher);
    }
    if (session == nullptr) break;
    sessions.push_back(session);
  }
  return sessions;
}

}  // namespace

double LibsrtpProtectMpps(SrtpSuite suite, const CryptoBenchOptions& opt) {
  if (!dp::srtp_internal::EnsureLibsrtp()) return -1;
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(suite);
  const std::vector<StreamKeys> keys = MakeKeys(opt.streams, 1);
  std::vector<srtp_t> sessions(opt.streams, nullptr);
  const uint32_t slot = Slot(opt.payload);
  std::vector<uint8_t> buf(size_t{slot} * opt.streams);
  std::vector<uint16_t> seq(opt.streams, 1);
  const int len = static_cast<int>(12 + opt.payload);
  double mpps = -1;
  bool ok = true;
  for (unsigned s = 0; s < opt.streams && ok; ++s) {
    uint8_t key[46];
    std::memcpy(key, keys[s].key, info.master_key_len);
    std::memcpy(key + info.master_key_len, keys[s].salt, info.master_salt_len);
    srtp_policy_t p;
    std::memset(&p, 0, sizeof(p));
    SetLibsrtpPolicy(suite, &p.rtp);
    SetLibsrtpPolicy(suite, &p.rtcp);
    p.ssrc.type = ssrc_any_outbound;
    p.key = key;
    p.window_size = 128;
    ok = srtp_create(&sessions[s], &p) == srtp_err_status_ok;
    // The first packet creates libsrtp2's stream for the SSRC (an allocation): untimed.
    uint8_t* pkt = &buf[size_t{s} * slot];
    WriteRtp(pkt, seq[s]++, 0x10000 + s, opt.payload);
    int out = len;
    ok = ok && srtp_protect(sessions[s], pkt, &out) == srtp_err_status_ok;
  }
  if (ok) {
    SliceRates slices;
    unsigned next = 0;
    while (ok && slices.packets() < opt.max_packets && slices.seconds() < opt.seconds) {
      const Clock::time_point t0 = Clock::now();
      for (int i = 0; i < 1000; ++i) {  // a slice: 1000 packets, round robin over the streams
        const unsigned s = next;
        next = next + 1 == opt.streams ? 0 : next + 1;
        uint8_t* pkt = &buf[size_t{s} * slot];
        pkt[2] = static_cast<uint8_t>(seq[s] >> 8);
        pkt[3] = static_cast<uint8_t>(seq[s]);
        ++seq[s];
        int out = len;
        ok = ok && srtp_protect(sessions[s], pkt, &out) == srtp_err_status_ok;
      }
      slices.Add(1000, Clock::now() - t0);
    }
    if (ok) mpps = slices.MedianMpps();
  }
  for (srtp_t s : sessions) {
    if (s != nullptr) srtp_dealloc(s);
  }
  return mpps;
}

struct RawCryptodevRef::State {
  dp::SrtpSuiteInfo info;
  uint8_t dev = 0;
  uint16_t qp = 0;
  int reserved_qp = -1;  // ours to release; -1 when the queue pair was lent
  uint64_t generation = 0;
  uint16_t scratch = 0;
  unsigned streams = 0;
  uint16_t burst = 0;
  uint32_t payload = 0;
  std::vector<StreamKeys> keys;
  std::vector<void*> sessions;
  std::vector<uint8_t> buf;
  std::unique_ptr<rte_mbuf[]> mbufs;
  std::vector<rte_crypto_op*> ops, done;
  rte_mempool* op_pool = nullptr;
  bool have_ops = false;
  unsigned next = 0;  // the next stream, round robin
};

RawCryptodevRef::RawCryptodevRef(SrtpSuite suite, const CryptoBenchOptions& opt, int lent_qp)
    : s_(std::make_unique<State>()) {
  State& st = *s_;
  st.info = dp::GetSrtpSuiteInfo(suite);
  const int dev_id = dp::srtp_internal::CryptodevId(st.info.aead);  // the device Karl uses
  st.op_pool = dp::srtp_internal::CryptoOpPool();
  if (dev_id < 0 || st.op_pool == nullptr || opt.burst == 0 || opt.streams == 0) return;
  if (lent_qp < 0) {
    st.reserved_qp = dp::srtp_internal::ReserveQueuePair(opt.worker_index);
    if (st.reserved_qp < 0) return;
  }
  st.dev = static_cast<uint8_t>(dev_id);
  st.qp = static_cast<uint16_t>(lent_qp < 0 ? st.reserved_qp : lent_qp);
  st.generation = dp::srtp_internal::CryptodevGeneration();
  st.scratch = dp::srtp_internal::OpScratchOffset();
  st.streams = opt.streams;
  st.burst = opt.burst;
  st.payload = opt.payload;
  st.keys = MakeKeys(opt.streams, 2);
  // The same sessions the engine makes for a protect: one per stream.
  const uint16_t iv_offset = static_cast<uint16_t>(st.scratch + offsetof(dp::SrtpOpScratch, iv));
  st.sessions = MakeProtectSessions(st.info, st.keys, iv_offset);
  if (st.sessions.size() != opt.streams) return;
  // Packets in shell mbufs (the buffer is the packet slot), as the engine reads them.
  const uint32_t slot = Slot(opt.payload);
  st.buf.resize(size_t{slot} * opt.streams);
  st.mbufs.reset(new rte_mbuf[opt.streams]());
  for (unsigned s = 0; s < opt.streams; ++s) {
    uint8_t* pkt = &st.buf[size_t{s} * slot];
    WriteRtp(pkt, 1, 0x20000 + s, opt.payload);
    rte_mbuf* m = &st.mbufs[s];
    rte_mbuf_refcnt_set(m, 1);
    m->nb_segs = 1;
    m->buf_addr = pkt;
    m->buf_iova = reinterpret_cast<rte_iova_t>(pkt);
    m->buf_len = static_cast<uint16_t>(slot);
    m->data_len = static_cast<uint16_t>(slot);
    m->pkt_len = slot;
  }
  st.ops.resize(opt.burst);
  st.done.resize(opt.burst);
  st.have_ops = rte_crypto_op_bulk_alloc(st.op_pool, RTE_CRYPTO_OP_TYPE_SYMMETRIC, st.ops.data(),
                                         opt.burst) == opt.burst;
}

RawCryptodevRef::~RawCryptodevRef() {
  State& st = *s_;
  if (st.have_ops) {
    rte_mempool_put_bulk(st.op_pool, reinterpret_cast<void**>(st.ops.data()), st.burst);
  }
  for (void* s : st.sessions)
    dp::srtp_internal::FreeCryptodevSession(s, st.info.aead, st.generation);
  if (st.reserved_qp >= 0) dp::srtp_internal::ReleaseQueuePair(st.reserved_qp);
}

bool RawCryptodevRef::ok() const { return s_->have_ops; }

double RawCryptodevRef::Measure(double seconds, uint64_t max_packets) {
  State& st = *s_;
  if (!st.have_ops) return -1;
  const uint32_t n = 12 + st.payload;
  bool ok = true;
  SliceRates slices;
  while (ok && slices.packets() < max_packets && slices.seconds() < seconds) {
    const Clock::time_point t0 = Clock::now();
    for (int rep = 0; rep < 64 && ok; ++rep) {  // a slice: 64 bursts
      for (uint16_t i = 0; i < st.burst; ++i) {
        const unsigned s = st.next;
        st.next = st.next + 1 == st.streams ? 0 : st.next + 1;
        rte_crypto_op* op = st.ops[i];
        rte_crypto_sym_op* sym = SymOp(op);
        auto* sc = rte_crypto_op_ctod_offset(op, dp::SrtpOpScratch*, st.scratch);
        op->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
        op->sess_type = RTE_CRYPTO_OP_WITH_SESSION;
        sym->session = st.sessions[s];
        rte_mbuf* m = &st.mbufs[s];
        sym->m_src = m;
        sym->m_dst = nullptr;
        std::memcpy(sc->iv, st.keys[s].salt, 14);  // an IV per packet, as SRTP has
        sc->iv[14] = sc->iv[15] = 0;
        if (st.info.aead) {
          std::memcpy(sc->aad, m->buf_addr, 12);
          sym->aead.data.offset = 12;
          sym->aead.data.length = st.payload;
          sym->aead.digest.data = static_cast<uint8_t*>(m->buf_addr) + n;
          sym->aead.digest.phys_addr = m->buf_iova + n;
          sym->aead.aad.data = sc->aad;
          sym->aead.aad.phys_addr =
              rte_crypto_op_ctophys_offset(op, st.scratch + offsetof(dp::SrtpOpScratch, aad));
        } else {
          sym->cipher.data.offset = 12;
          sym->cipher.data.length = st.payload;
          sym->auth.data.offset = 0;
          sym->auth.data.length = n + 4;  // header, payload, ROC
          sym->auth.digest.data = sc->mac;
          sym->auth.digest.phys_addr =
              rte_crypto_op_ctophys_offset(op, st.scratch + offsetof(dp::SrtpOpScratch, mac));
        }
      }
      uint16_t enq = 0, deq = 0;
      while (deq < st.burst) {
        if (enq < st.burst) {
          enq = static_cast<uint16_t>(
              enq + rte_cryptodev_enqueue_burst(st.dev, st.qp, st.ops.data() + enq,
                                                static_cast<uint16_t>(st.burst - enq)));
        }
        deq = static_cast<uint16_t>(
            deq + rte_cryptodev_dequeue_burst(st.dev, st.qp, st.done.data(),
                                              static_cast<uint16_t>(st.burst - deq)));
      }
      for (rte_crypto_op* op : st.ops) ok = ok && op->status == RTE_CRYPTO_OP_STATUS_SUCCESS;
    }
    slices.Add(64u * st.burst, Clock::now() - t0);
  }
  return ok ? slices.MedianMpps() : -1;
}

double RawCryptodevMpps(SrtpSuite suite, const CryptoBenchOptions& opt) {
  RawCryptodevRef ref(suite, opt);
  return ref.Measure(opt.seconds, opt.max_packets);
}

double RawIpsecMbMpps(SrtpSuite suite, const CryptoBenchOptions& opt) {
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(suite);
  if (opt.burst == 0 || opt.burst > IMB_MAX_BURST_SIZE || opt.streams == 0) return -1;
  IMB_MGR* mgr = alloc_mb_mgr(0);
  if (mgr == nullptr) return -1;
  init_mb_mgr_auto(mgr, nullptr);
  // Per stream what the library needs: the HMAC-SHA1 inner and outer states and the AES
  // round keys, or the GCM key data. Set-up, untimed.
  struct alignas(64) Keys {
    uint8_t ipad[20];
    uint8_t opad[20];
    alignas(64) uint8_t aes[16 * 15];
    gcm_key_data gcm;
  };
  const std::vector<StreamKeys> keys = MakeKeys(opt.streams, 2);
  std::unique_ptr<Keys[]> k(new Keys[opt.streams]);
  for (unsigned s = 0; s < opt.streams; ++s) {
    if (info.aead) {
      if (info.master_key_len == 16) {
        IMB_AES128_GCM_PRE(mgr, keys[s].key, &k[s].gcm);
      } else {
        IMB_AES256_GCM_PRE(mgr, keys[s].key, &k[s].gcm);
      }
      continue;
    }
    alignas(16) uint8_t dec[16 * 15];
    if (info.master_key_len == 16) {
      IMB_AES_KEYEXP_128(mgr, keys[s].key, k[s].aes, dec);
    } else {
      IMB_AES_KEYEXP_256(mgr, keys[s].key, k[s].aes, dec);
    }
    alignas(16) uint8_t block[64];
    std::memset(block, 0x36, sizeof(block));
    for (int i = 0; i < 14; ++i) block[i] ^= keys[s].salt[i];  // any 20-octet key will do
    IMB_SHA1_ONE_BLOCK(mgr, block, k[s].ipad);
    std::memset(block, 0x5c, sizeof(block));
    for (int i = 0; i < 14; ++i) block[i] ^= keys[s].salt[i];
    IMB_SHA1_ONE_BLOCK(mgr, block, k[s].opad);
  }
  const uint32_t slot = Slot(opt.payload);
  std::vector<uint8_t> buf(size_t{slot} * opt.streams);
  for (unsigned s = 0; s < opt.streams; ++s) {
    WriteRtp(&buf[size_t{s} * slot], 1, 0x20000 + s, opt.payload);
  }
  const uint32_t n = 12 + opt.payload;
  std::vector<std::array<uint8_t, 16>> ivs(opt.burst);
  std::vector<std::array<uint8_t, 20>> macs(opt.burst);
  std::vector<IMB_JOB> jobs(opt.burst);
  SliceRates slices;
  unsigned next = 0;
  uint64_t failed = 0;
  while (failed == 0 && slices.packets() < opt.max_packets && slices.seconds() < opt.seconds) {
    const Clock::time_point t0 = Clock::now();
    for (int rep = 0; rep < 64; ++rep) {  // a slice: 64 bursts
      for (uint16_t i = 0; i < opt.burst; ++i) {
        const unsigned s = next;
        next = next + 1 == opt.streams ? 0 : next + 1;
        uint8_t* pkt = &buf[size_t{s} * slot];
        uint8_t* iv = ivs[i].data();
        std::memcpy(iv, keys[s].salt, 14);  // an IV per packet, as SRTP has
        iv[14] = iv[15] = 0;
        if (info.aead) {
          gcm_context_data ctx;
          if (info.master_key_len == 16) {
            IMB_AES128_GCM_ENC(mgr, &k[s].gcm, &ctx, pkt + 12, pkt + 12, opt.payload, iv, pkt, 12,
                               pkt + n, 16);
          } else {
            IMB_AES256_GCM_ENC(mgr, &k[s].gcm, &ctx, pkt + 12, pkt + 12, opt.payload, iv, pkt, 12,
                               pkt + n, 16);
          }
          continue;
        }
        IMB_JOB* job = &jobs[i];  // the burst calls take mode, direction and hash
        job->enc_keys = k[s].aes;
        job->dec_keys = k[s].aes;
        job->key_len_in_bytes = info.master_key_len;
        job->src = pkt;
        job->dst = pkt + 12;
        job->cipher_start_src_offset_in_bytes = 12;
        job->msg_len_to_cipher_in_bytes = opt.payload;
        job->iv = iv;
        job->iv_len_in_bytes = 16;
        job->u.HMAC._hashed_auth_key_xor_ipad = k[s].ipad;
        job->u.HMAC._hashed_auth_key_xor_opad = k[s].opad;
        job->hash_start_src_offset_in_bytes = 0;
        job->msg_len_to_hash_in_bytes = n + 4;  // header, payload, ROC
        job->auth_tag_output = macs[i].data();
        job->auth_tag_output_len_in_bytes = 20;
      }
      if (!info.aead) {  // the library's synchronous bursts: encrypt all, then the tags
        const IMB_KEY_SIZE_BYTES key_size =
            info.master_key_len == 16 ? IMB_KEY_128_BYTES : IMB_KEY_256_BYTES;
        failed += IMB_SUBMIT_CIPHER_BURST(mgr, jobs.data(), opt.burst, IMB_CIPHER_CNTR,
                                          IMB_DIR_ENCRYPT, key_size) != opt.burst;
        failed +=
            IMB_SUBMIT_HASH_BURST(mgr, jobs.data(), opt.burst, IMB_AUTH_HMAC_SHA_1) != opt.burst;
      }
    }
    slices.Add(64u * opt.burst, Clock::now() - t0);
  }
  free_mb_mgr(mgr);
  return failed == 0 ? slices.MedianMpps() : -1;
}

double RawCpuCryptoMpps(SrtpSuite suite, const CryptoBenchOptions& opt) {
  const dp::SrtpSuiteInfo& info = dp::GetSrtpSuiteInfo(suite);
  const int dev_id = dp::srtp_internal::CryptodevId(info.aead);
  if (dev_id < 0) return -1;
  const uint8_t dev = static_cast<uint8_t>(dev_id);
  rte_cryptodev_info dinfo;
  rte_cryptodev_info_get(dev, &dinfo);
  if ((dinfo.feature_flags & RTE_CRYPTODEV_FF_SYM_CPU_CRYPTO) == 0) return -1;
  const uint64_t generation = dp::srtp_internal::CryptodevGeneration();
  const std::vector<StreamKeys> keys = MakeKeys(opt.streams, 2);
  // The IV goes with each call (the xforms' IV offset is not used).
  std::vector<void*> sessions = MakeProtectSessions(info, keys, 0);
  bool ok = sessions.size() == opt.streams;
  const uint32_t slot = Slot(opt.payload);
  std::vector<uint8_t> buf(size_t{slot} * opt.streams);
  for (unsigned s = 0; s < opt.streams; ++s)
    WriteRtp(&buf[size_t{s} * slot], 1, 0x20000 + s, opt.payload);
  const uint32_t n = 12 + opt.payload;
  double mpps = -1;
  if (ok) {
    SliceRates slices;
    unsigned next = 0;
    alignas(16) uint8_t iv[16], aad[16], mac[32];
    while (ok && slices.packets() < opt.max_packets && slices.seconds() < opt.seconds) {
      const Clock::time_point t0 = Clock::now();
      for (int rep = 0; rep < 64 * opt.burst && ok; ++rep) {
        const unsigned s = next;
        next = next + 1 == opt.streams ? 0 : next + 1;
        uint8_t* pkt = &buf[size_t{s} * slot];
        std::memcpy(iv, keys[s].salt, 14);
        iv[14] = iv[15] = 0;
        rte_crypto_vec seg;
        rte_crypto_sgl sgl;
        rte_crypto_va_iova_ptr ivp, dig, aadp;
        int32_t status = 0;
        seg.base = pkt;
        seg.iova = reinterpret_cast<rte_iova_t>(pkt);
        ivp.va = iv;
        ivp.iova = 0;
        aadp.va = aad;
        aadp.iova = 0;
        rte_crypto_sym_vec vec;
        std::memset(&vec, 0, sizeof(vec));
        vec.num = 1;
        vec.src_sgl = &sgl;
        vec.iv = &ivp;
        vec.digest = &dig;
        vec.aad = &aadp;
        vec.status = &status;
        sgl.vec = &seg;
        sgl.num = 1;
        rte_crypto_sym_ofs ofs;
        ofs.raw = 0;
        if (info.aead) {
          std::memcpy(aad, pkt, 12);
          seg.base = pkt + 12;
          seg.len = opt.payload;
          dig.va = pkt + n;
        } else {
          seg.len = n + 4;
          ofs.ofs.cipher.head = 12;
          ofs.ofs.cipher.tail = 4;
          dig.va = mac;
        }
        ok = rte_cryptodev_sym_cpu_crypto_process(dev, sessions[s], ofs, &vec) == 1 && status == 0;
      }
      slices.Add(64u * opt.burst, Clock::now() - t0);
    }
    if (ok) mpps = slices.MedianMpps();
  }
  for (void* s : sessions) dp::srtp_internal::FreeCryptodevSession(s, info.aead, generation);
  return mpps;
}

double EngineMpps(SrtpEngineKind kind, SrtpSuite suite, dp::SrtpOp op,
                  const CryptoBenchOptions& opt) {
  if (op == SrtpOp::kProtect) return EngineMpps(kind, suite, EngineWork::kProtect, opt);
  if (op == SrtpOp::kUnprotect) return EngineMpps(kind, suite, EngineWork::kUnprotect, opt);
  return -1;  // SRTCP is not measured
}

double EngineMpps(SrtpEngineKind kind, SrtpSuite suite, EngineWork work,
                  const CryptoBenchOptions& opt) {
  if (opt.burst == 0 || opt.streams == 0) return -1;
  std::unique_ptr<dp::SrtpEngine> engine = dp::CreateSrtpEngine(kind, opt.worker_index);
  if (engine == nullptr) return -1;
  // Packets for unprotect are made by senders with the same keys: on this engine when it
  // is ipsec_mb (fast), else in software.
  const SrtpEngineKind gen_kind =
      kind == SrtpEngineKind::kIpsecMb ? SrtpEngineKind::kIpsecMb : SrtpEngineKind::kOpenssl;
  dp::SoftwareSrtpEngine software;
  dp::SrtpEngine& generator =
      gen_kind == SrtpEngineKind::kIpsecMb ? *engine : static_cast<dp::SrtpEngine&>(software);
  const bool protect_only = work == EngineWork::kProtect;
  const std::vector<StreamKeys> in_keys = MakeKeys(opt.streams, 3);
  const std::vector<StreamKeys> out_keys = MakeKeys(opt.streams, 4);
  std::vector<std::unique_ptr<SrtpContext>> senders, ingress, egress;
  for (unsigned s = 0; s < opt.streams; ++s) {
    if (protect_only || work == EngineWork::kRekey) {
      egress.push_back(MakeContext(kind, suite, out_keys[s], dp::SrtpDirection::kProtect));
      if (egress.back() == nullptr) return -1;
    }
    if (!protect_only) {
      ingress.push_back(MakeContext(kind, suite, in_keys[s], dp::SrtpDirection::kUnprotect));
      senders.push_back(MakeContext(gen_kind, suite, in_keys[s], dp::SrtpDirection::kProtect));
      if (ingress.back() == nullptr || senders.back() == nullptr) return -1;
    }
  }
  // A segment (one timed slice): `rounds` packets per stream, stream-major inside a round,
  // so a burst holds `burst` different streams. With many streams one round (one packet
  // buffer per stream, as the raw figure has); with few, enough rounds for 4096 packets.
  // For unprotect and re-key the senders make a segment's packets just before it.
  const unsigned rounds = (4096 + opt.streams - 1) / opt.streams;
  const size_t seg = size_t{rounds} * opt.streams;
  const uint32_t slot = Slot(opt.payload);
  const uint32_t n = 12 + opt.payload;
  std::vector<uint8_t> buf(seg * slot);
  std::vector<SrtpJob> first(seg), second(protect_only ? 0 : seg);
  std::vector<uint16_t> seq(opt.streams, 1);
  auto run_all = [&](dp::SrtpEngine& e, std::vector<SrtpJob>& jobs) {
    for (size_t i = 0; i < jobs.size(); i += opt.burst) {
      e.Run(jobs.data() + i, static_cast<uint16_t>(std::min<size_t>(opt.burst, jobs.size() - i)));
    }
  };
  SliceRates slices;
  bool ok = true;
  while (ok && slices.packets() < opt.max_packets && slices.seconds() < opt.seconds) {
    // Untimed: fresh packets (and for unprotect, protected by the senders).
    for (size_t j = 0; j < seg; ++j) {
      const unsigned s = static_cast<unsigned>(j % opt.streams);
      uint8_t* pkt = &buf[j * slot];
      WriteRtp(pkt, seq[s]++, 0x30000 + s, opt.payload);
      SrtpJob& job = first[j];
      job = SrtpJob{};
      job.pkt = pkt;
      job.len = n;
      job.capacity = slot;
      job.ctx = protect_only ? egress[s].get() : senders[s].get();
    }
    if (!protect_only) {
      run_all(generator, first);
      for (size_t j = 0; j < seg; ++j) {
        const unsigned s = static_cast<unsigned>(j % opt.streams);
        ok = ok && first[j].status == SrtpStatus::kOk;
        first[j].ctx = ingress[s].get();
        first[j].op = SrtpOp::kUnprotect;
        if (work == EngineWork::kRekey) {
          second[j] = SrtpJob{};
          second[j].ctx = egress[s].get();
          second[j].pkt = first[j].pkt;
          second[j].len = n;  // what the unprotect will leave
          second[j].capacity = slot;
        }
      }
    }
    const Clock::time_point t0 = Clock::now();
    if (work == EngineWork::kRekey) {
      for (size_t i = 0; i < seg; i += opt.burst) {
        const uint16_t b = static_cast<uint16_t>(std::min<size_t>(opt.burst, seg - i));
        engine->Run(first.data() + i, b);
        engine->Run(second.data() + i, b);
      }
    } else {
      run_all(*engine, first);
    }
    slices.Add(seg, Clock::now() - t0);  // a slice: one segment
    for (size_t j = 0; j < seg; ++j) {
      ok = ok && first[j].status == SrtpStatus::kOk &&
           (work != EngineWork::kRekey || second[j].status == SrtpStatus::kOk);
    }
  }
  if (!ok) return -1;
  return slices.MedianMpps();
}

}  // namespace karl::bench
