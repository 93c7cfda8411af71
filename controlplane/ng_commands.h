// The commands of rtpengine's ng control protocol (ping, offer, answer, delete, query,
// list, statistics) on top of the session manager: what lets Kamailio's and OpenSIPS'
// rtpengine modules drive Karl unmodified. A request is a decoded bencode dictionary;
// the reply is the dictionary to send back (NgServer does the UDP, cookies and cache).
//
// Model (docs/decisions.md D19): one ng call (call-id) is one Karl session per media
// section (m= line) of its SDP, all with that call-id, so they show in the REST API too.
// Leg 0 of each session faces the side whose tag made the first offer (the from-tag),
// leg 1 the other side (the to-tag). offer creates the sessions (the offerer's peer from
// its SDP, the other leg latches or is set by the answer) and returns the SDP rewritten
// to point the recipient at Karl; answer sets the answerer's peer, settles rtcp-mux and
// SRTP (SDES, RFC 4568) per leg, and returns the answer rewritten for the offerer.
//
// Thread: the control-plane thread only (it calls the session manager directly).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "controlplane/bencode.h"
#include "controlplane/config.h"
#include "controlplane/sdes.h"
#include "controlplane/sdp.h"
#include "controlplane/session_service.h"

namespace karl {

// Totals for the `statistics` command, filled by the owner.
struct NgTotals {
  double uptime_s = 0;
  uint64_t sessions_active = 0;
  uint64_t sessions_created = 0;
  uint64_t sessions_timed_out = 0;
  uint64_t relayed_packets = 0;  // all workers, received and forwarded
  uint64_t relayed_bytes = 0;
  uint64_t relay_errors = 0;  // dropped packets, all reasons
};

class NgCommands {
 public:
  using TotalsFn = std::function<NgTotals()>;

  // `sessions` and `config` must outlive this object.
  NgCommands(const Config& config, SessionService* sessions, TotalsFn totals);

  // One request (a dictionary with "command"); returns the reply dictionary with
  // "result" = "ok" / "pong" / "error" (+ "error-reason"), and "warning" when Karl
  // accepted something it ignores (an unknown flag, record call, ...).
  BencodeValue Handle(const BencodeValue& request);

  // Calls Karl knows about over ng (for tests and /status).
  size_t call_count() const { return calls_.size(); }

 private:
  struct Options;
  // Karl's SRTP toward or from one side of one media section.
  struct SideCrypto {
    std::vector<SdesCrypto> offered;       // what this side offered (its a=crypto lines)
    std::vector<SdesCrypto> karl_offered;  // what Karl offered to this side (tags 1..n)
    std::optional<SdesCrypto> receive;     // this side's chosen key (Karl unprotects)
    std::optional<SdesCrypto> send;        // Karl's key toward this side (Karl protects)
  };
  struct Media {
    std::string session_id;  // "" when rejected or not relayed
    std::string type;        // "audio", "video", ...
    bool relayed = false;    // an RTP section Karl anchors (else passed through as is)
    std::string proto[2];    // transport protocol per side (side 0 = leg 0)
    bool rtcp_mux_offered[2] = {false, false};  // side offered/answered a=rtcp-mux
    bool rtcp_mux[2] = {false, false};          // leg uses rtcp-mux
    SideCrypto crypto[2];
    std::optional<Endpoint> sdp_peer[2];  // endpoint each side last put in its SDP
  };
  // ICE toward one side (D25): Karl's ICE-lite credentials (kept for the call, so a
  // re-offer is no ICE restart) and what the side's own SDP last said.
  struct SideIce {
    std::string ufrag, pwd;     // Karl's, empty until first announced
    bool peer_offered = false;  // the side's last offer or answer had ICE attributes
    std::string peer_ufrag;     // its a=ice-ufrag (a change is an ICE restart)
  };
  struct Call {
    std::string call_id;
    SideIce ice[2];
    std::string tags[2];  // side 0: first offerer (from-tag), side 1: the other
    std::vector<Media> media;
    int offer_side = 0;  // who made the pending/last offer
    bool answered = false;
    // Last SDP Karl returned to each side (body without o=) and its o= version, so a
    // changed SDP gets a higher version (RFC 3264 §8).
    std::string last_body[2];
    std::string last_version[2];
    bool has_last[2] = {false, false};
  };

  BencodeValue Offer(const BencodeValue& req, Options& opt);
  BencodeValue Answer(const BencodeValue& req, Options& opt);
  BencodeValue Delete(const BencodeValue& req, Options& opt);
  BencodeValue Query(const BencodeValue& req);
  BencodeValue List(const BencodeValue& req);
  BencodeValue Statistics();

  // The active sessions of a call, by media index (ng calls) or as found by call-id.
  std::vector<SessionInfo> CallSessions(const std::string& call_id);
  // rtpengine's query/delete reply body for these sessions.
  BencodeValue DescribeCall(const std::string& call_id, const std::vector<SessionInfo>& sessions,
                            const Call* call) const;
  // Forgets media whose sessions ended behind ng's back (timeout, REST delete).
  void Reconcile(Call& call);
  // Points media section `index` of `sdp` at Karl's side `leg`: address, ports, protocol,
  // Karl's crypto lines, rtcp-mux, a=rtcp; drops DTLS attributes and the peer's ICE
  // attributes, and with `ice` writes Karl's (credentials, a host candidate per
  // component; component 2 unless `rtcp_mux_only`).
  static void WriteKarlSide(const Options& opt, const LegInfo& leg, uint16_t rtcp_port,
                            const std::string& proto, const std::vector<SdesCrypto>& crypto,
                            bool rtcp_mux, const IceSpec* ice, bool rtcp_mux_only, Sdp* sdp,
                            size_t index, bool* first);
  // Session-level clean-up (ICE of sections Karl does not relay; a=ice-lite when Karl's
  // ICE is in it), text, o= version for `side`.
  std::string FinishSdp(Call& call, int side, bool ice_lite, Sdp* sdp);
  // Karl's ICE credentials toward `side`, made on first use; nullopt when the request
  // does not want ICE toward that side.
  // `peer_ice`: whether the other party of this offer/answer speaks ICE (rtpengine's
  // default: ICE is passed on, with Karl as the only candidate).
  static std::optional<IceSpec> IceToward(const Options& opt, Call& call, int side, bool peer_ice);
  // Brings the o= version above what this side last got when the body changed.
  // Returns the text of `sdp`.
  std::string StampVersion(Call& call, int side, Sdp* sdp);

  const Config& config_;
  SessionService* sessions_;
  TotalsFn totals_;
  std::map<std::string, Call> calls_;
  uint64_t deleted_total_ = 0;
};

// MOS (1.0..4.5) from the E-model's R factor (ITU-T G.107 simplified for G.711 as
// commonly applied to RTP statistics): delay from jitter, impairment from loss.
// Exposed for tests.
double EstimateMos(double jitter_ms, double loss_percent, double rtt_ms);

}  // namespace karl
