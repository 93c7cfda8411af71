// Requests and answers of the session manager, shared by the REST API and (later)
// the ng protocol. Plain values, no behaviour. Thread: any.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/drop_reasons.h"
#include "common/net_addr.h"

namespace karl {

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
};

// SRTP of one direction of a leg (RFC 3711). Suite by its SDES name (RFC 4568 §6.2,
// RFC 6188, RFC 7714 §14.2); key in SDES key-params form "inline:<base64 key||salt>"
// with optional "|lifetime" and "|MKI:length" (RFC 4568 §9.1).
struct SrtpKeySpec {
  std::string suite;
  std::string key;  // empty in a send spec: Karl generates one
  bool operator==(const SrtpKeySpec&) const = default;
};

struct SrtpSpec {
  std::optional<SrtpKeySpec> send;     // Karl -> this leg's peer; absent = plain RTP
  std::optional<SrtpKeySpec> receive;  // this leg's peer -> Karl; absent = plain RTP
  uint32_t replay_window = 0;          // 0 = config srtp.replay_window
  bool operator==(const SrtpSpec&) const = default;
};

// ICE-lite (RFC 8445 §2.5) on a leg: Karl's credentials, as its SDP toward the leg's
// peer announced them (a=ice-ufrag / a=ice-pwd, RFC 8839 §5.4). Karl answers the peer's
// STUN Binding requests on the leg's local ports (USERNAME "<ufrag>:<peer's ufrag>",
// MESSAGE-INTEGRITY keyed with `pwd`); a nominated pair (USE-CANDIDATE) becomes the
// leg's peer. Karl never sends checks itself.
struct IceSpec {
  std::string ufrag;
  std::string pwd;
  bool operator==(const IceSpec&) const = default;
};

// One leg as the signalling side asks for it.
struct LegSpec {
  // Remote RTP address/port. Absent: learned from the first valid packet (latching).
  std::optional<Endpoint> peer;
  // Remote RTCP port; absent: peer port + 1 (or the RTP port with rtcp_mux).
  std::optional<uint16_t> peer_rtcp_port;
  // Name of the Karl port (config ports[].name) to allocate on; empty: the first
  // port with an address of the wanted family.
  std::string interface;
  // Address family of the local address; absent: the peer's family, else IPv4.
  std::optional<IpAddress::Family> family;
  bool rtcp_mux = false;         // RTP and RTCP share one local port (RFC 5761)
  bool strict_source = false;    // drop packets from anything but the (latched) peer
  bool asymmetric = false;       // never re-latch: keep the given peer even if media comes
                                 // from elsewhere (symmetric latching is the default)
  std::optional<uint8_t> dscp;   // DSCP to set on packets sent toward this leg's peer
  std::optional<SrtpSpec> srtp;  // absent: plain RTP both ways
  std::optional<IceSpec> ice;    // absent: no ICE (STUN on the leg's ports is dropped)
};

struct SessionSpec {
  std::string call_id;  // required
  std::string from_tag;
  std::string to_tag;
  std::vector<LegSpec> legs;     // exactly 2 for now
  uint32_t media_timeout_s = 0;  // 0 = config rtp.media_timeout_s
};

// A change to a live session (re-INVITE, hold, ...). Unset fields stay.
struct LegUpdate {
  std::optional<Endpoint> peer;
  std::optional<uint16_t> peer_rtcp_port;
  std::optional<bool> strict_source;
  std::optional<bool> asymmetric;
  std::optional<uint8_t> dscp;
  // RTP and RTCP on one local port (RFC 5761) or on two; the local ports stay the same
  // (the pair is always reserved), only whether RTCP is also taken on RTP+1 changes.
  std::optional<bool> rtcp_mux;
  // Re-keying: replaces the leg's SRTP (an empty SrtpSpec = plain both ways). A
  // direction whose suite and key stay the same keeps its state (ROC, replay window).
  std::optional<SrtpSpec> srtp;
  // ICE-lite on or off (an IceSpec with an empty ufrag turns it off), or new credentials
  // (an ICE restart).
  std::optional<IceSpec> ice;
};
struct SessionUpdate {
  std::optional<std::string> to_tag;
  std::vector<std::optional<LegUpdate>> legs;  // by leg index; nullopt = unchanged
  std::optional<uint32_t> media_timeout_s;
  // Restarts the session's per-stream statistics from zero (packets, bytes, drops,
  // SSRC changes, expected/lost); jitter, SSRC and last-packet age stay current. The
  // karl_dp_* Prometheus counters are not affected (they only grow).
  bool reset_stats = false;
};

// Statistics of media received on one local port (one direction).
struct StreamStats {
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t drops = 0;  // all reasons
  uint64_t drops_by_reason[kDropReasonCount] = {};
  double last_packet_age_s = -1;  // -1 = never
  // RTP (RFC 3550): not filled for RTCP streams.
  uint32_t ssrc = 0;
  uint64_t ssrc_changes = 0;
  uint64_t expected = 0;  // A.3: extended highest seq - base seq + 1
  int64_t lost = 0;       // expected - received (may be negative: duplicates)
  double jitter_ms = 0;   // A.8 interarrival jitter
};

struct LegInfo {
  unsigned index = 0;
  std::string interface;         // Karl port name
  Endpoint local;                // local RTP address/port
  uint16_t local_rtcp_port = 0;  // == local.port with rtcp_mux
  std::optional<Endpoint> peer;  // current remote RTP address (given or latched)
  uint16_t peer_rtcp_port = 0;
  bool latched = false;  // peer was learned from media
  bool rtcp_mux = false;
  bool strict_source = false;
  bool asymmetric = false;
  std::optional<uint8_t> dscp;
  std::optional<SrtpSpec> srtp;  // with the generated send key filled in
  std::optional<IceSpec> ice;
  StreamStats rtp;   // received on local RTP port from this leg's peer
  StreamStats rtcp;  // received on local RTCP port (or demuxed)
};

struct SessionInfo {
  std::string id;
  std::string call_id;
  std::string from_tag;
  std::string to_tag;
  std::string state;       // "active" or "ended"
  std::string end_reason;  // "deleted", "timeout" when ended
  int64_t created_unix_ms = 0;
  int64_t last_signal_unix_ms = 0;
  uint32_t media_timeout_s = 0;
  std::vector<LegInfo> legs;
};

struct SessionFilter {
  std::string call_id;  // empty = any
  std::string state;    // empty = any
  size_t offset = 0;
  size_t limit = 100;
};

struct SessionPage {
  std::vector<SessionInfo> sessions;
  size_t total = 0;  // matching the filter, before paging
};

}  // namespace karl
