// Every reason a worker drops a packet, as one X-macro. It feeds the per-worker
// counters (WorkerStats::drops), the metric label karl_dp_drops_total{reason=...}
// and the table in docs/drops.md. Never drop a packet without counting one of these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

// X(enum_name, "metric label", "what it means")
#define KARL_DROP_REASONS(X)                                                                       \
  X(kRuntFrame, "runt_frame", "frame shorter than an Ethernet header")                             \
  X(kMultiSegment, "multi_segment", "frame spread over several buffers (no jumbo media)")          \
  X(kUnknownEthertype, "unknown_ethertype", "neither IPv4, IPv6, ARP nor 802.1Q")                  \
  X(kVlanNotConfigured, "vlan_not_configured", "802.1Q tag for a VLAN the port does not serve")    \
  X(kNotForUs, "not_for_us", "IP destination is none of the port's addresses")                     \
  X(kIpv4Malformed, "ipv4_malformed", "IPv4 version, header length or total length wrong")         \
  X(kIpv4Checksum, "ipv4_bad_checksum", "IPv4 header checksum does not verify")                    \
  X(kFragment, "ip_fragment", "IPv4 fragment or IPv6 fragment header (media is never fragmented)") \
  X(kIpv6Malformed, "ipv6_malformed", "IPv6 header or extension chain truncated")                  \
  X(kUnsupportedProtocol, "unsupported_protocol", "IP protocol other than UDP/ICMP")               \
  X(kUdpToControlPort, "udp_not_media", "UDP to a port outside the RTP range")                     \
  X(kUdpMalformed, "udp_malformed", "UDP length shorter than its header or past the packet")       \
  X(kUdpChecksum, "udp_bad_checksum", "non-zero UDP checksum does not verify")                     \
  X(kNoSession, "no_session", "UDP to a local port with no stream")                                \
  X(kRtpBadVersion, "rtp_bad_version", "RTP/RTCP version is not 2")                                \
  X(kRtpTruncated, "rtp_truncated", "RTP header, CSRC list or extension past the packet end")      \
  X(kRtpBadPadding, "rtp_bad_padding", "RTP padding count zero or larger than the payload")        \
  X(kRtcpMalformed, "rtcp_malformed", "RTCP compound packet fails RFC 3550 A.2 checks")            \
  X(kStrictSource, "strict_source", "media from another source than the leg's peer (strict)")      \
  X(kNoPeer, "no_peer", "the other leg has no peer address yet (nothing to send to)")              \
  X(kNoNeighbor, "no_neighbor", "next-hop MAC toward the peer not resolved yet")                   \
  X(kNoHeadroom, "no_headroom", "no room in the buffer for the outgoing headers")                  \
  X(kHandoffRingFull, "handoff_ring_full", "ring to the stream's owning worker was full")          \
  X(kExceptionRingFull, "exception_ring_full", "control-plane exception ring was full")            \
  X(kTxFull, "tx_full", "transmit queue did not take the packet")                                  \
  X(kSrtpAuthFailed, "srtp_auth_failed", "SRTP/SRTCP tag or MKI does not verify (wrong key?)")     \
  X(kSrtpReplay, "srtp_replay", "SRTP/SRTCP index already seen or behind the replay window")       \
  X(kSrtpTooShort, "srtp_too_short", "SRTP/SRTCP packet shorter than its header and trailer")      \
  X(kSrtpKeyExhausted, "srtp_key_exhausted", "SRTP key lifetime used up (RFC 3711 9.2); re-key")   \
  X(kSrtpNoTailroom, "srtp_no_tailroom", "no room in the buffer for the SRTP trailer")

namespace karl {

enum class DropReason : uint8_t {
#define KARL_X_ENUM(name, label, help) name,
  KARL_DROP_REASONS(KARL_X_ENUM)
#undef KARL_X_ENUM
      kCount
};

inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

// Metric label of a reason ("no_session").
constexpr std::string_view DropReasonLabel(DropReason r) {
  constexpr std::string_view kLabels[] = {
#define KARL_X_LABEL(name, label, help) label,
      KARL_DROP_REASONS(KARL_X_LABEL)
#undef KARL_X_LABEL
  };
  return kLabels[static_cast<size_t>(r)];
}

// One-line explanation of a reason, for docs and /status.
constexpr std::string_view DropReasonHelp(DropReason r) {
  constexpr std::string_view kHelp[] = {
#define KARL_X_HELP(name, label, help) help,
      KARL_DROP_REASONS(KARL_X_HELP)
#undef KARL_X_HELP
  };
  return kHelp[static_cast<size_t>(r)];
}

}  // namespace karl
