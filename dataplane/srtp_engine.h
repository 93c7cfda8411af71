// SRTP engines: who runs the per-packet transforms of a burst on a worker.
//
// The worker collects the SRTP work of one RX burst as SrtpJobs and hands them to its
// engine in one call, so an engine can batch (cryptodev queue pairs, multi-buffer
// managers). Per-context order is kept: the verdicts and the state of every context are
// those of running its jobs one at a time in the order given.
//
//   ipsec_mb  (default) intel-ipsec-mb, the library under DPDK's crypto_ipsec_mb PMD: the
//             burst's AES-CM jobs run on the worker's own manager as the library's
//             synchronous bursts (AES-CTR over them all, HMAC-SHA1 over them all, its lanes
//             interleaving packets of many streams), and GCM runs per packet on its AES-GCM
//             functions. Karl does the RFC 3711 framing.
//             The path (IpsecMbPath, config srtp.ipsec_mb_path, D27): `direct` (default)
//             calls the library with key material Karl keeps per context; `cryptodev` makes
//             each job a cryptodev op on the crypto_aesni_mb / crypto_aesni_gcm device,
//             enqueued on the worker's queue pair and dequeued until all are back. GCM
//             packets whose AAD is not 12 octets (RTP with CSRCs or a header extension,
//             SRTCP with E=0) and the transforms a context has no session for run in
//             software, in order.
//   openssl   The portable engine: each job on its context's software transform.
//   libsrtp   Each job through libsrtp2 (the context's srtp_t sessions).
//
// Thread: an engine belongs to one worker and Run() is called only by that worker.
// Engines are created on the control plane before the workers start.
//
// Lifetime: InitSrtpCrypto -> SrtpContext::Create / CreateSrtpEngine -> workers run ->
// destroy engines and contexts -> CloseSrtpCrypto. Using a kIpsecMb context or engine after
// CloseSrtpCrypto is a use after free (destroying one is harmless).
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "dataplane/srtp.h"

struct rte_crypto_sym_xform;

namespace karl::dp {

std::string_view SrtpEngineName(SrtpEngineKind kind) noexcept;

// Config `srtp.engine`: "ipsec_mb", "openssl" or "libsrtp". False for anything else.
bool ParseSrtpEngineKind(std::string_view name, SrtpEngineKind* kind) noexcept;

// How the ipsec_mb engine reaches intel-ipsec-mb (see above).
enum class IpsecMbPath : uint8_t { kDirect, kCryptodev };
std::string_view IpsecMbPathName(IpsecMbPath path) noexcept;
// Config `srtp.ipsec_mb_path`: "direct" or "cryptodev". False for anything else.
bool ParseIpsecMbPath(std::string_view name, IpsecMbPath* path) noexcept;

// SrtpOp (protect / unprotect, RTP / RTCP) is in srtp.h.

// One transform of one packet, in place. pkt points at the RTP/RTCP header.
struct SrtpJob {
  SrtpContext* ctx = nullptr;
  rte_mbuf* mbuf = nullptr;  // single-segment mbuf holding pkt..pkt+capacity (null in tests);
                             // engines leave its lengths alone (the worker sets them)
  uint8_t* pkt = nullptr;
  uint32_t len = 0;       // in: octets at pkt; out: after the transform (when kOk)
  uint32_t capacity = 0;  // writable octets from pkt (protect needs room for the trailer)
  SrtpOp op = SrtpOp::kProtect;
  SrtpStatus status = SrtpStatus::kOk;  // out; on anything but kOk the bytes are unspecified
};

// What an engine did, for tests and benchmarks. Owner-private to the engine's worker.
struct SrtpEngineStats {
  uint64_t jobs = 0;
  uint64_t device_ops = 0;     // jobs whose ciphers ran on the cryptodev
  uint64_t software_jobs = 0;  // jobs of a kIpsecMb engine that ran in software instead
                               // (or were redone there after a wrong index guess)
  uint64_t device_errors = 0;  // ops the device failed (redone in software)
};

class SrtpEngine {
 public:
  virtual ~SrtpEngine() = default;
  // Runs every job; each job's status (and len) is set. No allocation, no system call
  // (kLibsrtp contexts: libsrtp2 allocates a stream on the first packet of an SSRC).
  virtual void Run(SrtpJob* jobs, uint16_t n) noexcept = 0;
  SrtpEngineStats stats() const noexcept { return stats_; }

 protected:
  SrtpEngineStats stats_;
};

// The one-at-a-time engine of `openssl` and `libsrtp`: each job on its context's own
// transform (OpenSSL AES and Karl's HMAC-SHA1, or libsrtp2 for kLibsrtp contexts). Never
// touches a cryptodev, so kIpsecMb contexts given to it run in software.
class SoftwareSrtpEngine final : public SrtpEngine {
 public:
  void Run(SrtpJob* jobs, uint16_t n) noexcept override;
};

// After rte_eal_init and before the workers start (control plane). kIpsecMb: creates the
// vdevs "crypto_aesni_mb_karl" (AES-CM suites) and "crypto_aesni_gcm_karl" (GCM suites;
// without the aesni_gcm driver GCM runs on aesni_mb) with rte_vdev_init, or reuses devices
// of those names given with --vdev; checks their capabilities, configures nb_workers + 1
// queue pairs on each (one per worker, one for the control plane: SrtpContext::Protect and
// friends), the op pool and the session pools (grown by 4096 sessions when full), and
// starts them.
// kLibsrtp: srtp_init. kOpenssl: nothing. Each kind at most once until CloseSrtpCrypto.
// `path` (kIpsecMb only): kDirect also sets up an intel-ipsec-mb manager for the control
// plane's key expansion, and each engine gets its own; the devices are made either way.
absl::Status InitSrtpCrypto(SrtpEngineKind kind, unsigned nb_workers,
                            IpsecMbPath path = IpsecMbPath::kDirect);

// Stops and frees what InitSrtpCrypto made (device, pools, libsrtp2). Idempotent. Destroy
// the engines and contexts first (see Lifetime above).
void CloseSrtpCrypto();

// The engine of worker `worker_index` (< nb_workers of InitSrtpCrypto for kIpsecMb: it
// takes that worker's queue pair; nullptr if not initialised, out of range or the queue
// pair is taken by a live engine). Control plane.
std::unique_ptr<SrtpEngine> CreateSrtpEngine(SrtpEngineKind kind, unsigned worker_index);

// ---- Internals shared by srtp.cc, srtp_engine.cc and the benchmarks ----------------------
namespace srtp_internal {

// The cryptodev set up by InitSrtpCrypto(kIpsecMb) for the AES-CM suites (aesni_mb) or,
// `aead`, the GCM suites (aesni_gcm, or aesni_mb without that driver): its id, or -1.
int CryptodevId(bool aead = false) noexcept;
// Number of the current setup (0: none); sessions remember it to be freed only by it.
uint64_t CryptodevGeneration() noexcept;
// Whether the live ipsec_mb setup runs the direct path (false when none is up).
bool IpsecMbDirect() noexcept;
// A session on the device from the session pools (grown on demand); nullptr on failure.
// Control plane. The engine's own transforms use CreateEngineSession.
void* CreateCryptodevSession(rte_crypto_sym_xform* xforms) noexcept;
// Frees a session made by CreateCryptodevSession (an AEAD one if `aead`) of setup
// `generation` (no-op if that setup is gone: its pools went with it).
void FreeCryptodevSession(void* session, bool aead, uint64_t generation) noexcept;
// What a context's transform runs on, made from the same xforms: a cryptodev session when
// the engine goes through the PMD, else the keys for the direct path. Control plane.
void* CreateEngineSession(rte_crypto_sym_xform* xforms) noexcept;
void FreeEngineSession(void* session, bool aead, uint64_t generation) noexcept;
// The cache lines of an engine session (the PMD's header line and data, or the direct
// path's keys) the engine prefetches before they are read, bit i for line i: [0] AES-CM,
// [1] GCM; [.][0] 128-bit keys, [.][1] 256-bit. Written by InitSrtpCrypto.
extern uint64_t g_session_prefetch_lines[2][2];

// Prefetches (into all cache levels, or L2 and up if `l2`) the lines of `p` set in `lines`.
inline void PrefetchLines(const void* p, uint64_t lines, bool l2 = false) noexcept {
  const auto* base = static_cast<const char*>(p);
  for (; lines != 0; lines &= lines - 1) {
    const char* line = base + 64 * __builtin_ctzll(lines);
    if (l2) {
      __builtin_prefetch(line, 0, 2);  // = rte_prefetch1
    } else {
      __builtin_prefetch(line, 0, 3);  // = rte_prefetch0
    }
  }
}
// Tests: the next InitSrtpCrypto(kIpsecMb) runs GCM on aesni_mb, as without the aesni_gcm
// driver.
extern bool g_force_gcm_on_mb;
// Offset of SrtpOpScratch in each op of the op pool (IV offset for the xforms).
uint16_t OpScratchOffset() noexcept;
// The op pool (ops with SrtpOpScratch private areas); nullptr if not set up.
rte_mempool* CryptoOpPool() noexcept;
// The engine on the control plane's queue pair (for SrtpContext's single-packet calls).
SrtpEngine* ControlPlaneEngine() noexcept;
// A worker's queue pair for direct use (benchmarks): its id, or -1 if not set up, out of
// range or taken. ReleaseQueuePair gives it back. Control plane.
int ReserveQueuePair(unsigned worker_index) noexcept;
void ReleaseQueuePair(int qp) noexcept;
// libsrtp2 initialisation on first use (srtp_init), and its shutdown. Control plane.
bool EnsureLibsrtp() noexcept;
void ShutdownLibsrtp() noexcept;

}  // namespace srtp_internal
}  // namespace karl::dp
