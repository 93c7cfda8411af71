#include "dataplane/dataplane.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace karl::dp {
namespace {

// Prefetches the whole frame (media frames are a few cache lines; the UDP checksum
// reads all of them) when it is not much larger than a media packet.
inline void PrefetchFrame(const rte_mbuf* m) noexcept {
  const auto* p = rte_pktmbuf_mtod(m, const char*);
  const uint32_t len = std::min<uint32_t>(m->data_len, 4 * kCacheLine);
  for (uint32_t off = 0; off < len; off += kCacheLine) rte_prefetch0(p + off);
}

// Requests the mbuf's second cache line (`next`, the TX offload lengths), which freeing
// the packet reads and a TX offload request writes, as soon as the packet's fate is
// known: the transmit or free that needs it comes later in the burst, so the miss
// overlaps other packets' work instead of stalling the driver's (or the bulk free's)
// loop over the burst. Measured: forward +11 % (UDP checksum verify on) and +15 % (off),
// drop path +5 to +25 %, in alternating karl-bench runs (docs/performance.md).
inline void PrefetchMbufTail(const rte_mbuf* m) noexcept {
  rte_prefetch0(reinterpret_cast<const char*>(m) + kCacheLine);
}

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

// Buffered transmit on a port's TX queue of this worker; tx counters move when the
// driver takes the packets (a flush), by what it took.
inline void SettleTx(WorkerState::TxAccount& a, uint16_t sent) noexcept {
  if (sent == 0 && a.unsent_bytes == 0) return;
  a.counters->tx_packets.Add(sent);
  a.counters->tx_bytes.Add(a.pending_bytes - a.unsent_bytes);
  a.pending_bytes = 0;
  a.unsent_bytes = 0;
}

inline void Transmit(WorkerState* w, uint16_t port_index, rte_mbuf* m) noexcept {
  WorkerState::TxAccount& a = w->tx_accounts[port_index];
  a.pending_bytes += m->pkt_len;
  const uint16_t sent = rte_eth_tx_buffer(m->port, w->queue, w->tx_buffers[port_index], m);
  if (sent != 0 || a.unsent_bytes != 0) SettleTx(a, sent);
}

inline void FlushTx(WorkerState* w, uint16_t port_index) noexcept {
  const uint16_t sent =
      rte_eth_tx_buffer_flush(w->ports[port_index].port_id, w->queue, w->tx_buffers[port_index]);
  SettleTx(w->tx_accounts[port_index], sent);
}

inline bool SameSource(const StreamState& st, uint8_t family, const uint8_t* addr,
                       uint16_t port_be) noexcept {
  return st.src_family == family && st.src_port_be == port_be &&
         std::memcmp(st.src_addr, addr, family == 4 ? 4 : 16) == 0;
}

inline void CountStreamDrop(StreamState& st, DropReason r) noexcept {
  st.drops.Add(1);
  st.drops_by_reason[static_cast<size_t>(r)].Add(1);
}

inline uint32_t LookupStream(const WorkerState* w, const ParsedPacket& p) noexcept {
  return w->flow_slots[p.flow_slot].load(std::memory_order_acquire);
}

// A media packet admitted to its stream (owner, source checked), between the steps.
struct MediaPacket {
  rte_mbuf* m = nullptr;
  const StreamConfig* cfg = nullptr;
  StreamState* st = nullptr;    // the stream the packet arrived on (RTP statistics)
  StreamState* acct = nullptr;  // where it is counted (the RTCP stream for demuxed RTCP)
  ParsedPacket p;
  uint32_t id = kNoStream;
  uint32_t rx_len = 0;  // frame length as received (counted in bytes)
  bool rtcp = false;
  bool to_control = false;  // STUN on an ICE port: for the control plane
};

inline uint8_t* UdpPayload(const MediaPacket& mp) noexcept {
  return rte_pktmbuf_mtod(mp.m, uint8_t*) + mp.p.l4_offset + sizeof(rte_udp_hdr);
}

// RFC 7983 §7: a datagram whose first octet is 0..3 on a media port is STUN; RFC 5389
// §6: it carries the magic cookie at octet 4. (The control plane checks the rest.)
inline bool LooksLikeStunPacket(const uint8_t* payload, uint32_t len) noexcept {
  return len >= 20 && payload[0] < 4 && payload[4] == 0x21 && payload[5] == 0x12 &&
         payload[6] == 0xa4 && payload[7] == 0x42;
}

// Step 1: ownership, source validation and latching. Returns kCount with mp->cfg set
// when the packet goes on, kCount with mp->cfg null when it was handed to its owner or
// (mp->to_control) is STUN for the control plane, else the drop reason (the caller
// frees it).
inline DropReason AdmitMedia(WorkerState* w, rte_mbuf* m, const ParsedPacket& p, uint32_t id,
                             MediaPacket* mp) noexcept {
  mp->cfg = nullptr;
  if (id == kNoStream) return DropReason::kNoSession;
  const StreamConfig* cfg = w->streams->configs[id].load(std::memory_order_acquire);
  if (cfg == nullptr) return DropReason::kNoSession;
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  // ICE connectivity checks are answered by the control plane, whoever owns the stream;
  // they neither latch nor count as media.
  if (cfg->ice &&
      LooksLikeStunPacket(frame + p.l4_offset + sizeof(rte_udp_hdr), p.udp_payload_len)) {
    mp->to_control = true;
    return DropReason::kCount;
  }
  const auto* udp = reinterpret_cast<const rte_udp_hdr*>(frame + p.l4_offset);
  const uint8_t family = p.ip_version;
  const uint8_t* src_addr =
      family == 4 ? reinterpret_cast<const uint8_t*>(
                        &reinterpret_cast<const rte_ipv4_hdr*>(frame + p.l3_offset)->src_addr)
                  : reinterpret_cast<const rte_ipv6_hdr*>(frame + p.l3_offset)->src_addr;
  StreamState& st = w->streams->states[id];

  // A stream is bound to the first worker that sees it; others hand packets over.
  uint16_t owner = st.owner.load(std::memory_order_relaxed);
  if (owner != w->index) {
    if (owner == kNoOwner &&
        st.owner.compare_exchange_strong(owner, static_cast<uint16_t>(w->index))) {
      owner = static_cast<uint16_t>(w->index);
    } else {
      if (rte_ring_mp_enqueue(w->all_workers[owner]->handoff, m) != 0) {
        return DropReason::kHandoffRingFull;
      }
      w->counters.handoffs.Add(1);
      return DropReason::kCount;
    }
  }

  // Source validation and latching. A new config generation (re-INVITE) re-latches.
  if (st.generation != cfg->generation) {
    st.generation = cfg->generation;
    st.latched = false;
  }
  bool from_peer;
  if (st.latched) {
    from_peer = SameSource(st, family, src_addr, udp->src_port);
  } else if (cfg->latch) {
    st.latched = true;
    st.src_family = family;
    st.src_port_be = udp->src_port;
    std::memcpy(st.src_addr, src_addr, family == 4 ? 4 : 16);
    WorkerEvent ev;
    ev.type = WorkerEvent::kLatched;
    ev.family = family;
    ev.port_be = udp->src_port;
    ev.stream = id;
    ev.generation = cfg->generation;
    std::memcpy(ev.addr, src_addr, family == 4 ? 4 : 16);
    std::memcpy(ev.mac, frame + 6, 6);  // source MAC: the next hop back to this peer
    if (rte_ring_sp_enqueue_elem(w->events, &ev, sizeof(ev)) != 0) w->counters.events_lost.Add(1);
    from_peer = true;
  } else if (cfg->expected_family != 0) {
    from_peer = cfg->expected_family == family && cfg->expected_port_be == udp->src_port &&
                std::memcmp(cfg->expected_addr, src_addr, family == 4 ? 4 : 16) == 0;
  } else {
    from_peer = true;
  }
  if (!from_peer && cfg->strict_source) {
    CountStreamDrop(st, DropReason::kStrictSource);
    return DropReason::kStrictSource;
  }
  // RFC 5761 demux on rtcp-mux ports (the RTCP packet type octet is clear in SRTCP too).
  const uint8_t* payload = frame + p.l4_offset + sizeof(rte_udp_hdr);
  mp->rtcp = cfg->is_rtcp || (cfg->rtcp_mux && LooksLikeRtcp(payload, p.udp_payload_len));
  mp->m = m;
  mp->cfg = cfg;
  mp->st = &st;
  mp->acct = (mp->rtcp && cfg->rtcp_mux && cfg->rtcp_stream != kNoStream)
                 ? &w->streams->states[cfg->rtcp_stream]
                 : &st;
  mp->p = p;
  mp->id = id;
  mp->rx_len = m->pkt_len;
  return DropReason::kCount;
}

// Step 2: RTP/RTCP validation (RFC 3550) of the plain packet and RTP statistics.
inline DropReason ValidateMedia(WorkerState* w, const MediaPacket& mp, uint64_t now_tsc) noexcept {
  const uint8_t* payload = UdpPayload(mp);
  if (mp.rtcp) return ValidateRtcp(payload, mp.p.udp_payload_len);
  RtpHeaderInfo h;
  const DropReason r = ParseRtp(payload, mp.p.udp_payload_len, &h);
  if (r != DropReason::kCount) return r;
  StreamState& st = *mp.st;
  RtpStreamStats& rs = st.rtp;
  rs.Update(h, static_cast<uint64_t>(static_cast<double>(now_tsc) * w->ns_per_tsc));
  st.ssrc.Set(rs.ssrc);
  st.ssrc_changes.Set(rs.ssrc_changes);
  st.expected.Set(rs.Expected());
  st.received.Set(rs.Received());
  st.jitter_us.Set(static_cast<uint64_t>(rs.JitterMs() * 1000.0));
  return DropReason::kCount;
}

// Step 3: header rewrite, counters, buffered transmit.
inline DropReason EmitMedia(WorkerState* w, MediaPacket& mp, bool payload_changed,
                            uint64_t now_tsc) noexcept {
  PrefetchMbufTail(mp.m);
  const Egress& egress = (mp.rtcp && mp.cfg->rtcp_mux) ? mp.cfg->rtcp_egress : mp.cfg->egress;
  bool unresolved = false;
  const DropReason r = RewriteForEgress(mp.m, mp.p, egress, w->egress_ports[egress.port_index],
                                        payload_changed, &unresolved);
  if (r != DropReason::kCount) return r;
  if (unresolved) {
    // The control plane holds it until the next hop answers ARP/NDP (the first packets
    // of a call toward a new neighbor), as a kernel's neighbor queue would.
    mp.m->port = egress.port_index;
    if (rte_ring_sp_enqueue(w->unresolved, mp.m) != 0) return DropReason::kNoNeighbor;
  }
  mp.acct->packets.Add(1);
  mp.acct->bytes.Add(mp.rx_len);
  mp.acct->last_tsc.Set(now_tsc);
  if (!unresolved) Transmit(w, egress.port_index, mp.m);
  return DropReason::kCount;
}

// Requests a device session ([0] srtp_in's, [1] srtp_out's) into L2: they are large.
inline void PrefetchSession(const StreamConfig* cfg, int d) noexcept {
  srtp_internal::PrefetchLines(cfg->srtp_session[d], cfg->srtp_session_lines[d], /*l2=*/true);
}

inline bool NeedsSrtp(const StreamConfig* cfg) noexcept { return cfg->srtp; }

// The media path of a plain stream for one valid UDP packet whose flow lookup gave
// stream `id`. Returns kCount when the packet was sent, handed to its owner, queued
// in `srtp` (an SRTP stream: finished by RunSrtp) or is STUN for the control plane
// (*to_control set: the caller queues it), else the drop reason (the caller frees it).
inline DropReason ProcessMedia(WorkerState* w, rte_mbuf* m, const ParsedPacket& p, uint32_t id,
                               uint64_t now_tsc, MediaPacket* srtp, uint16_t* nb_srtp,
                               bool* to_control) noexcept {
  MediaPacket mp;
  DropReason r = AdmitMedia(w, m, p, id, &mp);
  if (mp.to_control) {
    *to_control = true;
    return DropReason::kCount;
  }
  if (r != DropReason::kCount || mp.cfg == nullptr) return r;
  if (NeedsSrtp(mp.cfg)) {
    // Its crypto state is as cold as the stream: start fetching it now, a burst before
    // RunSrtp needs it (the device sessions into L2: they are large).
    // Only the first transform's: a re-key's second session comes after the first
    // transform ran (RunSrtp), so the two never compete for the same fill buffers.
    PrefetchSession(mp.cfg, mp.cfg->srtp_in ? 0 : 1);
    if (mp.cfg->srtp_in) {
      mp.cfg->srtp_in->PrefetchContext(mp.rtcp ? SrtpOp::kUnprotectRtcp : SrtpOp::kUnprotect);
    }
    if (mp.cfg->srtp_out) {
      mp.cfg->srtp_out->PrefetchContext(mp.rtcp ? SrtpOp::kProtectRtcp : SrtpOp::kProtect);
    }
    srtp[(*nb_srtp)++] = mp;
    return DropReason::kCount;
  }
  r = ValidateMedia(w, mp, now_tsc);
  if (r == DropReason::kCount) r = EmitMedia(w, mp, false, now_tsc);
  if (r != DropReason::kCount) CountStreamDrop(*mp.acct, r);
  return r;
}

inline DropReason SrtpDropReason(SrtpStatus s) noexcept {
  switch (s) {
    case SrtpStatus::kOk:
      return DropReason::kCount;
    case SrtpStatus::kAuthFailed:
      return DropReason::kSrtpAuthFailed;
    case SrtpStatus::kReplay:
      return DropReason::kSrtpReplay;
    case SrtpStatus::kTooShort:
      return DropReason::kSrtpTooShort;
    case SrtpStatus::kNoRoom:
      return DropReason::kSrtpNoTailroom;
    case SrtpStatus::kKeyExhausted:
      return DropReason::kSrtpKeyExhausted;
  }
  return DropReason::kSrtpAuthFailed;
}

// After RunSrtp's transforms the UDP payload has mp.p.udp_payload_len octets (only that
// record is kept between transforms: the engine reads lengths from its jobs): the UDP
// length and the mbuf's lengths follow (the IP header is rebuilt by the rewrite).
inline void ApplyPayloadLen(MediaPacket& mp) noexcept {
  const uint32_t len = mp.p.udp_payload_len;
  auto* udp = rte_pktmbuf_mtod_offset(mp.m, rte_udp_hdr*, mp.p.l4_offset);
  udp->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(len + sizeof(rte_udp_hdr)));
  const uint32_t frame_len = uint32_t{mp.p.l4_offset} + sizeof(rte_udp_hdr) + len;
  mp.m->data_len = static_cast<uint16_t>(frame_len);
  mp.m->pkt_len = frame_len;
}

struct FreeList {
  rte_mbuf** pkts;
  uint16_t* n;
};

// A worker's per-burst working arrays, allocated once when it starts. As locals they
// were constructed (default member initializers) in full, kMaxBurst entries each, on
// every burst: ~35 KiB of stores per burst of 32 packets.
struct BurstScratch {
  ParsedPacket parsed[kMaxBurst];
  MediaPacket srtp[kMaxBurst];   // a received burst's SRTP packets
  MediaPacket handoff_srtp[32];  // a handoff batch's
  SrtpJob jobs[kMaxBurst];       // RunSrtp's, one pass at a time
  uint16_t job_of[kMaxBurst];
};

inline void DropMedia(WorkerState* w, MediaPacket& mp, DropReason r, BurstTally* tally,
                      FreeList out, uint64_t now_tsc) noexcept {
  CountStreamDrop(*mp.acct, r);
  ++tally->drops[static_cast<size_t>(r)];
  out.pkts[(*out.n)++] = mp.m;
  mp.m = nullptr;
  if (r >= DropReason::kSrtpAuthFailed && r <= DropReason::kSrtpNoTailroom &&
      now_tsc - mp.st->srtp_event_tsc >= w->tsc_hz) {
    // Rate-limited note for the control plane's log (it names the session).
    mp.st->srtp_event_tsc = now_tsc;
    WorkerEvent ev;
    ev.type = WorkerEvent::kSrtpError;
    ev.stream = mp.id;
    ev.generation = mp.cfg->generation;
    ev.reason = r;
    if (rte_ring_sp_enqueue_elem(w->events, &ev, sizeof(ev)) != 0) w->counters.events_lost.Add(1);
  }
}

// Runs the SRTP streams' packets of a burst through the worker's engine, a whole
// batch per step: unprotect (ingress SRTP) -> validate and count the plain packet ->
// protect (egress SRTP) -> rewrite and transmit. Order within a stream is kept.
inline void RunSrtp(WorkerState* w, BurstScratch* scratch, MediaPacket* q, uint16_t n,
                    BurstTally* tally, FreeList out, uint64_t now_tsc) noexcept {
  SrtpJob* jobs = scratch->jobs;
  uint16_t* job_of = scratch->job_of;
  for (int pass = 0; pass < 2; ++pass) {
    const bool protect = pass == 1;
    if (protect) {
      for (uint16_t i = 0; i < n; ++i) {
        if (q[i].m != nullptr && q[i].cfg->srtp_in && q[i].cfg->srtp_out)
          PrefetchSession(q[i].cfg, 1);
      }
    }
    uint16_t nj = 0;
    for (uint16_t i = 0; i < n; ++i) {
      MediaPacket& mp = q[i];
      if (mp.m == nullptr) continue;
      if (protect) {
        const DropReason r = ValidateMedia(w, mp, now_tsc);
        if (r != DropReason::kCount) {
          DropMedia(w, mp, r, tally, out, now_tsc);
          continue;
        }
      }
      SrtpContext* ctx = protect ? mp.cfg->srtp_out.get() : mp.cfg->srtp_in.get();
      if (ctx == nullptr) continue;
      SrtpJob& j = jobs[nj];
      j.ctx = ctx;
      j.mbuf = mp.m;
      j.pkt = UdpPayload(mp);
      j.len = mp.p.udp_payload_len;
      j.capacity =
          static_cast<uint32_t>(static_cast<uint8_t*>(mp.m->buf_addr) + mp.m->buf_len - j.pkt);
      j.op = protect ? (mp.rtcp ? SrtpOp::kProtectRtcp : SrtpOp::kProtect)
                     : (mp.rtcp ? SrtpOp::kUnprotectRtcp : SrtpOp::kUnprotect);
      job_of[nj++] = i;
    }
    if (nj == 0) continue;
    w->srtp->Run(jobs, nj);
    for (uint16_t k = 0; k < nj; ++k) {
      MediaPacket& mp = q[job_of[k]];
      if (jobs[k].status != SrtpStatus::kOk) {
        DropMedia(w, mp, SrtpDropReason(jobs[k].status), tally, out, now_tsc);
      } else {
        // The frame's UDP and mbuf lengths follow in the emit pass (ApplyPayloadLen), which
        // touches those lines anyway: a separate pass here met them evicted by the
        // transform's key lines (~10 ns a packet, twice for a re-key).
        mp.p.udp_payload_len = static_cast<uint16_t>(jobs[k].len);
      }
    }
  }
  for (uint16_t i = 0; i < n; ++i) {
    MediaPacket& mp = q[i];
    if (mp.m == nullptr) continue;
    ApplyPayloadLen(mp);
    const DropReason r = EmitMedia(w, mp, true, now_tsc);
    if (r != DropReason::kCount) DropMedia(w, mp, r, tally, out, now_tsc);
  }
}

inline void ProcessBurst(WorkerState* w, BurstScratch* scratch, const PortContext& port,
                         rte_mbuf** pkts, uint16_t n, BurstTally* tally,
                         uint64_t now_tsc) noexcept {
  rte_mbuf* to_free[kMaxBurst];
  rte_mbuf* to_control[kMaxBurst];
  rte_mbuf* media[kMaxBurst];
  ParsedPacket* media_parsed = scratch->parsed;
  MediaPacket* srtp = scratch->srtp;
  uint16_t nb_srtp = 0;
  uint16_t nb_free = 0;
  uint16_t nb_control = 0;
  uint16_t nb_media = 0;
  uint32_t ids[kMaxBurst];
  // The mbuf headers, then the frames ahead (kHeaderAhead, kFrameL2Ahead, kPrefetchAhead):
  // at the guessed offset from the mbuf, so the two misses overlap instead of the frame's
  // waiting for the header (reading data_off). The parser reads the first two lines (up to
  // the RTP header over IPv6); the UDP checksum check, the whole frame.
  const intptr_t guess = w->frame_offset_guess;
  const uint32_t lines = port.verify_udp_checksum ? 4 : 2;
  auto prefetch_frame = [guess, lines](const rte_mbuf* m) {
    if (guess == 0) {
      PrefetchFrame(m);
      return;
    }
    const char* frame = reinterpret_cast<const char*>(m) + guess;
    for (uint32_t l = 0; l < lines; ++l) rte_prefetch0(frame + l * kCacheLine);
  };
  auto prefetch_frame_l2 = [guess, lines](const rte_mbuf* m) {
    const char* frame = reinterpret_cast<const char*>(m) + guess;
    for (uint32_t l = 0; l < lines; ++l) rte_prefetch1(frame + l * kCacheLine);
  };
  for (uint16_t i = 0; i < n && i < kHeaderAhead; ++i) rte_prefetch0(pkts[i]);
  if (guess != 0) {
    for (uint16_t i = kPrefetchAhead; i < n && i < kFrameL2Ahead; ++i) prefetch_frame_l2(pkts[i]);
  }
  for (uint16_t i = 0; i < n && i < kPrefetchAhead; ++i) prefetch_frame(pkts[i]);
  // Pass 1: parse and validate every frame.
  for (uint16_t i = 0; i < n; ++i) {
    if (i + kHeaderAhead < n) rte_prefetch0(pkts[i + kHeaderAhead]);
    if (guess != 0 && i + kFrameL2Ahead < n) prefetch_frame_l2(pkts[i + kFrameL2Ahead]);
    if (i + kPrefetchAhead < n) prefetch_frame(pkts[i + kPrefetchAhead]);
    rte_mbuf* m = pkts[i];
    tally->bytes += m->pkt_len;
    ParsedPacket& parsed = media_parsed[nb_media];
    parsed = ParsedPacket{};
    switch (ClassifyPacket(m, port, &parsed)) {
      case Verdict::kUdp: {
        // The flow lookup (one load from the small direct table) right away, and the
        // stream's state and config pointer requested while the next frames are parsed.
        const uint32_t id = LookupStream(w, parsed);
        ids[nb_media] = id;
        if (id != kNoStream) {
          rte_prefetch0(&w->streams->configs[id]);
          const auto* st = reinterpret_cast<const char*>(&w->streams->states[id]);
          rte_prefetch0(st);
          rte_prefetch0(st + kCacheLine);
          rte_prefetch0(st + 2 * kCacheLine);
        }
        media[nb_media++] = m;
        break;
      }
      case Verdict::kException:
        to_control[nb_control++] = m;
        break;
      case Verdict::kDrop:
        ++tally->drops[static_cast<size_t>(parsed.drop)];
        PrefetchMbufTail(m);
        to_free[nb_free++] = m;
        break;
    }
  }
  w->frame_offset_guess =
      rte_pktmbuf_mtod(pkts[n - 1], const char*) - reinterpret_cast<const char*>(pkts[n - 1]);
  // Pass 2: streams are cold (each gets one packet per 20 ms): pass 1 requested their
  // state and config pointers, now the configs they point to.
  tally->udp += nb_media;
  for (uint16_t i = 0; i < nb_media; ++i) {
    if (ids[i] == kNoStream) continue;
    const auto* cfg =
        reinterpret_cast<const char*>(w->streams->configs[ids[i]].load(std::memory_order_relaxed));
    if (cfg == nullptr) continue;
    // Its first line (every packet) and second (SRTP); the third is for rare streams.
    rte_prefetch0(cfg);
    rte_prefetch0(cfg + kCacheLine);
  }
  for (uint16_t i = 0; i < nb_media; ++i) {
    rte_mbuf* m = media[i];
    bool stun = false;
    const DropReason r =
        ProcessMedia(w, m, media_parsed[i], ids[i], now_tsc, srtp, &nb_srtp, &stun);
    if (stun) {
      to_control[nb_control++] = m;
    } else if (r != DropReason::kCount) {
      ++tally->drops[static_cast<size_t>(r)];
      PrefetchMbufTail(m);
      to_free[nb_free++] = m;
    }
  }
  if (nb_srtp > 0) {
    RunSrtp(w, scratch, srtp, nb_srtp, tally, FreeList{to_free, &nb_free}, now_tsc);
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

// Packets other workers received for streams this worker owns.
inline unsigned ProcessHandoffs(WorkerState* w, BurstScratch* scratch, BurstTally* tally,
                                uint64_t now_tsc) noexcept {
  void* pkts[32];
  const unsigned n = rte_ring_sc_dequeue_burst(w->handoff, pkts, 32, nullptr);
  if (n == 0) return 0;
  MediaPacket* srtp = scratch->handoff_srtp;
  uint16_t nb_srtp = 0;
  rte_mbuf* to_free[32];
  uint16_t nb_free = 0;
  for (unsigned i = 0; i < n; ++i) {
    auto* m = static_cast<rte_mbuf*>(pkts[i]);
    const PortContext* port = nullptr;
    for (uint16_t p = 0; p < w->nb_ports; ++p) {
      if (w->ports[p].port_id == m->port) port = &w->ports[p];
    }
    ParsedPacket parsed;
    DropReason r = DropReason::kNoSession;
    bool stun = false;
    if (port != nullptr && ClassifyPacket(m, *port, &parsed) == Verdict::kUdp) {
      r = ProcessMedia(w, m, parsed, LookupStream(w, parsed), now_tsc, srtp, &nb_srtp, &stun);
    }
    if (stun) {
      // Handed over before its stream turned ICE on: the exception path takes it here.
      if (rte_ring_sp_enqueue(w->exceptions, m) == 0) {
        w->counters.exceptions.Add(1);
      } else {
        ++tally->drops[static_cast<size_t>(DropReason::kExceptionRingFull)];
        to_free[nb_free++] = m;
      }
    } else if (r != DropReason::kCount) {
      ++tally->drops[static_cast<size_t>(r)];
      PrefetchMbufTail(m);
      to_free[nb_free++] = m;
    }
  }
  if (nb_srtp > 0) {
    RunSrtp(w, scratch, srtp, nb_srtp, tally, FreeList{to_free, &nb_free}, now_tsc);
  }
  if (nb_free > 0) rte_pktmbuf_free_bulk(to_free, nb_free);
  return n;
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
    Transmit(w, p, m);
  }
}

}  // namespace

int WorkerMain(void* arg) {
  auto* w = static_cast<WorkerState*>(arg);
  rte_mbuf* pkts[kMaxBurst];
  // Once, before the loop (the loop itself never allocates). Made here rather than by
  // Init: the same arrays in DPDK memory or the control thread's heap measured 10-15 %
  // slower (alternating runs of karl-bench, 6.2/6.5 against 6.9/7.3 Mpps), for reasons
  // not found.
  const auto scratch = std::make_unique<BurstScratch>();
  uint64_t last_drain = rte_rdtsc();
  w->heartbeat.tsc.store(last_drain, std::memory_order_relaxed);
  rte_rcu_qsbr_thread_register(w->rcu, w->index);
  rte_rcu_qsbr_thread_online(w->rcu, w->index);
  while (!w->stop->load(std::memory_order_relaxed)) {
    uint64_t rx = 0;
    BurstTally tally;
    const uint64_t loop_tsc = rte_rdtsc();
    const unsigned handed = ProcessHandoffs(w, scratch.get(), &tally, loop_tsc);
    for (uint16_t p = 0; p < w->nb_ports; ++p) {
      const uint16_t n = rte_eth_rx_burst(w->ports[p].port_id, w->queue, pkts, w->burst);
      if (n == 0) continue;
      rx += n;
      ProcessBurst(w, scratch.get(), w->ports[p], pkts, n, &tally, loop_tsc);
    }
    // Nothing of the flow table or stream configs is held across iterations.
    rte_rcu_qsbr_quiescent(w->rcu, w->index);
    w->counters.loops.Add(1);
    if (rx > 0 || handed > 0) {
      w->counters.busy_loops.Add(1);
      w->counters.rx_packets.Add(rx);
      w->counters.rx_bytes.Add(tally.bytes);
      if (tally.udp) w->counters.udp_packets.Add(tally.udp);
      for (size_t r = 0; r < kDropReasonCount; ++r) {
        if (tally.drops[r]) w->counters.drops[r].Add(tally.drops[r]);
      }
    }
    const uint64_t now = rte_rdtsc();
    if (rx > 0 || handed > 0) w->counters.busy_tsc.Add(now - loop_tsc);
    if (now - last_drain >= w->drain_tsc) {
      TransmitForControlPlane(w);
      for (uint16_t p = 0; p < w->nb_ports; ++p) {
        FlushTx(w, p);
      }
      w->heartbeat.tsc.store(now, std::memory_order_relaxed);
      last_drain = now;
    }
  }
  for (uint16_t p = 0; p < w->nb_ports; ++p) {
    FlushTx(w, p);
  }
  rte_rcu_qsbr_thread_offline(w->rcu, w->index);
  rte_rcu_qsbr_thread_unregister(w->rcu, w->index);
  return 0;
}

namespace {

// TX buffer error callback: the packets tx did not take are freed and counted.
void CountUnsent(rte_mbuf** unsent, uint16_t count, void* userdata) {
  auto* a = static_cast<WorkerState::TxAccount*>(userdata);
  a->counters->drops[static_cast<size_t>(DropReason::kTxFull)].Add(count);
  for (uint16_t i = 0; i < count; ++i) a->unsent_bytes += unsent[i]->pkt_len;
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
  port.ctx.flow_range = uint32_t{settings_.rtp_port_max} - settings_.rtp_port_min + 1u;
  port.ctx.flow_base = flow_addresses_;
  flow_addresses_ += uint32_t{port.ctx.v4_count} + port.ctx.v6_count;
  port.ctx.verify_udp_checksum = settings_.verify_udp_checksum;
  port.ctx.rx_ip_cksum_offload = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0;
  port.ctx.rx_l4_cksum_offload = (conf.rxmode.offloads & RTE_ETH_RX_OFFLOAD_UDP_CKSUM) != 0;
  // TX: the device fills the IPv4 header checksum and, where a full one is due, the UDP
  // checksum, when it can (D24). Both or neither for UDP: an IPv4 UDP offload also needs
  // RTE_MBUF_F_TX_IPV4, which some devices only honour with the IPv4 checksum offload.
  const uint64_t tx_cksum = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
  if (settings_.tx_checksum_offload) conf.txmode.offloads = info.tx_offload_capa & tx_cksum;
  port.tx_ip_cksum_offload = (conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) != 0;
  port.tx_udp_cksum_offload = (conf.txmode.offloads & RTE_ETH_TX_OFFLOAD_UDP_CKSUM) != 0;
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
  flow_addresses_ = 0;
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
  if (absl::Status st = InitStreams(nb_workers); !st.ok()) {
    Close();
    return st;
  }
  if (absl::Status st = InitSrtpCrypto(settings.srtp_engine, nb_workers, settings.ipsec_mb_path);
      !st.ok()) {
    Close();
    const std::string_view name = SrtpEngineName(settings.srtp_engine);
    return absl::Status(
        st.code(), absl::StrCat("srtp.engine ", absl::string_view(name.data(), name.size()), ": ",
                                st.message()));
  }
  srtp_crypto_ = true;
  tsc_hz_ = rte_get_tsc_hz();
  const uint64_t drain_tsc = tsc_hz_ / 1000000 * settings.tx_drain_us;
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
    const int sock = static_cast<int>(rte_lcore_to_socket_id(lcore));
    w->exceptions =
        rte_ring_create(absl::StrCat("karl_exc_", index).c_str(), settings.exception_ring_size,
                        sock, RING_F_SP_ENQ | RING_F_SC_DEQ);
    w->to_transmit = rte_ring_create(absl::StrCat("karl_ctx_", index).c_str(), 1024, sock,
                                     RING_F_SP_ENQ | RING_F_SC_DEQ);
    w->handoff = rte_ring_create(absl::StrCat("karl_hof_", index).c_str(),
                                 settings.handoff_ring_size, sock, RING_F_SC_DEQ);
    w->events = rte_ring_create_elem(absl::StrCat("karl_evt_", index).c_str(), sizeof(WorkerEvent),
                                     4096, sock, RING_F_SP_ENQ | RING_F_SC_DEQ);
    w->unresolved = rte_ring_create(absl::StrCat("karl_unr_", index).c_str(), 512, sock,
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
    w->flow_slots = flow_slots_;
    w->rcu = rcu_;
    w->streams = &streams_;
    w->ns_per_tsc = 1e9 / static_cast<double>(tsc_hz_);
    w->tsc_hz = tsc_hz_;
    srtp_engines_.push_back(CreateSrtpEngine(settings.srtp_engine, index));
    w->srtp = srtp_engines_.back().get();
    if (w->srtp == nullptr) {
      workers_.push_back(std::move(w));
      Close();
      return absl::InternalError(absl::StrCat("cannot create the SRTP engine of worker ", index));
    }
    if (w->exceptions == nullptr || w->to_transmit == nullptr || w->handoff == nullptr ||
        w->events == nullptr || w->unresolved == nullptr) {
      workers_.push_back(std::move(w));
      Close();
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot create the rings of worker ", index, ": ", rte_strerror(rte_errno)));
    }
    for (size_t p = 0; p < ports_.size(); ++p) {
      w->ports[p] = ports_[p].ctx;
      w->egress_ports[p].port_id = ports_[p].port_id;
      w->egress_ports[p].vlan = ports_[p].settings.vlan;
      std::memcpy(w->egress_ports[p].mac, ports_[p].mac.bytes().data(), 6);
      w->egress_ports[p].tx_ip_cksum_offload = ports_[p].tx_ip_cksum_offload;
      w->egress_ports[p].tx_udp_cksum_offload = ports_[p].tx_udp_cksum_offload;
      w->tx_buffers[p] = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket(
          "karl_txbuf", RTE_ETH_TX_BUFFER_SIZE(kMaxBurst), 0, rte_lcore_to_socket_id(lcore)));
      if (w->tx_buffers[p] == nullptr) {
        workers_.push_back(std::move(w));
        Close();
        return absl::ResourceExhaustedError("cannot allocate TX buffers");
      }
      rte_eth_tx_buffer_init(w->tx_buffers[p], w->burst);
      w->tx_accounts[p].counters = &w->counters;
      rte_eth_tx_buffer_set_err_callback(w->tx_buffers[p], CountUnsent, &w->tx_accounts[p]);
    }
    workers_.push_back(std::move(w));
    ++index;
  }
  for (auto& w : workers_) worker_ptrs_.push_back(w.get());
  for (auto& w : workers_) w->all_workers = worker_ptrs_.data();
  return absl::OkStatus();
}

absl::Status Dataplane::InitStreams(unsigned nb_workers) {
  uint64_t n = settings_.max_streams;
  if (n == 0) {
    size_t addresses = 0;
    for (const PortSettings& p : settings_.ports) addresses += p.addresses.size();
    n = uint64_t{settings_.rtp_port_max - settings_.rtp_port_min + 1u} * addresses;
  }
  n = std::clamp<uint64_t>(n, 64, 4u << 20);
  streams_.size = static_cast<uint32_t>(n);
  const int socket = static_cast<int>(rte_socket_id());
  streams_.configs = static_cast<std::atomic<StreamConfig*>*>(
      rte_zmalloc_socket("karl_stream_cfg", sizeof(std::atomic<StreamConfig*>) * n, 0, socket));
  streams_.states = static_cast<StreamState*>(
      rte_zmalloc_socket("karl_stream_state", sizeof(StreamState) * n, kCacheLine, socket));
  if (streams_.configs == nullptr || streams_.states == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", n, " streams (", n * sizeof(StreamState) >> 20,
                     " MiB); give EAL more memory with -m or set dataplane.max_streams"));
  }
  for (uint64_t i = 0; i < n; ++i) {
    new (&streams_.configs[i]) std::atomic<StreamConfig*>(nullptr);
    new (&streams_.states[i]) StreamState();
  }
  free_streams_.clear();
  for (uint64_t i = n; i > 0; --i) free_streams_.push_back(static_cast<uint32_t>(i - 1));

  const size_t rcu_size = rte_rcu_qsbr_get_memsize(nb_workers);
  rcu_ = static_cast<rte_rcu_qsbr*>(
      rte_zmalloc_socket("karl_rcu", rcu_size, RTE_CACHE_LINE_SIZE, socket));
  if (rcu_ == nullptr || rte_rcu_qsbr_init(rcu_, nb_workers) != 0) {
    return absl::ResourceExhaustedError("cannot set up RCU QSBR");
  }
  // The flow table: one slot per (local address, RTP-range port), indexed directly
  // (D22). 4 bytes a slot: 10,000 ports on 4 addresses take 160 KiB.
  flow_slot_count_ =
      uint64_t{flow_addresses_} * (uint32_t{settings_.rtp_port_max} - settings_.rtp_port_min + 1u);
  flow_slots_ = static_cast<std::atomic<uint32_t>*>(rte_zmalloc_socket(
      "karl_flows", sizeof(std::atomic<uint32_t>) * std::max<uint64_t>(flow_slot_count_, 1),
      RTE_CACHE_LINE_SIZE, socket));
  if (flow_slots_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate the flow table (", flow_slot_count_, " slots)"));
  }
  for (uint64_t i = 0; i < flow_slot_count_; ++i) {
    new (&flow_slots_[i]) std::atomic<uint32_t>(kNoStream);
  }
  return absl::OkStatus();
}

void Dataplane::FreeStreams() {
  for (Retired& r : retired_) delete r.config;
  retired_.clear();
  if (streams_.configs != nullptr) {
    for (uint32_t i = 0; i < streams_.size; ++i) {
      delete streams_.configs[i].load(std::memory_order_relaxed);
    }
  }
  rte_free(flow_slots_);
  flow_slots_ = nullptr;
  flow_slot_count_ = 0;
  rte_free(rcu_);
  rcu_ = nullptr;
  rte_free(streams_.configs);
  rte_free(streams_.states);
  streams_ = StreamTable{};
  free_streams_.clear();
  worker_ptrs_.clear();
}

uint32_t Dataplane::AllocateStream() {
  if (free_streams_.empty()) return kNoStream;
  const uint32_t id = free_streams_.back();
  free_streams_.pop_back();
  return id;
}

void Dataplane::PublishStream(const StreamConfig& cfg) {
  auto* fresh = new StreamConfig(cfg);
  fresh->srtp = cfg.srtp_in != nullptr || cfg.srtp_out != nullptr;
  const SrtpContext* ctx[2] = {cfg.srtp_in.get(), cfg.srtp_out.get()};
  const SrtpOp ops[2][2] = {{SrtpOp::kUnprotect, SrtpOp::kUnprotectRtcp},
                            {SrtpOp::kProtect, SrtpOp::kProtectRtcp}};
  for (int d = 0; d < 2; ++d) {
    fresh->srtp_session[d] = ctx[d] ? ctx[d]->DeviceSession(ops[d][cfg.is_rtcp ? 1 : 0]) : nullptr;
    fresh->srtp_session_lines[d] = fresh->srtp_session[d] ? ctx[d]->DeviceSessionLines() : 0;
  }
  StreamConfig* old = streams_.configs[cfg.id].exchange(fresh, std::memory_order_acq_rel);
  if (old != nullptr) retired_.push_back(Retired{StartGracePeriod(), old, kNoStream});
}

void Dataplane::RetireStream(uint32_t id) {
  StreamConfig* old = streams_.configs[id].exchange(nullptr, std::memory_order_acq_rel);
  retired_.push_back(Retired{StartGracePeriod(), old, id});
}

std::vector<uint64_t> Dataplane::FlowSlots(const FlowKey& key) const {
  std::vector<uint64_t> slots;
  const uint16_t port = rte_be_to_cpu_16(key.port_be);
  if (port < settings_.rtp_port_min || port > settings_.rtp_port_max) return slots;
  const uint64_t offset = port - settings_.rtp_port_min;
  for (const PortRuntime& p : ports_) {
    const PortContext& c = p.ctx;
    int index = -1;
    if (key.family == 4) {
      rte_be32_t a;
      std::memcpy(&a, key.addr, 4);
      index = c.V4Index(a);
    } else if (key.family == 6) {
      index = c.V6Index(key.addr);
      if (index >= 0) index += c.v4_count;
    }
    if (index >= 0) slots.push_back((uint64_t{c.flow_base} + index) * c.flow_range + offset);
  }
  return slots;
}

absl::Status Dataplane::AddFlow(const FlowKey& key, uint32_t stream) {
  const std::vector<uint64_t> slots = FlowSlots(key);
  if (slots.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("flow table: port ", rte_be_to_cpu_16(key.port_be),
                     " on that address is not a local address inside the RTP port range"));
  }
  // Workers read the slot with acquire: the stream's config is published before this.
  for (uint64_t slot : slots) flow_slots_[slot].store(stream, std::memory_order_release);
  return absl::OkStatus();
}

void Dataplane::RemoveFlow(const FlowKey& key) {
  for (uint64_t slot : FlowSlots(key))
    flow_slots_[slot].store(kNoStream, std::memory_order_release);
}

uint64_t Dataplane::StartGracePeriod() { return workers_.empty() ? 0 : rte_rcu_qsbr_start(rcu_); }

bool Dataplane::GracePeriodDone(uint64_t token) {
  return workers_.empty() || rte_rcu_qsbr_check(rcu_, token, false) == 1;
}

void Dataplane::Maintain(std::vector<WorkerEvent>* events) {
  // Tokens grow in retire order: stop at the first grace period still running.
  size_t done = 0;
  for (; done < retired_.size(); ++done) {
    Retired& r = retired_[done];
    if (!GracePeriodDone(r.token)) break;
    delete r.config;
    if (r.stream != kNoStream) {
      // No worker can still hold the stream: safe to reset its state and reuse it.
      StreamState& st = streams_.states[r.stream];
      st.~StreamState();
      new (&st) StreamState();
      free_streams_.push_back(r.stream);
    }
  }
  retired_.erase(retired_.begin(), retired_.begin() + static_cast<ptrdiff_t>(done));
  if (events == nullptr) return;
  WorkerEvent ev[32];
  for (auto& w : workers_) {
    unsigned n;
    while ((n = rte_ring_sc_dequeue_burst_elem(w->events, ev, sizeof(WorkerEvent), 32, nullptr)) >
           0) {
      events->insert(events->end(), ev, ev + n);
    }
  }
}

rte_mbuf* Dataplane::AllocMbuf() { return rte_pktmbuf_alloc(pool_); }

void Dataplane::SendOnPort(size_t port_index, rte_mbuf* m) {
  m->port = ports_[port_index].port_id;
  SendThroughWorker(*workers_.front(), m);
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
    for (rte_ring* r : {w->exceptions, w->to_transmit, w->handoff, w->unresolved}) {
      if (r == nullptr) continue;
      void* m;
      while (rte_ring_sc_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      rte_ring_free(r);
    }
    for (auto* b : w->tx_buffers) rte_free(b);
    rte_ring_free(w->events);
  }
  workers_.clear();
  FreeStreams();  // contexts go with their configs, before the engines
  srtp_engines_.clear();
  if (srtp_crypto_) {
    CloseSrtpCrypto();
    srtp_crypto_ = false;
  }
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

void Dataplane::TakeUnresolved(std::vector<UnresolvedPacket>* out, unsigned budget) {
  void* burst[32];
  unsigned taken = 0;
  for (auto& w : workers_) {
    while (taken < budget) {
      const unsigned n =
          rte_ring_sc_dequeue_burst(w->unresolved, burst, std::min(32u, budget - taken), nullptr);
      if (n == 0) break;
      for (unsigned i = 0; i < n; ++i) {
        auto* m = static_cast<rte_mbuf*>(burst[i]);
        out->push_back(UnresolvedPacket{m, m->port});
      }
      taken += n;
    }
  }
}

void Dataplane::SendThroughWorker(WorkerState& w, rte_mbuf* m) {
  if (rte_ring_sp_enqueue(w.to_transmit, m) != 0) {
    exception_counters_.tx_failed.Add(1);
    rte_pktmbuf_free(m);
  }
}

}  // namespace karl::dp
