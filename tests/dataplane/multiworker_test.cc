// Dataplane tests with two workers (two lcores time-sharing one CPU is enough to
// check ownership): a stream is bound to the worker that sees its first packet, and a
// packet of it that arrives at another worker's queue is handed over, never processed
// in two places.
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/dataplane.h"
#include "gtest/gtest.h"
#include "tests/dataplane/packet_builder.h"

namespace karl::dp {
namespace {

using test::Bytes;
using test::UdpSpec;

rte_mempool* g_pool = nullptr;

class TwoWorkerEal : public ::testing::Environment {
 public:
  void SetUp() override {
    const std::string prefix = "karl-mwtest-" + std::to_string(getpid());
    // lcore 0 on CPU 0 (control), workers 1 and 2 share CPU 1.
    std::vector<std::string> args = {
        "multiworker_test", "--lcores",    "0@0,1@1,2@1",   "--no-huge", "-m",          "256",
        "--no-pci",         "--no-shconf", "--file-prefix", prefix,      "--log-level", "error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0);
    g_pool = rte_pktmbuf_pool_create("mw_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                     static_cast<int>(rte_socket_id()));
    ASSERT_NE(g_pool, nullptr);
  }
  void TearDown() override {
    const std::string dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

bool WaitUntil(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// A net_ring port `name` with two RX and two TX queues (one per worker), its rings in
// rx/tx, and a dataplane on it whose two workers are started.
void StartTwoWorkers(const std::string& name, rte_ring* rx[2], rte_ring* tx[2], Settings s,
                     Dataplane* dp) {
  ASSERT_EQ(rte_lcore_count(), 3u);
  for (int q = 0; q < 2; ++q) {
    rx[q] = rte_ring_create((name + "rx" + std::to_string(q)).c_str(), 256, 0,
                            RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx[q] = rte_ring_create((name + "tx" + std::to_string(q)).c_str(), 256, 0,
                            RING_F_SP_ENQ | RING_F_SC_DEQ);
  }
  ASSERT_GE(rte_eth_from_rings(name.c_str(), rx, 2, tx, 2, 0), 0);
  s.ports.push_back(
      PortSettings{"ext0",
                   "net_ring_" + name,
                   {*IpPrefix::Parse("198.51.100.1/24"), *IpPrefix::Parse("203.0.113.1/24")},
                   0,
                   1500,
                   1024,
                   1024});
  s.rss = false;
  ASSERT_TRUE(dp->Init(s).ok());
  ASSERT_TRUE(dp->Start().ok());
  ASSERT_EQ(dp->worker_count(), 2u);
}

// A stream receiving on 198.51.100.1:30000, relayed to 203.0.113.9:50000.
uint32_t AddRelayStream(Dataplane& dp) {
  StreamConfig cfg;
  cfg.id = dp.AllocateStream();
  cfg.latch = false;
  cfg.egress.family = 4;
  cfg.egress.have_mac = true;
  const IpAddress src = *IpAddress::Parse("203.0.113.1");
  const IpAddress dst = *IpAddress::Parse("203.0.113.9");
  std::memcpy(cfg.egress.src_addr, src.bytes().data(), 4);
  std::memcpy(cfg.egress.dst_addr, dst.bytes().data(), 4);
  cfg.egress.src_port_be = rte_cpu_to_be_16(30100);
  cfg.egress.dst_port_be = rte_cpu_to_be_16(50000);
  dp.PublishStream(cfg);
  const IpAddress ours = *IpAddress::Parse("198.51.100.1");
  EXPECT_TRUE(
      dp.AddFlow(MakeFlowKey(4, ours.bytes().data(), rte_cpu_to_be_16(30000)), cfg.id).ok());
  return cfg.id;
}

rte_mbuf* RtpTo30000(const Dataplane& dp, uint16_t seq) {
  const IpAddress ours = *IpAddress::Parse("198.51.100.1");
  const IpAddress peer = *IpAddress::Parse("198.51.100.2");
  const Bytes f = test::BuildUdp(UdpSpec{peer, ours, 40000, 30000, test::RtpPayload(seq)});
  rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
  if (m == nullptr) return nullptr;
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
  m->port = dp.port(0).port_id;
  return m;
}

TEST(MultiWorkerTest, StreamIsOwnedByOneWorkerAndOthersHandOver) {
  rte_ring* rx[2];
  rte_ring* tx[2];
  Dataplane dp;
  ASSERT_NO_FATAL_FAILURE(StartTwoWorkers("mwport", rx, tx, Settings{}, &dp));
  StreamConfig cfg;
  cfg.id = AddRelayStream(dp);

  auto inject = [&](int queue, uint16_t seq) {
    rte_mbuf* m = RtpTo30000(dp, seq);
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(rte_ring_enqueue(rx[queue], m), 0);
  };
  const StreamState& st = dp.stream_state(cfg.id);
  inject(1, 1);  // first packet at worker 1: it becomes the owner
  ASSERT_TRUE(WaitUntil([&] { return st.packets.Read() == 1; }));
  EXPECT_EQ(st.owner.load(), 1);
  inject(0, 2);  // worker 0 must hand this one over
  inject(0, 3);
  ASSERT_TRUE(WaitUntil([&] { return st.packets.Read() == 3; }));
  EXPECT_EQ(dp.worker(0).counters.handoffs.Read(), 2u);
  EXPECT_EQ(dp.worker(1).counters.handoffs.Read(), 0u);
  EXPECT_EQ(dp.worker(0).counters.tx_packets.Read(), 0u)
      << "worker 0 relayed a packet it does not own";
  EXPECT_TRUE(WaitUntil([&] { return dp.worker(1).counters.tx_packets.Read() == 3; }));
  // All three left on worker 1's TX queue, in order.
  EXPECT_TRUE(WaitUntil([&] { return rte_ring_count(tx[1]) == 3; }));
  EXPECT_EQ(rte_ring_count(tx[0]), 0u);
  for (uint16_t want = 1; want <= 3; ++want) {
    void* m = nullptr;
    ASSERT_EQ(rte_ring_dequeue(tx[1], &m), 0);
    auto* mb = static_cast<rte_mbuf*>(m);
    const auto* rtp = rte_pktmbuf_mtod_offset(mb, const uint8_t*, 14 + 20 + 8);
    EXPECT_EQ((rtp[2] << 8) | rtp[3], want);
    rte_pktmbuf_free(mb);
  }
  // RFC 3550 statistics were kept by the owner alone: a coherent sequence.
  EXPECT_EQ(st.expected.Read(), 2u);  // A.1 probation takes the first packet
  EXPECT_EQ(st.received.Read(), 2u);
  dp.Close();
  for (int q = 0; q < 2; ++q) {
    rte_ring_free(rx[q]);
    rte_ring_free(tx[q]);
  }
}

// The owner's hand-off ring full: the packets that do not fit are dropped and counted
// as handoff_ring_full by the worker that received them, none is lost uncounted and
// none is relayed by a worker that does not own the stream. Both workers share one CPU,
// so while worker 0 takes a bulk of 250 packets worker 1 cannot drain its 31-slot ring.
TEST(MultiWorkerTest, FullHandoffRingIsCountedNotLost) {
  rte_ring* rx[2];
  rte_ring* tx[2];
  Settings s;
  s.handoff_ring_size = 32;
  Dataplane dp;
  ASSERT_NO_FATAL_FAILURE(StartTwoWorkers("mwfull", rx, tx, s, &dp));
  const uint32_t id = AddRelayStream(dp);
  const StreamState& st = dp.stream_state(id);
  rte_mbuf* first = RtpTo30000(dp, 1);
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(rte_ring_enqueue(rx[1], first), 0);  // worker 1 becomes the owner
  ASSERT_TRUE(WaitUntil([&] { return st.packets.Read() == 1; }));
  ASSERT_EQ(st.owner.load(), 1);

  constexpr unsigned kBurst = 250;
  std::vector<rte_mbuf*> burst;
  for (unsigned i = 0; i < kBurst; ++i) {
    burst.push_back(RtpTo30000(dp, static_cast<uint16_t>(2 + i)));
    ASSERT_NE(burst.back(), nullptr);
  }
  ASSERT_EQ(rte_ring_enqueue_bulk(rx[0], reinterpret_cast<void**>(burst.data()), kBurst, nullptr),
            kBurst);
  const auto& w0 = dp.worker(0).counters;
  const auto full = [&] {
    return w0.drops[static_cast<size_t>(DropReason::kHandoffRingFull)].Read();
  };
  ASSERT_TRUE(WaitUntil([&] { return w0.handoffs.Read() + full() == kBurst; }))
      << "handed over " << w0.handoffs.Read() << ", ring full " << full();
  EXPECT_GT(full(), 0u);
  EXPECT_GE(w0.handoffs.Read(), 31u);
  // Everything handed over was relayed by the owner, and only by it.
  EXPECT_TRUE(WaitUntil([&] { return st.packets.Read() == 1 + w0.handoffs.Read(); }))
      << st.packets.Read() << " relayed, " << w0.handoffs.Read() << " handed over";
  EXPECT_TRUE(
      WaitUntil([&] { return dp.worker(1).counters.tx_packets.Read() == 1 + w0.handoffs.Read(); }));
  EXPECT_EQ(w0.tx_packets.Read(), 0u);
  EXPECT_EQ(w0.rx_packets.Read(), kBurst);
  dp.Close();
  for (int q = 0; q < 2; ++q) {
    while (true) {  // the relayed packets left on the TX rings
      void* m = nullptr;
      if (rte_ring_dequeue(tx[q], &m) != 0) break;
      rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    }
    rte_ring_free(rx[q]);
    rte_ring_free(tx[q]);
  }
}

}  // namespace
}  // namespace karl::dp

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new karl::dp::TwoWorkerEal);
  return RUN_ALL_TESTS();
}
