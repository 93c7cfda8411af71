// Dataplane tests: one EAL for the whole binary, ports made from rte_rings so the
// test puts frames on a port's RX ring and reads what the port transmits.
#include "dataplane/dataplane.h"

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

#include "gtest/gtest.h"
#include "tests/dataplane/packet_builder.h"

namespace karl::dp {
namespace {

using test::Bytes;
using test::UdpSpec;

const IpAddress kOurV4 = *IpAddress::Parse("198.51.100.1");
const IpAddress kPeerV4 = *IpAddress::Parse("198.51.100.2");
const IpAddress kOurV6 = *IpAddress::Parse("2001:db8::1");
const IpAddress kPeerV6 = *IpAddress::Parse("2001:db8::2");
const MacAddress kPeerMac = *MacAddress::Parse("02:00:00:00:00:02");

rte_mempool* g_test_pool = nullptr;

class EalEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const std::string prefix = "karl-dptest-" + std::to_string(getpid());
    std::vector<std::string> args = {
        "dataplane_test", "-l",          "0-1",           "--no-huge", "-m",          "256",
        "--no-pci",       "--no-shconf", "--file-prefix", prefix,      "--log-level", "error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ASSERT_GE(rte_eal_init(static_cast<int>(argv.size()), argv.data()), 0) << "EAL init failed";
    g_test_pool = rte_pktmbuf_pool_create("test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                          static_cast<int>(rte_socket_id()));
    ASSERT_NE(g_test_pool, nullptr);
  }
  void TearDown() override {
    const std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir, ec);  // leave nothing in /var/run/dpdk
  }
};

class DataplaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int instance = 0;
    ++instance;
    const std::string tag = std::to_string(instance);
    rx_ = rte_ring_create(("trx" + tag).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    tx_ = rte_ring_create(("ttx" + tag).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(rx_, nullptr);
    ASSERT_GE(rte_eth_from_rings(("ringport" + tag).c_str(), &rx_, 1, &tx_, 1, 0), 0);
    port_name_ = "net_ring_ringport" + tag;  // the ring PMD prefixes the name
    settings_.ports.push_back(
        PortSettings{"ext0",
                     port_name_,
                     {*IpPrefix::Parse("198.51.100.1/24"), *IpPrefix::Parse("2001:db8::1/64")},
                     0,
                     1500,
                     1024,
                     1024});
    settings_.rtp_port_min = 30000;
    settings_.rtp_port_max = 30999;
    settings_.exception_ring_size = 64;
  }

  void TearDown() override {
    dp_.Close();
    rte_ring_free(rx_);
    void* m;
    while (rte_ring_dequeue(tx_, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(tx_);
  }

  void StartDataplane() {
    const absl::Status init = dp_.Init(settings_);
    ASSERT_TRUE(init.ok()) << init;
    const absl::Status start = dp_.Start();
    ASSERT_TRUE(start.ok()) << start;
  }

  void Inject(const Bytes& frame) {
    rte_mbuf* m = rte_pktmbuf_alloc(g_test_pool);
    ASSERT_NE(m, nullptr);
    char* data = rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size()));
    ASSERT_NE(data, nullptr);
    std::memcpy(data, frame.data(), frame.size());
    m->port = dp_.port(0).port_id;
    ASSERT_EQ(rte_ring_enqueue(rx_, m), 0);
  }

  const WorkerCounters& counters() { return dp_.worker(0).counters; }

  // Polls until `done` or 5 s pass; the control plane services exceptions meanwhile
  // when `service` is set.
  bool WaitUntil(const std::function<bool()>& done, bool service = false) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (service) dp_.ServiceExceptions(64);
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  }

  uint64_t Drops(DropReason r) { return counters().drops[static_cast<size_t>(r)].Read(); }

  // The frame the port transmitted (the worker's TX queue 0), or empty after 5 s.
  Bytes ControlTx() {
    void* m = nullptr;
    WaitUntil([&] { return rte_ring_dequeue(tx_, &m) == 0; }, true);
    if (m == nullptr) return {};
    auto* mb = static_cast<rte_mbuf*>(m);
    const auto* p = rte_pktmbuf_mtod(mb, const uint8_t*);
    Bytes out(p, p + mb->data_len);
    rte_pktmbuf_free(mb);
    return out;
  }

  Settings settings_;
  Dataplane dp_;
  std::string port_name_;
  rte_ring* rx_ = nullptr;
  rte_ring* tx_ = nullptr;
};

TEST_F(DataplaneTest, BringsUpPortAndOneWorkerPerWorkerLcore) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  EXPECT_EQ(dp_.worker_count(), rte_lcore_count() - 1);
  EXPECT_TRUE(dp_.running());
  EXPECT_TRUE(dp_.ReadPort(0).link_up);
  EXPECT_TRUE(WaitUntil([&] { return dp_.worker(0).heartbeat.tsc.load() != 0; }));
  const uint64_t beat = dp_.worker(0).heartbeat.tsc.load();
  EXPECT_TRUE(WaitUntil([&] { return dp_.worker(0).heartbeat.tsc.load() > beat; }))
      << "heartbeat does not advance";
}

TEST_F(DataplaneTest, ValidUdpToOurAddressesIsCountedAsNoSession) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4}));
  Inject(test::BuildUdp(UdpSpec{kPeerV6, kOurV6}));
  ASSERT_TRUE(WaitUntil([&] { return counters().rx_packets.Read() == 2; }));
  EXPECT_EQ(counters().udp_packets.Read(), 2u);
  EXPECT_EQ(Drops(DropReason::kNoSession), 2u);
  EXPECT_EQ(counters().rx_bytes.Read(), 14u + 20 + 8 + 160 + 14 + 40 + 8 + 160);
}

struct DropCase {
  std::string name;
  std::function<Bytes()> frame;
  DropReason reason;
};

TEST_F(DataplaneTest, EveryMalformedFrameIsDroppedWithItsReason) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  const std::vector<DropCase> cases = {
      {"runt", [] { return Bytes(10, 0); }, DropReason::kRuntFrame},
      {"lldp",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[12] = 0x88;
         b[13] = 0xcc;
         return b;
       },
       DropReason::kUnknownEthertype},
      {"vlan",
       [] {
         UdpSpec s{kPeerV4, kOurV4};
         s.vlan = 100;
         return test::BuildUdp(s);
       },
       DropReason::kVlanNotConfigured},
      {"other host",
       [] {
         return test::BuildUdp(UdpSpec{kPeerV4, *IpAddress::Parse("198.51.100.99")});
       },
       DropReason::kNotForUs},
      {"ip version 5",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen] = 0x55;
         test::FixIpv4Checksum(b);
         return b;
       },
       DropReason::kIpv4Malformed},
      {"ip total length past frame",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen + 2] = 0x05;
         test::FixIpv4Checksum(b);
         return b;
       },
       DropReason::kIpv4Malformed},
      {"ip checksum",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen + 10] ^= 0xff;
         return b;
       },
       DropReason::kIpv4Checksum},
      {"ipv4 fragment",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen + 6] = 0x20;  // MF
         test::FixIpv4Checksum(b);
         return b;
       },
       DropReason::kFragment},
      {"ipv6 fragment header",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV6, kOurV6});
         b[test::kEthLen + 6] = 44;
         return b;
       },
       DropReason::kFragment},
      {"ipv6 payload past frame",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV6, kOurV6});
         b[test::kEthLen + 4] = 0x10;
         return b;
       },
       DropReason::kIpv6Malformed},
      {"tcp",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen + 9] = 6;
         test::FixIpv4Checksum(b);
         return b;
       },
       DropReason::kUnsupportedProtocol},
      {"udp to sip port",
       [] {
         UdpSpec s{kPeerV4, kOurV4};
         s.dport = 5060;
         return test::BuildUdp(s);
       },
       DropReason::kUdpToControlPort},
      {"udp length 4",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b[test::kEthLen + test::kIpv4Len + 4] = 0;
         b[test::kEthLen + test::kIpv4Len + 5] = 4;
         return b;
       },
       DropReason::kUdpMalformed},
      {"udp checksum",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
         b.back() ^= 0x01;
         return b;
       },
       DropReason::kUdpChecksum},
      {"ipv6 zero udp checksum",
       [] {
         Bytes b = test::BuildUdp(UdpSpec{kPeerV6, kOurV6});
         b[test::kEthLen + test::kIpv6Len + 6] = 0;
         b[test::kEthLen + test::kIpv6Len + 7] = 0;
         return b;
       },
       DropReason::kUdpChecksum},
  };
  uint64_t expected_rx = 0;
  for (const DropCase& c : cases) {
    const uint64_t before = Drops(c.reason);
    Inject(c.frame());
    ++expected_rx;
    EXPECT_TRUE(WaitUntil([&] { return Drops(c.reason) == before + 1; }))
        << c.name << ": " << DropReasonLabel(c.reason) << " did not move";
  }
  EXPECT_EQ(counters().rx_packets.Read(), expected_rx);
  EXPECT_EQ(counters().udp_packets.Read(), 0u) << "a malformed frame was taken for media";

  // IPv4 UDP without a checksum (0) is valid (RFC 768).
  UdpSpec no_ck{kPeerV4, kOurV4};
  no_ck.udp_checksum = false;
  Inject(test::BuildUdp(no_ck));
  EXPECT_TRUE(WaitUntil([&] { return counters().udp_packets.Read() == 1; }));
}

TEST_F(DataplaneTest, MultiSegmentFrameIsDropped) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  Bytes frame = test::BuildUdp(UdpSpec{kPeerV4, kOurV4});
  rte_mbuf* head = rte_pktmbuf_alloc(g_test_pool);
  rte_mbuf* tail = rte_pktmbuf_alloc(g_test_pool);
  std::memcpy(rte_pktmbuf_append(head, 50), frame.data(), 50);
  std::memcpy(rte_pktmbuf_append(tail, static_cast<uint16_t>(frame.size() - 50)), frame.data() + 50,
              frame.size() - 50);
  ASSERT_EQ(rte_pktmbuf_chain(head, tail), 0);
  ASSERT_EQ(rte_ring_enqueue(rx_, head), 0);
  EXPECT_TRUE(WaitUntil([&] { return Drops(DropReason::kMultiSegment) == 1; }));
}

TEST_F(DataplaneTest, ExceptionRingFullIsCountedNotLost) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  // The control plane does not service the ring here: 64-slot ring, 100 ARPs.
  for (int i = 0; i < 100; ++i) Inject(test::BuildArpRequest(kPeerMac, kPeerV4, kOurV4));
  ASSERT_TRUE(WaitUntil([&] { return counters().rx_packets.Read() == 100; }));
  const uint64_t queued = counters().exceptions.Read();
  EXPECT_EQ(queued, 63u);
  EXPECT_EQ(Drops(DropReason::kExceptionRingFull), 100 - queued);
}

TEST_F(DataplaneTest, ArpRequestForOurAddressIsAnswered) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  Inject(test::BuildArpRequest(kPeerMac, kPeerV4, kOurV4));
  const Bytes reply = ControlTx();
  ASSERT_GE(reply.size(), 42u);
  const auto& our_mac = dp_.port(0).mac.bytes();
  EXPECT_TRUE(std::equal(reply.begin(), reply.begin() + 6, kPeerMac.bytes().begin()));
  EXPECT_TRUE(std::equal(reply.begin() + 6, reply.begin() + 12, our_mac.begin()));
  EXPECT_EQ(reply[20], 0);
  EXPECT_EQ(reply[21], 2) << "opcode must be reply";
  EXPECT_TRUE(std::equal(reply.begin() + 22, reply.begin() + 28, our_mac.begin()));
  EXPECT_TRUE(std::equal(reply.begin() + 28, reply.begin() + 32, kOurV4.bytes().begin()));
  EXPECT_TRUE(std::equal(reply.begin() + 32, reply.begin() + 38, kPeerMac.bytes().begin()));
  EXPECT_TRUE(std::equal(reply.begin() + 38, reply.begin() + 42, kPeerV4.bytes().begin()));
  EXPECT_EQ(dp_.exception_counters().arp_replies.Read(), 1u);
  EXPECT_TRUE(WaitUntil([&] { return counters().tx_packets.Read() == 1; }));
}

TEST_F(DataplaneTest, ArpForAnotherHostIsIgnored) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  Inject(test::BuildArpRequest(kPeerMac, kPeerV4, *IpAddress::Parse("198.51.100.77")));
  EXPECT_TRUE(WaitUntil([&] { return dp_.exception_counters().ignored.Read() == 1; }, true));
  EXPECT_EQ(rte_ring_count(tx_), 0u);
}

TEST_F(DataplaneTest, IcmpEchoIsAnsweredForBothFamilies) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  const MacAddress our_mac = dp_.port(0).mac;
  Inject(test::BuildEchoRequest(kPeerMac, our_mac, kPeerV4, kOurV4, 7, 1));
  Bytes r4 = ControlTx();
  ASSERT_EQ(r4.size(), 14u + 20 + 40);
  EXPECT_EQ(r4[14 + 20], 0) << "ICMP type must be echo reply";
  EXPECT_TRUE(std::equal(r4.begin() + 26, r4.begin() + 30, kOurV4.bytes().begin()));
  EXPECT_TRUE(std::equal(r4.begin() + 30, r4.begin() + 34, kPeerV4.bytes().begin()));
  EXPECT_EQ(test::InternetChecksum(r4.data() + 14, 20), 0) << "IPv4 header checksum";
  EXPECT_EQ(test::InternetChecksum(r4.data() + 34, 40), 0) << "ICMP checksum";

  Inject(test::BuildEchoRequest(kPeerMac, our_mac, kPeerV6, kOurV6, 7, 2));
  Bytes r6 = ControlTx();
  ASSERT_EQ(r6.size(), 14u + 40 + 40);
  EXPECT_EQ(r6[14 + 40], 129) << "ICMPv6 type must be echo reply";
  EXPECT_TRUE(std::equal(r6.begin() + 22, r6.begin() + 38, kOurV6.bytes().begin()));
  EXPECT_EQ(dp_.exception_counters().icmp_echo_replies.Read(), 2u);
}

TEST_F(DataplaneTest, NeighborSolicitationIsAnsweredWithOurMac) {
  ASSERT_NO_FATAL_FAILURE(StartDataplane());
  Inject(test::BuildNeighborSolicit(kPeerMac, kPeerV6, kOurV6));
  const Bytes na = ControlTx();
  ASSERT_EQ(na.size(), 14u + 40 + 32);
  EXPECT_EQ(na[14 + 40], 136) << "must be a neighbor advertisement";
  EXPECT_EQ(na[14 + 40 + 4] & 0x40, 0x40) << "solicited flag";
  EXPECT_TRUE(std::equal(na.begin() + 22, na.begin() + 38, kOurV6.bytes().begin()));
  EXPECT_TRUE(std::equal(na.begin() + 38, na.begin() + 54, kPeerV6.bytes().begin()));
  EXPECT_TRUE(
      std::equal(na.begin() + 14 + 40 + 8, na.begin() + 14 + 40 + 24, kOurV6.bytes().begin()));
  EXPECT_TRUE(std::equal(na.begin() + 14 + 40 + 26, na.begin() + 14 + 40 + 32,
                         dp_.port(0).mac.bytes().begin()));
  EXPECT_EQ(dp_.exception_counters().neighbor_advertisements.Read(), 1u);
}

TEST_F(DataplaneTest, UnknownDeviceFailsClearlyAndLeavesNothingBehind) {
  Settings bad = settings_;
  bad.ports[0].device = "net_nope0";
  const absl::Status st = dp_.Init(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("net_nope0"), std::string_view::npos) << st.message();
  EXPECT_NE(st.message().find(port_name_), std::string_view::npos)
      << "the error should list the devices present: " << st.message();
  // Nothing half-initialised: the same object initialises cleanly afterwards.
  EXPECT_TRUE(dp_.Init(settings_).ok());
}

}  // namespace
}  // namespace karl::dp

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new karl::dp::EalEnvironment);
  return RUN_ALL_TESTS();
}
