// Read-only status model the ops HTTP server renders (/health, /ready, /status,
// /metrics). The control-plane thread builds snapshots; HTTP threads only read them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/drop_reasons.h"

namespace karl {

struct PortStatus {
  std::string name;    // config name ("ext0")
  std::string device;  // DPDK device name
  uint16_t port_id = 0;
  std::string mac;                     // "02:..."
  std::vector<std::string> addresses;  // "198.51.100.1/24"
  bool link_up = false;
  uint32_t link_speed_mbps = 0;
  // From rte_eth_stats at the last refresh.
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_missed = 0;  // imissed: dropped by the NIC, RX ring full
  uint64_t rx_errors = 0;
  uint64_t tx_errors = 0;
  uint64_t rx_nombuf = 0;
};

struct WorkerStatus {
  unsigned index = 0;  // worker number 0..N-1 (= RX queue id)
  unsigned lcore = 0;
  double heartbeat_age_ms = 0;  // since the worker's last beat; large when stuck
  bool stuck = false;           // heartbeat older than dataplane.heartbeat_timeout_ms
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t exceptions = 0;
  uint64_t udp_packets = 0;
  uint64_t loops = 0;
  uint64_t busy_loops = 0;
  uint64_t handoffs = 0;  // packets passed to the worker owning their stream
  double busy_s = 0;      // time spent in loop iterations that had packets
  std::array<uint64_t, kDropReasonCount> drops{};
};

struct StatusSnapshot {
  std::string version;
  double uptime_s = 0;
  std::string config_path;
  std::string config_sha256;
  bool ready = false;                 // started and taking work; false while starting/stopping
  bool healthy = false;               // no stuck worker, every port up
  std::vector<std::string> problems;  // why not healthy/ready, human-readable
  std::vector<PortStatus> ports;
  std::vector<WorkerStatus> workers;
  uint64_t sessions_active = 0;
  uint64_t sessions_created = 0;     // since start
  uint64_t sessions_timed_out = 0;   // ended by media timeout since start
  uint64_t free_port_pairs = 0;      // local RTP/RTCP pairs free on all addresses
  uint64_t unresolved_sent = 0;      // media held for ARP/NDP, then sent
  uint64_t unresolved_dropped = 0;   // media held for ARP/NDP, then dropped
  uint64_t ice_checks_answered = 0;  // ICE-lite (D25)
  uint64_t ice_checks_rejected = 0;
  uint64_t ice_nominations = 0;
};

}  // namespace karl
