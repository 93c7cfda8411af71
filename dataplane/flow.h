// Streams and the flow table. A stream is one direction of media: packets arriving
// on one local (address, UDP port) are validated, counted and sent out of another
// local port toward a peer.
//
// Ownership:
//  - StreamConfig: written by the control-plane thread only, published with a
//    release store and never changed afterwards (a change publishes a new object;
//    the old one is freed after an RCU grace period). Workers read it.
//  - StreamState: written by exactly one worker, the stream's owner (bound on the
//    first packet), read by the control plane (relaxed). The control plane zeroes it
//    only after the stream was unpublished and a grace period passed.
//  - The flow table (rte_hash, lock-free readers): written by the control plane only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/drop_reasons.h"
#include "common/worker_stats.h"
#include "dataplane/rtp.h"

namespace karl::dp {

class SrtpContext;

inline constexpr uint32_t kNoStream = UINT32_MAX;
inline constexpr uint16_t kNoOwner = UINT16_MAX;

// Flow table key: a local address and UDP port, in network byte order.
struct FlowKey {
  uint8_t family = 0;  // 4 or 6
  uint8_t pad = 0;
  uint16_t port_be = 0;
  uint8_t addr[16] = {};  // IPv4 in the first 4 bytes, the rest zero
};
static_assert(sizeof(FlowKey) == 20);

// Where a stream sends: source = a local address/port of the egress leg, destination
// = the egress leg's peer. Network byte order throughout.
struct Egress {
  uint8_t family = 0;      // 4 or 6; 0 = no destination yet (drop no_peer)
  bool have_mac = false;   // false = drop no_neighbor
  uint8_t port_index = 0;  // index of the egress port in the worker's port list
  uint8_t dscp = 0xff;     // 0xff = keep the incoming traffic class
  uint16_t src_port_be = 0;
  uint16_t dst_port_be = 0;
  uint8_t src_addr[16] = {};
  uint8_t dst_addr[16] = {};
  uint8_t dst_mac[6] = {};
};

// Immutable per stream once published (see above). Laid out for the worker: the first
// cache line holds everything a plain packet on a latching stream reads (flags and its
// egress); the second the SRTP fields; the third what only some streams need (a fixed
// peer's address, RFC 5761 demuxed RTCP).
struct alignas(kCacheLine) StreamConfig {
  // ---- Line 0 ----
  uint32_t id = kNoStream;
  uint32_t generation = 0;  // bumped on every re-publish; the worker resets latching on change
  // Source validation (RFC 3550 has no notion of this; it is the anchoring policy).
  bool latch = true;  // symmetric: learn the peer from the first packet
  bool strict_source = false;
  bool is_rtcp = false;   // this local port receives RTCP (validate as RTCP)
  bool rtcp_mux = false;  // RTP port that also receives RTCP (RFC 5761 demux)
  // ICE-lite on this port (RFC 8445 §2.5): STUN (RFC 7983 demux: first octet 0..3 and
  // the magic cookie) goes to the control plane, which answers Binding requests.
  // Without it STUN is dropped as rtp_bad_version like any other non-RTP datagram.
  bool ice = false;
  // Filled by Dataplane::PublishStream: srtp_in or srtp_out is set (so a plain packet
  // need not read the SRTP line).
  bool srtp = false;
  uint8_t expected_family = 0;  // given peer (0 = none): packets are checked against it
  uint16_t expected_port_be = 0;
  Egress egress;  // RTP (or RTCP for an RTCP stream)

  // ---- Line 1 ----
  // SRTP (RFC 3711): srtp_in unprotects what arrives (the ingress peer's keys), srtp_out
  // protects what leaves (Karl's keys toward the egress peer); null = plain. Both set =
  // re-key. A context's mutable state (ROC, replay window, SRTCP index) is touched only
  // by the stream's owning worker: the RTP half by the RTP stream, the SRTCP half by the
  // RTCP stream (or the rtcp-mux RTP stream). The control plane shares a context between
  // successive configs of a stream while its keys stay, so a re-publish keeps the ROC.
  alignas(kCacheLine) std::shared_ptr<SrtpContext> srtp_in;
  std::shared_ptr<SrtpContext> srtp_out;
  // Filled by Dataplane::PublishStream: the engine sessions (ipsec_mb engine) those
  // contexts run this stream's packets on ([0] srtp_in, [1] srtp_out; RTP's, or SRTCP's
  // for an RTCP stream) and the cache lines of each the engine reads (bit i: line i), so
  // a worker prefetches them from the config line, without waiting for the context's
  // lines. Null: none.
  const void* srtp_session[2] = {};
  uint64_t srtp_session_lines[2] = {};

  // ---- Line 2 ----
  alignas(kCacheLine) uint8_t expected_addr[16] = {};
  uint32_t rtcp_stream = kNoStream;  // with rtcp_mux: stream whose state counts demuxed RTCP
  Egress rtcp_egress;                // with rtcp_mux: where demuxed RTCP goes
};
static_assert(offsetof(StreamConfig, egress) + sizeof(Egress) <= kCacheLine,
              "a plain packet's config fields fit one cache line");
static_assert(offsetof(StreamConfig, srtp_session_lines) + sizeof(uint64_t[2]) <= 2 * kCacheLine);

// A worker's note to the control plane (event ring, POD).
struct WorkerEvent {
  enum Type : uint8_t {
    kLatched = 1,    // family/port_be/addr/mac: the source the stream latched to
    kSrtpError = 2,  // reason: an SRTP drop (at most one event per stream per second)
  };
  uint8_t type = 0;
  uint8_t family = 0;
  uint16_t port_be = 0;
  uint32_t stream = kNoStream;
  uint32_t generation = 0;
  uint8_t addr[16] = {};
  uint8_t mac[6] = {};
  DropReason reason = DropReason::kCount;
  uint8_t pad[5] = {};
};
static_assert(sizeof(WorkerEvent) == 40);

// RFC 3550 receive statistics and the latched source, one per stream. Writer: the
// owning worker. Readers: control plane (relaxed loads through SingleWriterCounter).
// Laid out hot first: the fields every packet touches share the first two cache
// lines; the per-reason drop counters (rarely written) come last.
struct alignas(kCacheLine) StreamState {
  std::atomic<uint16_t> owner{kNoOwner};  // CAS'd by the first worker to see a packet
  bool latched = false;
  uint8_t src_family = 0;
  uint32_t generation = 0;  // config generation the latch belongs to
  uint16_t src_port_be = 0;
  uint8_t src_addr[16] = {};
  SingleWriterCounter packets;
  SingleWriterCounter bytes;
  SingleWriterCounter last_tsc;  // rte_rdtsc() of the last accepted packet (0 = never)
  SingleWriterCounter drops;
  // RTP statistics (RFC 3550 A.1/A.3/A.8), published by the owner after each packet.
  SingleWriterCounter ssrc;
  SingleWriterCounter ssrc_changes;
  SingleWriterCounter expected;
  SingleWriterCounter received;
  SingleWriterCounter jitter_us;
  RtpStreamStats rtp{};         // the owner's private A.1/A.8 state (never read by others)
  uint64_t srtp_event_tsc = 0;  // owner-private: last kSrtpError event (rate limit)
  std::array<SingleWriterCounter, kDropReasonCount> drops_by_reason;
};

inline FlowKey MakeFlowKey(uint8_t family, const uint8_t* addr, uint16_t port_be) {
  FlowKey k;
  k.family = family;
  k.port_be = port_be;
  std::memcpy(k.addr, addr, family == 4 ? 4 : 16);
  return k;
}

}  // namespace karl::dp
