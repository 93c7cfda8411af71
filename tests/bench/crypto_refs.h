// SRTP crypto figures for the benchmarks: Karl's engines beside the references they are
// judged against, measured in the same process on the same core.
//
// Every figure is millions of packets per second over about `seconds` of timed work (and
// at most `max_packets`), 172-octet RTP packets (12-octet header + 160 payload) spread
// round robin over `streams` streams that each have their own keys: the median of the
// rates of its slices of a few milliseconds, so that a neighbour's burst of activity on a
// shared machine does not move it. Set-up (contexts, sessions, packet generation) is
// outside the timed part.
//
// Thread: the calling thread does the work (pin it; EAL main lcore). The ipsec_mb figures
// need rte_eal_init and InitSrtpCrypto(kIpsecMb, n) with n > worker_index; they take that
// worker's queue pair for the duration. A figure that cannot be measured is negative.
#pragma once

#include <cstdint>
#include <memory>

#include "dataplane/srtp.h"
#include "dataplane/srtp_engine.h"

namespace karl::bench {

struct CryptoBenchOptions {
  unsigned streams = 10000;
  double seconds = 1.0;
  uint64_t max_packets = 50'000'000;
  uint16_t burst = 32;
  uint32_t payload = 160;
  unsigned worker_index = 0;  // whose ipsec_mb queue pair the figure uses
};

// libsrtp2's srtp_protect, one srtp_t per stream, round robin: the reference a C media
// relay would use.
double LibsrtpProtectMpps(dp::SrtpSuite suite, const CryptoBenchOptions& opt = {});

// The ipsec_mb device alone on the same work as one SRTP protect (AES-CTR over the payload
// chained with HMAC-SHA1 over header + payload + 4, or AES-GCM with a 12-octet AAD), one
// session per stream, bursts of `burst` ops, no SRTP framing: the limit for the engine.
double RawCryptodevMpps(dp::SrtpSuite suite, const CryptoBenchOptions& opt = {});

// The same reference made once and measured as often as wanted: the sessions, packets and
// ops are set up by the constructor (control plane), each Measure() times about `seconds`
// of the work on the calling lcore, continuing round robin where the last one stopped.
// karl-bench measures it on the worker core beside every block of Karl's rounds, so that
// the ratio follows what that core can do at the time. The queue pair: worker_index's
// (reserved, released at destruction), or with lent_qp >= 0 that queue pair of the device,
// which the caller guarantees idle while Measure runs (a stopped worker's: its engine runs
// every op it enqueues to completion before Run returns). Destroy it before the crypto
// setup goes (CloseSrtpCrypto, Dataplane::Close).
class RawCryptodevRef {
 public:
  RawCryptodevRef(dp::SrtpSuite suite, const CryptoBenchOptions& opt, int lent_qp = -1);
  ~RawCryptodevRef();
  RawCryptodevRef(const RawCryptodevRef&) = delete;
  RawCryptodevRef& operator=(const RawCryptodevRef&) = delete;

  bool ok() const;  // false: the device, a queue pair, sessions or ops were not to be had
  double Measure(double seconds, uint64_t max_packets = 50'000'000);  // Mpps, or -1

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The same work on intel-ipsec-mb called directly, as the ipsec_mb engine's direct path
// does (D27): a job per packet run in the library's synchronous bursts (AES-CTR over the
// burst, then HMAC-SHA1 over it), or AES-GCM per packet; key material per stream, no SRTP
// framing. The limit for the engine on that path. Needs no EAL.
double RawIpsecMbMpps(dp::SrtpSuite suite, const CryptoBenchOptions& opt = {});

// rte_cryptodev_sym_cpu_crypto_process on the same devices and sessions, one packet a call
// (it takes one session per call, and every packet here has its own stream): why the
// engine does not use it (AES-CM gets no multi-buffer interleaving that way).
double RawCpuCryptoMpps(dp::SrtpSuite suite, const CryptoBenchOptions& opt = {});

// What the engine's work is: protect, unprotect (of packets protected beforehand), or
// re-key (unprotect with the stream's ingress context, then protect with its egress one:
// two Run calls per burst, one packet counted).
enum class EngineWork : uint8_t { kProtect, kUnprotect, kRekey };

// Karl's engine of `kind`: Run() over bursts of `burst` jobs across `streams` contexts.
double EngineMpps(dp::SrtpEngineKind kind, dp::SrtpSuite suite, EngineWork work,
                  const CryptoBenchOptions& opt = {});

// The same with an SrtpOp: kProtect / kUnprotect (RTP only).
double EngineMpps(dp::SrtpEngineKind kind, dp::SrtpSuite suite, dp::SrtpOp op,
                  const CryptoBenchOptions& opt = {});

}  // namespace karl::bench
