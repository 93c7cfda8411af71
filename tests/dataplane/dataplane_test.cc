// Dataplane tests: one EAL for the whole binary, ports made from rte_rings so the
// test puts frames on a port's RX ring and reads what the port transmits.
#include "dataplane/dataplane.h"

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "dataplane/srtp.h"
#include "dataplane/srtp_engine.h"
#include "gtest/gtest.h"
#include "tests/common/libsrtp_oracle.h"
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

TEST(ChecksumTest, FastSumMatchesDpdkRawChecksumForEveryLengthAndAlignment) {
  std::vector<uint8_t> buf(1600);
  uint32_t x = 12345;
  for (auto& b : buf) {
    x = x * 1103515245 + 12345;
    b = static_cast<uint8_t>(x >> 16);
  }
  buf[100] = buf[101] = 0xff;  // runs of 0xff exercise the carries
  for (uint32_t off = 0; off < 4; ++off) {
    for (uint32_t len = 0; len <= 1500; ++len) {
      ASSERT_EQ(detail::FastSum(buf.data() + off, len), rte_raw_cksum(buf.data() + off, len))
          << "offset " << off << " length " << len;
    }
  }
  std::vector<uint8_t> ones(65535, 0xff);
  EXPECT_EQ(detail::FastSum(ones.data(), 65535), rte_raw_cksum(ones.data(), 65535));
}

// The vector sum must never touch an octet past `len` (its tail: a 16-octet load, then
// words). Data that ends right before an inaccessible page would fault if it did.
TEST(ChecksumTest, FastSumNeverReadsPastTheEnd) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* map = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(map, MAP_FAILED);
  auto* base = static_cast<uint8_t*>(map);
  ASSERT_EQ(mprotect(base + page, page, PROT_NONE), 0);
  for (size_t i = 0; i < page; ++i) base[i] = static_cast<uint8_t>(i * 131 + 7);
  for (uint32_t len = 0; len <= 300; ++len) {
    const uint8_t* data = base + page - len;
    ASSERT_EQ(detail::FastSum(data, len), rte_raw_cksum(data, len)) << "length " << len;
  }
  munmap(map, 2 * page);
}

// ---- The relay path: streams, forward action, latching, RTCP ----

const IpAddress kOurV4b = *IpAddress::Parse("203.0.113.1");
const IpAddress kFarV4 = *IpAddress::Parse("203.0.113.9");
const IpAddress kFarV6 = *IpAddress::Parse("2001:db8::9");
const MacAddress kNextHopMac = *MacAddress::Parse("02:00:00:00:00:99");

class RelayTest : public DataplaneTest {
 protected:
  void SetUp() override {
    DataplaneTest::SetUp();
    settings_.ports[0].addresses.push_back(*IpPrefix::Parse("203.0.113.1/24"));
    ASSERT_NO_FATAL_FAILURE(StartDataplane());
  }

  static Egress MakeEgress(const IpAddress& src, uint16_t sport, const IpAddress& dst,
                           uint16_t dport, bool with_mac = true) {
    Egress e;
    e.family = src.is_v4() ? 4 : 6;
    e.have_mac = with_mac;
    std::memcpy(e.src_addr, src.bytes().data(), src.is_v4() ? 4 : 16);
    std::memcpy(e.dst_addr, dst.bytes().data(), dst.is_v4() ? 4 : 16);
    e.src_port_be = rte_cpu_to_be_16(sport);
    e.dst_port_be = rte_cpu_to_be_16(dport);
    std::memcpy(e.dst_mac, kNextHopMac.bytes().data(), 6);
    return e;
  }

  // Publishes a stream receiving on local:port and adds its flow entry.
  uint32_t AddStream(const IpAddress& local, uint16_t port, StreamConfig cfg) {
    cfg.id = dp_.AllocateStream();
    EXPECT_NE(cfg.id, kNoStream);
    dp_.PublishStream(cfg);
    EXPECT_TRUE(dp_.AddFlow(MakeFlowKey(local.is_v4() ? 4 : 6, local.bytes().data(),
                                        rte_cpu_to_be_16(port)),
                            cfg.id)
                    .ok());
    return cfg.id;
  }

  // What Karl must put on the wire for `payload` leaving src:sport -> dst:dport.
  Bytes Expected(const IpAddress& src, uint16_t sport, const IpAddress& dst, uint16_t dport,
                 const Bytes& payload, uint16_t vlan = 0, uint8_t tc = 0) {
    UdpSpec s{src, dst, sport, dport, payload, vlan, dp_.port(0).mac, kNextHopMac};
    s.ip_id = 0;  // Karl sends a new datagram: identification 0, DF set, TTL 64
    s.traffic_class = tc;
    return test::BuildUdp(s);
  }

  Bytes Tx() {
    void* m = nullptr;
    WaitUntil([&] { return rte_ring_dequeue(tx_, &m) == 0; });
    if (m == nullptr) return {};
    auto* mb = static_cast<rte_mbuf*>(m);
    const auto* p = rte_pktmbuf_mtod(mb, const uint8_t*);
    Bytes out(p, p + mb->data_len);
    EXPECT_EQ(mb->pkt_len, mb->data_len);
    rte_pktmbuf_free(mb);
    return out;
  }

  uint64_t StreamDrops(uint32_t id, DropReason r) {
    return dp_.stream_state(id).drops_by_reason[static_cast<size_t>(r)].Read();
  }
};

// TX checksum offload (D24): with a port that offloads, the rewrite leaves the IPv4 header
// checksum to the device and, where a full UDP checksum is due (payload changed; IPv4
// without checksum bridged to IPv6), puts the pseudo-header sum in the field and asks the
// device for the rest. Finishing those as a device does must give the software bytes.
TEST(TxChecksumOffloadTest, DeviceFinishesTheSameBytesAsSoftware) {
  struct Case {
    const char* name;
    IpAddress peer, local, egress_local, egress_peer;
    bool payload_changed;
    bool no_udp_checksum_in;  // IPv4 sent without a UDP checksum
    uint16_t vlan;
  };
  const Case cases[] = {
      {"v4 payload changed", kPeerV4, kOurV4, kOurV4b, kFarV4, true, false, 0},
      {"v4 unchanged", kPeerV4, kOurV4, kOurV4b, kFarV4, false, false, 0},
      {"v4 no checksum stays none", kPeerV4, kOurV4, kOurV4b, kFarV4, false, true, 0},
      {"v6 payload changed", kPeerV6, kOurV6, kOurV6, kFarV6, true, false, 0},
      {"v4->v6 without checksum", kPeerV4, kOurV4, kOurV6, kFarV6, false, true, 0},
      {"v6->v4 payload changed, VLAN", kPeerV6, kOurV6, kOurV4b, kFarV4, true, false, 42},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    UdpSpec in{c.peer, c.local, 40000, 30000, test::RtpPayload(9)};
    Bytes frame = test::BuildUdp(in);
    ParsedPacket p;
    p.ip_version = c.peer.is_v4() ? 4 : 6;
    p.l3_offset = RTE_ETHER_HDR_LEN;
    p.l4_offset = static_cast<uint16_t>(p.l3_offset + (p.ip_version == 4 ? 20 : 40));
    p.udp_payload_len = static_cast<uint16_t>(frame.size() - p.l4_offset - 8);
    if (c.no_udp_checksum_in) {
      frame[p.l4_offset + 6] = 0;
      frame[p.l4_offset + 7] = 0;
    }
    if (c.payload_changed) frame.back() ^= 0x5a;  // as if SRTP had rewritten the payload
    Egress e;
    e.family = c.egress_local.is_v4() ? 4 : 6;
    e.have_mac = true;
    std::memcpy(e.src_addr, c.egress_local.bytes().data(), e.family == 4 ? 4 : 16);
    std::memcpy(e.dst_addr, c.egress_peer.bytes().data(), e.family == 4 ? 4 : 16);
    e.src_port_be = rte_cpu_to_be_16(30102);
    e.dst_port_be = rte_cpu_to_be_16(50000);
    std::memcpy(e.dst_mac, kNextHopMac.bytes().data(), 6);
    EgressPort software;
    software.vlan = c.vlan;
    EgressPort offload = software;
    offload.tx_ip_cksum_offload = true;
    offload.tx_udp_cksum_offload = true;

    Bytes out[2];
    for (int i = 0; i < 2; ++i) {
      rte_mbuf* m = rte_pktmbuf_alloc(g_test_pool);
      ASSERT_NE(m, nullptr);
      std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
                  frame.size());
      ASSERT_EQ(RewriteForEgress(m, p, e, i == 0 ? software : offload, c.payload_changed),
                DropReason::kCount);
      uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
      const uint16_t l2 = c.vlan ? RTE_ETHER_HDR_LEN + 4 : RTE_ETHER_HDR_LEN;
      const uint16_t l3 = e.family == 4 ? 20 : 40;
      if (i == 0) {
        EXPECT_EQ(m->ol_flags, 0u);
      } else {
        // What the application asked of the device, and the device's part done here.
        const bool full_udp = c.payload_changed || (e.family == 6 && c.no_udp_checksum_in);
        uint64_t want = full_udp ? RTE_MBUF_F_TX_UDP_CKSUM : 0;
        if (e.family == 4) want |= RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
        if (e.family == 6 && full_udp) want |= RTE_MBUF_F_TX_IPV6;
        EXPECT_EQ(m->ol_flags, want);
        EXPECT_EQ(m->l2_len, l2);
        EXPECT_EQ(m->l3_len, l3);
        if (e.family == 4) {
          auto* ip = reinterpret_cast<rte_ipv4_hdr*>(f + l2);
          EXPECT_EQ(ip->hdr_checksum, 0);
          ip->hdr_checksum = rte_ipv4_cksum(ip);
        }
        if (m->ol_flags & RTE_MBUF_F_TX_UDP_CKSUM) {
          auto* udp = reinterpret_cast<rte_udp_hdr*>(f + l2 + l3);
          const uint16_t len = rte_be_to_cpu_16(udp->dgram_len);
          // The field holds the pseudo-header's sum; the device adds header and payload.
          uint16_t sum = static_cast<uint16_t>(~rte_raw_cksum(udp, len));
          udp->dgram_cksum = sum == 0 ? 0xffff : sum;
        }
      }
      out[i].assign(f, f + m->data_len);
      rte_pktmbuf_free(m);
    }
    EXPECT_EQ(out[1], out[0]);
    // And the software bytes are a valid datagram (the checksum verifies, or is absent
    // where IPv4 allows it).
    const size_t l4 = (c.vlan ? 18 : 14) + (e.family == 4 ? 20 : 40);
    const uint16_t field = static_cast<uint16_t>(out[0][l4 + 6] << 8 | out[0][l4 + 7]);
    if (e.family == 4 && c.no_udp_checksum_in && !c.payload_changed) {
      EXPECT_EQ(field, 0);
    } else {
      // Recomputed over the datagram with the field zeroed, it must be what was sent.
      Bytes copy = out[0];
      copy[l4 + 6] = 0;
      copy[l4 + 7] = 0;
      const uint8_t* l3p = copy.data() + (c.vlan ? 18 : 14);
      const uint16_t want =
          e.family == 4
              ? rte_ipv4_udptcp_cksum(reinterpret_cast<const rte_ipv4_hdr*>(l3p), copy.data() + l4)
              : rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(l3p), copy.data() + l4);
      EXPECT_EQ(field, rte_be_to_cpu_16(want)) << "software UDP checksum does not verify";
    }
  }
}

struct ForwardCase {
  const char* name;
  IpAddress peer, local, egress_local, egress_peer;
};

TEST_F(RelayTest, ForwardRewritesHeadersByteForByte) {
  const ForwardCase cases[] = {
      {"v4->v4", kPeerV4, kOurV4, kOurV4b, kFarV4},
      {"v6->v6", kPeerV6, kOurV6, kOurV6, kFarV6},
      {"v4->v6", kPeerV4, kOurV4, kOurV6, kFarV6},
      {"v6->v4", kPeerV6, kOurV6, kOurV4b, kFarV4},
  };
  uint16_t port = 30000;
  for (const ForwardCase& c : cases) {
    StreamConfig cfg;
    cfg.latch = false;
    cfg.egress =
        MakeEgress(c.egress_local, static_cast<uint16_t>(port + 100), c.egress_peer, 50000);
    AddStream(c.local, port, cfg);
    const Bytes payload = test::RtpPayload(7);
    UdpSpec in{c.peer, c.local, 40000, port, payload};
    Inject(test::BuildUdp(in));
    const Bytes out = Tx();
    EXPECT_EQ(out, Expected(c.egress_local, static_cast<uint16_t>(port + 100), c.egress_peer, 50000,
                            payload))
        << c.name;
    port = static_cast<uint16_t>(port + 2);
  }
  EXPECT_TRUE(WaitUntil([&] { return counters().tx_packets.Read() == 4; }));
}

TEST_F(RelayTest, ShortFramePaddingIsTrimmedAndIpv4WithoutChecksumStaysWithout) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.is_rtcp = true;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50001);
  AddStream(kOurV4, 30001, cfg);
  const Bytes rr = test::RtcpReceiverReport(0xabcdef01);
  UdpSpec in{kPeerV4, kOurV4, 40001, 30001, rr};
  in.udp_checksum = false;
  Bytes frame = test::BuildUdp(in);
  frame.resize(60, 0);  // Ethernet minimum: 10 bytes of padding after the datagram
  Inject(frame);
  const Bytes out = Tx();
  UdpSpec want{kOurV4b, kFarV4, 30102, 50001, rr, 0, dp_.port(0).mac, kNextHopMac};
  want.ip_id = 0;
  want.udp_checksum = false;
  EXPECT_EQ(out, test::BuildUdp(want));
}

TEST_F(RelayTest, DscpIsSetOnEgress) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  cfg.egress.dscp = 46;  // EF
  AddStream(kOurV4, 30000, cfg);
  const Bytes payload = test::RtpPayload(1);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, payload}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30102, kFarV4, 50000, payload, 0, 46 << 2));
}

TEST_F(RelayTest, LatchingLearnsThePeerAndStrictSourceDropsOthers) {
  StreamConfig cfg;
  cfg.latch = true;
  cfg.strict_source = true;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(1)}));
  ASSERT_FALSE(Tx().empty());
  std::vector<WorkerEvent> events;
  ASSERT_TRUE(WaitUntil([&] {
    dp_.Maintain(&events);
    return !events.empty();
  }));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, WorkerEvent::kLatched);
  EXPECT_EQ(events[0].stream, id);
  EXPECT_EQ(rte_be_to_cpu_16(events[0].port_be), 40000);
  EXPECT_EQ(std::memcmp(events[0].addr, kPeerV4.bytes().data(), 4), 0);
  EXPECT_EQ(std::memcmp(events[0].mac, kPeerMac.bytes().data(), 6), 0);
  // Another source port: strict source drops it; the latched peer still passes.
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40002, 30000, test::RtpPayload(2)}));
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kStrictSource) == 1; }));
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(3)}));
  EXPECT_FALSE(Tx().empty());
  EXPECT_EQ(dp_.stream_state(id).packets.Read(), 2u);
  // A new generation (re-INVITE) latches again, on the next packet's source.
  cfg.id = id;
  cfg.generation = 1;
  dp_.PublishStream(cfg);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40002, 30000, test::RtpPayload(4)}));
  EXPECT_FALSE(Tx().empty());
}

TEST_F(RelayTest, NonStrictAcceptsOtherSourcesAndGivenPeerIsChecked) {
  StreamConfig cfg;
  cfg.latch = false;  // asymmetric: the given peer is the only "right" source
  cfg.strict_source = true;
  cfg.expected_family = 4;
  cfg.expected_port_be = rte_cpu_to_be_16(40000);
  std::memcpy(cfg.expected_addr, kPeerV4.bytes().data(), 4);
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40001, 30000, test::RtpPayload(1)}));
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kStrictSource) == 1; }));
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(2)}));
  EXPECT_FALSE(Tx().empty());
}

TEST_F(RelayTest, RtcpMuxDemuxesToTheRtcpEgressAndItsOwnCounters) {
  StreamConfig rtcp_cfg;
  rtcp_cfg.is_rtcp = true;
  const uint32_t rtcp_id = dp_.AllocateStream();
  StreamConfig cfg;
  cfg.latch = false;
  cfg.rtcp_mux = true;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  cfg.rtcp_egress = MakeEgress(kOurV4b, 30103, kFarV4, 50001);
  cfg.rtcp_stream = rtcp_id;
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  const Bytes rtp = test::RtpPayload(9);
  const Bytes rr = test::RtcpReceiverReport(0x01020304);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, rtp}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30102, kFarV4, 50000, rtp));
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, rr}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30103, kFarV4, 50001, rr));
  EXPECT_EQ(dp_.stream_state(id).packets.Read(), 1u);
  EXPECT_EQ(dp_.stream_state(rtcp_id).packets.Read(), 1u);
}

TEST_F(RelayTest, InvalidMediaAndMissingDestinationsAreDroppedWithReasons) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t rtp_id = AddStream(kOurV4, 30000, cfg);
  cfg.is_rtcp = true;
  const uint32_t rtcp_id = AddStream(kOurV4, 30001, cfg);
  StreamConfig no_peer;
  no_peer.latch = false;
  const uint32_t no_peer_id = AddStream(kOurV4, 30002, no_peer);
  StreamConfig no_mac;
  no_mac.latch = false;
  no_mac.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000, false);
  const uint32_t no_mac_id = AddStream(kOurV4, 30004, no_mac);

  Bytes v1 = test::RtpPayload(1);
  v1[0] = 0x40;  // RTP version 1
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, v1}));
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(rtp_id, DropReason::kRtpBadVersion) == 1; }));
  Bytes rtcp = test::RtcpReceiverReport(5);
  rtcp[3] = 7;  // length field past the packet
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40001, 30001, rtcp}));
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(rtcp_id, DropReason::kRtcpMalformed) == 1; }));
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30002, test::RtpPayload(1)}));
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(no_peer_id, DropReason::kNoPeer) == 1; }));
  // No next-hop MAC yet: rewritten all the same and handed to the control plane, which
  // holds it until ARP/NDP answers (D21); not a drop.
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30004, test::RtpPayload(1)}));
  std::vector<Dataplane::UnresolvedPacket> held;
  EXPECT_TRUE(WaitUntil([&] {
    dp_.TakeUnresolved(&held, 8);
    return !held.empty();
  }));
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].port_index, 0u);
  const auto* f = rte_pktmbuf_mtod(held[0].m, const uint8_t*);
  const Bytes want = Expected(kOurV4b, 30102, kFarV4, 50000, test::RtpPayload(1));
  // Everything but the destination MAC, which the control plane fills in.
  EXPECT_EQ(Bytes(f + 6, f + held[0].m->data_len), Bytes(want.begin() + 6, want.end()));
  rte_pktmbuf_free(held[0].m);
  EXPECT_EQ(StreamDrops(no_mac_id, DropReason::kNoNeighbor), 0u);
  EXPECT_EQ(dp_.stream_state(no_mac_id).packets.Read(), 1u);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30006, test::RtpPayload(1)}));
  EXPECT_TRUE(WaitUntil([&] { return Drops(DropReason::kNoSession) == 1; }));
  EXPECT_EQ(rte_ring_count(tx_), 0u);
}

// ICE-lite (D25): STUN (RFC 7983: first octet 0..3, magic cookie) arriving on the port
// of a stream with ICE goes to the control plane's handler, whatever worker owns the
// stream; the answer leaves from the port the request came to, back to its source, with
// valid checksums. The stream neither latches nor counts it. Without ICE the same bytes
// are no RTP (dropped as rtp_bad_version).
TEST_F(RelayTest, StunOnIcePortsGoesToTheHandlerAndItsAnswerBackToTheSource) {
  // A Binding request: header (RFC 5389 §6) and one SOFTWARE attribute.
  const Bytes request = {0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                         3,    4,    5,    6,    7,    8,    9,    10,   11, 12,
                         0x80, 0x22, 0x00, 0x04, 't',  'e',  's',  't'};
  struct Seen {
    uint32_t stream;
    IpAddress source;
    uint16_t port;
    MacAddress mac;
    Bytes message;
  };
  std::vector<Seen> seen;
  bool answer = true;
  // The answer is longer than the request (the frame grows) and names what it answers.
  auto answer_for = [](const Bytes& m) {
    Bytes r = m;
    r[0] = 0x01;
    r[1] = 0x01;
    r.insert(r.end(), {0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 9, 9, 9, 9});
    r[3] = static_cast<uint8_t>(r.size() - 20);
    return r;
  };
  dp_.SetStunHandler([&](const StunRequest& r) -> std::optional<std::vector<uint8_t>> {
    seen.push_back({r.stream, r.source, r.source_port, r.source_mac,
                    Bytes(r.message.begin(), r.message.end())});
    if (!answer) return std::nullopt;
    return answer_for(Bytes(r.message.begin(), r.message.end()));
  });
  StreamConfig cfg;
  cfg.latch = true;
  cfg.ice = true;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t v4 = AddStream(kOurV4, 30010, cfg);
  cfg.egress = MakeEgress(kOurV6, 30102, kFarV6, 50000);
  const uint32_t v6 = AddStream(kOurV6, 30012, cfg);
  StreamConfig plain = cfg;
  plain.ice = false;
  const uint32_t no_ice = AddStream(kOurV4, 30014, plain);
  const MacAddress peer_mac = *MacAddress::Parse("02:00:00:00:00:02");

  struct Case {
    IpAddress peer, local;
    uint16_t port;
    uint32_t stream;
  };
  for (const Case& c : {Case{kPeerV4, kOurV4, 30010, v4}, Case{kPeerV6, kOurV6, 30012, v6}}) {
    SCOPED_TRACE(c.local.ToString());
    seen.clear();
    Inject(test::BuildUdp(UdpSpec{c.peer, c.local, 40000, c.port, request}));
    const Bytes out = ControlTx();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].stream, c.stream);
    EXPECT_EQ(seen[0].source, c.peer);
    EXPECT_EQ(seen[0].port, 40000);
    EXPECT_EQ(seen[0].mac, peer_mac);
    EXPECT_EQ(seen[0].message, request);
    // Byte for byte: addresses and ports swapped, lengths and checksums (IPv4 header,
    // UDP) for the longer answer, the identification and DF kept, TTL 64.
    EXPECT_EQ(out, test::BuildUdp(UdpSpec{c.local, c.peer, c.port, 40000, answer_for(request), 0,
                                          dp_.port(0).mac, peer_mac}));
    EXPECT_EQ(dp_.stream_state(c.stream).packets.Read(), 0u);
    EXPECT_EQ(dp_.stream_state(c.stream).drops.Read(), 0u);
    EXPECT_FALSE(dp_.stream_state(c.stream).latched);
  }
  EXPECT_EQ(dp_.exception_counters().stun_responses.Read(), 2u);

  // The handler declines (bad credentials): nothing goes out, the mbuf is freed.
  answer = false;
  const uint64_t ignored = dp_.exception_counters().ignored.Read();
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30010, request}));
  EXPECT_TRUE(
      WaitUntil([&] { return dp_.exception_counters().ignored.Read() == ignored + 1; }, true));
  EXPECT_EQ(seen.size(), 2u);  // asked, and it said no
  EXPECT_EQ(rte_ring_count(tx_), 0u);

  // RTP on the ICE port is media as usual (and latches).
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40002, 30010, test::RtpPayload(1)}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30102, kFarV4, 50000, test::RtpPayload(1)));
  EXPECT_TRUE(WaitUntil([&] { return dp_.stream_state(v4).packets.Read() == 1; }));
  EXPECT_TRUE(dp_.stream_state(v4).latched);

  // No ICE on the stream: the handler never sees it; not RTP.
  seen.clear();
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30014, request}));
  EXPECT_TRUE(
      WaitUntil([&] { return StreamDrops(no_ice, DropReason::kRtpBadVersion) == 1; }, true));
  EXPECT_TRUE(seen.empty());
}

TEST_F(RelayTest, RtpStatisticsFollowRfc3550) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  // Sequence 0..9 with 4 and 7 missing: A.1 probation takes seq 0, counts from 1.
  for (uint16_t seq : {0, 1, 2, 3, 5, 6, 8, 9}) {
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(seq, 77)}));
  }
  ASSERT_TRUE(WaitUntil([&] { return dp_.stream_state(id).packets.Read() == 8; }));
  const StreamState& st = dp_.stream_state(id);
  EXPECT_EQ(st.ssrc.Read(), 77u);
  EXPECT_EQ(st.expected.Read(), 9u);  // 1..9
  EXPECT_EQ(st.received.Read(), 7u);  // 1,2,3,5,6,8,9
  EXPECT_GT(st.last_tsc.Read(), 0u);
}

TEST_F(RelayTest, RetiredStreamStopsAtOnceAndItsSlotComesBackZeroed) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(1)}));
  ASSERT_FALSE(Tx().empty());
  dp_.RemoveFlow(MakeFlowKey(4, kOurV4.bytes().data(), rte_cpu_to_be_16(30000)));
  dp_.RetireStream(id);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(2)}));
  EXPECT_TRUE(WaitUntil([&] { return Drops(DropReason::kNoSession) == 1; }));
  EXPECT_TRUE(WaitUntil([&] {
    dp_.Maintain(nullptr);
    return dp_.stream_state(id).packets.Read() == 0;
  })) << "state not reset after the grace period";
  EXPECT_EQ(dp_.stream_config(id), nullptr);
}

TEST_F(RelayTest, NoHeadroomForTheLongerIpv6HeaderIsCounted) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV6, 30102, kFarV6, 50000);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  const Bytes frame = test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(1)});
  rte_mbuf* m = rte_pktmbuf_alloc(g_test_pool);
  m->data_off = 0;  // a PMD that leaves no headroom
  std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
              frame.size());
  m->port = dp_.port(0).port_id;
  ASSERT_EQ(rte_ring_enqueue(rx_, m), 0);
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kNoHeadroom) == 1; }));
  EXPECT_EQ(Drops(DropReason::kNoHeadroom), 1u);
}

TEST_F(RelayTest, FullTransmitQueueIsCountedAsTxFull) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  AddStream(kOurV4, 30000, cfg);
  // Fill the port's TX ring so the driver takes nothing.
  std::vector<rte_mbuf*> filler;
  while (rte_ring_free_count(tx_) > 0) {
    rte_mbuf* f = rte_pktmbuf_alloc(g_test_pool);
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(rte_ring_enqueue(tx_, f), 0);
  }
  for (uint16_t seq = 0; seq < 5; ++seq) {
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, test::RtpPayload(seq)}));
  }
  EXPECT_TRUE(WaitUntil([&] { return Drops(DropReason::kTxFull) == 5; }))
      << "tx_full " << Drops(DropReason::kTxFull);
  EXPECT_EQ(counters().tx_packets.Read(), 0u) << "packets the driver refused counted as sent";
  EXPECT_EQ(counters().tx_bytes.Read(), 0u);
}

// ---- SRTP on the worker (RFC 3711): protect, unprotect, re-key, against libsrtp2 ----

// Every engine (srtp.engine) through the real worker loop.
class SrtpRelayTest : public RelayTest, public ::testing::WithParamInterface<SrtpEngineKind> {
 protected:
  void SetUp() override {
    // libsrtp2 is process-global: Karl's libsrtp engine shares the one initialisation
    // with the oracle (and shuts it down in Dataplane::Close).
    ASSERT_TRUE(srtp_internal::EnsureLibsrtp());
    DataplaneTest::SetUp();
    settings_.ports[0].addresses.push_back(*IpPrefix::Parse("203.0.113.1/24"));
    settings_.srtp_engine = GetParam();
    ASSERT_NO_FATAL_FAILURE(StartDataplane());
  }

  // A fresh key||salt for `suite` (deterministic per seed).
  static Bytes KeySalt(SrtpSuite suite, uint8_t seed) {
    const SrtpSuiteInfo& info = GetSrtpSuiteInfo(suite);
    Bytes ks(size_t{info.master_key_len} + info.master_salt_len);
    for (size_t i = 0; i < ks.size(); ++i) ks[i] = static_cast<uint8_t>(seed * 31 + i * 7);
    return ks;
  }

  std::shared_ptr<SrtpContext> Context(SrtpSuite suite, const Bytes& ks) {
    const SrtpSuiteInfo& info = GetSrtpSuiteInfo(suite);
    SrtpConfig c;
    c.engine = GetParam();
    c.suite = suite;
    c.master_key = std::span<const uint8_t>(ks.data(), info.master_key_len);
    c.master_salt = std::span<const uint8_t>(ks.data() + info.master_key_len, info.master_salt_len);
    std::shared_ptr<SrtpContext> ctx = SrtpContext::Create(c);
    EXPECT_NE(ctx, nullptr);
    return ctx;
  }

  // The UDP payload of a frame Karl sent (untagged IPv4).
  static Bytes UdpPayloadOf(const Bytes& frame) {
    if (frame.size() < test::kEthLen + test::kIpv4Len + 8) return {};
    return Bytes(frame.begin() + test::kEthLen + test::kIpv4Len + 8, frame.end());
  }

  std::vector<WorkerEvent> Events() {
    std::vector<WorkerEvent> ev;
    dp_.Maintain(&ev);
    return ev;
  }
};

constexpr SrtpSuite kRelaySuites[] = {
    SrtpSuite::kAesCm128HmacSha1_80, SrtpSuite::kAesCm128HmacSha1_32,
    SrtpSuite::kAes256CmHmacSha1_80, SrtpSuite::kAes256CmHmacSha1_32,
    SrtpSuite::kAeadAes128Gcm,       SrtpSuite::kAeadAes256Gcm,
};

TEST_P(SrtpRelayTest, ProtectMatchesLibsrtpByteForByte) {
  uint16_t port = 30000;
  for (SrtpSuite suite : kRelaySuites) {
    const Bytes ks = KeySalt(suite, static_cast<uint8_t>(port));
    StreamConfig cfg;
    cfg.latch = false;
    cfg.egress = MakeEgress(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000);
    cfg.srtp_out = Context(suite, ks);
    AddStream(kOurV4, port, cfg);
    test::LibSrtp oracle(suite, ks, true);
    ASSERT_EQ(oracle.status(), srtp_err_status_ok);
    for (uint16_t seq = 65530; seq != 10; ++seq) {  // across a ROC wrap
      const Bytes rtp = test::RtpPayload(seq);
      Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, port, rtp}));
      Bytes want = rtp;
      ASSERT_EQ(oracle.Protect(&want), srtp_err_status_ok);
      ASSERT_EQ(Tx(), Expected(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000, want))
          << GetSrtpSuiteInfo(suite).name << " seq " << seq;
    }
    port = static_cast<uint16_t>(port + 2);
  }
}

TEST_P(SrtpRelayTest, UnprotectGivesThePlainPacketByteForByte) {
  uint16_t port = 30000;
  for (SrtpSuite suite : kRelaySuites) {
    const Bytes ks = KeySalt(suite, static_cast<uint8_t>(port + 1));
    StreamConfig cfg;
    cfg.latch = false;
    cfg.egress = MakeEgress(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000);
    cfg.srtp_in = Context(suite, ks);
    const uint32_t id = AddStream(kOurV4, port, cfg);
    test::LibSrtp peer(suite, ks, true);
    for (uint16_t seq = 100; seq < 120; ++seq) {
      const Bytes rtp = test::RtpPayload(seq);
      Bytes srtp = rtp;
      ASSERT_EQ(peer.Protect(&srtp), srtp_err_status_ok);
      Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, port, srtp}));
      ASSERT_EQ(Tx(), Expected(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000, rtp))
          << GetSrtpSuiteInfo(suite).name << " seq " << seq;
    }
    EXPECT_EQ(dp_.stream_state(id).packets.Read(), 20u);
    // Statistics come from the plain RTP (A.1 probation takes the first packet).
    EXPECT_EQ(dp_.stream_state(id).expected.Read(), 19u);
    EXPECT_EQ(dp_.stream_state(id).ssrc.Read(), 0x11223344u);
    port = static_cast<uint16_t>(port + 2);
  }
}

// The peer's sender switches SSRC mid-stream (transfer, music on hold) under the same key:
// the old SSRC stops at SEQ 40000, the new one starts at SEQ 1234 (estimated against the
// old SSRC's index it would get ROC + 1). RFC 3711 §3.2.3 keeps a state per SSRC, so
// every packet is protected byte for byte as libsrtp2 does, and unprotected, both ways.
TEST_P(SrtpRelayTest, SenderSwitchesSsrcMidStream) {
  uint16_t port = 30000;
  for (SrtpSuite suite : kRelaySuites) {
    const Bytes out_ks = KeySalt(suite, static_cast<uint8_t>(port + 40));
    const Bytes in_ks = KeySalt(suite, static_cast<uint8_t>(port + 41));
    StreamConfig out;  // plain in, SRTP out
    out.latch = false;
    out.egress = MakeEgress(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000);
    out.srtp_out = Context(suite, out_ks);
    AddStream(kOurV4, port, out);
    StreamConfig in;  // SRTP in, plain out
    in.latch = false;
    in.egress = MakeEgress(kOurV4b, static_cast<uint16_t>(port + 102), kFarV4, 50002);
    in.srtp_in = Context(suite, in_ks);
    const uint32_t in_id = AddStream(kOurV4, static_cast<uint16_t>(port + 2), in);
    test::LibSrtp oracle(suite, out_ks, true);
    test::LibSrtp peer(suite, in_ks, true);
    int sent = 0;
    for (const auto& [ssrc, first, count] :
         {std::tuple<uint32_t, uint16_t, int>{0xaaaa0001, 39990, 11}, {0xbbbb0002, 1234, 20}}) {
      for (int i = 0; i < count; ++i, ++sent) {
        const Bytes rtp = test::RtpPayload(static_cast<uint16_t>(first + i), ssrc);
        Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, port, rtp}));
        Bytes want = rtp;
        ASSERT_EQ(oracle.Protect(&want), srtp_err_status_ok);
        ASSERT_EQ(Tx(), Expected(kOurV4b, static_cast<uint16_t>(port + 100), kFarV4, 50000, want))
            << GetSrtpSuiteInfo(suite).name << " protect, SSRC " << ssrc << " seq " << first + i;
        Bytes srtp = rtp;
        ASSERT_EQ(peer.Protect(&srtp), srtp_err_status_ok);
        Inject(
            test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40002, static_cast<uint16_t>(port + 2), srtp}));
        ASSERT_EQ(Tx(), Expected(kOurV4b, static_cast<uint16_t>(port + 102), kFarV4, 50002, rtp))
            << GetSrtpSuiteInfo(suite).name << " unprotect, SSRC " << ssrc << " seq " << first + i;
      }
    }
    EXPECT_EQ(dp_.stream_state(in_id).packets.Read(), static_cast<uint64_t>(sent));
    for (size_t r = 0; r < kDropReasonCount; ++r) {
      EXPECT_EQ(StreamDrops(in_id, static_cast<DropReason>(r)), 0u)
          << DropReasonLabel(static_cast<DropReason>(r));
    }
    EXPECT_EQ(dp_.stream_state(in_id).ssrc.Read(), 0xbbbb0002u);
    port = static_cast<uint16_t>(port + 4);
  }
}

TEST_P(SrtpRelayTest, RekeyToAnotherSuiteAndIpv6) {
  const Bytes in_ks = KeySalt(SrtpSuite::kAesCm128HmacSha1_80, 1);
  const Bytes out_ks = KeySalt(SrtpSuite::kAeadAes256Gcm, 2);
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV6, 30102, kFarV6, 50000);  // v4 in, v6 out
  cfg.srtp_in = Context(SrtpSuite::kAesCm128HmacSha1_80, in_ks);
  cfg.srtp_out = Context(SrtpSuite::kAeadAes256Gcm, out_ks);
  AddStream(kOurV4, 30000, cfg);
  test::LibSrtp peer(SrtpSuite::kAesCm128HmacSha1_80, in_ks, true);
  test::LibSrtp far(SrtpSuite::kAeadAes256Gcm, out_ks, true);
  for (uint16_t seq = 1; seq <= 50; ++seq) {
    const Bytes rtp = test::RtpPayload(seq);
    Bytes srtp = rtp;
    ASSERT_EQ(peer.Protect(&srtp), srtp_err_status_ok);
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, srtp}));
    Bytes want = rtp;
    ASSERT_EQ(far.Protect(&want), srtp_err_status_ok);
    ASSERT_EQ(Tx(), Expected(kOurV6, 30102, kFarV6, 50000, want)) << "seq " << seq;
  }
}

TEST_P(SrtpRelayTest, SrtcpBothWaysAndMuxedOnTheRtpPort) {
  const SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_32;  // SRTCP keeps an 80-bit tag
  const Bytes peer_ks = KeySalt(suite, 3);
  const Bytes karl_ks = KeySalt(suite, 4);
  std::shared_ptr<SrtpContext> rx = Context(suite, peer_ks);
  std::shared_ptr<SrtpContext> tx = Context(suite, karl_ks);
  // RTCP on its own port: SRTCP in -> plain out; plain in -> SRTCP out.
  StreamConfig in;
  in.latch = false;
  in.is_rtcp = true;
  in.egress = MakeEgress(kOurV4b, 30103, kFarV4, 50001);
  in.srtp_in = rx;
  const uint32_t in_id = AddStream(kOurV4, 30001, in);
  StreamConfig out;
  out.latch = false;
  out.is_rtcp = true;
  out.egress = MakeEgress(kOurV4b, 30105, kFarV4, 50003);
  out.srtp_out = tx;
  AddStream(kOurV4, 30003, out);
  test::LibSrtp peer(suite, peer_ks, true);
  test::LibSrtp far(suite, karl_ks, false);
  for (uint32_t i = 0; i < 5; ++i) {
    const Bytes rr = test::RtcpReceiverReport(0xabc00000);
    Bytes srtcp = rr;
    ASSERT_EQ(peer.Protect(&srtcp, true), srtp_err_status_ok);
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40001, 30001, srtcp}));
    EXPECT_EQ(Tx(), Expected(kOurV4b, 30103, kFarV4, 50001, rr));
    for (size_t r = 0; r < kDropReasonCount; ++r) {
      EXPECT_EQ(StreamDrops(in_id, static_cast<DropReason>(r)), 0u)
          << DropReasonLabel(static_cast<DropReason>(r));
    }
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40003, 30003, rr}));
    Bytes got = UdpPayloadOf(Tx());
    EXPECT_EQ(got.size(), rr.size() + 4 + 10);  // E||index and the 80-bit tag
    ASSERT_EQ(far.Unprotect(&got, true), srtp_err_status_ok) << i;
    EXPECT_EQ(got, rr);
  }
  // rtcp-mux: SRTP and SRTCP on one port, both unprotected with the same master key.
  const uint32_t rtcp_id = dp_.AllocateStream();
  StreamConfig mux;
  mux.latch = false;
  mux.rtcp_mux = true;
  mux.rtcp_stream = rtcp_id;
  mux.egress = MakeEgress(kOurV4b, 30106, kFarV4, 50004);
  mux.rtcp_egress = MakeEgress(kOurV4b, 30106, kFarV4, 50004);
  const Bytes mux_ks = KeySalt(SrtpSuite::kAeadAes128Gcm, 5);
  mux.srtp_in = Context(SrtpSuite::kAeadAes128Gcm, mux_ks);
  AddStream(kOurV4, 30006, mux);
  test::LibSrtp mux_peer(SrtpSuite::kAeadAes128Gcm, mux_ks, true);
  const Bytes rtp = test::RtpPayload(77);
  Bytes srtp = rtp;
  ASSERT_EQ(mux_peer.Protect(&srtp), srtp_err_status_ok);
  const Bytes rr = test::RtcpReceiverReport(0x1234);
  Bytes srtcp = rr;
  ASSERT_EQ(mux_peer.Protect(&srtcp, true), srtp_err_status_ok);
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40006, 30006, srtp}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30106, kFarV4, 50004, rtp));
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40006, 30006, srtcp}));
  EXPECT_EQ(Tx(), Expected(kOurV4b, 30106, kFarV4, 50004, rr));
  EXPECT_EQ(dp_.stream_state(rtcp_id).packets.Read(), 1u);
}

TEST_P(SrtpRelayTest, BadPacketsAreDroppedByReasonAndNeverForwarded) {
  const SrtpSuite suite = SrtpSuite::kAesCm128HmacSha1_80;
  const Bytes ks = KeySalt(suite, 6);
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  cfg.srtp_in = Context(suite, ks);
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  test::LibSrtp peer(suite, ks, true);
  test::LibSrtp stranger(suite, KeySalt(suite, 7), true);
  auto send = [&](const Bytes& payload) {
    Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, payload}));
  };
  Bytes good = test::RtpPayload(1);
  ASSERT_EQ(peer.Protect(&good), srtp_err_status_ok);
  send(good);
  EXPECT_EQ(UdpPayloadOf(Tx()), test::RtpPayload(1));
  send(good);  // the same packet again
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kSrtpReplay) == 1; }));
  Bytes wrong_key = test::RtpPayload(2);
  ASSERT_EQ(stranger.Protect(&wrong_key), srtp_err_status_ok);
  send(wrong_key);
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kSrtpAuthFailed) == 1; }));
  Bytes tampered = test::RtpPayload(3);
  ASSERT_EQ(peer.Protect(&tampered), srtp_err_status_ok);
  tampered[20] ^= 1;
  send(tampered);
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kSrtpAuthFailed) == 2; }));
  send(Bytes(good.begin(), good.begin() + 12));  // an RTP header and no room for a tag
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kSrtpTooShort) == 1; }));
  // The stream goes on after the bad ones.
  Bytes next = test::RtpPayload(4);
  ASSERT_EQ(peer.Protect(&next), srtp_err_status_ok);
  send(next);
  EXPECT_EQ(UdpPayloadOf(Tx()), test::RtpPayload(4));
  EXPECT_EQ(rte_ring_count(tx_), 0u);
  EXPECT_EQ(Drops(DropReason::kSrtpAuthFailed), 2u);
  EXPECT_EQ(Drops(DropReason::kSrtpReplay), 1u);
  // One rate-limited note for the control plane's log, naming the stream.
  std::vector<WorkerEvent> ev = Events();
  size_t srtp_events = 0;
  for (const WorkerEvent& e : ev) {
    if (e.type != WorkerEvent::kSrtpError) continue;
    ++srtp_events;
    EXPECT_EQ(e.stream, id);
    EXPECT_EQ(e.reason, DropReason::kSrtpReplay);  // the first; the rest within the second
  }
  EXPECT_EQ(srtp_events, 1u);
}

TEST_P(SrtpRelayTest, ProtectWithoutTailroomIsCounted) {
  const SrtpSuite suite = SrtpSuite::kAeadAes128Gcm;
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV4b, 30102, kFarV4, 50000);
  cfg.srtp_out = Context(suite, KeySalt(suite, 8));
  const uint32_t id = AddStream(kOurV4, 30000, cfg);
  // A frame that fills its buffer to the last byte: no room for the 16-byte tag.
  rte_mbuf* m = rte_pktmbuf_alloc(g_test_pool);
  ASSERT_NE(m, nullptr);
  const uint16_t room = rte_pktmbuf_tailroom(m);
  const size_t headers = test::kEthLen + test::kIpv4Len + 8;
  Bytes rtp = test::RtpPayload(1);
  rtp.resize(room - headers, 0x55);
  const Bytes frame = test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, rtp});
  ASSERT_EQ(frame.size(), room);
  std::memcpy(rte_pktmbuf_append(m, room), frame.data(), room);
  m->port = dp_.port(0).port_id;
  ASSERT_EQ(rte_ring_enqueue(rx_, m), 0);
  EXPECT_TRUE(WaitUntil([&] { return StreamDrops(id, DropReason::kSrtpNoTailroom) == 1; }));
  EXPECT_EQ(rte_ring_count(tx_), 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, SrtpRelayTest,
                         ::testing::Values(SrtpEngineKind::kIpsecMb, SrtpEngineKind::kOpenssl,
                                           SrtpEngineKind::kLibsrtp),
                         [](const ::testing::TestParamInfo<SrtpEngineKind>& info) {
                           return std::string(SrtpEngineName(info.param));
                         });

class VlanRelayTest : public RelayTest {
 protected:
  void SetUp() override {
    DataplaneTest::SetUp();
    settings_.ports[0].vlan = 100;
    settings_.ports[0].addresses.push_back(*IpPrefix::Parse("203.0.113.1/24"));
    ASSERT_NO_FATAL_FAILURE(StartDataplane());
  }
};

TEST_F(VlanRelayTest, TaggedInTaggedOutByteForByte) {
  StreamConfig cfg;
  cfg.latch = false;
  cfg.egress = MakeEgress(kOurV6, 30102, kFarV6, 50000);
  AddStream(kOurV4, 30000, cfg);
  const Bytes payload = test::RtpPayload(3);
  UdpSpec in{kPeerV4, kOurV4, 40000, 30000, payload};
  in.vlan = 100;
  Inject(test::BuildUdp(in));
  EXPECT_EQ(Tx(), Expected(kOurV6, 30102, kFarV6, 50000, payload, 100));
  // Untagged traffic does not belong to this port.
  Inject(test::BuildUdp(UdpSpec{kPeerV4, kOurV4, 40000, 30000, payload}));
  EXPECT_TRUE(WaitUntil([&] { return Drops(DropReason::kVlanNotConfigured) == 1; }));
}

}  // namespace
}  // namespace karl::dp

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new karl::dp::EalEnvironment);
  return RUN_ALL_TESTS();
}
