#include "controlplane/session_manager.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ip.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "controlplane/sdes.h"
#include "controlplane/stun.h"
#include "dataplane/srtp.h"
#include "dataplane/srtp_engine.h"
#include "spdlog/spdlog.h"

namespace karl {

// Free RTP/RTCP port pairs of one local address, handed out oldest-freed first so a
// port is not reused while late packets of the previous call may still arrive.
struct SessionManager::PortPool {
  size_t port_index = 0;
  IpAddress address;
  std::deque<uint16_t> free_rtp;  // even RTP ports; RTCP = RTP + 1
};

namespace {

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NewSessionId(uint64_t seq) {
  unsigned char rnd[6];
  RAND_bytes(rnd, sizeof(rnd));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02x%02x%02x%02x%02x%02x%04x", rnd[0], rnd[1], rnd[2], rnd[3],
                rnd[4], rnd[5], static_cast<unsigned>(seq & 0xffff));
  return buf;
}

void CopyAddr(uint8_t* out, const IpAddress& a) {
  std::memcpy(out, a.bytes().data(), a.is_v4() ? 4 : 16);
}

dp::FlowKey KeyFor(const IpAddress& a, uint16_t port) {
  return dp::MakeFlowKey(a.is_v4() ? 4 : 6, a.bytes().data(), rte_cpu_to_be_16(port));
}

IpAddress AddrFrom(uint8_t family, const uint8_t* bytes) {
  if (family == 4) {
    return IpAddress::V4((uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
                         (uint32_t{bytes[2]} << 8) | bytes[3]);
  }
  std::array<uint8_t, 16> b;
  std::memcpy(b.data(), bytes, 16);
  return IpAddress::V6(b);
}

dp::SrtpEngineKind EngineKind(const std::string& name) {
  dp::SrtpEngineKind kind = dp::SrtpEngineKind::kIpsecMb;
  dp::ParseSrtpEngineKind(name, &kind);  // validated by the config parser
  return kind;
}

}  // namespace

SessionManager::SessionManager(const Config& config, dp::Dataplane* dataplane)
    : config_(config), dp_(dataplane), last_timeout_check_(std::chrono::steady_clock::now()) {
  for (size_t p = 0; p < config.ports.size(); ++p) {
    for (const IpPrefix& a : config.ports[p].addresses) {
      auto pool = std::make_unique<PortPool>();
      pool->port_index = p;
      pool->address = a.address;
      for (uint32_t port = config.rtp.port_min; port + 1 <= config.rtp.port_max; port += 2) {
        pool->free_rtp.push_back(static_cast<uint16_t>(port));
      }
      pools_.push_back(std::move(pool));
    }
  }
}

SessionManager::~SessionManager() { DropHeldPackets(); }

size_t SessionManager::free_port_pairs() const {
  size_t n = 0;
  for (const auto& p : pools_) n += p->free_rtp.size();
  return n;
}

absl::Status SessionManager::AllocateLeg(const LegSpec& spec, size_t index, Leg* leg) {
  const std::string field = absl::StrCat("legs[", index, "]");
  IpAddress::Family family = IpAddress::Family::kV4;
  if (spec.family) {
    family = *spec.family;
  } else if (spec.peer) {
    family = spec.peer->address.family();
  }
  if (spec.peer && spec.peer->address.family() != family) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".family: the peer ",
                                                   spec.peer->address.ToString(),
                                                   " is not of the requested family"));
  }
  if (spec.peer && (spec.peer->port == 0 || spec.peer->address.IsUnspecified())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".peer: address and port must be set"));
  }
  PortPool* chosen = nullptr;
  bool interface_found = spec.interface.empty();
  for (auto& pool : pools_) {
    const PortConfig& pc = config_.ports[pool->port_index];
    if (!spec.interface.empty() && pc.name != spec.interface) continue;
    interface_found = true;
    if (pool->address.family() != family || pool->free_rtp.empty()) continue;
    if (chosen == nullptr || pool->free_rtp.size() > chosen->free_rtp.size()) chosen = pool.get();
  }
  if (!interface_found) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".interface: no Karl port named '", spec.interface, "'"));
  }
  if (chosen == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(field, ": no free local port pair on an ",
                     family == IpAddress::Family::kV4 ? "IPv4" : "IPv6", " address",
                     spec.interface.empty() ? "" : " of " + spec.interface));
  }
  std::optional<SrtpSpec> srtp = std::move(leg->spec.srtp);  // resolved by SetUpSrtp
  leg->spec = spec;
  leg->spec.srtp = std::move(srtp);
  leg->pool = chosen;
  leg->port_index = chosen->port_index;
  leg->local = chosen->address;
  leg->rtp_port = chosen->free_rtp.front();
  chosen->free_rtp.pop_front();
  leg->rtcp_port = spec.rtcp_mux ? leg->rtp_port : static_cast<uint16_t>(leg->rtp_port + 1);
  leg->peer = spec.peer;
  if (spec.peer) {
    leg->peer_rtcp_port = spec.peer_rtcp_port.value_or(
        spec.rtcp_mux ? spec.peer->port : static_cast<uint16_t>(spec.peer->port + 1));
  }
  return absl::OkStatus();
}

absl::StatusOr<SessionManager::SrtpSetup> SessionManager::SetUpSrtp(
    const std::optional<SrtpSpec>& spec, size_t index, const Leg* old) const {
  SrtpSetup out;
  if (!spec) return out;
  out.spec = spec;
  if (out.spec->replay_window == 0) out.spec->replay_window = config_.srtp.replay_window;
  const std::optional<SrtpSpec>& before = old != nullptr ? old->spec.srtp : std::nullopt;
  const bool same_window = before && before->replay_window == out.spec->replay_window;
  for (const bool send : {true, false}) {
    std::optional<SrtpKeySpec>& dir = send ? out.spec->send : out.spec->receive;
    if (!dir) continue;
    const std::string field = absl::StrCat("legs[", index, "].srtp.", send ? "send" : "receive");
    absl::StatusOr<dp::SrtpSuite> suite = SrtpSuiteFromName(dir->suite);
    if (!suite.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".suite: ", suite.status().message(),
                                                     "; allowed: AES_CM_128_HMAC_SHA1_80, "
                                                     "AES_CM_128_HMAC_SHA1_32, "
                                                     "AES_256_CM_HMAC_SHA1_80, "
                                                     "AES_256_CM_HMAC_SHA1_32, AEAD_AES_128_GCM, "
                                                     "AEAD_AES_256_GCM"));
    }
    // A direction whose suite and key stay keeps its context (ROC, replay window).
    const std::optional<SrtpKeySpec>& prev =
        before ? (send ? before->send : before->receive) : std::nullopt;
    if (!dir->key.empty() && prev && *prev == *dir && same_window) {
      (send ? out.tx : out.rx) = send ? old->srtp_tx : old->srtp_rx;
      continue;
    }
    SdesCrypto crypto;
    if (dir->key.empty()) {
      absl::StatusOr<SdesCrypto> fresh = GenerateSdesCrypto(1, *suite);
      if (!fresh.ok()) return fresh.status();
      crypto = *std::move(fresh);
      dir->key = FormatSdesKey(crypto);
    } else {
      absl::StatusOr<SdesCrypto> parsed = ParseSdesKey(dir->suite, dir->key);
      if (!parsed.ok()) {
        absl::string_view what = parsed.status().message();
        if (what.substr(0, 10) == "a=crypto: ") what.remove_prefix(10);
        return absl::InvalidArgumentError(absl::StrCat(field, ".key: ", what));
      }
      crypto = *std::move(parsed);
    }
    dp::SrtpConfig sc;
    sc.suite = *suite;
    sc.master_key = crypto.key;
    sc.master_salt = crypto.salt;
    sc.mki = crypto.mki;
    sc.replay_window = out.spec->replay_window;
    sc.engine = EngineKind(config_.srtp.engine);
    // Karl protects with the send key and unprotects with the receive key, never both.
    sc.direction = send ? dp::SrtpDirection::kProtect : dp::SrtpDirection::kUnprotect;
    std::shared_ptr<dp::SrtpContext> ctx = dp::SrtpContext::Create(sc);
    OPENSSL_cleanse(crypto.key.data(), crypto.key.size());
    OPENSSL_cleanse(crypto.salt.data(), crypto.salt.size());
    if (ctx == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat(field, ": cannot set up the SRTP context (", config_.srtp.engine, ")"));
    }
    (send ? out.tx : out.rx) = std::move(ctx);
  }
  return out;
}

void SessionManager::ReleaseLeg(Leg& leg) {
  for (uint32_t id : {leg.rtp_stream, leg.rtcp_stream}) {
    if (id == dp::kNoStream) continue;
    stream_refs_.erase(id);
    stats_baselines_.erase(id);
    dp_->RetireStream(id);
  }
  dp_->RemoveFlow(KeyFor(leg.local, leg.rtp_port));
  if (!leg.spec.rtcp_mux)
    dp_->RemoveFlow(KeyFor(leg.local, static_cast<uint16_t>(leg.rtp_port + 1)));
  if (leg.pool != nullptr) {
    // The pair comes back only after every worker has passed a quiescent state.
    pending_releases_.push_back(PendingRelease{dp_->StartGracePeriod(), leg.pool, leg.rtp_port});
    leg.pool = nullptr;
  }
  leg.rtp_stream = leg.rtcp_stream = dp::kNoStream;
}

std::optional<IpAddress> SessionManager::NextHop(const Leg& leg) const {
  if (!leg.peer) return std::nullopt;
  return NextHopFor(leg.port_index, leg.peer->address);
}

std::optional<IpAddress> SessionManager::NextHopFor(size_t port_index,
                                                    const IpAddress& destination) const {
  const PortConfig& pc = config_.ports[port_index];
  for (const IpPrefix& p : pc.addresses) {
    if (p.Contains(destination)) return destination;  // on-link
  }
  if (destination.is_v4() && pc.gateway_v4) return *pc.gateway_v4;
  if (destination.is_v6() && pc.gateway_v6) return *pc.gateway_v6;
  return std::nullopt;
}

void SessionManager::StartResolution(const NeighborKey& key) {
  if (resolving_.contains(key)) return;
  // Ask at once (the first media may be a few ms away); Tick retries once a second.
  SendResolution(key.port_index, key.address);
  resolving_[key] = Resolution{std::chrono::steady_clock::now() + std::chrono::seconds(1), 1};
}

void SessionManager::TakeUnresolved() {
  std::vector<dp::Dataplane::UnresolvedPacket> in;
  dp_->TakeUnresolved(&in, 256);
  const auto now = std::chrono::steady_clock::now();
  for (const dp::Dataplane::UnresolvedPacket& u : in) {
    rte_mbuf* m = u.m;
    const PortConfig& pc = config_.ports[u.port_index];
    // The frame as RewriteForEgress left it: Ethernet (+ VLAN), then IPv4 or IPv6.
    const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
    const size_t l2 = pc.vlan ? 18 : 14;
    const uint16_t type = static_cast<uint16_t>((frame[l2 - 2] << 8) | frame[l2 - 1]);
    std::optional<IpAddress> dst;
    if (type == RTE_ETHER_TYPE_IPV4 && m->data_len >= l2 + 20) {
      dst = IpAddress::V4(
          rte_be_to_cpu_32(reinterpret_cast<const rte_ipv4_hdr*>(frame + l2)->dst_addr));
    } else if (type == RTE_ETHER_TYPE_IPV6 && m->data_len >= l2 + 40) {
      std::array<uint8_t, 16> b;
      std::memcpy(b.data(), reinterpret_cast<const rte_ipv6_hdr*>(frame + l2)->dst_addr, 16);
      dst = IpAddress::V6(b);
    }
    const std::optional<IpAddress> hop = dst ? NextHopFor(u.port_index, *dst) : std::nullopt;
    if (!hop) {  // no route (the config changed under it): nothing will resolve
      rte_pktmbuf_free(m);
      ++unresolved_dropped_;
      continue;
    }
    const NeighborKey key{u.port_index, *hop};
    if (auto it = neighbors_.find(key); it != neighbors_.end()) {
      std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), it->second.bytes().data(), 6);
      dp_->SendOnPort(u.port_index, m);
      ++unresolved_sent_;
      continue;
    }
    std::deque<HeldPacket>& q = held_[key];
    if (q.size() >= kMaxHeldPerNeighbor || held_total_ >= kMaxHeld) {
      rte_pktmbuf_free(m);
      ++unresolved_dropped_;
      continue;
    }
    q.push_back(HeldPacket{m, now});
    ++held_total_;
    StartResolution(key);
  }
}

void SessionManager::ReleaseHeld(const NeighborKey& key, const MacAddress* mac) {
  auto it = held_.find(key);
  if (it == held_.end()) return;
  for (HeldPacket& h : it->second) {
    if (mac != nullptr) {
      std::memcpy(rte_pktmbuf_mtod(h.m, uint8_t*), mac->bytes().data(), 6);
      dp_->SendOnPort(key.port_index, h.m);
      ++unresolved_sent_;
    } else {
      rte_pktmbuf_free(h.m);
      ++unresolved_dropped_;
    }
  }
  held_total_ -= it->second.size();
  held_.erase(it);
}

void SessionManager::DropHeldPackets() {
  while (!held_.empty()) ReleaseHeld(held_.begin()->first, nullptr);
}

void SessionManager::AgeHeld(std::chrono::steady_clock::time_point now) {
  for (auto it = held_.begin(); it != held_.end();) {
    std::deque<HeldPacket>& q = it->second;
    while (!q.empty() && now - q.front().since >= kHoldTime) {
      rte_pktmbuf_free(q.front().m);
      q.pop_front();
      --held_total_;
      ++unresolved_dropped_;
    }
    it = q.empty() ? held_.erase(it) : std::next(it);
  }
}

// Next-hop MAC toward the leg's peer: learned from its own media (latching), a
// static next_hop_mac, or the neighbor table (ARP/NDP, resolved on demand).
void SessionManager::RefreshMac(Leg& leg) {
  if (leg.latched && leg.mac) return;
  const PortConfig& pc = config_.ports[leg.port_index];
  if (pc.next_hop_mac) {
    leg.mac = *pc.next_hop_mac;
    return;
  }
  const std::optional<IpAddress> hop = NextHop(leg);
  if (!hop) return;
  const NeighborKey key{leg.port_index, *hop};
  if (auto it = neighbors_.find(key); it != neighbors_.end()) {
    leg.mac = it->second;
    return;
  }
  StartResolution(key);
}

dp::Egress SessionManager::EgressToward(const Leg& to, bool rtcp) const {
  dp::Egress e;
  if (!to.peer) return e;  // family 0: no_peer
  e.family = to.local.is_v4() ? 4 : 6;
  e.port_index = static_cast<uint8_t>(to.port_index);
  e.dscp = to.spec.dscp.value_or(0xff);
  CopyAddr(e.src_addr, to.local);
  CopyAddr(e.dst_addr, to.peer->address);
  const uint16_t src = rtcp ? to.rtcp_port : to.rtp_port;
  const uint16_t dst = rtcp ? to.peer_rtcp_port : to.peer->port;
  e.src_port_be = rte_cpu_to_be_16(src);
  e.dst_port_be = rte_cpu_to_be_16(dst);
  if (to.mac) {
    e.have_mac = true;
    std::memcpy(e.dst_mac, to.mac->bytes().data(), 6);
  }
  return e;
}

void SessionManager::PublishLeg(Session& s, size_t index) {
  Leg& in = s.legs[index];
  const Leg& out = s.legs[1 - index];
  dp::StreamConfig rtp;
  rtp.id = in.rtp_stream;
  rtp.generation = in.generation;
  rtp.latch = !in.spec.asymmetric;
  rtp.strict_source = in.spec.strict_source;
  rtp.rtcp_mux = in.spec.rtcp_mux;
  if (in.spec.peer) {
    rtp.expected_family = in.spec.peer->address.is_v4() ? 4 : 6;
    rtp.expected_port_be = rte_cpu_to_be_16(in.spec.peer->port);
    CopyAddr(rtp.expected_addr, in.spec.peer->address);
  }
  rtp.egress = EgressToward(out, false);
  rtp.srtp_in = in.srtp_rx;
  rtp.srtp_out = out.srtp_tx;
  rtp.ice = in.spec.ice.has_value();
  dp::StreamConfig rtcp = rtp;
  rtcp.id = in.rtcp_stream;
  rtcp.rtcp_mux = false;
  rtcp.is_rtcp = true;
  rtcp.egress = EgressToward(out, true);
  if (in.spec.peer) rtcp.expected_port_be = rte_cpu_to_be_16(in.peer_rtcp_port);
  if (in.spec.rtcp_mux) {
    rtp.rtcp_egress = rtcp.egress;
    rtp.rtcp_stream = in.rtcp_stream;
  }
  dp_->PublishStream(rtp);
  dp_->PublishStream(rtcp);
}

absl::StatusOr<SessionInfo> SessionManager::Create(const SessionSpec& spec) {
  if (spec.call_id.empty()) return absl::InvalidArgumentError("call_id: must not be empty");
  if (spec.legs.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("legs: exactly 2 legs are supported, got ", spec.legs.size()));
  }
  auto s = std::make_unique<Session>();
  s->id = NewSessionId(++next_id_);
  s->call_id = spec.call_id;
  s->from_tag = spec.from_tag;
  s->to_tag = spec.to_tag;
  s->created_ms = s->last_signal_ms = UnixMs();
  s->last_signal = std::chrono::steady_clock::now();
  s->media_timeout_s = spec.media_timeout_s ? spec.media_timeout_s : config_.rtp.media_timeout_s;
  s->legs.resize(2);
  // Keys first: a bad key fails the request before anything is allocated.
  for (size_t i = 0; i < 2; ++i) {
    absl::StatusOr<SrtpSetup> srtp = SetUpSrtp(spec.legs[i].srtp, i, nullptr);
    if (!srtp.ok()) return srtp.status();
    s->legs[i].srtp_rx = std::move(srtp->rx);
    s->legs[i].srtp_tx = std::move(srtp->tx);
    s->legs[i].spec.srtp = std::move(srtp->spec);
  }
  // Allocate everything first; on any failure give it all back (nothing half-applied).
  auto undo = [&](size_t allocated) {
    for (size_t i = 0; i < allocated; ++i) {
      Leg& l = s->legs[i];
      if (l.rtp_stream != dp::kNoStream) dp_->RetireStream(l.rtp_stream);
      if (l.rtcp_stream != dp::kNoStream) dp_->RetireStream(l.rtcp_stream);
      if (l.pool != nullptr) l.pool->free_rtp.push_front(l.rtp_port);
    }
  };
  for (size_t i = 0; i < 2; ++i) {
    if (absl::Status st = AllocateLeg(spec.legs[i], i, &s->legs[i]); !st.ok()) {
      undo(i);
      return st;
    }
    Leg& l = s->legs[i];
    l.rtp_stream = dp_->AllocateStream();
    l.rtcp_stream = dp_->AllocateStream();
    if (l.rtp_stream == dp::kNoStream || l.rtcp_stream == dp::kNoStream) {
      if (l.rtp_stream != dp::kNoStream) dp_->RetireStream(l.rtp_stream);
      if (l.rtcp_stream != dp::kNoStream) dp_->RetireStream(l.rtcp_stream);
      l.rtp_stream = l.rtcp_stream = dp::kNoStream;
      undo(i + 1);
      return absl::ResourceExhaustedError("no free stream slot (dataplane.max_streams)");
    }
  }
  for (size_t i = 0; i < 2; ++i) RefreshMac(s->legs[i]);
  for (size_t i = 0; i < 2; ++i) PublishLeg(*s, i);
  for (size_t i = 0; i < 2; ++i) {
    Leg& l = s->legs[i];
    absl::Status st = dp_->AddFlow(KeyFor(l.local, l.rtp_port), l.rtp_stream);
    if (st.ok() && !l.spec.rtcp_mux) st = dp_->AddFlow(KeyFor(l.local, l.rtcp_port), l.rtcp_stream);
    if (!st.ok()) {
      for (Leg& x : s->legs) ReleaseLeg(x);
      return st;
    }
    stream_refs_[l.rtp_stream] = StreamRef{s.get(), i, false};
    stream_refs_[l.rtcp_stream] = StreamRef{s.get(), i, true};
  }
  ++active_;
  ++created_total_;
  SessionInfo info = Describe(*s);
  spdlog::info("session {} created: call-id {} legs {}:{} <-> {}:{}", s->id, s->call_id,
               s->legs[0].local.ToString(), s->legs[0].rtp_port, s->legs[1].local.ToString(),
               s->legs[1].rtp_port);
  sessions_[s->id] = std::move(s);
  return info;
}

absl::StatusOr<SessionInfo> SessionManager::Get(const std::string& id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("session ", id, " not found"));
  return it->second->ended ? it->second->final_info : Describe(*it->second);
}

absl::StatusOr<SessionPage> SessionManager::List(const SessionFilter& f) const {
  SessionPage page;
  for (const auto& [id, s] : sessions_) {
    if (!f.call_id.empty() && s->call_id != f.call_id) continue;
    if (!f.state.empty() && f.state != (s->ended ? "ended" : "active")) continue;
    if (page.total >= f.offset && page.sessions.size() < f.limit) {
      page.sessions.push_back(s->ended ? s->final_info : Describe(*s));
    }
    ++page.total;
  }
  return page;
}

absl::StatusOr<SessionInfo> SessionManager::Update(const std::string& id, const SessionUpdate& u) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->ended) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found or ended"));
  }
  Session& s = *it->second;
  if (u.legs.size() > s.legs.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("legs: the session has ", s.legs.size(), " legs"));
  }
  // Validate everything before changing anything.
  for (size_t i = 0; i < u.legs.size(); ++i) {
    if (!u.legs[i] || !u.legs[i]->peer) continue;
    const Endpoint& p = *u.legs[i]->peer;
    if (p.address.family() != s.legs[i].local.family()) {
      return absl::InvalidArgumentError(
          absl::StrCat("legs[", i, "].peer.address: ", p.address.ToString(),
                       " is not of the leg's family (local ", s.legs[i].local.ToString(), ")"));
    }
    if (p.port == 0)
      return absl::InvalidArgumentError(absl::StrCat("legs[", i, "].peer.port: must not be 0"));
  }
  std::vector<std::optional<SrtpSetup>> srtp(u.legs.size());
  for (size_t i = 0; i < u.legs.size(); ++i) {
    if (!u.legs[i] || !u.legs[i]->srtp) continue;
    // An empty object means plain RTP both ways.
    const SrtpSpec& want = *u.legs[i]->srtp;
    const bool plain = !want.send && !want.receive;
    absl::StatusOr<SrtpSetup> setup =
        SetUpSrtp(plain ? std::nullopt : std::optional<SrtpSpec>(want), i, &s.legs[i]);
    if (!setup.ok()) return setup.status();
    srtp[i] = *std::move(setup);
  }
  if (u.to_tag) s.to_tag = *u.to_tag;
  if (u.media_timeout_s) s.media_timeout_s = *u.media_timeout_s;
  if (u.reset_stats) {
    // The workers own the counters; the control plane keeps where they stood and
    // reports the difference.
    for (const Leg& l : s.legs) {
      for (uint32_t id : {l.rtp_stream, l.rtcp_stream}) {
        if (id != dp::kNoStream) stats_baselines_[id] = ReadStreamRaw(id);
      }
    }
  }
  for (size_t i = 0; i < u.legs.size(); ++i) {
    if (!u.legs[i]) continue;
    const LegUpdate& lu = *u.legs[i];
    Leg& l = s.legs[i];
    if (lu.strict_source) l.spec.strict_source = *lu.strict_source;
    if (lu.asymmetric) l.spec.asymmetric = *lu.asymmetric;
    if (lu.dscp) l.spec.dscp = *lu.dscp;
    if (lu.rtcp_mux && *lu.rtcp_mux != l.spec.rtcp_mux) {
      const uint16_t second = static_cast<uint16_t>(l.rtp_port + 1);
      if (*lu.rtcp_mux) {
        dp_->RemoveFlow(KeyFor(l.local, second));  // RTCP now demuxed from the RTP port
      } else if (absl::Status st = dp_->AddFlow(KeyFor(l.local, second), l.rtcp_stream); !st.ok()) {
        return st;
      }
      l.spec.rtcp_mux = *lu.rtcp_mux;
      l.rtcp_port = l.spec.rtcp_mux ? l.rtp_port : second;
      if (l.peer && !lu.peer && !lu.peer_rtcp_port) {
        l.peer_rtcp_port =
            l.spec.rtcp_mux
                ? l.peer->port
                : l.spec.peer_rtcp_port.value_or(static_cast<uint16_t>(l.peer->port + 1));
      }
    }
    if (lu.ice) {
      l.spec.ice = lu.ice->ufrag.empty() ? std::nullopt : std::optional<IceSpec>(*lu.ice);
    }
    if (srtp[i]) {
      // Old contexts stay alive until the configs that point at them are freed.
      l.spec.srtp = std::move(srtp[i]->spec);
      l.srtp_rx = std::move(srtp[i]->rx);
      l.srtp_tx = std::move(srtp[i]->tx);
    }
    if (lu.peer) {
      // A new peer (re-INVITE): forget what was latched and learn again.
      l.spec.peer = *lu.peer;
      l.peer = *lu.peer;
      l.peer_rtcp_port = lu.peer_rtcp_port.value_or(
          l.spec.rtcp_mux ? lu.peer->port : static_cast<uint16_t>(lu.peer->port + 1));
      l.latched = false;
      l.mac.reset();
      ++l.generation;
      RefreshMac(l);
    } else if (lu.peer_rtcp_port) {
      l.peer_rtcp_port = *lu.peer_rtcp_port;
    }
  }
  for (size_t i = 0; i < s.legs.size(); ++i) PublishLeg(s, i);
  s.last_signal_ms = UnixMs();
  s.last_signal = std::chrono::steady_clock::now();
  return Describe(s);
}

absl::StatusOr<SessionInfo> SessionManager::Delete(const std::string& id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->ended) {
    return absl::NotFoundError(absl::StrCat("session ", id, " not found or already ended"));
  }
  EndSession(*it->second, "deleted");
  return it->second->final_info;
}

void SessionManager::EndSession(Session& s, const std::string& reason) {
  s.final_info = Describe(s);  // statistics before the streams go away
  s.ended = true;
  s.end_reason = reason;
  s.final_info.state = "ended";
  s.final_info.end_reason = reason;
  for (Leg& l : s.legs) ReleaseLeg(l);
  --active_;
  if (reason == "timeout") ++ended_timeout_;
  spdlog::info("session {} ended ({}): call-id {}", s.id, reason, s.call_id);
  ended_order_.push_back(s.id);
  while (ended_order_.size() > 1024) {  // keep the most recent ended sessions for GET
    sessions_.erase(ended_order_.front());
    ended_order_.pop_front();
  }
}

StreamStats SessionManager::ReadStream(uint32_t id) const {
  StreamStats out = ReadStreamRaw(id);
  auto base = stats_baselines_.find(id);
  if (base == stats_baselines_.end()) return out;
  // Since the last reset_stats: cumulative fields minus what they were then.
  const StreamStats& b = base->second;
  out.packets -= b.packets;
  out.bytes -= b.bytes;
  out.drops -= b.drops;
  for (size_t r = 0; r < kDropReasonCount; ++r) out.drops_by_reason[r] -= b.drops_by_reason[r];
  out.ssrc_changes -= b.ssrc_changes;
  out.expected -= std::min(out.expected, b.expected);
  out.lost -= b.lost;
  return out;
}

StreamStats SessionManager::ReadStreamRaw(uint32_t id) const {
  StreamStats out;
  if (id == dp::kNoStream) return out;
  const dp::StreamState& st = dp_->stream_state(id);
  out.packets = st.packets.Read();
  out.bytes = st.bytes.Read();
  out.drops = st.drops.Read();
  for (size_t r = 0; r < kDropReasonCount; ++r)
    out.drops_by_reason[r] = st.drops_by_reason[r].Read();
  const uint64_t last = st.last_tsc.Read();
  if (last != 0) {
    const uint64_t now = rte_rdtsc();
    out.last_packet_age_s =
        static_cast<double>(now > last ? now - last : 0) / static_cast<double>(dp_->tsc_hz());
  }
  out.ssrc = static_cast<uint32_t>(st.ssrc.Read());
  out.ssrc_changes = st.ssrc_changes.Read();
  out.expected = st.expected.Read();
  out.lost = static_cast<int64_t>(out.expected) - static_cast<int64_t>(st.received.Read());
  out.jitter_ms = static_cast<double>(st.jitter_us.Read()) / 1000.0;
  return out;
}

SessionInfo SessionManager::Describe(const Session& s) const {
  SessionInfo info;
  info.id = s.id;
  info.call_id = s.call_id;
  info.from_tag = s.from_tag;
  info.to_tag = s.to_tag;
  info.state = s.ended ? "ended" : "active";
  info.end_reason = s.end_reason;
  info.created_unix_ms = s.created_ms;
  info.last_signal_unix_ms = s.last_signal_ms;
  info.media_timeout_s = s.media_timeout_s;
  for (size_t i = 0; i < s.legs.size(); ++i) {
    const Leg& l = s.legs[i];
    LegInfo li;
    li.index = static_cast<unsigned>(i);
    li.interface = config_.ports[l.port_index].name;
    li.local = Endpoint{l.local, l.rtp_port};
    li.local_rtcp_port = l.rtcp_port;
    li.peer = l.peer;
    li.peer_rtcp_port = l.peer_rtcp_port;
    li.latched = l.latched;
    li.rtcp_mux = l.spec.rtcp_mux;
    li.strict_source = l.spec.strict_source;
    li.asymmetric = l.spec.asymmetric;
    li.dscp = l.spec.dscp;
    li.srtp = l.spec.srtp;
    li.ice = l.spec.ice;
    li.rtp = ReadStream(l.rtp_stream);
    li.rtcp = ReadStream(l.rtcp_stream);
    info.legs.push_back(std::move(li));
  }
  return info;
}

void SessionManager::HandleEvent(const dp::WorkerEvent& ev) {
  auto it = stream_refs_.find(ev.stream);
  if (it == stream_refs_.end()) return;  // stream ended meanwhile
  if (ev.type == dp::WorkerEvent::kLatched) {
    HandleLatched(ev, it->second);
  } else if (ev.type == dp::WorkerEvent::kSrtpError && ev.reason < DropReason::kCount) {
    const Session& s = *it->second.session;
    const uint64_t n =
        dp_->stream_state(ev.stream).drops_by_reason[static_cast<size_t>(ev.reason)].Read();
    spdlog::warn(
        "session {} (call-id {}) leg {} {}: dropping packets: {} ({} so far; at most one such "
        "line per second per stream)",
        s.id, s.call_id, it->second.leg, it->second.rtcp ? "RTCP" : "RTP",
        DropReasonLabel(ev.reason), n);
  }
}

void SessionManager::HandleLatched(const dp::WorkerEvent& ev, const StreamRef& ref) {
  Session& s = *ref.session;
  Leg& l = s.legs[ref.leg];
  if (ev.generation != l.generation) return;  // latched before a re-INVITE: stale
  const IpAddress src = AddrFrom(ev.family, ev.addr);
  const uint16_t port = rte_be_to_cpu_16(ev.port_be);
  std::array<uint8_t, 6> mac;
  std::memcpy(mac.data(), ev.mac, 6);
  if (ref.rtcp) {
    l.peer_rtcp_port = port;
    if (!l.peer) return;  // RTCP before RTP: wait for RTP to set the address
  } else {
    l.peer = Endpoint{src, port};
    if (l.spec.rtcp_mux) {
      l.peer_rtcp_port = port;
    } else if (l.peer_rtcp_port == 0 || !l.spec.peer) {
      l.peer_rtcp_port = static_cast<uint16_t>(port + 1);
    }
    l.latched = true;
    l.mac = MacAddress(mac);
  }
  spdlog::debug("session {} leg {} latched {} {}:{}", s.id, ref.leg, ref.rtcp ? "RTCP" : "RTP",
                src.ToString(), port);
  PublishLeg(s, 1 - ref.leg);  // the other leg's streams send toward this peer
}

std::optional<std::vector<uint8_t>> SessionManager::AnswerStun(const dp::StunRequest& req) {
  auto it = stream_refs_.find(req.stream);
  if (it == stream_refs_.end()) return std::nullopt;
  const StreamRef& ref = it->second;
  Session& s = *ref.session;
  Leg& l = s.legs[ref.leg];
  if (s.ended || !l.spec.ice) return std::nullopt;
  const IceSpec& ice = *l.spec.ice;
  // RFC 8445 §7.3 with RFC 5389 §7.3 and §10.1.2: what does not parse as STUN, or whose
  // FINGERPRINT is wrong, is no STUN and is dropped; a request without USERNAME or
  // MESSAGE-INTEGRITY is answered 400, one for other credentials or whose
  // MESSAGE-INTEGRITY does not verify with the leg's ice-pwd 401, one with an unknown
  // comprehension-required attribute 420. Only a Binding request that passes all of
  // them gets a success response.
  std::string why;
  int code = 0;  // with the reason phrase of the error response (RFC 5389 §15.6)
  std::string_view reason;
  absl::StatusOr<stun::Message> msg = stun::Parse(req.message);
  if (!msg.ok()) {
    why = std::string(msg.status().message());
  } else if (msg->type != stun::kBindingRequest) {
    return std::nullopt;  // indications (keepalives, RFC 8445 §11) and responses
  } else if (msg->fingerprint_at && !stun::CheckFingerprint(req.message, *msg)) {
    why = "FINGERPRINT does not match";
  } else if (!msg->username || !msg->integrity_at) {
    why = "no USERNAME or no MESSAGE-INTEGRITY";
    code = 400;
    reason = "Bad Request";
  } else if (!msg->username->starts_with(ice.ufrag + ":")) {
    why = absl::StrCat("USERNAME '", *msg->username, "' is not for ufrag ", ice.ufrag);
    code = 401;
    reason = "Unauthorized";
  } else if (!stun::CheckIntegrity(req.message, *msg, ice.pwd)) {
    why = "MESSAGE-INTEGRITY does not verify with the leg's ice-pwd";
    code = 401;
    reason = "Unauthorized";
  } else if (!msg->unknown_required.empty()) {
    why = absl::StrCat("unknown comprehension-required attribute 0x",
                       absl::Hex(msg->unknown_required.front(), absl::kZeroPad4));
    code = 420;
    reason = "Unknown Attribute";
  }
  if (!why.empty()) {
    ++stun_rejected_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_stun_log_ >= std::chrono::seconds(1)) {  // at most one line a second
      last_stun_log_ = now;
      spdlog::warn("session {} (call-id {}) leg {}: ICE check from {}:{} refused{}: {}", s.id,
                   s.call_id, ref.leg, req.source.ToString(), req.source_port,
                   code ? absl::StrCat(" (", code, ")") : std::string(" (dropped)"), why);
    }
    if (code == 0) return std::nullopt;
    return stun::BindingError(msg->transaction_id, code, reason,
                              code == 420 ? std::span<const uint16_t>(msg->unknown_required)
                                          : std::span<const uint16_t>(),
                              "Karl");
  }
  ++stun_answered_;
  if (msg->use_candidate) {
    // The controlling agent nominated this pair (RFC 8445 §8.1.1): media goes there.
    const bool moved =
        ref.rtcp ? l.peer_rtcp_port != req.source_port || !l.peer || l.peer->address != req.source
                 : l.peer != Endpoint{req.source, req.source_port};
    if (moved && req.source.family() == l.local.family()) {
      ++ice_nominations_;
      if (ref.rtcp) {
        l.peer_rtcp_port = req.source_port;
      } else {
        l.peer = Endpoint{req.source, req.source_port};
        if (l.spec.rtcp_mux) l.peer_rtcp_port = req.source_port;
        l.mac = req.source_mac;
      }
      spdlog::info("session {} (call-id {}) leg {}: ICE nominated {} {}:{}", s.id, s.call_id,
                   ref.leg, ref.rtcp ? "RTCP" : "RTP", req.source.ToString(), req.source_port);
      ++l.generation;  // what the leg latched before is history: latch again
      PublishLeg(s, ref.leg);
      PublishLeg(s, 1 - ref.leg);  // the other leg's streams send toward this peer
    }
  }
  return stun::BindingSuccess(msg->transaction_id, req.source, req.source_port, ice.pwd, "Karl");
}

void SessionManager::LearnNeighbors() {
  for (const dp::LearnedNeighbor& n : dp_->TakeLearnedNeighbors()) {
    size_t port_index = 0;
    while (port_index < dp_->port_count() && dp_->port(port_index).port_id != n.port_id)
      ++port_index;
    if (port_index == dp_->port_count()) continue;
    const NeighborKey key{port_index, n.address};
    auto it = neighbors_.find(key);
    if (it != neighbors_.end() && it->second == n.mac) continue;
    neighbors_[key] = n.mac;
    resolving_.erase(key);
    ReleaseHeld(key, &n.mac);  // media that waited for this answer goes out now
    // Republish every session whose next hop this is.
    for (auto& [id, s] : sessions_) {
      if (s->ended) continue;
      bool changed = false;
      for (Leg& l : s->legs) {
        if (l.port_index != port_index || (l.latched && l.mac)) continue;
        const std::optional<IpAddress> hop = NextHop(l);
        if (hop && *hop == n.address) {
          l.mac = n.mac;
          changed = true;
        }
      }
      if (changed) {
        for (size_t i = 0; i < s->legs.size(); ++i) PublishLeg(*s, i);
      }
    }
  }
}

// ARP request (RFC 826) or neighbor solicitation (RFC 4861 §7.2.2) for `target`.
void SessionManager::SendResolution(size_t port_index, const IpAddress& target) {
  const dp::PortRuntime& port = dp_->port(port_index);
  const PortConfig& pc = config_.ports[port_index];
  const IpAddress* source = nullptr;
  for (const IpPrefix& p : pc.addresses) {
    if (p.address.family() == target.family() && (source == nullptr || p.Contains(target))) {
      source = &p.address;
    }
  }
  if (source == nullptr) return;
  rte_mbuf* m = dp_->AllocMbuf();
  if (m == nullptr) return;
  const uint16_t l2 = pc.vlan ? 18 : 14;
  auto* frame = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, target.is_v4() ? 60 : l2 + 72));
  if (frame == nullptr) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memset(frame, 0, m->data_len);
  std::memcpy(frame + 6, port.mac.bytes().data(), 6);
  auto put_type = [&](uint16_t type) {
    if (pc.vlan) {
      frame[12] = 0x81;
      frame[13] = 0x00;
      frame[14] = static_cast<uint8_t>(pc.vlan >> 8);
      frame[15] = static_cast<uint8_t>(pc.vlan);
    }
    frame[l2 - 2] = static_cast<uint8_t>(type >> 8);
    frame[l2 - 1] = static_cast<uint8_t>(type);
  };
  if (target.is_v4()) {
    std::memset(frame, 0xff, 6);
    put_type(RTE_ETHER_TYPE_ARP);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(frame + l2);
    arp->arp_hardware = RTE_BE16(RTE_ARP_HRD_ETHER);
    arp->arp_protocol = RTE_BE16(RTE_ETHER_TYPE_IPV4);
    arp->arp_hlen = 6;
    arp->arp_plen = 4;
    arp->arp_opcode = RTE_BE16(RTE_ARP_OP_REQUEST);
    std::memcpy(arp->arp_data.arp_sha.addr_bytes, port.mac.bytes().data(), 6);
    std::memcpy(&arp->arp_data.arp_sip, source->bytes().data(), 4);
    std::memcpy(&arp->arp_data.arp_tip, target.bytes().data(), 4);
  } else {
    // To the solicited-node multicast group ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
    uint8_t group[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff};
    std::memcpy(group + 13, target.bytes().data() + 13, 3);
    const uint8_t mac[6] = {0x33, 0x33, 0xff, group[13], group[14], group[15]};
    std::memcpy(frame, mac, 6);
    put_type(RTE_ETHER_TYPE_IPV6);
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(frame + l2);
    ip->vtc_flow = RTE_BE32(6u << 28);
    ip->payload_len = RTE_BE16(32);
    ip->proto = IPPROTO_ICMPV6;
    ip->hop_limits = 255;
    std::memcpy(ip->src_addr, source->bytes().data(), 16);
    std::memcpy(ip->dst_addr, group, 16);
    uint8_t* icmp = frame + l2 + 40;
    icmp[0] = 135;  // neighbor solicitation
    std::memcpy(icmp + 8, target.bytes().data(), 16);
    icmp[24] = 1;  // source link-layer address option
    icmp[25] = 1;
    std::memcpy(icmp + 26, port.mac.bytes().data(), 6);
    const uint16_t ck = rte_ipv6_udptcp_cksum(ip, icmp);
    std::memcpy(icmp + 2, &ck, 2);
  }
  dp_->SendOnPort(port_index, m);
}

void SessionManager::CheckTimeouts() {
  const auto now = std::chrono::steady_clock::now();
  const uint64_t now_tsc = rte_rdtsc();
  std::vector<Session*> expired;
  for (auto& [id, s] : sessions_) {
    if (s->ended) continue;
    // Idle time: since the newest packet on any stream, or the last signal.
    double idle = std::chrono::duration<double>(now - s->last_signal).count();
    for (const Leg& l : s->legs) {
      for (uint32_t sid : {l.rtp_stream, l.rtcp_stream}) {
        if (sid == dp::kNoStream) continue;
        const uint64_t last = dp_->stream_state(sid).last_tsc.Read();
        if (last == 0) continue;
        idle = std::min(idle, static_cast<double>(now_tsc > last ? now_tsc - last : 0) /
                                  static_cast<double>(dp_->tsc_hz()));
      }
    }
    if (idle >= s->media_timeout_s) expired.push_back(s.get());
  }
  for (Session* s : expired) EndSession(*s, "timeout");
}

void SessionManager::Tick() {
  std::vector<dp::WorkerEvent> events;
  dp_->Maintain(&events);
  for (const dp::WorkerEvent& ev : events) HandleEvent(ev);
  TakeUnresolved();
  LearnNeighbors();
  // Ports whose grace period ended go back to the end of their pool.
  // Tokens grow in release order: once one grace period is not over, the later ones
  // are not either.
  size_t done = 0;
  while (done < pending_releases_.size() && dp_->GracePeriodDone(pending_releases_[done].token)) {
    pending_releases_[done].pool->free_rtp.push_back(pending_releases_[done].rtp_port);
    ++done;
  }
  pending_releases_.erase(pending_releases_.begin(), pending_releases_.begin() + done);
  const auto now = std::chrono::steady_clock::now();
  // Retries are a second apart: look at the (possibly long) list every 50 ms only.
  if (now >= next_resolution_scan_) {
    next_resolution_scan_ = now + std::chrono::milliseconds(50);
    AgeHeld(now);
    for (auto it = resolving_.begin(); it != resolving_.end();) {
      if (now >= it->second.next_try) {
        if (it->second.tries >= 10) {
          spdlog::warn("no ARP/NDP answer from {} on port {}", it->first.address.ToString(),
                       config_.ports[it->first.port_index].name);
          ReleaseHeld(it->first, nullptr);
          it = resolving_.erase(it);
          continue;
        }
        SendResolution(it->first.port_index, it->first.address);
        ++it->second.tries;
        it->second.next_try = now + std::chrono::seconds(1);
      }
      ++it;
    }
  }
  if (now - last_timeout_check_ >= std::chrono::seconds(1)) {
    last_timeout_check_ = now;
    CheckTimeouts();
  }
}

absl::StatusOr<SessionInfo> SessionServiceQueue::CreateSession(const SessionSpec& spec) {
  return queue_->Call<SessionInfo>([&] { return manager_->Create(spec); });
}
absl::StatusOr<SessionInfo> SessionServiceQueue::GetSession(const std::string& id) {
  return queue_->Call<SessionInfo>([&] { return manager_->Get(id); });
}
absl::StatusOr<SessionPage> SessionServiceQueue::ListSessions(const SessionFilter& filter) {
  return queue_->Call<SessionPage>([&] { return manager_->List(filter); });
}
absl::StatusOr<SessionInfo> SessionServiceQueue::UpdateSession(const std::string& id,
                                                               const SessionUpdate& update) {
  return queue_->Call<SessionInfo>([&] { return manager_->Update(id, update); });
}
absl::StatusOr<SessionInfo> SessionServiceQueue::DeleteSession(const std::string& id) {
  return queue_->Call<SessionInfo>([&] { return manager_->Delete(id); });
}

}  // namespace karl
