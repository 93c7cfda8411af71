// The dataplane: DPDK ports, the mbuf pool, and one poll-mode worker per worker
// lcore. Thread: every public method is for the control-plane thread (main lcore)
// only, except where noted; workers run WorkerMain and touch only their own state.
#pragma once

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/net_addr.h"
#include "common/worker_stats.h"
#include "dataplane/flow.h"
#include "dataplane/forward.h"
#include "dataplane/packet.h"
#include "dataplane/rtp.h"
#include "dataplane/srtp_engine.h"

namespace karl::dp {

inline constexpr uint16_t kMaxBurst = 256;
// Packets ahead of the parser at which a burst's memory is requested: the mbuf headers,
// the frames into L2, then into L1. A burst is 128 packets by default; asking for all of
// its headers at once overflows the core's miss buffers, and frames asked for only into
// L1 arrive too late at 10 Mpps. Measured: forward 9.04 -> 10.68 Mpps, drop 12.87 ->
// 15.26 (8 alternating karl-bench runs; docs/performance.md, session 9).
inline constexpr unsigned kHeaderAhead = 24;
inline constexpr unsigned kFrameL2Ahead = 32;
inline constexpr unsigned kPrefetchAhead = 8;

struct PortSettings {
  std::string name;    // operator's name ("ext0"), used in errors and metrics
  std::string device;  // DPDK device name or PCI address
  std::vector<IpPrefix> addresses;
  uint16_t vlan = 0;
  uint16_t mtu = 1500;
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
};

struct Settings {
  std::vector<PortSettings> ports;
  uint16_t rtp_port_min = 30000;
  uint16_t rtp_port_max = 39999;
  uint16_t burst_size = 128;
  uint32_t mbufs = 0;  // 0 = sized from ports, queues and workers
  uint16_t mbuf_cache = 256;
  uint32_t tx_drain_us = 100;
  uint32_t exception_ring_size = 1024;
  bool rss = true;
  uint32_t max_streams = 0;  // 0 = one per local port: (rtp range) x (addresses)
  bool verify_udp_checksum = true;
  // Use the devices' TX checksum offloads where they have them (D24). Off: software only.
  bool tx_checksum_offload = true;
  uint32_t handoff_ring_size = 4096;  // per worker, a power of two (tests make it small)
  // Who runs SRTP on the workers. Init sets the engine up (InitSrtpCrypto) and Close
  // tears it down; contexts for the streams must be made with the same kind.
  SrtpEngineKind srtp_engine = SrtpEngineKind::kOpenssl;
  IpsecMbPath ipsec_mb_path = IpsecMbPath::kDirect;  // kIpsecMb: how it reaches the library
};

// Every stream's published config and state. Owner: see flow.h.
struct StreamTable {
  uint32_t size = 0;
  std::atomic<StreamConfig*>* configs = nullptr;  // [size], nullptr = not published
  StreamState* states = nullptr;                  // [size]
};

// One port as the control plane sees it. Owner: Dataplane (control-plane thread).
struct PortRuntime {
  PortSettings settings;
  uint16_t port_id = 0;
  MacAddress mac;
  PortContext ctx;                   // the workers' read-only copy lives in WorkerState
  bool tx_ip_cksum_offload = false;  // configured TX offloads (D24)
  bool tx_udp_cksum_offload = false;
  bool started = false;
  bool allmulticast = false;
};

struct PortReading {
  bool link_up = false;
  uint32_t speed_mbps = 0;
  rte_eth_stats stats{};
};

// Counters of the control plane's exception service. Owner: control-plane thread;
// readers: ops HTTP threads (relaxed).
struct ExceptionCounters {
  SingleWriterCounter arp_replies;
  SingleWriterCounter icmp_echo_replies;
  SingleWriterCounter neighbor_advertisements;
  SingleWriterCounter stun_responses;  // ICE connectivity checks answered (D25)
  SingleWriterCounter ignored;         // exceptions that needed no answer (freed)
  SingleWriterCounter tx_failed;       // answers the control TX queue did not take
};

// An ICE connectivity check: a STUN message that arrived on the local port of a stream
// with StreamConfig::ice. Valid during the handler call only.
struct StunRequest {
  uint32_t stream = kNoStream;  // the stream of the local (address, port) it arrived on
  IpAddress source;
  uint16_t source_port = 0;
  MacAddress source_mac;  // the next hop back to the source
  std::span<const uint8_t> message;
};
// Returns the STUN message to send back (from the local address and port the request
// arrived on, to its source), or nullopt to send nothing.
using StunHandler = std::function<std::optional<std::vector<uint8_t>>(const StunRequest&)>;

// A neighbor the control plane learned from ARP or NDP on a port.
struct LearnedNeighbor {
  uint16_t port_id = 0;
  IpAddress address;
  MacAddress mac;
};

// Per-worker state. Owner: its worker lcore (writes counters, heartbeat, tx
// buffers); the control plane writes the configuration fields before launch only.
struct alignas(kCacheLine) WorkerState {
  unsigned index = 0;
  unsigned lcore = 0;
  uint16_t queue = 0;
  uint16_t burst = 32;
  uint16_t nb_ports = 0;
  uint64_t drain_tsc = 0;
  const std::atomic<bool>* stop = nullptr;
  rte_ring* exceptions = nullptr;   // SP (this worker) / SC (control plane)
  rte_ring* to_transmit = nullptr;  // SP (control plane) / SC (this worker): ARP/ICMP answers
  rte_ring* handoff = nullptr;      // MP (other workers) / SC: packets of streams we own
  rte_ring* events = nullptr;       // SP / SC (control plane): WorkerEvent elements
  // SP / SC (control plane): media rewritten toward a peer whose next-hop MAC is not
  // known yet (m->port = egress port index); the control plane sends it once ARP/NDP
  // answers. Full: dropped as no_neighbor.
  rte_ring* unresolved = nullptr;
  const std::atomic<uint32_t>* flow_slots = nullptr;  // read-only here (see Dataplane)
  rte_rcu_qsbr* rcu = nullptr;                        // this worker reports quiescence every loop
  StreamTable* streams = nullptr;
  WorkerState* const* all_workers = nullptr;  // to find an owner's handoff ring
  double ns_per_tsc = 0;
  uint64_t tsc_hz = 0;
  SrtpEngine* srtp = nullptr;  // this worker's SRTP engine (owned by the Dataplane)
  // Where the last burst's frames started relative to their mbuf (buffer after the mbuf
  // and its private area, plus the headroom: the same for every packet a PMD receives).
  // Frames are prefetched there without waiting for their mbuf header; a wrong guess only
  // wastes a prefetch. 0: not known yet.
  intptr_t frame_offset_guess = 0;
  EgressPort egress_ports[kMaxPorts];
  PortContext ports[kMaxPorts];
  rte_eth_dev_tx_buffer* tx_buffers[kMaxPorts] = {};
  // What sits in each TX buffer, so tx counters count what the driver took.
  struct TxAccount {
    uint64_t pending_bytes = 0;  // bytes buffered since the last flush
    uint64_t unsent_bytes = 0;   // of those, refused by the driver (tx_full)
    WorkerCounters* counters = nullptr;
  } tx_accounts[kMaxPorts];
  WorkerCounters counters;
  WorkerHeartbeat heartbeat;
};

class Dataplane {
 public:
  Dataplane() = default;
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // After rte_eal_init. Finds the devices, creates the pool, rings and queues.
  // On error everything it created is released again.
  absl::Status Init(const Settings& settings);
  // Starts the ports and launches one worker per worker lcore.
  absl::Status Start();
  // Stops the workers (waits for them) and the ports. Idempotent.
  void Stop();
  // Closes the ports (a TAP device disappears) and frees pools and rings. Idempotent.
  void Close();

  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }
  const WorkerState& worker(unsigned w) const { return *workers_[w]; }
  size_t port_count() const { return ports_.size(); }
  const PortRuntime& port(size_t i) const { return ports_[i]; }
  PortReading ReadPort(size_t i) const;
  bool running() const { return running_; }

  // Drains up to `budget` exception packets from the workers' rings; answers ARP,
  // ICMP echo and NDP for our addresses through the worker that received the
  // request (its to_transmit ring); frees the rest.
  // STUN on ICE streams' ports goes to `handler`; its answer is sent back the same way.
  unsigned ServiceExceptions(unsigned budget);
  // Who answers ICE connectivity checks (the session manager, D25). None: STUN is freed.
  void SetStunHandler(StunHandler handler) { stun_handler_ = std::move(handler); }
  const ExceptionCounters& exception_counters() const { return exception_counters_; }
  // Media the workers could not send for want of a next-hop MAC (see
  // WorkerState::unresolved), up to `budget` packets; the caller owns them.
  struct UnresolvedPacket {
    rte_mbuf* m;
    size_t port_index;
  };
  void TakeUnresolved(std::vector<UnresolvedPacket>* out, unsigned budget);
  // Neighbors seen in ARP requests/replies and NDP messages to us since the last call.
  std::vector<LearnedNeighbor> TakeLearnedNeighbors() { return std::move(learned_); }

  // ---- Streams and flows (control-plane thread) ----
  uint32_t max_streams() const { return streams_.size; }
  // A free stream id, or kNoStream when every id is in use.
  uint32_t AllocateStream();
  // Publishes (or replaces) the config of stream cfg.id; a replaced config is freed
  // after a grace period.
  void PublishStream(const StreamConfig& cfg);
  // Unpublishes a stream; its id comes back (state zeroed) after a grace period.
  void RetireStream(uint32_t id);
  absl::Status AddFlow(const FlowKey& key, uint32_t stream);
  void RemoveFlow(const FlowKey& key);
  const StreamConfig* stream_config(uint32_t id) const {
    return streams_.configs[id].load(std::memory_order_relaxed);
  }
  const StreamState& stream_state(uint32_t id) const { return streams_.states[id]; }
  // A grace-period token: GracePeriodDone(token) once every worker has passed a
  // quiescent state after it (RCU QSBR).
  uint64_t StartGracePeriod();
  bool GracePeriodDone(uint64_t token);
  // Frees what finished grace periods allow and moves worker events to `events`.
  void Maintain(std::vector<WorkerEvent>* events);
  // A fresh mbuf for control traffic (ARP/NDP requests); nullptr when the pool is dry.
  rte_mbuf* AllocMbuf();
  // Sends a control-plane frame out of port `port_index` (through worker 0).
  void SendOnPort(size_t port_index, rte_mbuf* m);
  uint64_t tsc_hz() const { return tsc_hz_; }

 private:
  absl::Status InitPort(PortRuntime& port, unsigned nb_workers);
  void HandleException(WorkerState& w, rte_mbuf* m);
  void Learn(uint16_t port_id, const IpAddress& address, const uint8_t* mac);
  void LearnFromArp(const rte_mbuf* m, const PortRuntime& port, uint16_t l3);
  void LearnFromNdp(const rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p);
  // Passes an ICE check to the STUN handler and rewrites `m` into its answer in place.
  bool AnswerStun(rte_mbuf* m, const PortRuntime& port, const ParsedPacket& p);
  void SendThroughWorker(WorkerState& w, rte_mbuf* m);
  const PortRuntime* FindPortById(uint16_t port_id) const;

  absl::Status InitStreams(unsigned nb_workers);
  void FreeStreams();

  struct Retired {
    uint64_t token;
    StreamConfig* config;  // freed when the grace period ends
    uint32_t stream;       // kNoStream, or an id to zero and recycle
  };

  Settings settings_;
  rte_mempool* pool_ = nullptr;
  // The flow table: stream id (kNoStream = none) per (local address, UDP port in the
  // RTP range), indexed as PortContext describes (D22). Written by the control plane
  // (release), read by the workers (acquire); a stream id read just before a removal
  // stays valid through the grace period its retirement starts.
  std::atomic<uint32_t>* flow_slots_ = nullptr;
  uint64_t flow_slot_count_ = 0;
  uint32_t flow_addresses_ = 0;  // local addresses over all ports (slot rows)
  // The slots of `key` (one per port listing its address; none outside the RTP range).
  std::vector<uint64_t> FlowSlots(const FlowKey& key) const;
  rte_rcu_qsbr* rcu_ = nullptr;
  StreamTable streams_;
  std::vector<uint32_t> free_streams_;
  std::vector<Retired> retired_;
  std::vector<WorkerState*> worker_ptrs_;
  uint64_t tsc_hz_ = 0;
  std::vector<PortRuntime> ports_;
  std::vector<std::unique_ptr<WorkerState>> workers_;
  std::vector<std::unique_ptr<SrtpEngine>> srtp_engines_;  // one per worker
  bool srtp_crypto_ = false;                               // InitSrtpCrypto done
  std::atomic<bool> stop_{false};
  bool running_ = false;
  ExceptionCounters exception_counters_;
  std::vector<LearnedNeighbor> learned_;
  StunHandler stun_handler_;
};

// The poll loop (DESIGN.md "Workers"). Exposed for the benchmark and tests.
int WorkerMain(void* state);

}  // namespace karl::dp
