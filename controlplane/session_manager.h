// Sessions (calls) and their legs: local port allocation, the streams and flow-table
// entries that make the workers relay media, latching, next-hop resolution (ARP/NDP),
// media timeouts. The only writer of the flow table.
// Thread: control-plane thread only (other threads go through SessionServiceQueue).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "controlplane/control_queue.h"
#include "controlplane/session_service.h"
#include "controlplane/session_types.h"
#include "dataplane/dataplane.h"

struct rte_mbuf;

namespace karl {

class SessionManager {
 public:
  SessionManager(const Config& config, dp::Dataplane* dataplane);
  ~SessionManager();

  absl::StatusOr<SessionInfo> Create(const SessionSpec& spec);
  absl::StatusOr<SessionInfo> Get(const std::string& id) const;
  absl::StatusOr<SessionPage> List(const SessionFilter& filter) const;
  absl::StatusOr<SessionInfo> Update(const std::string& id, const SessionUpdate& update);
  absl::StatusOr<SessionInfo> Delete(const std::string& id);

  // Periodic work (call every few ms): latch events, neighbor answers, retries,
  // grace periods (ports come back only after every worker let go), media timeouts.
  void Tick();

  // Frees the media held for unresolved neighbors. Call before the dataplane closes
  // (its mbufs go back to the dataplane's pool); the destructor does it too.
  void DropHeldPackets();

  // ICE-lite (D25): answers a connectivity check that arrived on a stream of a leg with
  // ICE; an authenticated check that nominates its pair (USE-CANDIDATE) makes its source
  // the leg's peer. A request that fails authentication or carries an unknown required
  // attribute gets an error response (400/401/420); nullopt: nothing to send (not STUN,
  // a bad FINGERPRINT, an indication, no ICE on the leg).
  std::optional<std::vector<uint8_t>> AnswerStun(const dp::StunRequest& request);
  uint64_t stun_answered() const { return stun_answered_; }
  uint64_t stun_rejected() const { return stun_rejected_; }
  uint64_t ice_nominations() const { return ice_nominations_; }

  size_t active_sessions() const { return active_; }
  // Media held while ARP/NDP resolved its next hop: sent once answered, dropped when
  // the hold ran out, the queue was full or no answer came.
  uint64_t unresolved_sent() const { return unresolved_sent_; }
  uint64_t unresolved_dropped() const { return unresolved_dropped_; }
  size_t free_port_pairs() const;
  uint64_t sessions_created() const { return created_total_; }
  uint64_t sessions_ended_timeout() const { return ended_timeout_; }

 private:
  struct PortPool;  // free RTP/RTCP pairs of one local address
  struct Leg {
    LegSpec spec;
    size_t port_index = 0;
    IpAddress local;
    uint16_t rtp_port = 0;
    uint16_t rtcp_port = 0;
    PortPool* pool = nullptr;
    std::optional<Endpoint> peer;  // current RTP destination (given or latched)
    uint16_t peer_rtcp_port = 0;   // current RTCP destination port
    bool latched = false;
    std::optional<MacAddress> mac;  // next hop toward peer, when known
    uint32_t rtp_stream = dp::kNoStream;
    uint32_t rtcp_stream = dp::kNoStream;
    uint32_t generation = 1;
    // SRTP (spec.srtp holds the resolved keys): rx unprotects what the peer sends,
    // tx protects what Karl sends to the peer. Shared with the published stream configs.
    std::shared_ptr<dp::SrtpContext> srtp_rx;
    std::shared_ptr<dp::SrtpContext> srtp_tx;
  };
  // A leg's SRTP, resolved (keys generated) and set up, not yet applied.
  struct SrtpSetup {
    std::optional<SrtpSpec> spec;
    std::shared_ptr<dp::SrtpContext> rx, tx;
  };
  struct Session {
    std::string id;
    std::string call_id, from_tag, to_tag;
    bool ended = false;
    std::string end_reason;
    int64_t created_ms = 0;
    int64_t last_signal_ms = 0;
    std::chrono::steady_clock::time_point last_signal;
    uint32_t media_timeout_s = 0;
    std::vector<Leg> legs;
    SessionInfo final_info;  // when ended
  };
  struct StreamRef {
    Session* session;
    size_t leg;
    bool rtcp;
  };
  struct PendingRelease {
    uint64_t token;
    PortPool* pool;
    uint16_t rtp_port;
  };
  struct NeighborKey {
    size_t port_index;
    IpAddress address;
    auto operator<=>(const NeighborKey&) const = default;
  };
  struct Resolution {
    std::chrono::steady_clock::time_point next_try;
    int tries = 0;
  };

  absl::Status AllocateLeg(const LegSpec& spec, size_t index, Leg* leg);
  // Checks suites and keys, generates missing send keys, creates the contexts. `old`:
  // the leg's current SRTP, whose contexts are kept for directions that do not change.
  absl::StatusOr<SrtpSetup> SetUpSrtp(const std::optional<SrtpSpec>& spec, size_t index,
                                      const Leg* old) const;
  void ReleaseLeg(Leg& leg);
  void PublishLeg(Session& s, size_t leg);  // the two streams that receive on leg `leg`
  dp::Egress EgressToward(const Leg& to, bool rtcp) const;
  std::optional<IpAddress> NextHop(const Leg& leg) const;
  std::optional<IpAddress> NextHopFor(size_t port_index, const IpAddress& destination) const;
  void RefreshMac(Leg& leg);
  void SendResolution(size_t port_index, const IpAddress& target);
  void HandleEvent(const dp::WorkerEvent& ev);
  void HandleLatched(const dp::WorkerEvent& ev, const StreamRef& ref);
  void LearnNeighbors();
  void StartResolution(const NeighborKey& key);
  // Media the workers could not address yet (no next-hop MAC): send it when the MAC is
  // known, else hold it (per neighbor, bounded) and resolve.
  void TakeUnresolved();
  // Sends (mac) or drops (nullptr) what is held for `key`.
  void ReleaseHeld(const NeighborKey& key, const MacAddress* mac);
  void AgeHeld(std::chrono::steady_clock::time_point now);
  void EndSession(Session& s, const std::string& reason);
  SessionInfo Describe(const Session& s) const;
  StreamStats ReadStream(uint32_t id) const;     // since the last reset_stats
  StreamStats ReadStreamRaw(uint32_t id) const;  // since the stream was created
  void CheckTimeouts();

  const Config& config_;
  dp::Dataplane* dp_;
  std::vector<std::unique_ptr<PortPool>> pools_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;  // active and recently ended
  std::deque<std::string> ended_order_;                       // oldest ended first
  std::map<uint32_t, StreamRef> stream_refs_;
  std::map<uint32_t, StreamStats> stats_baselines_;  // per stream, at its last reset_stats
  std::vector<PendingRelease> pending_releases_;
  std::map<NeighborKey, MacAddress> neighbors_;
  std::map<NeighborKey, Resolution> resolving_;
  // Like a kernel's unresolved-neighbor queue (Linux: neigh unres_qlen): a few packets
  // per next hop, for at most kHoldTime.
  struct HeldPacket {
    rte_mbuf* m;
    std::chrono::steady_clock::time_point since;
  };
  static constexpr size_t kMaxHeldPerNeighbor = 64;
  static constexpr size_t kMaxHeld = 4096;
  static constexpr std::chrono::seconds kHoldTime{3};
  std::map<NeighborKey, std::deque<HeldPacket>> held_;
  size_t held_total_ = 0;
  uint64_t stun_answered_ = 0;
  uint64_t stun_rejected_ = 0;
  uint64_t ice_nominations_ = 0;
  std::chrono::steady_clock::time_point last_stun_log_;
  uint64_t unresolved_sent_ = 0;
  uint64_t unresolved_dropped_ = 0;
  std::chrono::steady_clock::time_point last_timeout_check_;
  std::chrono::steady_clock::time_point next_resolution_scan_;
  size_t active_ = 0;
  uint64_t created_total_ = 0;
  uint64_t ended_timeout_ = 0;
  uint64_t next_id_ = 0;
};

// SessionService for other threads: every call runs on the control-plane thread
// through the ControlQueue.
class SessionServiceQueue : public SessionService {
 public:
  SessionServiceQueue(SessionManager* manager, ControlQueue* queue)
      : manager_(manager), queue_(queue) {}
  absl::StatusOr<SessionInfo> CreateSession(const SessionSpec& spec) override;
  absl::StatusOr<SessionInfo> GetSession(const std::string& id) override;
  absl::StatusOr<SessionPage> ListSessions(const SessionFilter& filter) override;
  absl::StatusOr<SessionInfo> UpdateSession(const std::string& id,
                                            const SessionUpdate& update) override;
  absl::StatusOr<SessionInfo> DeleteSession(const std::string& id) override;

 private:
  SessionManager* manager_;
  ControlQueue* queue_;
};

// SessionService for code that already runs on the control-plane thread (the ng
// commands): calls the manager directly, no queue hop.
class SessionServiceDirect : public SessionService {
 public:
  explicit SessionServiceDirect(SessionManager* manager) : manager_(manager) {}
  absl::StatusOr<SessionInfo> CreateSession(const SessionSpec& spec) override {
    return manager_->Create(spec);
  }
  absl::StatusOr<SessionInfo> GetSession(const std::string& id) override {
    return manager_->Get(id);
  }
  absl::StatusOr<SessionPage> ListSessions(const SessionFilter& filter) override {
    return manager_->List(filter);
  }
  absl::StatusOr<SessionInfo> UpdateSession(const std::string& id,
                                            const SessionUpdate& update) override {
    return manager_->Update(id, update);
  }
  absl::StatusOr<SessionInfo> DeleteSession(const std::string& id) override {
    return manager_->Delete(id);
  }

 private:
  SessionManager* manager_;
};

}  // namespace karl
