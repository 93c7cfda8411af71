// karl-bench: drives the real worker loop (dataplane::WorkerMain) in-process on a
// port made of rte_rings and prints packets per second per worker core, beside a
// reference measured in the same run on the same vdev. Not a test: it prints figures.
//
//   karl-bench [--rounds N] [--packets N] [--size BYTES]
//
// Method: the main lcore puts N prepared 172-byte RTP/UDP frames on the port's RX
// ring in one bulk enqueue, the worker lcore drains it; the time from enqueue to the
// last packet counted is one round. Rounds repeat; the median is printed.
// Reference "rxonly": the same drain with a loop that only does rx_burst + free
// (DPDK testpmd's rxonly forwarding), i.e. the cost of the vdev and the mempool.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "tests/dataplane/packet_builder.h"

namespace {

using karl::IpAddress;
using karl::IpPrefix;

struct RxOnlyArgs {
  uint16_t port_id;
  std::atomic<bool>* stop;
  std::atomic<uint64_t>* received;
};

// The reference loop: what any DPDK app pays to receive and drop on this vdev.
int RxOnlyMain(void* p) {
  auto* a = static_cast<RxOnlyArgs*>(p);
  rte_mbuf* pkts[32];
  uint64_t n_total = 0;
  while (!a->stop->load(std::memory_order_relaxed)) {
    const uint16_t n = rte_eth_rx_burst(a->port_id, 0, pkts, 32);
    if (n == 0) continue;
    rte_pktmbuf_free_bulk(pkts, n);
    n_total += n;
    a->received->store(n_total, std::memory_order_relaxed);
  }
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// One round: enqueue `count` copies of `frame`, wait until `counted()` reaches
// `target`; returns packets per second.
template <typename Counted>
double Round(rte_mempool* pool, rte_ring* rx, const karl::test::Bytes& frame, unsigned count,
             uint64_t target, Counted counted) {
  std::vector<rte_mbuf*> mbufs(count);
  if (rte_pktmbuf_alloc_bulk(pool, mbufs.data(), count) != 0) {
    std::fprintf(stderr, "karl-bench: mbuf pool exhausted\n");
    std::exit(1);
  }
  for (rte_mbuf* m : mbufs) {
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
                frame.size());
  }
  const uint64_t t0 = rte_rdtsc();
  if (rte_ring_enqueue_bulk(rx, reinterpret_cast<void**>(mbufs.data()), count, nullptr) != count) {
    std::fprintf(stderr, "karl-bench: RX ring too small\n");
    std::exit(1);
  }
  while (counted() < target) {
  }
  const uint64_t t1 = rte_rdtsc();
  return static_cast<double>(count) * static_cast<double>(rte_get_tsc_hz()) /
         static_cast<double>(t1 - t0);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned rounds = 30;
  unsigned packets = 32768;
  unsigned payload = 172 - 12;  // 172-byte RTP packet = 12-byte header + 160 payload
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rounds") rounds = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (a == "--packets") packets = static_cast<unsigned>(std::atoi(argv[i + 1]));
    if (a == "--size") payload = static_cast<unsigned>(std::atoi(argv[i + 1])) - 12;
  }
  const std::string prefix = "karl-bench-" + std::to_string(getpid());
  std::vector<std::string> eal = {"karl-bench",  "-l",       "0-1",         "--no-huge",     "-m",
                                  "1024",        "--no-pci", "--no-shconf", "--file-prefix", prefix,
                                  "--log-level", "error"};
  std::vector<char*> eal_argv;
  for (auto& s : eal) eal_argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "karl-bench: EAL init failed\n");
    return 1;
  }
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  const unsigned worker_lcore = rte_get_next_lcore(-1, 1, 0);
  rte_mempool* pool =
      rte_pktmbuf_pool_create("bench_pool", packets * 2 + 4095, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                              static_cast<int>(rte_socket_id()));
  const unsigned ring_size = rte_align32pow2(packets + 1);
  rte_ring* rx = rte_ring_create("bench_rx", ring_size, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("bench_tx", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (pool == nullptr || rx == nullptr || tx == nullptr ||
      rte_eth_from_rings("benchport", &rx, 1, &tx, 1, 0) < 0) {
    std::fprintf(stderr, "karl-bench: cannot create pool/rings/port\n");
    return 1;
  }
  uint16_t port_id = 0;
  rte_eth_dev_get_port_by_name("net_ring_benchport", &port_id);

  karl::test::UdpSpec spec{*IpAddress::Parse("198.51.100.2"), *IpAddress::Parse("198.51.100.1")};
  spec.payload.assign(payload, 0x5a);
  spec.payload[0] = 0x80;  // RTP v2
  const karl::test::Bytes frame = karl::test::BuildUdp(spec);

  // Reference: rx + free on the same vdev.
  std::vector<double> ref;
  {
    rte_eth_conf conf{};
    rte_eth_dev_configure(port_id, 1, 1, &conf);
    rte_eth_rx_queue_setup(port_id, 0, 1024, 0, nullptr, pool);
    rte_eth_tx_queue_setup(port_id, 0, 1024, 0, nullptr);
    rte_eth_dev_start(port_id);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> received{0};
    RxOnlyArgs args{port_id, &stop, &received};
    rte_eal_remote_launch(RxOnlyMain, &args, worker_lcore);
    for (unsigned r = 0; r < rounds; ++r) {
      const uint64_t target = received.load() + packets;
      ref.push_back(Round(pool, rx, frame, packets, target, [&] { return received.load(); }));
    }
    stop.store(true);
    rte_eal_wait_lcore(worker_lcore);
    rte_eth_dev_stop(port_id);
  }

  // Karl: the real worker loop (parse, validate Ethernet/IPv4/UDP incl. checksums,
  // count, drop as no_session until the flow table exists).
  std::vector<double> karl;
  {
    karl::dp::Settings s;
    s.ports.push_back(karl::dp::PortSettings{
        "bench", "net_ring_benchport", {*IpPrefix::Parse("198.51.100.1/24")}, 0, 1500, 1024, 1024});
    karl::dp::Dataplane dp;
    if (auto st = dp.Init(s); !st.ok() || !dp.Start().ok()) {
      std::fprintf(stderr, "karl-bench: dataplane init failed: %s\n",
                   std::string(st.message()).c_str());
      return 1;
    }
    const auto& counters = dp.worker(0).counters;
    for (unsigned r = 0; r < rounds; ++r) {
      const uint64_t target = counters.rx_packets.Read() + packets;
      karl.push_back(
          Round(pool, rx, frame, packets, target, [&] { return counters.rx_packets.Read(); }));
    }
    if (counters.udp_packets.Read() != uint64_t{rounds} * packets) {
      std::fprintf(stderr, "karl-bench: worker did not classify every packet as media\n");
      return 1;
    }
    dp.Close();
  }

  const double ref_mpps = Median(ref) / 1e6;
  const double karl_mpps = Median(karl) / 1e6;
  std::printf(
      "karl-bench: %u rounds x %u packets of %zu-byte frames (%u-byte RTP), 1 worker core\n",
      rounds, packets, frame.size(), payload + 12);
  std::printf("%-34s %8.2f Mpps  %6.1f ns/packet\n", "reference rx+free (net_ring)", ref_mpps,
              1e3 / ref_mpps);
  std::printf("%-34s %8.2f Mpps  %6.1f ns/packet  ratio %.2f\n", "karl parse+validate+count+drop",
              karl_mpps, 1e3 / karl_mpps, karl_mpps / ref_mpps);
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all(runtime_dir, ec);
  return 0;
}
