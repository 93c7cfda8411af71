// karl-bench: drives the real worker loop (dataplane::WorkerMain) in-process and
// prints packets per second on one worker core beside references measured in the
// same run on the same vdevs. Not a test: it prints figures.
//
//   karl-bench [--rounds N] [--packets N] [--sessions N] [--size RTP_BYTES]
//              [--no-verify-udp-checksum]   (dataplane.verify_udp_checksum: false)
//              [--huge]           hugepages (needs hugetlbfs mounted and 600 2 MiB pages:
//                                 mount -t hugetlbfs nodev /dev/hugepages;
//                                 echo 640 > /proc/sys/vm/nr_hugepages)
//              [--frames-in-llc]  do not flush the frames from the cache (DDIO-like)
//              [--no-ice]         skip the ICE figures
//
// Ports: "ring" (net_ring made of rte_rings: the main lcore puts frames on its RX
// ring) and "null" (net_null: transmit frees the packets). Per round the main lcore
// puts N prepared frames on the ring's RX ring in one bulk enqueue and times until
// the worker has taken the last one; the median over the rounds is printed.
// The references receive in bursts of the size Karl's worker uses (dataplane.burst_size,
// default 128; testpmd --burst), so the ratios compare like with like.
//   reference rxonly   rx_burst + free on the ring port (testpmd "rxonly")
//   reference io-fwd   rx_burst on ring, tx_burst on null (testpmd "io" forwarding)
//   reference touch-fwd  io-fwd that also reads the frame lines a relay must read (all
//                      of them while the UDP checksum is verified, else the first) and
//                      swaps the MACs: a relay's memory floor, no parsing, no sessions
//   karl drop          Karl's worker, valid RTP to a port with no session
//   karl forward       Karl's worker, S sessions (one stream each way is exercised:
//                      frames cycle over S ingress streams), relay to null
//   karl srtp ...      the same S streams with SRTP (unless --no-srtp): protect (RTP in,
//                      SRTP out), unprotect (SRTP in, RTP out) and re-key (SRTP in, SRTP
//                      out with other keys) for AES_CM_128_HMAC_SHA1_80 and
//                      AEAD_AES_128_GCM, each stream with its own keys, on the engine of
//                      --srtp-engine ipsec_mb|openssl|libsrtp (default ipsec_mb); the
//                      three alternate in blocks of 5 rounds, and re-key / protect is
//                      the median of the per-block ratios. References: libsrtp2's
//                      srtp_protect loop and the raw cipher work on intel-ipsec-mb, on
//                      the main lcore before the run; the raw cryptodev (the same cipher
//                      work on the crypto_ipsec_mb device) on the worker core after every
//                      block, each operation's ratio to it the median of the per-block
//                      ratios (also measured once on the main lcore, for comparison)
//   karl forward, ICE  the S streams of "karl forward" with ICE on (every packet is
//                      checked for STUN first, D25); beside "karl forward"
//   ICE checks         ICE connectivity checks (STUN Binding requests with USERNAME,
//                      PRIORITY, ICE-CONTROLLING, MESSAGE-INTEGRITY, FINGERPRINT) to
//                      up to 1000 sessions made by the real SessionManager with ICE on
//                      leg 0: worker -> exception ring -> the control plane (the main
//                      lcore, polling as its loop does) verifies and answers -> back
//                      through the worker; checks answered per second. References on
//                      the main lcore: the STUN codec alone (parse, verify
//                      MESSAGE-INTEGRITY and FINGERPRINT, build the answer) and the
//                      two HMAC-SHA1 an answer needs (OpenSSL)
#include <immintrin.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_ring.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "controlplane/config.h"
#include "controlplane/session_manager.h"
#include "controlplane/stun.h"
#include "dataplane/dataplane.h"
#include "dataplane/srtp.h"
#include "spdlog/spdlog.h"
#include "tests/bench/crypto_refs.h"
#include "tests/dataplane/packet_builder.h"

namespace {

using karl::IpAddress;
using karl::IpPrefix;
using karl::test::Bytes;

struct RefArgs {
  uint16_t rx_port;
  uint16_t tx_port;  // UINT16_MAX: free instead of transmit
  uint16_t burst;    // the same as Karl's workers (dataplane.burst_size)
  std::atomic<bool>* stop;
  std::atomic<uint64_t>* received;
};

// testpmd's rxonly (tx_port unset) and io (rx -> tx as is) forwarding loops.
int ReferenceMain(void* p) {
  auto* a = static_cast<RefArgs*>(p);
  rte_mbuf* pkts[karl::dp::kMaxBurst];
  uint64_t total = 0;
  while (!a->stop->load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(a->rx_port, 0, pkts, a->burst);
    if (n == 0) continue;
    if (a->tx_port == UINT16_MAX) {
      rte_pktmbuf_free_bulk(pkts, n);
    } else {
      const uint16_t sent = rte_eth_tx_burst(a->tx_port, 0, pkts, n);
      if (sent < n) rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
    total += n;
    a->received->store(total, std::memory_order_relaxed);
  }
  return 0;
}

// A relay's memory floor: io-forwarding that also reads the frame lines a relay must read
// and writes its headers, with nothing else (no parsing, no sessions): reads one word of
// each of the first `lines` 64-octet lines of the frame, swaps the MAC addresses (testpmd
// "macswap") and transmits. Prefetches like Karl's worker: the mbuf headers
// kHeaderAhead packets ahead, the frames into L2 kFrameL2Ahead and into L1 kPrefetchAhead
// ahead, at the offset the first frame had from its mbuf, and each mbuf's second line
// (which the null PMD's free reads) once its frame was read.
struct TouchArgs {
  RefArgs ref;
  unsigned lines;  // 64-octet lines of each frame to read: all, or 1 (the headers)
  std::atomic<uint64_t>* sink;
};

int TouchFwdMain(void* p) {
  using karl::dp::kFrameL2Ahead, karl::dp::kHeaderAhead, karl::dp::kPrefetchAhead;
  auto* a = static_cast<TouchArgs*>(p);
  rte_mbuf* pkts[karl::dp::kMaxBurst];
  uint64_t total = 0, sum = 0;
  intptr_t offset = 0;
  while (!a->ref.stop->load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(a->ref.rx_port, 0, pkts, a->ref.burst);
    if (n == 0) continue;
    if (offset == 0) offset = rte_pktmbuf_mtod(pkts[0], char*) - reinterpret_cast<char*>(pkts[0]);
    auto prefetch = [&](rte_mbuf* m, bool l2) {
      const char* f = reinterpret_cast<const char*>(m) + offset;
      for (unsigned l = 0; l < a->lines; ++l) {
        if (l2) {
          rte_prefetch1(f + 64 * l);
        } else {
          rte_prefetch0(f + 64 * l);
        }
      }
    };
    for (unsigned i = 0; i < std::min<unsigned>(kHeaderAhead, n); ++i) rte_prefetch0(pkts[i]);
    for (unsigned i = kPrefetchAhead; i < std::min<unsigned>(kFrameL2Ahead, n); ++i)
      prefetch(pkts[i], true);
    for (unsigned i = 0; i < std::min<unsigned>(kPrefetchAhead, n); ++i) prefetch(pkts[i], false);
    for (unsigned i = 0; i < n; ++i) {
      if (i + kHeaderAhead < n) rte_prefetch0(pkts[i + kHeaderAhead]);
      if (i + kFrameL2Ahead < n) prefetch(pkts[i + kFrameL2Ahead], true);
      if (i + kPrefetchAhead < n) prefetch(pkts[i + kPrefetchAhead], false);
      auto* f = rte_pktmbuf_mtod(pkts[i], uint8_t*);
      for (unsigned off = 0; off < 64 * a->lines; off += 64) {
        uint64_t w;
        std::memcpy(&w, f + off, sizeof(w));
        sum += w;
      }
      rte_prefetch0(reinterpret_cast<const char*>(pkts[i]) + 64);
      uint8_t mac[6];
      std::memcpy(mac, f, 6);
      std::memmove(f, f + 6, 6);
      std::memcpy(f + 6, mac, 6);
    }
    const uint16_t sent = rte_eth_tx_burst(a->ref.tx_port, 0, pkts, n);
    if (sent < n) rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    total += n;
    a->ref.received->store(total, std::memory_order_relaxed);
  }
  a->sink->store(sum, std::memory_order_relaxed);
  return 0;
}

// Mean time per item over rounds of equal size, from their rates (items per second).
double MeanNsPerItem(const std::vector<double>& rates) {
  double sum = 0;
  for (double r : rates) sum += 1e9 / r;
  return rates.empty() ? 0 : sum / static_cast<double>(rates.size());
}

// Nanoseconds per item of `tsc` TSC ticks spent on `items` items.
double NsPer(uint64_t tsc, double items) {
  return static_cast<double>(tsc) * 1e9 / static_cast<double>(rte_get_tsc_hz()) / items;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median of a[i] / b[i]: per-block ratios of figures measured side by side.
double MedianOfRatios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) r.push_back(a[i] / b[i]);
  return Median(r);
}

// --frames-in-llc: leave the frames in the cache hierarchy (a NIC with DDIO writes them
// into the last-level cache); mbuf headers are flushed either way.
bool g_flush_frames = true;
// The ring port's id: written into each mbuf as a PMD does on receive (net_ring does not).
uint16_t g_rx_port = 0;

// One round: enqueue `count` frames (cycling over `frames`), wait until `counted()`
// reaches `target`; returns packets per second.
double Round(rte_mempool* pool, rte_ring* rx, const std::vector<Bytes>& frames, unsigned count,
             unsigned* next_frame, uint64_t target, const std::function<uint64_t()>& counted) {
  std::vector<rte_mbuf*> mbufs(count);
  if (rte_pktmbuf_alloc_bulk(pool, mbufs.data(), count) != 0) {
    std::fprintf(stderr, "karl-bench: mbuf pool exhausted\n");
    std::exit(1);
  }
  for (rte_mbuf* m : mbufs) {
    const Bytes& f = frames[(*next_frame)++ % frames.size()];
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    m->port = g_rx_port;
  }
  // A NIC writes frames by DMA, which leaves them in memory, not dirty in another
  // core's cache: flush what the main lcore just wrote (mbuf headers and frames) so
  // the worker meets them as it would meet received packets.
  for (rte_mbuf* m : mbufs) {
    auto* hdr = reinterpret_cast<char*>(m);
    for (unsigned off = 0; off < sizeof(rte_mbuf); off += 64) _mm_clflushopt(hdr + off);
    if (!g_flush_frames) continue;
    auto* data = rte_pktmbuf_mtod(m, char*);
    for (unsigned off = 0; off < m->data_len + 64u; off += 64) _mm_clflushopt(data + off);
  }
  _mm_sfence();
  const uint64_t t0 = rte_rdtsc();
  if (rte_ring_enqueue_bulk(rx, reinterpret_cast<void**>(mbufs.data()), count, nullptr) != count) {
    std::fprintf(stderr, "karl-bench: RX ring too small\n");
    std::exit(1);
  }
  const uint64_t limit = t0 + rte_get_tsc_hz() * 10;
  while (counted() < target) {
    // Poll gently: reading the worker's counter line in a tight loop would steal it
    // from the worker on every write (a reader in production scrapes once a second).
    rte_delay_us_block(2);
    if (rte_rdtsc() > limit) {
      std::fprintf(stderr, "karl-bench: a round did not finish in 10 s\n");
      std::exit(1);
    }
  }
  const uint64_t t1 = rte_rdtsc();
  return static_cast<double>(count) * static_cast<double>(rte_get_tsc_hz()) /
         static_cast<double>(t1 - t0);
}

void Print(const char* name, double pps, double ref_pps, const char* ref_name) {
  const double mpps = pps / 1e6;
  if (ref_pps > 0) {
    std::printf("%-28s %7.2f Mpps %7.1f ns/packet   %.2fx %s\n", name, mpps, 1e3 / mpps,
                pps / ref_pps, ref_name);
  } else {
    std::printf("%-28s %7.2f Mpps %7.1f ns/packet\n", name, mpps, 1e3 / mpps);
  }
}

// Per-stream SRTP keys for the benchmark: stream i, key set k (0 = the ingress peer's,
// 1 = Karl's egress keys), deterministic.
std::vector<uint8_t> BenchKey(karl::dp::SrtpSuite suite, unsigned i, unsigned k) {
  const auto& info = karl::dp::GetSrtpSuiteInfo(suite);
  std::vector<uint8_t> ks(size_t{info.master_key_len} + info.master_salt_len);
  for (size_t b = 0; b < ks.size(); ++b) ks[b] = static_cast<uint8_t>(i * 13 + k * 101 + b * 7);
  return ks;
}

std::shared_ptr<karl::dp::SrtpContext> BenchContext(karl::dp::SrtpSuite suite, unsigned i,
                                                    unsigned k, karl::dp::SrtpEngineKind engine,
                                                    karl::dp::SrtpDirection direction) {
  const auto& info = karl::dp::GetSrtpSuiteInfo(suite);
  const std::vector<uint8_t> ks = BenchKey(suite, i, k);
  karl::dp::SrtpConfig c;
  c.engine = engine;
  c.direction = direction;
  c.suite = suite;
  c.master_key = std::span<const uint8_t>(ks.data(), info.master_key_len);
  c.master_salt = std::span<const uint8_t>(ks.data() + info.master_key_len, info.master_salt_len);
  std::shared_ptr<karl::dp::SrtpContext> ctx = karl::dp::SrtpContext::Create(c);
  if (ctx == nullptr) {
    std::fprintf(stderr, "karl-bench: cannot create an SRTP context\n");
    std::exit(1);
  }
  return ctx;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned rounds = 30;
  unsigned packets = 32768;
  unsigned sessions = 10000;
  unsigned rtp_size = 172;
  bool verify_udp_checksum = true;
  bool srtp = true;
  bool huge = false;
  bool ice = true;
  karl::dp::SrtpEngineKind engine = karl::dp::SrtpEngineKind::kIpsecMb;
  // Flags and "--name value" options in any order; anything else is a usage error.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-verify-udp-checksum") {
      verify_udp_checksum = false;
    } else if (a == "--no-srtp") {
      srtp = false;
    } else if (a == "--huge") {
      huge = true;
    } else if (a == "--no-ice") {
      ice = false;
    } else if (a == "--frames-in-llc") {
      g_flush_frames = false;
    } else if (i + 1 < argc && a == "--srtp-engine") {
      if (!karl::dp::ParseSrtpEngineKind(argv[++i], &engine)) {
        std::fprintf(stderr, "karl-bench: --srtp-engine: ipsec_mb, openssl or libsrtp\n");
        return 2;
      }
    } else if (i + 1 < argc &&
               (a == "--rounds" || a == "--packets" || a == "--sessions" || a == "--size")) {
      const unsigned v = static_cast<unsigned>(std::atoi(argv[++i]));
      if (a == "--rounds") rounds = std::max(1u, v);
      if (a == "--packets") packets = std::max(32u, v);
      if (a == "--sessions") sessions = std::clamp(v, 1u, 20000u);
      if (a == "--size") rtp_size = std::clamp(v, 12u, 1400u);
    } else {
      std::fprintf(stderr,
                   "karl-bench: unknown or incomplete option %s (see the top of "
                   "tests/bench/karl_bench.cc)\n",
                   a.c_str());
      return 2;
    }
  }
  const std::string prefix = "karl-bench-" + std::to_string(getpid());
  std::vector<std::string> eal = {
      "karl-bench",  "-l",          "0-1",           "--no-huge", "-m",     "1024",
      "--no-pci",    "--no-shconf", "--file-prefix", prefix,      "--vdev", "net_null0,no-rx=1",
      "--log-level", "error"};
  if (huge) {  // 2 MiB pages from a mounted hugetlbfs instead of --no-huge's 4 KiB pages
    eal[3] = "--huge-unlink";
    eal[5] = "1200";
  }
  std::vector<char*> eal_argv;
  for (auto& s : eal) eal_argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "karl-bench: EAL init failed\n");
    return 1;
  }
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  const unsigned worker_lcore = rte_get_next_lcore(-1, 1, 0);
  rte_mempool* pool =
      rte_pktmbuf_pool_create("bench_pool", packets * 2 + 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                              static_cast<int>(rte_socket_id()));
  rte_ring* rx =
      rte_ring_create("bench_rx", rte_align32pow2(packets + 1), 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("bench_tx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  uint16_t ring_port = 0;
  uint16_t null_port = 0;
  if (pool == nullptr || rx == nullptr || tx == nullptr ||
      rte_eth_from_rings("benchport", &rx, 1, &tx, 1, 0) < 0 ||
      rte_eth_dev_get_port_by_name("net_ring_benchport", &ring_port) != 0 ||
      rte_eth_dev_get_port_by_name("net_null0", &null_port) != 0) {
    std::fprintf(stderr, "karl-bench: cannot create pool/rings/ports\n");
    return 1;
  }
  g_rx_port = ring_port;

  // Frames: RTP from 198.51.100.2 to 198.51.100.1:20000+2i (session i's leg 0).
  const IpAddress ours = *IpAddress::Parse("198.51.100.1");
  const IpAddress peer = *IpAddress::Parse("198.51.100.2");
  std::vector<Bytes> frames;
  for (unsigned i = 0; i < sessions; ++i) {
    karl::test::UdpSpec spec{peer, ours, 40000, static_cast<uint16_t>(20000 + 2 * i)};
    spec.payload = karl::test::RtpPayload(static_cast<uint16_t>(i), 0x1000 + i);
    spec.payload.resize(rtp_size, 0x5a);
    frames.push_back(karl::test::BuildUdp(spec));
  }

  // Compute alone: parse/validate, RTP statistics and header rewrite of one frame that
  // stays in L1, in a tight loop on the main lcore (no PMD, no misses).
  double micro_parse_ns = 0, micro_stats_ns = 0, micro_rewrite_ns = 0;
  {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frames[0].size())), frames[0].data(),
                frames[0].size());
    karl::dp::PortContext ctx;
    ctx.v4_count = 1;
    ctx.v4[0] = rte_cpu_to_be_32(ours.v4());
    ctx.rtp_port_min = 20000;
    ctx.rtp_port_max = 59999;
    ctx.verify_udp_checksum = verify_udp_checksum;
    constexpr int kIters = 2000000;
    karl::dp::ParsedPacket parsed;
    uint64_t sink = 0;
    uint64_t t0 = rte_rdtsc();
    for (int i = 0; i < kIters; ++i) {
      sink += static_cast<uint64_t>(karl::dp::ClassifyPacket(m, ctx, &parsed));
      asm volatile("" : : "r"(sink) : "memory");
    }
    uint64_t t1 = rte_rdtsc();
    micro_parse_ns = NsPer(t1 - t0, kIters);
    karl::dp::RtpStreamStats rs{};
    karl::dp::RtpHeaderInfo h{};
    const uint8_t* payload = rte_pktmbuf_mtod_offset(m, const uint8_t*, parsed.l4_offset + 8);
    t0 = rte_rdtsc();
    for (int i = 0; i < kIters; ++i) {
      karl::dp::ParseRtp(payload, parsed.udp_payload_len, &h);
      h.seq = static_cast<uint16_t>(i);
      h.timestamp = static_cast<uint32_t>(i) * 160;
      rs.Update(h, static_cast<uint64_t>(i) * 20000000);
      asm volatile("" : : "r"(&rs) : "memory");
    }
    t1 = rte_rdtsc();
    micro_stats_ns = NsPer(t1 - t0, kIters);
    karl::dp::Egress e;
    e.family = 4;
    e.have_mac = true;
    std::memcpy(e.src_addr, ours.bytes().data(), 4);
    std::memcpy(e.dst_addr, peer.bytes().data(), 4);
    e.src_port_be = rte_cpu_to_be_16(30000);
    e.dst_port_be = rte_cpu_to_be_16(40000);
    karl::dp::EgressPort ep;
    t0 = rte_rdtsc();
    for (int i = 0; i < kIters; ++i) {
      // Rewriting v4->v4 keeps the header length: the frame can be rewritten again.
      karl::dp::RewriteForEgress(m, parsed, e, ep);
      asm volatile("" : : "r"(m) : "memory");
    }
    t1 = rte_rdtsc();
    micro_rewrite_ns = NsPer(t1 - t0, kIters);
    rte_pktmbuf_free(m);
  }

  karl::dp::Settings s;
  s.ports.push_back(karl::dp::PortSettings{
      "ring", "net_ring_benchport", {*IpPrefix::Parse("198.51.100.1/24")}, 0, 1500, 1024, 1024});
  s.ports.push_back(karl::dp::PortSettings{
      "null", "net_null0", {*IpPrefix::Parse("203.0.113.1/24")}, 0, 1500, 1024, 1024});
  s.rtp_port_min = 20000;
  s.rtp_port_max = 59999;
  s.verify_udp_checksum = verify_udp_checksum;
  s.srtp_engine = engine;
  // SRTP references (and the engine alone, without the dataplane), measured here on the
  // main lcore before the dataplane takes the crypto device. The raw cryptodev reference
  // the ratio is taken against is measured again beside every block of Karl's SRTP rounds,
  // on the worker core (below); this one is printed for comparison with earlier runs.
  const karl::dp::SrtpSuite kBenchSuites[] = {karl::dp::SrtpSuite::kAesCm128HmacSha1_80,
                                              karl::dp::SrtpSuite::kAeadAes128Gcm};
  double libsrtp_ref[2] = {0, 0}, raw_main_ref[2] = {0, 0}, direct_ref[2] = {0, 0},
         engine_alone[2] = {0, 0};
  if (srtp) {
    if (auto st = karl::dp::InitSrtpCrypto(karl::dp::SrtpEngineKind::kIpsecMb, 1); !st.ok()) {
      std::fprintf(stderr, "karl-bench: ipsec_mb: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    if (engine == karl::dp::SrtpEngineKind::kLibsrtp) {
      if (auto st = karl::dp::InitSrtpCrypto(engine, 1); !st.ok()) return 1;
    }
    karl::bench::CryptoBenchOptions opt;
    opt.streams = sessions;
    opt.payload = rtp_size - 12;
    for (unsigned si = 0; si < 2; ++si) {
      libsrtp_ref[si] = karl::bench::LibsrtpProtectMpps(kBenchSuites[si], opt);
      raw_main_ref[si] = karl::bench::RawCryptodevMpps(kBenchSuites[si], opt);
      direct_ref[si] = karl::bench::RawIpsecMbMpps(kBenchSuites[si], opt);
      engine_alone[si] =
          karl::bench::EngineMpps(engine, kBenchSuites[si], karl::bench::EngineWork::kProtect, opt);
    }
    karl::dp::CloseSrtpCrypto();
  }
  karl::dp::Dataplane dp;
  if (auto st = dp.Init(s); !st.ok()) {
    std::fprintf(stderr, "karl-bench: dataplane init failed: %s\n",
                 std::string(st.message()).c_str());
    return 1;
  }
  // The raw cryptodev reference beside the SRTP blocks needs the ipsec_mb device, which the
  // dataplane set up only if its engine is ipsec_mb (Dataplane::Close tears it down).
  const bool own_ipsec_mb = srtp && engine != karl::dp::SrtpEngineKind::kIpsecMb;
  if (own_ipsec_mb) {
    if (auto st = karl::dp::InitSrtpCrypto(karl::dp::SrtpEngineKind::kIpsecMb, 1); !st.ok()) {
      std::fprintf(stderr, "karl-bench: ipsec_mb: %s\n", std::string(st.message()).c_str());
      return 1;
    }
  }
  // S sessions: leg 0 receives on 198.51.100.1:20000+2i, leg 1 sends from
  // 203.0.113.1:40000+2i to 203.0.113.9:50000 via the null port. The drop frames go to
  // 20001+2i, where no stream listens.
  const IpAddress far = *IpAddress::Parse("203.0.113.9");
  const IpAddress ours_b = *IpAddress::Parse("203.0.113.1");
  for (unsigned i = 0; i < sessions; ++i) {
    karl::dp::StreamConfig cfg;
    cfg.id = dp.AllocateStream();
    cfg.latch = false;
    karl::dp::Egress& e = cfg.egress;
    e.family = 4;
    e.have_mac = true;
    e.port_index = 1;
    std::memcpy(e.src_addr, ours_b.bytes().data(), 4);
    std::memcpy(e.dst_addr, far.bytes().data(), 4);
    e.src_port_be = rte_cpu_to_be_16(static_cast<uint16_t>(40000 + 2 * i));
    e.dst_port_be = rte_cpu_to_be_16(50000);
    dp.PublishStream(cfg);
    const uint16_t port = static_cast<uint16_t>(20000 + 2 * i);
    if (!dp.AddFlow(karl::dp::MakeFlowKey(4, ours.bytes().data(), rte_cpu_to_be_16(port)), cfg.id)
             .ok()) {
      std::fprintf(stderr, "karl-bench: flow table full\n");
      return 1;
    }
  }
  std::vector<Bytes> drop_frames;
  for (unsigned i = 0; i < sessions; ++i) {
    karl::test::UdpSpec spec{peer, ours, 40000, static_cast<uint16_t>(20001 + 2 * i)};
    spec.payload = karl::test::RtpPayload(static_cast<uint16_t>(i), 0x1000 + i);
    spec.payload.resize(rtp_size, 0x5a);
    drop_frames.push_back(karl::test::BuildUdp(spec));
  }

  // The machine is shared and noisy: measure in blocks that alternate the references
  // and Karl on the same ports, and report medians over all rounds and of the
  // per-block ratios.
  const auto& counters = dp.worker(0).counters;
  auto rx_count = [&] { return counters.rx_packets.Read(); };
  std::vector<double> rxonly, iofwd, touch, drop, fwd, drop_ratio, fwd_ratio, touch_ratio,
      drop_busy_ns, fwd_busy_ns;
  std::atomic<uint64_t> touch_sink{0};
  // The frame lines a relay reads: every one of a frame while the UDP checksum is
  // verified, else the first (Ethernet, IPv4, UDP and RTP headers: 54 octets).
  const unsigned touch_lines =
      verify_udp_checksum ? static_cast<unsigned>((frames[0].size() + 63) / 64) : 1u;
  unsigned next = 0;
  const unsigned blocks = std::max(1u, rounds / 5);
  uint64_t tx_expected = 0;
  const uint64_t tx_start = counters.tx_packets.Read();
  for (unsigned b = 0; b < blocks; ++b) {
    double block_ref[3] = {0, 0, 0};  // rxonly, io-fwd, frame-touch fwd
    for (int kind = 0; kind < 3; ++kind) {
      for (uint16_t p : {ring_port, null_port}) rte_eth_dev_start(p);
      std::atomic<bool> stop{false};
      std::atomic<uint64_t> received{0};
      TouchArgs args{
          {ring_port, kind == 0 ? uint16_t{UINT16_MAX} : null_port, s.burst_size, &stop, &received},
          touch_lines,
          &touch_sink};
      if (kind == 2) {
        rte_eal_remote_launch(TouchFwdMain, &args, worker_lcore);
      } else {
        rte_eal_remote_launch(ReferenceMain, &args.ref, worker_lcore);
      }
      std::vector<double> r;
      for (unsigned i = 0; i < 5; ++i) {
        r.push_back(Round(pool, rx, frames, packets, &next, received.load() + packets,
                          [&] { return received.load(); }));
      }
      stop.store(true);
      rte_eal_wait_lcore(worker_lcore);
      for (uint16_t p : {ring_port, null_port}) rte_eth_dev_stop(p);
      std::vector<double>& all = kind == 0 ? rxonly : kind == 1 ? iofwd : touch;
      all.insert(all.end(), r.begin(), r.end());
      block_ref[kind] = Median(r);
    }
    if (auto st = dp.Start(); !st.ok()) {
      std::fprintf(stderr, "karl-bench: dataplane start failed: %s\n",
                   std::string(st.message()).c_str());
      return 1;
    }
    std::vector<double> d, f;
    unsigned next_drop = 0;
    uint64_t busy0 = counters.busy_tsc.Read();
    for (unsigned i = 0; i < 5; ++i) {
      d.push_back(
          Round(pool, rx, drop_frames, packets, &next_drop, rx_count() + packets, rx_count));
    }
    drop_busy_ns.push_back(NsPer(counters.busy_tsc.Read() - busy0, 5.0 * packets));
    busy0 = counters.busy_tsc.Read();
    for (unsigned i = 0; i < 5; ++i) {
      f.push_back(Round(pool, rx, frames, packets, &next, rx_count() + packets, rx_count));
      tx_expected += packets;
    }
    fwd_busy_ns.push_back(NsPer(counters.busy_tsc.Read() - busy0, 5.0 * packets));
    dp.Stop();
    drop.insert(drop.end(), d.begin(), d.end());
    fwd.insert(fwd.end(), f.begin(), f.end());
    drop_ratio.push_back(Median(d) / block_ref[0]);
    fwd_ratio.push_back(Median(f) / block_ref[1]);
    touch_ratio.push_back(Median(f) / block_ref[2]);
  }
  const uint64_t forwarded = counters.tx_packets.Read() - tx_start;
  if (forwarded != tx_expected) {
    std::fprintf(stderr, "karl-bench: forwarded %llu of %llu packets\n",
                 static_cast<unsigned long long>(forwarded),
                 static_cast<unsigned long long>(tx_expected));
    return 1;
  }
  // SRTP: the same streams republished with contexts. The three operations alternate
  // block by block (5 rounds each), so the noisy host and whatever state the run builds
  // up weigh on all three alike (run one after the other, the first measured up to 1.4x
  // faster than the same operation run last). Each operation keeps its own contexts
  // across blocks, and its ingress frames are numbered so that no stream ever sees a
  // sequence number twice (the replay window would drop it; libsrtp2 would not protect it).
  struct SrtpResult {
    const char* name;
    double mpps, busy_ns, libsrtp_mpps, raw_mpps, direct_mpps;
    double raw_ratio;   // median of the per-block ratios to the raw cryptodev reference
    double elapsed_ns;  // mean over the rounds busy_ns covers (the clock check below)
  };
  // The raw cryptodev reference runs on the worker core between the blocks, while the
  // dataplane is stopped, on the worker's own queue pair (worker 0's is queue pair 1; its
  // engine leaves nothing in it between bursts), or with another engine than ipsec_mb on
  // the queue pair it reserves for worker 0 (free). Measured once on the main lcore before
  // the run, it held steady through spells in which the worker core slowed by a third,
  // and the ratio followed the spells (session 11).
  struct RawArgs {
    karl::bench::RawCryptodevRef* ref;
    double mpps;
  };
  const auto raw_on_worker = [](void* p) {
    auto* a = static_cast<RawArgs*>(p);
    a->ref->Measure(0.05);  // warm: the first pass over the sessions and packets
    a->mpps = a->ref->Measure(0.25);
    return 0;
  };
  std::vector<SrtpResult> srtp_results;
  double rekey_ratio[2] = {0, 0};        // re-key / protect, median of the per-block ratios
  std::vector<double> raw_per_block[2];  // the raw cryptodev reference of each block, pps
  static const char* kSrtpNames[2][3] = {
      {"protect AES_CM_128_HMAC_SHA1_80", "unprotect AES_CM_128_HMAC_SHA1_80",
       "re-key AES_CM_128_HMAC_SHA1_80"},
      {"protect AEAD_AES_128_GCM", "unprotect AEAD_AES_128_GCM", "re-key AEAD_AES_128_GCM"}};
  for (unsigned si = 0; srtp && si < 2; ++si) {
    const karl::dp::SrtpSuite suite = kBenchSuites[si];
    struct Op {
      std::vector<std::shared_ptr<karl::dp::SrtpContext>> in, out;  // Karl's, per stream
      std::vector<std::shared_ptr<karl::dp::SrtpContext>> senders;  // the peers' (not protect)
      unsigned next_frame = 0;  // ingress frame k carries sequence number k / sessions
      std::vector<double> rounds, block_medians;
      uint64_t busy_tsc = 0;
    } ops[3];  // 0 protect, 1 unprotect, 2 re-key
    karl::bench::CryptoBenchOptions raw_opt;
    raw_opt.streams = sessions;
    raw_opt.payload = rtp_size - 12;
    karl::bench::RawCryptodevRef raw(suite, raw_opt, /*lent_qp=*/own_ipsec_mb ? -1 : 1);
    if (!raw.ok()) {
      std::fprintf(stderr, "karl-bench: the raw cryptodev reference cannot be set up\n");
      return 1;
    }
    std::vector<double>& raw_blocks = raw_per_block[si];
    for (unsigned op = 0; op < 3; ++op) {
      for (unsigned i = 0; i < sessions; ++i) {
        ops[op].in.push_back(
            op == 0 ? nullptr
                    : BenchContext(suite, i, 0, engine, karl::dp::SrtpDirection::kUnprotect));
        ops[op].out.push_back(
            op == 1 ? nullptr
                    : BenchContext(suite, i, 1, engine, karl::dp::SrtpDirection::kProtect));
        if (op != 0) {
          ops[op].senders.push_back(BenchContext(suite, i, 0, karl::dp::SrtpEngineKind::kOpenssl,
                                                 karl::dp::SrtpDirection::kProtect));
        }
      }
    }
    for (unsigned blk = 0; blk < blocks; ++blk) {
      for (unsigned op = 0; op < 3; ++op) {
        Op& o = ops[op];
        for (unsigned i = 0; i < sessions; ++i) {
          karl::dp::StreamConfig cfg = *dp.stream_config(static_cast<uint32_t>(i));
          cfg.srtp_in = o.in[i];
          cfg.srtp_out = o.out[i];
          dp.PublishStream(cfg);
        }
        dp.Maintain(nullptr);
        // Every operation's ingress frames carry sequence numbers no stream has seen: the
        // receiver's replay window would drop a repeat, and libsrtp2 refuses to protect an
        // index it has protected before (--srtp-engine libsrtp).
        std::vector<Bytes> in_frames;
        in_frames.reserve(5 * packets);
        for (unsigned n = 0; n < 5 * packets; ++n, ++o.next_frame) {
          const unsigned k = o.next_frame;
          const unsigned i = k % sessions;
          karl::test::UdpSpec spec{peer, ours, 40000, static_cast<uint16_t>(20000 + 2 * i)};
          spec.payload = karl::test::RtpPayload(static_cast<uint16_t>(k / sessions), 0x1000 + i);
          spec.payload.resize(rtp_size + (op == 0 ? 0 : 16), 0x5a);
          if (op != 0) {
            uint32_t len = rtp_size;
            if (o.senders[i]->Protect(spec.payload.data(), &len,
                                      static_cast<uint32_t>(spec.payload.size())) !=
                karl::dp::SrtpStatus::kOk) {
              std::fprintf(stderr, "karl-bench: cannot protect a frame\n");
              return 1;
            }
            spec.payload.resize(len);
          }
          in_frames.push_back(karl::test::BuildUdp(spec));
        }
        unsigned next_in = 0;
        if (auto st = dp.Start(); !st.ok()) {
          std::fprintf(stderr, "karl-bench: dataplane start failed\n");
          return 1;
        }
        std::vector<double> r;
        const uint64_t tx0 = counters.tx_packets.Read();
        const uint64_t busy0 = counters.busy_tsc.Read();
        for (unsigned i = 0; i < 5; ++i) {
          r.push_back(
              Round(pool, rx, in_frames, packets, &next_in, rx_count() + packets, rx_count));
        }
        o.busy_tsc += counters.busy_tsc.Read() - busy0;
        dp.Stop();
        const uint64_t sent = counters.tx_packets.Read() - tx0;
        if (sent != 5ull * packets) {
          std::fprintf(stderr, "karl-bench: %s: forwarded %llu of %llu packets\n",
                       kSrtpNames[si][op], static_cast<unsigned long long>(sent), 5ull * packets);
          return 1;
        }
        o.rounds.insert(o.rounds.end(), r.begin(), r.end());
        o.block_medians.push_back(Median(r));
      }
      RawArgs ra{&raw, -1};
      rte_eal_remote_launch(raw_on_worker, &ra, worker_lcore);
      rte_eal_wait_lcore(worker_lcore);
      if (ra.mpps <= 0) {
        std::fprintf(stderr, "karl-bench: the raw cryptodev reference failed\n");
        return 1;
      }
      raw_blocks.push_back(ra.mpps * 1e6);
    }
    rekey_ratio[si] = MedianOfRatios(ops[2].block_medians, ops[0].block_medians);
    for (unsigned op = 0; op < 3; ++op) {
      const double busy_ns = NsPer(ops[op].busy_tsc, blocks * 5.0 * packets);
      srtp_results.push_back(SrtpResult{kSrtpNames[si][op], Median(ops[op].rounds), busy_ns,
                                        libsrtp_ref[si], Median(raw_blocks) / 1e6, direct_ref[si],
                                        MedianOfRatios(ops[op].block_medians, raw_blocks),
                                        MeanNsPerItem(ops[op].rounds)});
    }
  }
  // ICE (D25). First the forward path with ICE on the same S streams.
  double ice_fwd = 0, ice_fwd_ratio = 0;
  struct IceCheckResult {
    double karl = 0, codec = 0, hmac = 0;
    unsigned sessions = 0, per_round = 0;
  } ice_checks;
  if (ice) {
    // Blocks alternate the same streams without and with ICE (the noisy host moves
    // both alike); the ratio is the median of the per-block ratios.
    std::vector<double> with_ice, ratios;
    for (unsigned blk = 0; blk < blocks; ++blk) {
      double block_median[2] = {0, 0};
      for (int on = 0; on < 2; ++on) {
        for (unsigned i = 0; i < sessions; ++i) {
          karl::dp::StreamConfig cfg = *dp.stream_config(static_cast<uint32_t>(i));
          cfg.srtp_in = cfg.srtp_out = nullptr;
          cfg.ice = on == 1;
          dp.PublishStream(cfg);
        }
        dp.Maintain(nullptr);
        if (auto st = dp.Start(); !st.ok()) return 1;
        std::vector<double> f;
        const uint64_t tx0 = counters.tx_packets.Read();
        for (unsigned i = 0; i < 5; ++i) {
          f.push_back(Round(pool, rx, frames, packets, &next, rx_count() + packets, rx_count));
        }
        dp.Stop();
        if (counters.tx_packets.Read() - tx0 != 5ull * packets) {
          std::fprintf(stderr, "karl-bench: streams (ICE %d) did not forward every packet\n", on);
          return 1;
        }
        block_median[on] = Median(f);
        if (on == 1) with_ice.insert(with_ice.end(), f.begin(), f.end());
      }
      ratios.push_back(block_median[1] / block_median[0]);
    }
    ice_fwd = Median(with_ice);
    ice_fwd_ratio = Median(ratios);

    // Then the checks, answered by the real session manager.
    spdlog::set_level(spdlog::level::warn);  // no line per session created
    karl::Config config;
    for (const auto& [name, device, prefix] :
         {std::tuple{"ring", "net_ring_benchport", "198.51.100.1/24"},
          std::tuple{"null", "net_null0", "203.0.113.1/24"}}) {
      karl::PortConfig pc;
      pc.name = name;
      pc.device = device;
      pc.addresses = {*IpPrefix::Parse(prefix)};
      config.ports.push_back(pc);
    }
    const unsigned n = std::min(sessions, 1000u);
    config.rtp.port_min = 52000;
    config.rtp.port_max = static_cast<uint16_t>(52000 + 2 * n + 1);
    karl::SessionManager manager(config, &dp);
    dp.SetStunHandler([&](const karl::dp::StunRequest& r) { return manager.AnswerStun(r); });
    std::vector<Bytes> checks;
    std::vector<std::string> ufrags, pwds;
    for (unsigned i = 0; i < n; ++i) {
      ufrags.push_back("k" + std::to_string(1000000 + i));
      pwds.push_back("benchmarkpassword" + std::to_string(1000000 + i));
      karl::SessionSpec spec;
      spec.call_id = "ice-bench-" + std::to_string(i);
      karl::LegSpec l0, l1;
      l0.peer = karl::Endpoint{peer, 40000};
      l0.interface = "ring";
      l0.ice = karl::IceSpec{ufrags[i], pwds[i]};
      l1.interface = "null";
      spec.legs = {l0, l1};
      absl::StatusOr<karl::SessionInfo> s = manager.Create(spec);
      if (!s.ok()) {
        std::fprintf(stderr, "karl-bench: ICE session: %s\n",
                     std::string(s.status().message()).c_str());
        return 1;
      }
      // A few checks per session, each its own transaction (consent freshness, RFC 7675).
      for (unsigned k = 0; k < 4; ++k) {
        const std::string username = ufrags[i] + ":peer";
        karl::stun::RequestSpec req;
        for (unsigned b = 0; b < 12; ++b)
          req.transaction_id[b] = static_cast<uint8_t>(i * 7 + k * 31 + b);
        req.priority = 1853824767;
        req.ice_controlling = 0x1234567890abcdefu + i;
        req.username = username;
        req.key = pwds[i];
        karl::test::UdpSpec spec_udp{peer, ours, 40000, s->legs[0].local.port};
        spec_udp.payload = karl::stun::BindingRequest(req);
        checks.push_back(karl::test::BuildUdp(spec_udp));
      }
    }
    // References on the main lcore: the codec alone over the same messages, and the two
    // HMAC-SHA1 (verify the request, sign the answer) over messages of the same size.
    {
      const unsigned iters = 20000;
      uint64_t ok = 0;
      uint64_t t0 = rte_rdtsc();
      for (unsigned it = 0; it < iters; ++it) {
        const Bytes& f = checks[it % checks.size()];
        const std::span<const uint8_t> msg(f.data() + 42, f.size() - 42);
        const unsigned i = (it % checks.size()) / 4;
        absl::StatusOr<karl::stun::Message> m = karl::stun::Parse(msg);
        if (m.ok() && karl::stun::CheckFingerprint(msg, *m) &&
            karl::stun::CheckIntegrity(msg, *m, pwds[i])) {
          ok += karl::stun::BindingSuccess(m->transaction_id, peer, 40000, pwds[i], "Karl").size();
        }
      }
      uint64_t t1 = rte_rdtsc();
      if (ok == 0) return 1;
      ice_checks.codec =
          iters * static_cast<double>(rte_get_tsc_hz()) / static_cast<double>(t1 - t0);
      uint8_t mac[EVP_MAX_MD_SIZE];
      unsigned mac_len = 0;
      t0 = rte_rdtsc();
      for (unsigned it = 0; it < iters; ++it) {
        const Bytes& f = checks[it % checks.size()];
        const unsigned i = (it % checks.size()) / 4;
        for (int twice = 0; twice < 2; ++twice) {
          HMAC(EVP_sha1(), pwds[i].data(), static_cast<int>(pwds[i].size()), f.data() + 42,
               f.size() - 42 - 32, mac, &mac_len);
        }
        asm volatile("" : : "r"(mac) : "memory");
      }
      t1 = rte_rdtsc();
      ice_checks.hmac =
          iters * static_cast<double>(rte_get_tsc_hz()) / static_cast<double>(t1 - t0);
    }
    if (auto st = dp.Start(); !st.ok()) return 1;
    const auto& exc = dp.exception_counters();
    const unsigned per_round = std::min<unsigned>(512, static_cast<unsigned>(checks.size()));
    auto answered = [&] {
      dp.ServiceExceptions(256);
      void* out[64];
      unsigned got;
      while ((got = rte_ring_dequeue_burst(tx, out, 64, nullptr)) > 0) {
        rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(out), got);
      }
      return exc.stun_responses.Read();
    };
    std::vector<double> r;
    unsigned cnext = 0;
    for (unsigned i = 0; i < blocks * 5; ++i) {
      r.push_back(Round(pool, rx, checks, per_round, &cnext, exc.stun_responses.Read() + per_round,
                        answered));
    }
    dp.Stop();
    answered();
    if (manager.stun_answered() != uint64_t{blocks} * 5 * per_round ||
        manager.stun_rejected() != 0) {
      std::fprintf(stderr, "karl-bench: ICE checks: %llu answered, %llu rejected of %llu\n",
                   static_cast<unsigned long long>(manager.stun_answered()),
                   static_cast<unsigned long long>(manager.stun_rejected()),
                   static_cast<unsigned long long>(uint64_t{blocks} * 5 * per_round));
      return 1;
    }
    ice_checks.karl = Median(r);
    ice_checks.sessions = n;
    ice_checks.per_round = per_round;
    manager.DropHeldPackets();
  }
  dp.Close();

  std::printf(
      "karl-bench: %u blocks x 5 rounds x %u frames of %zu bytes (%u-byte RTP), "
      "%u sessions, 1 worker core, bursts of %u (references too), UDP checksum verify %s; "
      "medians\n",
      blocks, packets, frames[0].size(), rtp_size, sessions, unsigned{s.burst_size},
      verify_udp_checksum ? "on" : "off");
  Print("reference rxonly (ring)", Median(rxonly), 0, "");
  Print("reference io-fwd (ring->null)", Median(iofwd), 0, "");
  const std::string touch_name = "reference touch-fwd (" + std::to_string(touch_lines) +
                                 (touch_lines == 1 ? " line)" : " lines)");
  Print(touch_name.c_str(), Median(touch), 0, "");
  Print("karl drop (no session)", Median(drop), 0, "");
  std::printf("%-28s %.2fx rxonly (median of per-block ratios); worker busy %.1f ns/packet\n", "",
              Median(drop_ratio), Median(drop_busy_ns));
  Print("karl forward", Median(fwd), 0, "");
  std::printf("%-28s %.2fx io-fwd (median of per-block ratios); worker busy %.1f ns/packet\n", "",
              Median(fwd_ratio), Median(fwd_busy_ns));
  std::printf("%-28s %.2fx touch-fwd (median of per-block ratios)\n", "", Median(touch_ratio));
  std::printf(
      "compute with the frame in L1: parse+validate %.1f ns, RTP parse+stats %.1f ns, "
      "rewrite %.1f ns\n",
      micro_parse_ns, micro_stats_ns, micro_rewrite_ns);
  if (!srtp_results.empty()) {
    std::printf(
        "SRTP on engine %s, %u streams each with its own keys (references on one core: "
        "libsrtp2 srtp_protect loop and raw ipsec-mb = the cipher alone on the library "
        "directly, on the main lcore before the run; raw cryptodev = the cipher alone on the "
        "crypto_ipsec_mb device, on the worker core beside every block: median of the "
        "blocks' figures, and of the per-block ratios; bursts of 32):\n",
        std::string(karl::dp::SrtpEngineName(engine)).c_str(), sessions);
  }
  for (unsigned si = 0; si < 2 && !srtp_results.empty(); ++si) {
    std::printf(
        "engine alone (Run over bursts of 32, no dataplane): protect %s %.2f Mpps; raw "
        "cryptodev on the main lcore before the run %.2f Mpps\n",
        std::string(karl::dp::GetSrtpSuiteInfo(kBenchSuites[si]).name).c_str(), engine_alone[si],
        raw_main_ref[si]);
  }
  for (const SrtpResult& r : srtp_results) {
    std::printf(
        "karl %-33s %6.2f Mpps %6.1f ns/packet (busy %5.1f)  %5.1fx libsrtp2 (%.2f)  "
        "%.2fx raw cryptodev (%.2f)  %.2fx raw ipsec-mb (%.2f)\n",
        r.name, r.mpps / 1e6, 1e3 / (r.mpps / 1e6), r.busy_ns, r.mpps / 1e6 / r.libsrtp_mpps,
        r.libsrtp_mpps, r.raw_ratio, r.raw_mpps, r.mpps / 1e6 / r.direct_mpps, r.direct_mpps);
  }
  for (unsigned si = 0; si < 2 && !srtp_results.empty(); ++si) {
    std::printf("raw cryptodev on the worker core, block by block, %s:",
                std::string(karl::dp::GetSrtpSuiteInfo(kBenchSuites[si]).name).c_str());
    for (double r : raw_per_block[si]) std::printf(" %.2f", r / 1e6);
    std::printf(" Mpps\n");
  }
  for (unsigned si = 0; si < 2 && !srtp_results.empty(); ++si) {
    std::printf("karl re-key / protect %s: %.2f (median of per-block ratios)\n",
                std::string(karl::dp::GetSrtpSuiteInfo(kBenchSuites[si]).name).c_str(),
                rekey_ratio[si]);
  }
  // The worker's busy time is its own TSC's; the rates, the main lcore's. Over the same
  // rounds, busy time above the elapsed time cannot happen on one clock: seen on this VM
  // host in spells where every rate of a run read 1.5-2x the runs around it.
  std::vector<std::string> clock_suspects;
  const auto check_clock = [&clock_suspects](const std::string& name, double elapsed_ns,
                                             double busy_ns) {
    if (busy_ns > 1.1 * elapsed_ns) clock_suspects.push_back(name);
  };
  double fwd_busy_mean = 0;
  for (double b : fwd_busy_ns) fwd_busy_mean += b / static_cast<double>(fwd_busy_ns.size());
  check_clock("forward", MeanNsPerItem(fwd), fwd_busy_mean);
  for (const SrtpResult& r : srtp_results) check_clock(r.name, r.elapsed_ns, r.busy_ns);
  if (!clock_suspects.empty()) {
    std::string names;
    for (const std::string& n : clock_suspects) names += (names.empty() ? "" : ", ") + n;
    std::printf(
        "warning: the worker's busy time per packet exceeds the elapsed time per packet (%s): "
        "the two cores' time-stamp counters disagreed in this run; its absolute rates are "
        "suspect, ratios of rates measured alike still compare\n",
        names.c_str());
  }
  if (ice) {
    Print("karl forward, ICE streams", ice_fwd, 0, "");
    std::printf(
        "%-28s %.2fx the same streams without ICE (median of per-block ratios), %.2fx io-fwd\n", "",
        ice_fwd_ratio, ice_fwd / Median(iofwd));
    std::printf(
        "ICE checks answered (%u sessions, %u checks per round): %.0f checks/s = %.1f us each; "
        "%.2fx the STUN codec alone (%.0f/s), %.2fx two HMAC-SHA1 (%.0f/s)\n",
        ice_checks.sessions, ice_checks.per_round, ice_checks.karl, 1e6 / ice_checks.karl,
        ice_checks.karl / ice_checks.codec, ice_checks.codec, ice_checks.karl / ice_checks.hmac,
        ice_checks.hmac);
  }
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all(runtime_dir, ec);
  return 0;
}
