#include "dataplane/dataplane.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace karl::dp {
namespace {

constexpr unsigned kPrefetchAhead = 4;

uint32_t NextPow2Minus1(uint64_t n) {
  uint64_t p = 1;
  while (p - 1 < n) p <<= 1;
  return static_cast<uint32_t>(p - 1);
}

std::string AvailableDevices() {
  std::vector<std::string> names;
  uint16_t id;
  RTE_ETH_FOREACH_DEV(id) {
    char name[RTE_ETH_NAME_MAX_LEN];
    if (rte_eth_dev_get_name_by_port(id, name) == 0) names.emplace_back(name);
  }
  return names.empty() ? "none (give EAL -a/--vdev arguments)" : absl::StrJoin(names, ", ");
}

PortContext MakePortContext(const PortSettings& s, uint16_t port_id, uint16_t rtp_min,
                            uint16_t rtp_max) {
  PortContext ctx;
  ctx.port_id = port_id;
  ctx.vlan = s.vlan;
  ctx.rtp_port_min = rtp_min;
  ctx.rtp_port_max = rtp_max;
  for (const IpPrefix& p : s.addresses) {
    if (p.address.is_v4() && ctx.v4_count < kMaxAddressesPerPort) {
      ctx.v4[ctx.v4_count++] = rte_cpu_to_be_32(p.address.v4());
    } else if (p.address.is_v6() && ctx.v6_count < kMaxAddressesPerPort) {
      std::memcpy(ctx.v6[ctx.v6_count++], p.address.bytes().data(), 16);
    }
  }
  return ctx;
}

// Counts a burst's drops locally and publishes them once per burst.
struct BurstTally {
  uint32_t drops[kDropReasonCount] = {};
  uint32_t udp = 0;
  uint64_t bytes = 0;
};

inline void ProcessBurst(WorkerState* w, const PortContext& port, rte_mbuf** pkts, uint16_t n,
                         BurstTally* tally) noexcept {
  rte_mbuf* to_free[kMaxBurst];
  rte_mbuf* to_control[kMaxBurst];
  uint16_t nb_free = 0;
  uint16_t nb_control = 0;
  for (uint16_t i = 0; i < n && i < kPrefetchAhead; ++i) {
    rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  }
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kPrefetchAhead], void*));
    rte_mbuf* m = pkts[i];
    tally->bytes += m->pkt_len;
    ParsedPacket parsed;
    switch (ClassifyPacket(m, port, &parsed)) {
      case Verdict::kUdp:
        // No flow table yet: every valid media packet is for an unknown stream.
        ++tally->udp;
        ++tally->drops[static_cast<size_t>(DropReason::kNoSession)];
        to_free[nb_free++] = m;
        break;
      case Verdict::kException:
        to_control[nb_control++] = m;
        break;
      case Verdict::kDrop:
        ++tally->drops[static_cast<size_t>(parsed.drop)];
        to_free[nb_free++] = m;
        break;
    }
  }
  if (nb_control > 0) {
    const unsigned sent = rte_ring_sp_enqueue_burst(
        w->exceptions, reinterpret_cast<void**>(to_control), nb_control, nullptr);
    w->counters.exceptions.Add(sent);
    for (unsigned i = sent; i < nb_control; ++i) {
      ++tally->drops[static_cast<size_t>(DropReason::kExceptionRingFull)];
      to_free[nb_free++] = to_control[i];
    }
  }
  if (nb_free > 0) rte_pktmbuf_free_bulk(to_free, nb_free);
}

// Sends what the control plane queued for this worker (ARP/ICMP/NDP answers) on
// the worker's own TX queue: devices such as net_tap need as many TX as RX queues,
// so the control plane has no TX queue of its own.
inline void TransmitForControlPlane(WorkerState* w) noexcept {
  void* pkts[32];
  const unsigned n = rte_ring_sc_dequeue_burst(w->to_transmit, pkts, 32, nullptr);
  for (unsigned i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(pkts[i]);
    uint16_t p = 0;
    while (p < w->nb_ports && w->ports[p].port_id != m->port) ++p;
    if (p == w->nb_ports) {
      rte_pktmbuf_free(m);
      w->counters.drops[static_cast<size_t>(DropReason::kTxFull)].Add(1);
      continue;
    }
    w->counters.tx_packets.Add(1);
    w->counters.tx_bytes.Add(m->pkt_len);
    rte_eth_tx_buffer(m->port, w->queue, w->tx_buffers[p], m);
  }
}

}  // namespace

int WorkerMain(void* arg) {
  auto* w = static_cast<WorkerState*>(arg);
  rte_mbuf* pkts[kMaxBurst];
  uint64_t last_drain = rte_rdtsc();
  w->heartbeat.tsc.store(last_drain, std::memory_order_relaxed);
  while (!w->stop->load(std::memory_order_relaxed)) {
    uint64_t rx = 0;
    BurstTally tally;
    for (uint16_t p = 0; p < w->nb_ports; ++p) {
      const uint16_t n = rte_eth_rx_burst(w->ports[p].port_id, w->queue, pkts, w->burst);
      if (n == 0) continue;
      rx += n;
      ProcessBurst(w, w->ports[p], pkts, n, &tally);
    }
    w->counters.loops.Add(1);
    if (rx > 0) {
      w->counters.busy_loops.Add(1);
      w->counters.rx_packets.Add(rx);
      w->counters.rx_bytes.Add(tally.bytes);
      if (tally.udp) w->counters.udp_packets.Add(tally.udp);
      for (size_t r = 0; r < kDropReasonCount; ++r) {
        if (tally.drops[r]) w->counters.drops[r].Add(tally.drops[r]);
      }
    }
    const uint64_t now = rte_rdtsc();
    if (now - last_drain >= w->drain_tsc) {
      TransmitForControlPlane(w);
      for (uint16_t p = 0; p < w->nb_ports; ++p) {
        rte_eth_tx_buffer_flush(w->ports[p].port_id, w->queue, w->tx_buffers[p]);
      }
      w->heartbeat.tsc.store(now, std::memory_order_relaxed);
      last_drain = now;
    }
  }
  for (uint16_t p = 0; p < w->nb_ports; ++p) {
    rte_eth_tx_buffer_flush(w->ports[p].port_id, w->queue, w->tx_buffers[p]);
  }
  return 0;
}

namespace {

// TX buffer error callback: the packets tx did not take are freed and counted.
void CountUnsent(rte_mbuf** unsent, uint16_t count, void* userdata) {
  auto* counters = static_cast<WorkerCounters*>(userdata);
  counters->drops[static_cast<size_t>(DropReason::kTxFull)].Add(count);
  rte_pktmbuf_free_bulk(unsent, count);
}

}  // namespace

Dataplane::~Dataplane() { Close(); }

absl::Status Dataplane::InitPort(PortRuntime& port, unsigned nb_workers) {
  const PortSettings& s = port.settings;
  const std::string where = absl::StrCat("port '", s.name, "' (device ", s.device, ")");
  uint16_t port_id;
  if (rte_eth_dev_get_port_by_name(s.device.c_str(), &port_id) != 0) {
    return absl::NotFoundError(
        absl::StrCat(where, ": no such DPDK device; devices present: ", AvailableDevices()));
  }
  port.port_id = port_id;
  rte_eth_dev_info info;
  if (int rc = rte_eth_dev_info_get(port_id, &info); rc != 0) {
    return absl::InternalError(absl::StrCat(where, ": dev_info_get: ", rte_strerror(-rc)));
  }
  const uint16_t nb_rxq = static_cast<uint16_t>(nb_workers);
  const uint16_t nb_txq = static_cast<uint16_t>(nb_workers);
  if (info.max_rx_queues < nb_rxq || info.max_tx_queues < nb_txq) {
    return absl::FailedPreconditionError(absl::StrCat(
        where, ": needs ", nb_rxq, " RX and TX queues (one per worker) but the device has ",
        info.max_rx_queues, " RX and ", info.max_tx_queues, " TX; use fewer lcores in -l"));
  }
  rte_eth_conf conf{};
  const uint64_t rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  if (settings_.rss && nb_rxq > 1 && rss_hf != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
  }
  if (s.mtu >= info.min_mtu && s.mtu <= info.max_mtu) conf.rxmode.mtu = s.mtu;
  const uint64_t rx_cksum = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
  conf.rxmode.offloads = info.rx_offload_capa & rx_cksum;
  port.ctx = MakePortContext(s, port_id, settings_.rtp_port_min, settings_.rtp_port_max);
  port.ctx.rx_ip_cksum_offload = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0;
  port.ctx.rx_l4_cksum_offload = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_UDP_CKSUM) != 0;
  if (int rc = rte_eth_dev_configure(port_id, nb_rxq, nb_txq, &conf); rc != 0) {
    return absl::InternalError(absl::StrCat(where, ": configure: ", rte_strerror(-rc)));
  }
  uint16_t nb_rxd = s.rx_descriptors;
  uint16_t nb_txd = s.tx_descriptors;
  if (int rc = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rxd, &nb_txd); rc != 0) {
    return absl::InternalError(absl::StrCat(where, ": descriptors: ", rte_strerror(-rc)));
  }
  const int socket = rte_eth_dev_socket_id(port_id);
  const unsigned sock = socket < 0 ? rte_socket_id() : static_cast<unsigned>(socket);
  for (uint16_t q = 0; q < nb_rxq; ++q) {
    rte_eth_rxconf rxconf = info.default_rxconf;
    rxconf.offloads = conf.rxmode.offloads;
    if (int rc = rte_eth_rx_queue_setup(port_id, q, nb_rxd, sock, &rxconf, pool_); rc != 0) {
      return absl::InternalError(absl::StrCat(where, ": RX queue ", q, ": ", rte_strerror(-rc)));
    }
  }
  for (uint16_t q = 0; q < nb_txq; ++q) {
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    if (int rc = rte_eth_tx_queue_setup(port_id, q, nb_txd, sock, &txconf); rc != 0) {
      return absl::InternalError(absl::StrCat(where, ": TX queue ", q, ": ", rte_strerror(-rc)));
    }
  }
  rte_ether_addr mac;
  if (rte_eth_macaddr_get(port_id, &mac) == 0) {
    std::array<uint8_t, 6> b;
    std::memcpy(b.data(), mac.addr_bytes, 6);
    port.mac = MacAddress(b);
  }
  return absl::OkStatus();
}

absl::Status Dataplane::Init(const Settings& settings) {
  if (pool_ != nullptr || !ports_.empty()) {
    return absl::FailedPreconditionError("dataplane already initialised");
  }
  settings_ = settings;
  const unsigned nb_workers = rte_lcore_count() - 1;
  if (nb_workers == 0) {
    return absl::InvalidArgumentError(
        "no worker lcore: give EAL -l with at least two lcores (the first is the control plane)");
  }
  if (nb_workers > kMaxWorkers || settings.ports.size() > kMaxPorts) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxWorkers, " workers and ", kMaxPorts, " ports are supported"));
  }
  uint64_t mbufs = settings.mbufs;
  uint16_t max_mtu = 1500;
  for (const PortSettings& p : settings.ports) {
    max_mtu = std::max(max_mtu, p.mtu);
    if (settings.mbufs == 0) {
      mbufs += uint64_t{nb_workers} * (p.rx_descriptors + p.tx_descriptors);
    }
  }
  if (settings.mbufs == 0) {
    mbufs += uint64_t{nb_workers} * (settings.burst_size * 4u + settings.mbuf_cache) +
             settings.exception_ring_size * uint64_t{nb_workers} + 4096;
    mbufs = NextPow2Minus1(mbufs);
  }
  const uint32_t frame = uint32_t{max_mtu} + RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN + 8;
  const uint16_t data_room = static_cast<uint16_t>(
      RTE_PKTMBUF_HEADROOM + std::max<uint32_t>(frame, RTE_MBUF_DEFAULT_DATAROOM));
  pool_ = rte_pktmbuf_pool_create("karl_mbufs", static_cast<unsigned>(mbufs), settings.mbuf_cache,
                                  0, data_room, static_cast<int>(rte_socket_id()));
  if (pool_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot create the mbuf pool of ", mbufs, " mbufs x ", data_room, " bytes: ",
        rte_strerror(rte_errno), " (give EAL more memory with -m, or lower ", "dataplane.mbufs)"));
  }
  ports_.resize(settings.ports.size());
  for (size_t i = 0; i < settings.ports.size(); ++i) {
    ports_[i].settings = settings.ports[i];
    if (absl::Status st = InitPort(ports_[i], nb_workers); !st.ok()) {
      Close();
      return st;
    }
  }
  const uint64_t drain_tsc = rte_get_tsc_hz() / 1000000 * settings.tx_drain_us;
  unsigned index = 0;
  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) {
    auto w = std::make_unique<WorkerState>();
    w->index = index;
    w->lcore = lcore;
    w->queue = static_cast<uint16_t>(index);
    w->burst = std::min<uint16_t>(settings.burst_size, kMaxBurst);
    w->drain_tsc = drain_tsc;
    w->stop = &stop_;
    w->nb_ports = static_cast<uint16_t>(ports_.size());
    const std::string ring_name = absl::StrCat("karl_exc_", index);
    w->exceptions = rte_ring_create(ring_name.c_str(), settings.exception_ring_size,
                                    static_cast<int>(rte_lcore_to_socket_id(lcore)),
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
    const std::string tx_ring_name = absl::StrCat("karl_ctx_", index);
    w->to_transmit =
        rte_ring_create(tx_ring_name.c_str(), 1024, static_cast<int>(rte_lcore_to_socket_id(lcore)),
                        RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (w->exceptions == nullptr || w->to_transmit == nullptr) {
      workers_.push_back(std::move(w));
      Close();
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot create the rings of worker ", index, ": ", rte_strerror(rte_errno)));
    }
    for (size_t p = 0; p < ports_.size(); ++p) {
      w->ports[p] = ports_[p].ctx;
      w->tx_buffers[p] = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket(
          "karl_txbuf", RTE_ETH_TX_BUFFER_SIZE(kMaxBurst), 0, rte_lcore_to_socket_id(lcore)));
      if (w->tx_buffers[p] == nullptr) {
        workers_.push_back(std::move(w));
        Close();
        return absl::ResourceExhaustedError("cannot allocate TX buffers");
      }
      rte_eth_tx_buffer_init(w->tx_buffers[p], w->burst);
      rte_eth_tx_buffer_set_err_callback(w->tx_buffers[p], CountUnsent, &w->counters);
    }
    workers_.push_back(std::move(w));
    ++index;
  }
  return absl::OkStatus();
}

absl::Status Dataplane::Start() {
  for (PortRuntime& p : ports_) {
    if (int rc = rte_eth_dev_start(p.port_id); rc != 0) {
      Stop();
      return absl::InternalError(
          absl::StrCat("port '", p.settings.name, "': start: ", rte_strerror(-rc)));
    }
    p.started = true;
    // NDP solicitations go to solicited-node multicast groups.
    p.allmulticast = rte_eth_allmulticast_enable(p.port_id) == 0;
  }
  stop_.store(false);
  for (auto& w : workers_) {
    if (int rc = rte_eal_remote_launch(WorkerMain, w.get(), w->lcore); rc != 0) {
      Stop();
      return absl::InternalError(
          absl::StrCat("cannot launch worker on lcore ", w->lcore, ": ", rte_strerror(-rc)));
    }
  }
  running_ = true;
  return absl::OkStatus();
}

void Dataplane::Stop() {
  stop_.store(true);
  for (auto& w : workers_) rte_eal_wait_lcore(w->lcore);
  running_ = false;
  for (PortRuntime& p : ports_) {
    if (p.started) {
      rte_eth_dev_stop(p.port_id);
      p.started = false;
    }
  }
}

void Dataplane::Close() {
  Stop();
  for (auto& w : workers_) {
    for (rte_ring* r : {w->exceptions, w->to_transmit}) {
      if (r == nullptr) continue;
      void* m;
      while (rte_ring_sc_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      rte_ring_free(r);
    }
    for (auto* b : w->tx_buffers) rte_free(b);
  }
  workers_.clear();
  for (PortRuntime& p : ports_) {
    uint16_t id;
    if (rte_eth_dev_get_port_by_name(p.settings.device.c_str(), &id) == 0) {
      rte_eth_dev_close(id);
    }
  }
  ports_.clear();
  if (pool_ != nullptr) {
    rte_mempool_free(pool_);
    pool_ = nullptr;
  }
}

PortReading Dataplane::ReadPort(size_t i) const {
  PortReading r;
  rte_eth_link link{};
  if (rte_eth_link_get_nowait(ports_[i].port_id, &link) == 0) {
    r.link_up = link.link_status == RTE_ETH_LINK_UP;
    r.speed_mbps = link.link_speed;
  }
  rte_eth_stats_get(ports_[i].port_id, &r.stats);
  return r;
}

const PortRuntime* Dataplane::FindPortById(uint16_t port_id) const {
  for (const PortRuntime& p : ports_) {
    if (p.port_id == port_id) return &p;
  }
  return nullptr;
}

unsigned Dataplane::ServiceExceptions(unsigned budget) {
  unsigned handled = 0;
  void* burst[32];
  for (auto& w : workers_) {
    while (handled < budget) {
      const unsigned n = rte_ring_sc_dequeue_burst(w->exceptions, burst, 32, nullptr);
      if (n == 0) break;
      for (unsigned i = 0; i < n; ++i) HandleException(*w, static_cast<rte_mbuf*>(burst[i]));
      handled += n;
    }
  }
  return handled;
}

void Dataplane::SendThroughWorker(WorkerState& w, rte_mbuf* m) {
  if (rte_ring_sp_enqueue(w.to_transmit, m) != 0) {
    exception_counters_.tx_failed.Add(1);
    rte_pktmbuf_free(m);
  }
}

}  // namespace karl::dp
