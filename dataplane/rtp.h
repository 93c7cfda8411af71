// RTP/RTCP validation, rtcp-mux demultiplexing and per-stream RTP receive statistics for
// worker lcores. Header-only so it inlines into the poll loop: no allocation, exceptions,
// locks or system calls; every function is noexcept.
//
// Implements RFC 3550 §5.1 (header), §6.1 and A.2 (RTCP compound checks), A.1 (sequence
// number validity), A.3 (expected/lost), A.8 (interarrival jitter), RFC 5761 §4 (RTP/RTCP
// demultiplexing on one port) and the RFC 3551 §6 static payload-type clock rates.
//
// Thread: the free functions are pure and may run on any thread. An RtpStreamStats is
// owned by the one worker that owns its stream (see ../shared/DESIGN.md).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "common/drop_reasons.h"

namespace karl::dp {

// RFC 3550 A.1 constants.
inline constexpr uint32_t kRtpSeqMod = 1u << 16;
inline constexpr uint16_t kRtpMaxDropout = 3000;
inline constexpr uint16_t kRtpMaxMisorder = 100;
inline constexpr uint16_t kRtpMinSequential = 2;

inline constexpr uint32_t kRtpFixedHeaderLen = 12;  // RFC 3550 §5.1
inline constexpr uint32_t kRtcpMinLen = 8;          // common header + sender SSRC
inline constexpr uint8_t kRtcpSr = 200;             // RFC 3550 §6.4.1
inline constexpr uint8_t kRtcpRr = 201;             // RFC 3550 §6.4.2
inline constexpr uint32_t kDefaultRtpClockRate = 8000;

// What ParseRtp learned about a valid RTP packet. Lengths are in octets; header_len +
// payload_len + padding_len equals the packet length.
struct RtpHeaderInfo {
  uint8_t payload_type;
  bool marker;
  uint16_t seq;
  uint32_t timestamp;
  uint32_t ssrc;
  uint16_t header_len;   // fixed header + CSRC list + header extension
  uint16_t payload_len;  // without padding
  uint8_t padding_len;   // 0 when P is clear, else the last octet (counts itself)
};

namespace rtp_internal {

inline uint16_t LoadBe16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

inline uint32_t LoadBe32(const uint8_t* p) noexcept {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// RFC 3551 §6 (Tables 4 and 5): static payload types and their RTP clock rates. PT 9 (G722)
// is registered at 8000 although it samples at 16 kHz (RFC 3551 §4.5.2). Reserved,
// unassigned and dynamic (96..127) entries get kDefaultRtpClockRate; the control plane
// sets RtpStreamStats::clock_rate from the SDP rtpmap for dynamic types.
constexpr std::array<uint32_t, 128> MakeClockRateTable() {
  std::array<uint32_t, 128> t{};
  // Includes PCMU 0, GSM 3, G723 4, DVI4 5, LPC 7, PCMA 8, G722 9, QCELP 12, CN 13,
  // G728 15, G729 18.
  for (auto& r : t) r = kDefaultRtpClockRate;
  t[6] = 16000;           // DVI4 16 kHz
  t[10] = t[11] = 44100;  // L16 stereo, mono
  t[14] = 90000;          // MPA
  t[16] = 11025;          // DVI4 11.025 kHz
  t[17] = 22050;          // DVI4 22.05 kHz
  // Video: CelB 25, JPEG 26, nv 28, H261 31, MPV 32, MP2T 33, H263 34.
  for (int pt : {25, 26, 28, 31, 32, 33, 34}) t[pt] = 90000;
  return t;
}

inline constexpr std::array<uint32_t, 128> kClockRateTable = MakeClockRateTable();

}  // namespace rtp_internal

// RTP clock rate of a payload type per the RFC 3551 static table; 8000 for dynamic and
// unknown types.
constexpr uint32_t ClockRateForPayloadType(uint8_t pt) noexcept {
  return pt < 128 ? rtp_internal::kClockRateTable[pt] : kDefaultRtpClockRate;
}

// Validates the RTP header of a UDP payload `p` of `len` octets (RFC 3550 §5.1 and the
// A.1 header checks). Returns DropReason::kCount and fills *out when valid; otherwise the
// reason, with *out untouched. Checks, in order:
//   len < 12                                               -> kRtpTruncated
//   V != 2                                                 -> kRtpBadVersion
//   CSRC list, extension header or extension words past len -> kRtpTruncated
//   P set and (pad count 0 or pad count > len - header_len)  -> kRtpBadPadding
// A.1 asks for a pad count "less than the total packet length minus the header size"; we
// allow equality, a payload of zero octets, because padding-only packets are sent for
// bandwidth probing. The PT is not checked here (the caller demultiplexes RTCP first with
// LooksLikeRtcp when rtcp-mux is on, RFC 5761 §4). len above 65535 cannot come from one
// mbuf and is rejected as kRtpTruncated so the 16-bit lengths in *out never wrap.
inline DropReason ParseRtp(const uint8_t* p, uint32_t len, RtpHeaderInfo* out) noexcept {
  if (len < kRtpFixedHeaderLen || len > UINT16_MAX) return DropReason::kRtpTruncated;
  const uint8_t b0 = p[0];
  if ((b0 >> 6) != 2) return DropReason::kRtpBadVersion;
  // §5.1: CC (4 bits) counts 32-bit CSRC identifiers after the fixed header.
  uint32_t header_len = kRtpFixedHeaderLen + 4u * (b0 & 0x0f);
  if (header_len > len) return DropReason::kRtpTruncated;
  if (b0 & 0x10) {
    // §5.3.1: a 4-octet extension header (profile-defined 16 bits, length in 32-bit words
    // not counting itself) followed by that many words.
    if (len - header_len < 4) return DropReason::kRtpTruncated;
    header_len += 4 + 4u * rtp_internal::LoadBe16(p + header_len + 2);
    if (header_len > len) return DropReason::kRtpTruncated;
  }
  uint32_t pad = 0;
  if (b0 & 0x20) {
    // §5.1: the last octet counts the padding octets, itself included.
    pad = p[len - 1];
    if (pad == 0 || pad > len - header_len) return DropReason::kRtpBadPadding;
  }
  out->payload_type = p[1] & 0x7f;
  out->marker = (p[1] & 0x80) != 0;
  out->seq = rtp_internal::LoadBe16(p + 2);
  out->timestamp = rtp_internal::LoadBe32(p + 4);
  out->ssrc = rtp_internal::LoadBe32(p + 8);
  out->header_len = static_cast<uint16_t>(header_len);
  out->payload_len = static_cast<uint16_t>(len - header_len - pad);
  out->padding_len = static_cast<uint8_t>(pad);
  return DropReason::kCount;
}

// RFC 5761 §4: on a port carrying both RTP and RTCP, a packet whose second octet (marker
// bit and PT together) is 192..223 is RTCP; RTP payload types 64..95 with the marker set
// therefore cannot be used on such a port. Packets shorter than 2 octets are not RTCP.
inline bool LooksLikeRtcp(const uint8_t* p, uint32_t len) noexcept {
  return len >= 2 && p[1] >= 192 && p[1] <= 223;
}

// Validates a compound RTCP packet (RFC 3550 §6.1 and A.2). Call it on plaintext RTCP:
// on SRTCP, after unprotect (only the first 8 octets of SRTCP are in the clear).
// Returns kCount when valid, kRtpBadVersion when a packet reached by walking the length
// fields has V != 2, otherwise kRtcpMalformed when:
//   - len < 8 or len is not a multiple of 4;
//   - the first packet is not SR (200) or RR (201) (A.2; reduced-size RTCP, RFC 5506, is
//     therefore not accepted);
//   - a packet's PT is outside 192..223. Decision: RFC 5761 §4 keeps 192..223 for RTCP so
//     rtcp-mux can tell it from RTP, and the RTCP types in use (FIR 192, NACK 193, IJ 195,
//     SR..XR 200..207 and the later IANA assignments from 208 up) all lie there; a type
//     outside it means the length fields led us into garbage (or RTP);
//   - the P bit is set on any packet but the last (§6.4.1), or the last packet's pad count
//     is 0 or larger than its body;
//   - an SR or RR is too short for its sender info and RC report blocks (§6.4.1, §6.4.2);
//   - the length fields, (length + 1) * 4 octets each, do not add up to exactly len.
// A.2 also rejects P on the first packet even when it is the only one; we follow §6.1 and
// §6.4.1 (padding belongs to the last packet), so a lone padded SR/RR is accepted.
inline DropReason ValidateRtcp(const uint8_t* p, uint32_t len) noexcept {
  if (len < kRtcpMinLen || (len & 3) != 0) return DropReason::kRtcpMalformed;
  uint32_t off = 0;
  do {
    // off and len are multiples of 4 and off < len: the 4-octet common header is there.
    const uint8_t* h = p + off;
    if ((h[0] >> 6) != 2) return DropReason::kRtpBadVersion;
    const uint8_t pt = h[1];
    if (pt < 192 || pt > 223) return DropReason::kRtcpMalformed;
    if (off == 0 && pt != kRtcpSr && pt != kRtcpRr) return DropReason::kRtcpMalformed;
    const uint32_t pkt_len = (uint32_t{rtp_internal::LoadBe16(h + 2)} + 1) * 4;
    if (pkt_len > len - off) return DropReason::kRtcpMalformed;
    const bool last = pkt_len == len - off;
    uint32_t pad = 0;
    if (h[0] & 0x20) {
      if (!last) return DropReason::kRtcpMalformed;
      pad = p[len - 1];
      if (pad == 0 || pad > pkt_len - 4) return DropReason::kRtcpMalformed;
    }
    if (pt == kRtcpSr || pt == kRtcpRr) {
      // Header 4 + SSRC 4 (+ sender info 20 for SR) + RC report blocks of 24 octets.
      const uint32_t need = 8 + (pt == kRtcpSr ? 20 : 0) + 24u * (h[0] & 0x1f);
      if (pkt_len - pad < need) return DropReason::kRtcpMalformed;
    }
    off += pkt_len;
  } while (off < len);
  return DropReason::kCount;
}

// SSRC of the sender of a compound RTCP packet (the SR/RR that starts it). Only call after
// ValidateRtcp returned kCount.
inline uint32_t RtcpSenderSsrc(const uint8_t* p) noexcept { return rtp_internal::LoadBe32(p + 4); }

// Arrival time in RTP timestamp units, modulo 2^32, for RFC 3550 A.8: floor(ns * rate /
// 1e9) mod 2^32, exact for every 64-bit ns and 32-bit rate. Splitting ns into seconds and
// the rest keeps every product in 64 bits (rest * rate < 2^62; seconds * rate may wrap, but
// only its low 32 bits are kept) and the divisions are by a constant.
inline uint32_t NsToRtpTimestampUnits(uint64_t ns, uint32_t rate) noexcept {
  constexpr uint64_t kNsPerSec = 1'000'000'000;
  const uint64_t sec = ns / kNsPerSec;
  const uint64_t rest = ns % kNsPerSec;
  return static_cast<uint32_t>(sec * rate + rest * rate / kNsPerSec);
}

// Receive statistics of one RTP stream (one direction of a leg). Owner: the worker that
// owns the stream; only it calls Update. A trivial type: all-zero bytes is the initial
// state, so value-initialise it (`RtpStreamStats s{};`) or zero its memory (rte_zmalloc,
// memset); a default-initialised one holds garbage. The control plane may set clock_rate
// before the first packet (from the SDP rtpmap); 0 means "by the packet's PT from the
// RFC 3551 table".
struct RtpStreamStats {
  // Configuration (control plane, before the stream is installed).
  uint32_t clock_rate;

  // Source identity. A different SSRC is a new source (RFC 3550 §8.2 / A.1): counted, and
  // the sequence and jitter state start again.
  uint32_t ssrc;
  bool have_ssrc;
  uint64_t ssrc_changes;

  // RFC 3550 A.1 state. base_seq and bad_seq are 32 bits wide as in A.1 so that bad_seq
  // can hold RTP_SEQ_MOD + 1, which no 16-bit sequence number matches.
  uint16_t max_seq;    // highest sequence number seen
  uint16_t probation;  // sequential packets still needed before the source is valid
  uint32_t base_seq;   // first sequence number counted in `received`
  uint32_t bad_seq;    // last "very large jump" sequence number + 1
  uint64_t cycles;     // sequence number wraps, times RTP_SEQ_MOD
  uint64_t received;   // packets A.1 counted since the last (re)start

  // RFC 3550 A.8 state, in RTP timestamp units of `last_rate`.
  uint32_t transit;    // arrival - timestamp of the previous counted packet
  uint32_t last_rate;  // clock rate of the previous counted packet; 0 = no transit yet
  double jitter;       // J, kept as in the A.8 floating-point form

  // Operator counters (never reset except by the owner replacing the whole struct).
  uint64_t packets;            // every packet given to Update
  uint64_t not_validated;      // A.1 did not count it: probation or a large jump
  uint64_t seq_restarts;       // A.1 re-synchronised after two sequential jump packets
  uint64_t late_or_duplicate;  // sequence number not ahead of max_seq (still counted)

  // Accounts one valid RTP packet (after ParseRtp) that arrived at `arrival_ns` on any
  // monotonic nanosecond clock. A.1 counts it in `received` unless the source is still in
  // probation or the packet is the first of a large jump; as in A.1 such packets are left
  // out of received/expected (so Lost() stays meaningful) and only `packets` and
  // `not_validated` move. The caller still forwards them: validity here is statistics,
  // not a drop decision.
  void Update(const RtpHeaderInfo& h, uint64_t arrival_ns) noexcept {
    ++packets;
    if (!have_ssrc || h.ssrc != ssrc) {
      if (have_ssrc) ++ssrc_changes;
      have_ssrc = true;
      ssrc = h.ssrc;
      // A.1: a new source starts in probation.
      InitSeq(h.seq);
      max_seq = static_cast<uint16_t>(h.seq - 1);
      probation = kRtpMinSequential;
      jitter = 0;
    }
    if (!UpdateSeq(h.seq)) {
      ++not_validated;
      return;
    }
    UpdateJitter(h, arrival_ns);
  }

  // A.1: the extended highest sequence number received (cycles + max_seq), as carried in
  // an RTCP report block.
  uint32_t ExtendedMaxSeq() const noexcept { return static_cast<uint32_t>(cycles + max_seq); }

  // A.3: packets expected since base_seq. 0 until the source is valid.
  uint64_t Expected() const noexcept {
    if (!have_ssrc || probation != 0) return 0;
    return cycles + max_seq - base_seq + 1;
  }

  // A.1: packets counted (late and duplicate packets included).
  uint64_t Received() const noexcept { return received; }

  // A.3: expected - received. Negative when duplicates arrived; an RTCP report block
  // clamps it to 24 bits signed, this does not.
  int64_t Lost() const noexcept {
    return static_cast<int64_t>(Expected()) - static_cast<int64_t>(received);
  }

  // A.8 interarrival jitter in timestamp units, truncated as an RTCP report block carries.
  uint32_t JitterTimestampUnits() const noexcept { return static_cast<uint32_t>(jitter); }

  // A.8 interarrival jitter in milliseconds.
  double JitterMs() const noexcept { return last_rate ? jitter * 1000.0 / last_rate : 0.0; }

 private:
  // A.1 init_seq. Also drops the A.8 transit of the previous sequence so no difference D
  // is taken across a restart.
  void InitSeq(uint16_t seq) noexcept {
    base_seq = seq;
    max_seq = seq;
    bad_seq = kRtpSeqMod + 1;
    cycles = 0;
    received = 0;
    last_rate = 0;
  }

  // A.1 update_seq: returns whether the packet is counted. Deviation: sequence numbers in
  // probation compare modulo 2^16 (A.1's `seq == max_seq + 1` compares as int, so 65535
  // -> 0 would not count as sequential there).
  bool UpdateSeq(uint16_t seq) noexcept {
    const uint16_t udelta = static_cast<uint16_t>(seq - max_seq);
    if (probation) {
      if (seq == static_cast<uint16_t>(max_seq + 1)) {
        --probation;
        max_seq = seq;
        if (probation == 0) {
          InitSeq(seq);
          ++received;
          return true;
        }
      } else {
        probation = kRtpMinSequential - 1;
        max_seq = seq;
      }
      return false;
    }
    if (udelta < kRtpMaxDropout) {
      // In order, with a permissible gap.
      if (seq < max_seq) cycles += kRtpSeqMod;  // wrapped
      if (udelta == 0) ++late_or_duplicate;
      max_seq = seq;
    } else if (udelta <= kRtpSeqMod - kRtpMaxMisorder) {
      // A very large jump: restart only when the next packet follows it (the other side
      // restarted without telling us), otherwise ignore this one.
      if (seq == bad_seq) {
        InitSeq(seq);
        ++seq_restarts;
      } else {
        bad_seq = (seq + 1u) & (kRtpSeqMod - 1);
        return false;
      }
    } else {
      ++late_or_duplicate;  // duplicate or reordered within MAX_MISORDER
    }
    ++received;
    return true;
  }

  // A.8: D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}) = transit_i - transit_{i-1};
  // J += (|D| - J) / 16. Transit is taken modulo 2^32 and the difference read as signed,
  // so timestamp and arrival wraps cancel out.
  void UpdateJitter(const RtpHeaderInfo& h, uint64_t arrival_ns) noexcept {
    const uint32_t rate = clock_rate ? clock_rate : ClockRateForPayloadType(h.payload_type);
    const uint32_t t = NsToRtpTimestampUnits(arrival_ns, rate) - h.timestamp;
    if (rate == last_rate) {
      int64_t d = static_cast<int32_t>(t - transit);
      if (d < 0) d = -d;
      jitter += (static_cast<double>(d) - jitter) * (1.0 / 16);
    } else if (last_rate != 0) {
      // The clock rate changed with the PT: express J in the new units and take the next
      // D from this packet (timestamps of different rates cannot be subtracted).
      jitter = jitter * rate / last_rate;
    }
    transit = t;
    last_rate = rate;
  }
};

static_assert(std::is_trivial_v<RtpStreamStats>);
static_assert(std::is_standard_layout_v<RtpStreamStats>);

}  // namespace karl::dp
