#include "controlplane/ng_commands.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/sdp.h"
#include "controlplane/stun.h"
#include "spdlog/spdlog.h"

namespace karl {

namespace {

// absl::StrCat for std::string_view (Debian's absl::string_view is its own type).
inline void CatOne(std::string& out, std::string_view v) { out.append(v); }
inline void CatOne(std::string& out, const std::string& v) { out.append(v); }
inline void CatOne(std::string& out, const char* v) { out.append(v); }
inline void CatOne(std::string& out, absl::string_view v) { out.append(v.data(), v.size()); }
template <typename T>
requires std::is_integral_v<T>
inline void CatOne(std::string& out, T v) { out.append(std::to_string(v)); }
template <typename... T>
std::string Cat(const T&... parts) {
  std::string out;
  (CatOne(out, parts), ...);
  return out;
}

// The suites Karl offers, strongest first (rtpengine's order, without the suites Karl
// does not implement: AES_192_CM, F8, NULL).
constexpr dp::SrtpSuite kOfferSuites[] = {
    dp::SrtpSuite::kAeadAes256Gcm,       dp::SrtpSuite::kAeadAes128Gcm,
    dp::SrtpSuite::kAes256CmHmacSha1_80, dp::SrtpSuite::kAes256CmHmacSha1_32,
    dp::SrtpSuite::kAesCm128HmacSha1_80, dp::SrtpSuite::kAesCm128HmacSha1_32,
};

// ng keys and flags compare case-insensitively with ' ' and '_' equal to '-'
// ("transport protocol" = "transport-protocol", "SIP_source_address" = "sip-source-address").
std::string Norm(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');  // ASCII only: no locale lookup per character
    } else if (c == ' ' || c == '_') {
      c = '-';
    }
  }
  return out;
}

// ICE credentials (RFC 8839 §5.4: ice-char = ALPHA / DIGIT / "+" / "/"; ufrag at least
// 4, pwd at least 22 characters), from the CSPRNG.
std::string IceToken(size_t n) {
  static constexpr char kIceChars[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::vector<uint8_t> r(n);
  if (RAND_bytes(r.data(), static_cast<int>(n)) != 1) {
    throw std::runtime_error("RAND_bytes failed: no randomness for ICE credentials");
  }
  std::string out(n, '0');
  for (size_t i = 0; i < n; ++i) out[i] = kIceChars[r[i] & 63];
  return out;
}

// Whether an SDP carries ICE (RFC 8839): credentials or candidates anywhere, and the
// first a=ice-ufrag (media level, else session level).
bool HasIce(const Sdp& sdp, std::string* ufrag) {
  bool any = sdp.session().HasAttribute("ice-ufrag") || sdp.session().HasAttribute("candidate");
  std::optional<std::string_view> u;
  for (const SdpMedia& m : sdp.media()) {
    if (m.rejected()) continue;
    if (m.HasAttribute("ice-ufrag") || m.HasAttribute("candidate")) any = true;
    if (!u) u = m.Attribute("ice-ufrag");
  }
  if (!u) u = sdp.session().Attribute("ice-ufrag");
  if (ufrag) *ufrag = u ? std::string(*u) : std::string();
  return any;
}

bool IsRtpProto(std::string_view proto) {
  return proto == "RTP/AVP" || proto == "RTP/AVPF" || proto == "RTP/SAVP" || proto == "RTP/SAVPF";
}
bool IsSrtpProto(std::string_view proto) { return proto.find("SAVP") != std::string_view::npos; }
bool IsDtlsProto(std::string_view proto) { return std::string_view(proto).starts_with("UDP/TLS/"); }

std::string SuiteName(dp::SrtpSuite s) { return std::string(dp::GetSrtpSuiteInfo(s).name); }

template <typename T>
BencodeValue Error(const T& reason) {
  BencodeValue r;
  r.Set("result", "error");
  r.Set("error-reason", Cat(reason));
  return r;
}

std::string FamilyName(const IpAddress& a) { return a.is_v6() ? "IPv6" : "IPv4"; }

BencodeValue EndpointDict(const Endpoint& e) {
  BencodeValue d;
  d.Set("family", FamilyName(e.address));
  d.Set("address", e.address.ToString());
  d.Set("port", e.port);
  return d;
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

double EstimateMos(double jitter_ms, double loss_percent, double rtt_ms) {
  // Effective latency: one-way delay (RTT/2) plus twice the jitter (the jitter buffer)
  // plus 10 ms of codec delay; G.107's delay impairment bends at 160 ms.
  const double latency = rtt_ms / 2 + 2 * jitter_ms + 10;
  double r = 93.2 - (latency < 160 ? latency / 40 : (latency - 120) / 10);
  r -= 2.5 * std::max(0.0, loss_percent);  // G.711 with packet loss concealment
  r = std::clamp(r, 0.0, 100.0);
  const double mos = 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r);
  return std::clamp(mos, 1.0, 4.5);
}

// What a request asks for beyond call-id/tags/sdp, from its keys and its "flags".
struct NgCommands::Options {
  std::vector<std::string> warnings;
  bool replace_origin = false;
  std::vector<std::string> direction;  // Karl port names: [offerer side, other side]
  std::string transport_protocol;
  bool sdes_off = false;
  std::set<dp::SrtpSuite> sdes_no, sdes_only;
  std::string ice;  // "", "remove", "force", ...
  std::set<std::string> rtcp_mux;
  std::optional<IpAddress::Family> family;
  std::optional<IpAddress> media_address;
  std::optional<IpAddress> received_from;
  std::optional<uint8_t> dscp;
  bool sip_source = false;
  bool asymmetric = false;
  bool strict_source = false;
  bool no_rtcp_attribute = false;
  bool full_rtcp_attribute = false;
  bool delete_all = true;

  void Warn(std::string w) {
    if (std::find(warnings.begin(), warnings.end(), w) == warnings.end()) {
      warnings.push_back(std::move(w));
    }
  }

  void Sdes(std::string_view raw) {
    const std::string n = Norm(raw);
    if (n == "off" || n == "no") {
      sdes_off = true;
    } else if (n == "on" || n == "default") {
    } else if (std::string_view(n).starts_with("no-") || std::string_view(n).starts_with("only-")) {
      const bool only = std::string_view(n).starts_with("only-");
      const std::string_view suite = raw.substr(only ? 5 : 3);
      absl::StatusOr<dp::SrtpSuite> s = SrtpSuiteFromName(suite);
      if (s.ok()) {
        (only ? sdes_only : sdes_no).insert(*s);
      } else if (!only) {
        // A suite Karl never offers anyway (F8, NULL, AES_192_CM): nothing to remove.
      } else {
        Warn(Cat("SDES only-", suite, ": Karl does not support that suite"));
      }
    } else {
      Warn(Cat("SDES option '", raw, "' is not supported and was ignored"));
    }
  }

  void RtcpMux(std::string_view raw) {
    const std::string n = Norm(raw);
    if (n == "offer" || n == "demux" || n == "accept" || n == "reject" || n == "require") {
      rtcp_mux.insert(n);
    } else {
      Warn(Cat("rtcp-mux option '", raw, "' is not supported and was ignored"));
    }
  }

  bool Proto(std::string_view raw) {
    if (IsRtpProto(raw) || IsDtlsProto(raw)) {
      transport_protocol = std::string(raw);
      return true;
    }
    return false;
  }

  absl::Status Family(std::string_view raw) {
    const std::string n = Norm(raw);
    if (n == "ip4" || n == "ipv4" || n == "inet") {
      family = IpAddress::Family::kV4;
    } else if (n == "ip6" || n == "ipv6" || n == "inet6") {
      family = IpAddress::Family::kV6;
    } else {
      return absl::InvalidArgumentError(Cat("address family '", raw, "' must be IP4 or IP6"));
    }
    return absl::OkStatus();
  }

  // rtpengine's ICE values; anything else keeps the default, with a warning.
  void Ice(std::string_view raw) {
    ice = Norm(raw);
    if (ice != "remove" && ice != "force" && ice != "force-relay" && ice != "default" &&
        ice != "optional") {
      Warn(Cat("ICE '", raw,
               "' not understood (remove, force, force-relay, default, optional): default used"));
      ice.clear();
    }
  }

  // One entry of "flags" (Kamailio sends most of its rtpengine_offer() options here).
  absl::Status Flag(std::string_view raw) {
    const size_t eq = raw.find('=');
    const std::string name = Norm(raw.substr(0, eq));
    const std::string_view value = eq == std::string_view::npos ? "" : raw.substr(eq + 1);
    if (eq != std::string_view::npos) {
      if (name == "direction") {
        direction.emplace_back(value);
      } else if (name == "transport-protocol") {
        if (!Proto(value)) return BadProto(value);
      } else if (name == "ice") {
        Ice(value);
      } else if (name == "address-family") {
        return Family(value);
      } else if (name == "media-address") {
        return MediaAddress(value);
      } else if (name == "tos") {
        return Tos(value);
      } else if (name == "sdes") {
        Sdes(value);
      } else if (name == "rtcp-mux") {
        RtcpMux(value);
      } else if (name == "replace") {
        Replace(value);
      } else if (name == "via-branch" || name == "label" || name == "delete-delay" ||
                 name == "to-tag" || name == "from-tag" || name == "call-id") {
      } else {
        Warn(Cat("unknown flag '", raw, "' ignored"));
      }
      return absl::OkStatus();
    }
    if (Proto(raw)) return absl::OkStatus();
    if (std::string_view(name).starts_with("replace-")) {
      Replace(raw.substr(8));
    } else if (std::string_view(name).starts_with("sdes-")) {
      Sdes(raw.substr(5));
    } else if (std::string_view(name).starts_with("rtcp-mux-")) {
      RtcpMux(raw.substr(9));
    } else if (std::string_view(name).starts_with("ice-")) {
      Ice(raw.substr(4));
    } else if (name == "sip-source-address" || name == "sip-source") {
      sip_source = true;
    } else if (name == "trust-address") {
      sip_source = false;
    } else if (name == "asymmetric") {
      asymmetric = true;
    } else if (name == "symmetric") {
      asymmetric = false;
    } else if (name == "strict-source") {
      strict_source = true;
    } else if (name == "no-rtcp-attribute") {
      no_rtcp_attribute = true;
    } else if (name == "full-rtcp-attribute") {
      full_rtcp_attribute = true;
    } else if (name == "record-call") {
      WarnRecord();
    } else if (name == "port-latching" || name == "loop-protect" || name == "no-redis-update" ||
               name == "fatal" || name == "original-sendrecv" || name == "reset" ||
               name == "media-handover" || name == "all" || name == "no-passthrough" ||
               name == "pad-crypto" || name == "generate-mid" || name == "debug") {
      // Accepted; Karl's behaviour already matches or the flag does not apply (latching
      // is always on and re-latches on a new source, see docs/ng-compat.md).
    } else {
      Warn(Cat("unknown flag '", raw, "' ignored"));
    }
    return absl::OkStatus();
  }

  void Replace(std::string_view raw) {
    const std::string n = Norm(raw);
    if (n == "origin") {
      replace_origin = true;
    } else if (n == "session-connection" || n == "sdp-version" || n == "username" ||
               n == "session-name" || n == "force-increment-sdp-version") {
      // c= lines are always rewritten; o= versions are kept consistent (RFC 3264).
    } else {
      Warn(Cat("replace '", raw, "' is not supported and was ignored"));
    }
  }

  void WarnRecord() {
    Warn("record call: recording is not implemented in Karl; the call is not recorded");
  }

  absl::Status BadProto(std::string_view raw) const {
    return absl::InvalidArgumentError(
        Cat("transport-protocol '", raw,
            "' is not supported (RTP/AVP, RTP/AVPF, RTP/SAVP or RTP/SAVPF)"));
  }

  absl::Status MediaAddress(std::string_view raw) {
    std::optional<IpAddress> a = IpAddress::Parse(raw);
    if (!a) {
      return absl::InvalidArgumentError(Cat("media address '", raw, "' is not an IP address"));
    }
    media_address = a;
    return absl::OkStatus();
  }

  absl::Status Tos(std::string_view raw) {
    int v = -1;
    if (!raw.empty() && raw.size() <= 3 && std::all_of(raw.begin(), raw.end(), ::isdigit)) {
      v = std::stoi(std::string(raw));
    }
    if (v < 0 || v > 255) {
      return absl::InvalidArgumentError(Cat("TOS '", raw, "' must be 0..255"));
    }
    dscp = static_cast<uint8_t>(v >> 2);
    return absl::OkStatus();
  }

  // Reads every key of the request. Unknown keys and flags end up in warnings.
  absl::Status Parse(const BencodeValue& req) {
    const BencodeValue::Dictionary* dict = req.AsDictionary();
    for (const auto& [raw_key, value] : *dict) {
      const std::string key = Norm(raw_key);
      auto strings = [&]() -> absl::StatusOr<std::vector<std::string>> {
        if (const std::string* s = value.AsString()) return std::vector<std::string>{*s};
        return req.GetStringList(raw_key);
      };
      if (key == "command" || key == "call-id" || key == "from-tag" || key == "to-tag" ||
          key == "sdp" || key == "via-branch" || key == "label" || key == "supports" ||
          key == "metadata" || key == "delete-delay" || key == "ptime" || key == "limit" ||
          key == "from-tags" || key == "to-label" || key == "set-label") {
        continue;
      }
      if (key == "flags") {
        absl::StatusOr<std::vector<std::string>> flags = req.GetStringList(raw_key);
        if (!flags.ok()) return flags.status();
        for (const std::string& f : *flags) {
          if (absl::Status st = Flag(f); !st.ok()) return st;
        }
      } else if (key == "replace") {
        absl::StatusOr<std::vector<std::string>> v = strings();
        if (!v.ok()) return v.status();
        for (const std::string& r : *v) Replace(r);
      } else if (key == "direction") {
        absl::StatusOr<std::vector<std::string>> v = strings();
        if (!v.ok()) return v.status();
        direction = *v;
      } else if (key == "from-interface" || key == "to-interface") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok()) return v.status();
        if (direction.size() < 2) direction.resize(2);
        direction[key == "from-interface" ? 0 : 1] = std::string(*v);
      } else if (key == "transport-protocol") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok()) return v.status();
        if (!Proto(*v)) return BadProto(*v);
      } else if (key == "sdes") {
        absl::StatusOr<std::vector<std::string>> v = strings();
        if (!v.ok()) return v.status();
        for (const std::string& s : *v) Sdes(s);
      } else if (key == "ice") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok()) return v.status();
        Ice(*v);
      } else if (key == "rtcp-mux") {
        absl::StatusOr<std::vector<std::string>> v = strings();
        if (!v.ok()) return v.status();
        for (const std::string& s : *v) RtcpMux(s);
      } else if (key == "address-family") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok()) return v.status();
        if (absl::Status st = Family(*v); !st.ok()) return st;
      } else if (key == "media-address") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok()) return v.status();
        if (absl::Status st = MediaAddress(*v); !st.ok()) return st;
      } else if (key == "received-from") {
        absl::StatusOr<std::vector<std::string>> v = req.GetStringList(raw_key);
        if (!v.ok()) return v.status();
        if (v->size() != 2 || !IpAddress::Parse((*v)[1])) {
          return absl::InvalidArgumentError(
              "received from: expected a list [\"IP4\"|\"IP6\", \"<address>\"]");
        }
        received_from = IpAddress::Parse((*v)[1]);
      } else if (key == "tos") {
        absl::StatusOr<int64_t> v = req.GetInteger(raw_key);
        if (!v.ok()) return v.status();
        if (absl::Status st = Tos(std::to_string(*v)); !st.ok()) return st;
      } else if (key == "record-call") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (v.ok() && (Norm(*v) == "yes" || Norm(*v) == "on" || Norm(*v) == "true")) WarnRecord();
      } else if (key == "dtls") {
        absl::StatusOr<std::string_view> v = req.GetString(raw_key);
        if (!v.ok() || (Norm(*v) != "off" && Norm(*v) != "no")) {
          Warn("DTLS: Karl does not do DTLS-SRTP; option ignored");
        }
      } else if (key == "codec") {
        Warn("codec: Karl does not transcode or filter codecs; option ignored");
      } else {
        Warn(Cat("unknown key '", raw_key, "' ignored"));
      }
    }
    return absl::OkStatus();
  }
};

NgCommands::NgCommands(const Config& config, SessionService* sessions, TotalsFn totals)
    : config_(config), sessions_(sessions), totals_(std::move(totals)) {}

BencodeValue NgCommands::Handle(const BencodeValue& request) {
  absl::StatusOr<std::string_view> command = request.GetString("command");
  if (!command.ok()) return Error("Unrecognized command");
  const std::string cmd = Norm(*command);
  if (cmd == "ping") {
    BencodeValue r;
    r.Set("result", "pong");
    return r;
  }
  Options opt;
  BencodeValue reply;
  if (cmd == "offer" || cmd == "answer" || cmd == "delete") {
    if (absl::Status st = opt.Parse(request); !st.ok()) return Error(st.message());
    reply = cmd == "offer"    ? Offer(request, opt)
            : cmd == "answer" ? Answer(request, opt)
                              : Delete(request, opt);
  } else if (cmd == "query") {
    reply = Query(request);
  } else if (cmd == "list") {
    reply = List(request);
  } else if (cmd == "statistics") {
    reply = Statistics();
  } else {
    return Error("Unrecognized command");
  }
  if (!opt.warnings.empty()) {
    const BencodeValue* have = reply.Find("warning");
    std::string w = have && have->AsString() ? *have->AsString() + "; " : "";
    reply.Set("warning", w + absl::StrJoin(opt.warnings, "; "));
  }
  return reply;
}

void NgCommands::Reconcile(Call& call) {
  for (Media& m : call.media) {
    if (m.session_id.empty()) continue;
    absl::StatusOr<SessionInfo> s = sessions_->GetSession(m.session_id);
    if (!s.ok() || s->state != "active") m.session_id.clear();
  }
}

std::string NgCommands::StampVersion(Call& call, int side, Sdp* sdp) {
  SdpOrigin o = sdp->origin();
  const std::string version = o.sess_version;
  o.sess_version = "0";
  sdp->SetOrigin(o);
  std::string body = sdp->ToString();
  // Numeric compare of decimal strings of any length.
  auto less = [](const std::string& a, const std::string& b) {
    const std::string_view x =
        std::string_view(a).substr(std::min(a.find_first_not_of('0'), a.size()));
    const std::string_view y =
        std::string_view(b).substr(std::min(b.find_first_not_of('0'), b.size()));
    return x.size() != y.size() ? x.size() < y.size() : x < y;
  };
  std::string out_version = version;
  if (call.has_last[side] && body != call.last_body[side] &&
      !less(call.last_version[side], version)) {
    o.sess_version = call.last_version[side];
    sdp->SetOrigin(o);
    sdp->BumpSessionVersion();
    out_version = sdp->origin().sess_version;
  } else if (call.has_last[side] && body == call.last_body[side] &&
             less(version, call.last_version[side])) {
    out_version = call.last_version[side];  // never go backwards
  }
  o.sess_version = out_version;
  sdp->SetOrigin(o);
  call.last_body[side] = std::move(body);
  call.last_version[side] = out_version;
  call.has_last[side] = true;
  return sdp->ToString();
}

namespace {

// The Karl port for a leg: by name, else the port whose prefix holds `peer`, else the
// first port with an address of `family`.
absl::StatusOr<std::string> PickInterface(const Config& config, const std::string& name,
                                          const std::optional<IpAddress>& peer,
                                          IpAddress::Family family) {
  if (!name.empty()) {
    for (const PortConfig& p : config.ports) {
      if (p.name == name) return name;
    }
    std::vector<std::string> names;
    for (const PortConfig& p : config.ports) names.push_back(p.name);
    return absl::InvalidArgumentError(Cat("direction: no Karl port named '", name,
                                          "' (ports: ", absl::StrJoin(names, ", "), ")"));
  }
  if (peer) {
    for (const PortConfig& p : config.ports) {
      for (const IpPrefix& a : p.addresses) {
        if (a.Contains(*peer)) return p.name;
      }
    }
  }
  for (const PortConfig& p : config.ports) {
    for (const IpPrefix& a : p.addresses) {
      if (a.address.family() == family) return p.name;
    }
  }
  return absl::InvalidArgumentError(
      Cat("no Karl port has an ", family == IpAddress::Family::kV6 ? "IPv6" : "IPv4", " address"));
}

// A media section's remote RTP endpoint, unless it is on hold with a zero address or
// rejected.
std::optional<Endpoint> RemoteEndpoint(const Sdp& sdp, size_t i) {
  const SdpMedia& m = sdp.media(i);
  if (m.rejected()) return std::nullopt;
  std::optional<SdpConnection> c = sdp.EffectiveConnection(i);
  if (!c) return std::nullopt;
  std::optional<IpAddress> ip = c->Ip();
  if (!ip || ip->IsUnspecified()) return std::nullopt;
  return Endpoint{*ip, m.port()};
}

std::optional<uint16_t> RemoteRtcpPort(const SdpMedia& m) {
  if (std::optional<SdpRtcp> r = m.rtcp()) return r->port;
  return std::nullopt;
}

SrtpKeySpec KeySpec(const SdesCrypto& c) {
  return SrtpKeySpec{SuiteName(c.suite), FormatSdesKey(c)};
}

}  // namespace

void NgCommands::WriteKarlSide(const Options& opt, const LegInfo& leg, uint16_t rtcp_port,
                               const std::string& proto, const std::vector<SdesCrypto>& crypto,
                               bool rtcp_mux, const IceSpec* ice, bool rtcp_mux_only, Sdp* sdp,
                               size_t index, bool* first) {
  SdpMedia& m = sdp->media(index);
  const SdpConnection conn = SdpConnection::FromIp(opt.media_address.value_or(leg.local.address));
  sdp->SetMediaConnection(index, conn);
  if (*first && opt.replace_origin) sdp->SetOriginAddress(conn);
  *first = false;
  m.SetPort(leg.local.port);
  m.SetProto(proto);
  m.RemoveAllCrypto();
  for (const SdesCrypto& c : crypto) m.AddCrypto(FormatSdesCrypto(c));
  m.RemoveAttributes("fingerprint");  // Karl does not do DTLS
  m.RemoveAttributes("setup");
  m.SetRtcpMux(rtcp_mux);
  if (opt.no_rtcp_attribute) {
    m.RemoveRtcp();
  } else {
    SdpRtcp r;
    r.port = rtcp_port;
    if (opt.full_rtcp_attribute) r.connection = conn;
    m.SetRtcp(r);
  }
  m.RemoveIce();
  if (ice != nullptr) {
    // Karl is the only candidate (RFC 8445 §5.1.1: host candidates; §5.1.2.1 priority
    // with type preference 126, local preference 65535); the foundation is the same for
    // every candidate on one address (§5.1.1.3).
    m.AddAttribute("ice-ufrag", ice->ufrag);
    m.AddAttribute("ice-pwd", ice->pwd);
    const std::string addr = conn.address;
    const std::string foundation = absl::StrCat(
        absl::Hex(stun::Crc32({reinterpret_cast<const uint8_t*>(addr.data()), addr.size()})));
    auto candidate = [&](int component, uint16_t port) {
      const uint32_t priority =
          (126u << 24) | (65535u << 8) | static_cast<uint32_t>(256 - component);
      m.AddAttribute("candidate", Cat(foundation, " ", component, " UDP ", priority, " ", addr, " ",
                                      port, " typ host"));
    };
    candidate(1, leg.local.port);
    if (!rtcp_mux_only) candidate(2, rtcp_port);
  }
}

std::optional<IceSpec> NgCommands::IceToward(const Options& opt, Call& call, int side,
                                             bool peer_ice) {
  const bool want =
      opt.ice == "force" || opt.ice == "force-relay" || (opt.ice != "remove" && peer_ice);
  if (!want) return std::nullopt;
  SideIce& si = call.ice[side];
  if (si.ufrag.empty()) {
    si.ufrag = IceToken(8);
    si.pwd = IceToken(24);
  }
  return IceSpec{si.ufrag, si.pwd};
}

std::string NgCommands::FinishSdp(Call& call, int side, bool ice_lite, Sdp* sdp) {
  sdp->session().RemoveIce();
  for (size_t i = 0; i < sdp->media().size(); ++i) {
    if (i >= call.media.size() || !call.media[i].relayed) sdp->media(i).RemoveIce();
  }
  if (ice_lite) sdp->session().AddAttribute("ice-lite");
  return StampVersion(call, side, sdp);
}

BencodeValue NgCommands::Offer(const BencodeValue& req, Options& opt) {
  absl::StatusOr<std::string_view> call_id = req.GetString("call-id");
  if (!call_id.ok() || call_id->empty()) return Error("No call-id in message");
  absl::StatusOr<std::string_view> from_tag = req.GetString("from-tag");
  if (!from_tag.ok() || from_tag->empty()) return Error("No from-tag in message");
  absl::StatusOr<std::string_view> sdp_text = req.GetString("sdp");
  if (!sdp_text.ok() || sdp_text->empty()) return Error("No SDP body in message");
  absl::StatusOr<Sdp> parsed = Sdp::Parse(*sdp_text);
  if (!parsed.ok()) return Error(Cat("Failed to parse SDP: ", parsed.status().message()));
  Sdp sdp = *std::move(parsed);
  if (IsDtlsProto(opt.transport_protocol)) {
    return Error(Cat("transport-protocol ", opt.transport_protocol,
                     ": DTLS-SRTP is not supported by Karl (use RTP/SAVP with SDES)"));
  }
  auto [it, fresh] = calls_.try_emplace(std::string(*call_id));
  Call& call = it->second;
  if (fresh) {
    call.call_id = std::string(*call_id);
    call.tags[0] = std::string(*from_tag);
  }
  Reconcile(call);
  int side;
  if (call.tags[0] == *from_tag) {
    side = 0;
  } else if (call.tags[1] == *from_tag) {
    side = 1;
  } else {
    // A new from-tag on a known call (e.g. a new branch after a failed one): it takes
    // the offerer's place.
    side = 0;
    call.tags[0] = std::string(*from_tag);
  }
  const int other = 1 - side;
  call.offer_side = side;
  if (absl::StatusOr<std::string_view> tt = req.GetString("to-tag"); tt.ok() && !tt->empty()) {
    if (call.tags[other].empty()) call.tags[other] = std::string(*tt);
  }
  // ICE (D25): does the offerer speak it, did it restart it (new ufrag: Karl's answer to
  // it must carry new credentials too, RFC 8839 §4.4.1.1.2), does the recipient get it.
  std::string offer_ufrag;
  const bool offer_ice = HasIce(sdp, &offer_ufrag);
  if (SideIce& oi = call.ice[side]; offer_ice) {
    if (!oi.peer_ufrag.empty() && offer_ufrag != oi.peer_ufrag) oi.ufrag.clear();
    oi.peer_ufrag = offer_ufrag;
  }
  call.ice[side].peer_offered = offer_ice;
  const std::optional<IceSpec> ice_other = IceToward(opt, call, other, offer_ice);

  // Plan every media section before touching any session.
  struct Plan {
    bool relay = false;
    bool create = false;
    LegSpec legs[2];
    LegUpdate update;  // for the offerer's leg on a re-offer
    std::string proto_other;
    std::vector<SdesCrypto> offered;
    std::vector<SdesCrypto> karl_offer;
    bool mux_offerer = false;
    bool mux_offer_other = false;
    std::optional<Endpoint> sdp_peer;  // the offerer's endpoint as its SDP gives it
  };
  std::vector<Plan> plans(sdp.media().size());
  std::vector<Media> media = call.media;
  media.resize(sdp.media().size());
  for (size_t i = 0; i < sdp.media().size(); ++i) {
    const SdpMedia& m = sdp.media(i);
    Plan& p = plans[i];
    Media& md = media[i];
    md.type = m.media();
    if (m.rejected()) continue;
    if (!IsRtpProto(m.proto())) {
      if (IsDtlsProto(m.proto()) && IsRtpProto(m.proto().substr(8))) {
        return Error(
            Cat("media section ", i + 1, " (", m.proto(), "): DTLS-SRTP is not supported by Karl"));
      }
      opt.Warn(Cat("media section ", i + 1, " (", m.media(), " ", m.proto(),
                   ") passed through unchanged: Karl relays RTP only"));
      continue;
    }
    p.relay = true;
    const std::string proto_offerer = m.proto();
    p.proto_other = !opt.transport_protocol.empty()            ? opt.transport_protocol
                    : (md.relayed && !md.proto[other].empty()) ? md.proto[other]
                                                               : proto_offerer;
    // The offerer's keys.
    if (IsSrtpProto(proto_offerer)) {
      for (std::string_view line : m.crypto()) {
        absl::StatusOr<SdesCrypto> c = ParseSdesCrypto(line);
        if (c.ok()) p.offered.push_back(*std::move(c));
      }
      if (p.offered.empty()) {
        return Error(Cat("media section ", i + 1, " (", proto_offerer,
                         ") has no a=crypto line with a suite Karl supports"));
      }
    }
    // Karl's keys for the recipient: the same as last time on a re-offer.
    if (IsSrtpProto(p.proto_other)) {
      if (opt.sdes_off) {
        return Error(Cat("media section ", i + 1, ": SDES off with transport protocol ",
                         p.proto_other, " leaves no way to key SRTP (Karl has no DTLS)"));
      }
      std::vector<SdesCrypto> keep = md.crypto[other].karl_offered;
      uint32_t tag = 1;
      for (dp::SrtpSuite s : kOfferSuites) {
        if (opt.sdes_no.count(s) || (!opt.sdes_only.empty() && !opt.sdes_only.count(s))) continue;
        auto same = std::find_if(keep.begin(), keep.end(),
                                 [&](const SdesCrypto& c) { return c.suite == s; });
        if (same != keep.end()) {
          SdesCrypto c = *same;
          c.tag = tag++;
          p.karl_offer.push_back(std::move(c));
          continue;
        }
        absl::StatusOr<SdesCrypto> c = GenerateSdesCrypto(tag++, s);
        if (!c.ok()) return Error(c.status().message());
        p.karl_offer.push_back(*std::move(c));
      }
      if (p.karl_offer.empty()) {
        return Error(
            Cat("media section ", i + 1, ": the SDES options leave no crypto suite to offer"));
      }
    }
    const bool mux_in = m.rtcp_mux();
    p.mux_offerer = mux_in && !opt.rtcp_mux.count("reject");
    p.mux_offer_other = (mux_in && !opt.rtcp_mux.count("demux") && !opt.rtcp_mux.count("reject")) ||
                        opt.rtcp_mux.count("offer") || opt.rtcp_mux.count("require");

    // The connection address once (parsing c= is not free), the peer from it.
    std::optional<IpAddress> sdp_ip;
    if (std::optional<SdpConnection> c = sdp.EffectiveConnection(i)) sdp_ip = c->Ip();
    if (sdp_ip && !sdp_ip->IsUnspecified()) p.sdp_peer = Endpoint{*sdp_ip, m.port()};
    std::optional<Endpoint> peer = p.sdp_peer;
    if (peer && opt.sip_source && opt.received_from &&
        opt.received_from->family() == peer->address.family()) {
      peer->address = *opt.received_from;
    }
    const std::optional<uint16_t> peer_rtcp =
        p.mux_offerer ? std::optional<uint16_t>() : RemoteRtcpPort(m);
    if (md.relayed && !md.session_id.empty()) {
      // Re-offer: the offerer's leg may have moved (or gone on hold: keep the peer).
      LegUpdate& u = p.update;
      // An unchanged endpoint keeps what was latched (a NATed peer's real address).
      if (peer && p.sdp_peer != md.sdp_peer[side]) {
        u.peer = peer;
        u.peer_rtcp_port = peer_rtcp;
      }
      u.rtcp_mux = p.mux_offerer;
      if (opt.asymmetric) u.asymmetric = true;
      if (opt.strict_source) u.strict_source = true;
      if (opt.dscp) u.dscp = opt.dscp;
      continue;
    }
    p.create = true;
    const IpAddress::Family fam_offerer = sdp_ip ? sdp_ip->family() : IpAddress::Family::kV4;
    const IpAddress::Family fam_other = opt.family.value_or(fam_offerer);
    const std::string dir0 = opt.direction.size() > 0 ? opt.direction[0] : "";
    const std::string dir1 = opt.direction.size() > 1 ? opt.direction[1] : "";
    absl::StatusOr<std::string> if_offerer = PickInterface(config_, dir0, sdp_ip, fam_offerer);
    if (!if_offerer.ok()) return Error(if_offerer.status().message());
    absl::StatusOr<std::string> if_other =
        dir1.empty() ? if_offerer : PickInterface(config_, dir1, std::nullopt, fam_other);
    if (!if_other.ok()) return Error(if_other.status().message());
    LegSpec& lo = p.legs[side];
    lo.peer = peer;
    lo.peer_rtcp_port = peer_rtcp;
    lo.interface = *if_offerer;
    lo.family = fam_offerer;
    lo.rtcp_mux = p.mux_offerer;
    LegSpec& lr = p.legs[other];
    lr.ice = ice_other;
    lr.interface = *if_other;
    lr.family = fam_other;
    lr.rtcp_mux = false;  // settled by the answer
    for (LegSpec* l : {&lo, &lr}) {
      l->asymmetric = opt.asymmetric;
      l->strict_source = opt.strict_source;
      l->dscp = opt.dscp;
    }
  }

  // Apply: create new sessions (rolled back together on failure), then update.
  std::vector<std::string> created;
  auto rollback = [&] {
    for (const std::string& id : created) (void)sessions_->DeleteSession(id);
    if (fresh) calls_.erase(it);
  };
  std::vector<SessionInfo> infos(sdp.media().size());
  for (size_t i = 0; i < plans.size(); ++i) {
    Plan& p = plans[i];
    if (!p.create) continue;
    SessionSpec spec;
    spec.call_id = call.call_id;
    spec.from_tag = call.tags[0];
    spec.to_tag = call.tags[1];
    spec.legs = {p.legs[0], p.legs[1]};
    absl::StatusOr<SessionInfo> s = sessions_->CreateSession(spec);
    if (!s.ok()) {
      rollback();
      return Error(Cat("media section ", i + 1, ": ", s.status().message()));
    }
    created.push_back(s->id);
    media[i].session_id = s->id;
    infos[i] = *std::move(s);
  }
  for (size_t i = 0; i < plans.size(); ++i) {
    Plan& p = plans[i];
    if (!p.relay || p.create) continue;
    SessionUpdate u;
    u.legs.resize(2);
    u.legs[side] = p.update;
    u.legs[other].emplace().ice = ice_other.value_or(IceSpec{});
    absl::StatusOr<SessionInfo> s = sessions_->UpdateSession(media[i].session_id, u);
    if (!s.ok()) {
      rollback();
      return Error(Cat("media section ", i + 1, ": ", s.status().message()));
    }
    infos[i] = *std::move(s);
  }
  // Drop sessions of media sections that are now rejected or gone.
  for (size_t i = 0; i < call.media.size(); ++i) {
    const bool keep = i < plans.size() && plans[i].relay;
    if (!keep && !call.media[i].session_id.empty()) {
      (void)sessions_->DeleteSession(call.media[i].session_id);
      if (i < media.size()) media[i].session_id.clear();
    }
  }

  // Rewrite the SDP for the recipient.
  bool first = true;
  for (size_t i = 0; i < plans.size(); ++i) {
    Plan& p = plans[i];
    Media& md = media[i];
    SdpMedia& m = sdp.media(i);
    md.relayed = p.relay;
    if (!p.relay) continue;
    md.proto[side] = m.proto();
    md.proto[other] = p.proto_other;
    md.rtcp_mux_offered[side] = m.rtcp_mux();
    md.rtcp_mux_offered[other] = p.mux_offer_other;
    md.rtcp_mux[side] = p.mux_offerer;
    if (p.sdp_peer) md.sdp_peer[side] = p.sdp_peer;
    md.crypto[side].offered = p.offered;
    md.crypto[other].karl_offered = p.karl_offer;
    std::vector<SdesCrypto> crypto = p.karl_offer;
    // RTP+1 even when mux is offered: a recipient that declines mux sends RTCP there.
    const LegInfo& leg = infos[i].legs[other];
    WriteKarlSide(opt, leg, static_cast<uint16_t>(leg.local.port + 1), p.proto_other, crypto,
                  p.mux_offer_other, ice_other ? &*ice_other : nullptr, false, &sdp, i, &first);
  }
  call.media = std::move(media);
  call.answered = false;
  std::string out = FinishSdp(call, other, ice_other.has_value(), &sdp);
  BencodeValue r;
  r.Set("result", "ok");
  r.Set("sdp", out);
  return r;
}

BencodeValue NgCommands::Answer(const BencodeValue& req, Options& opt) {
  absl::StatusOr<std::string_view> call_id = req.GetString("call-id");
  if (!call_id.ok() || call_id->empty()) return Error("No call-id in message");
  absl::StatusOr<std::string_view> from_tag = req.GetString("from-tag");
  if (!from_tag.ok() || from_tag->empty()) return Error("No from-tag in message");
  absl::StatusOr<std::string_view> to_tag = req.GetString("to-tag");
  absl::StatusOr<std::string_view> sdp_text = req.GetString("sdp");
  if (!sdp_text.ok() || sdp_text->empty()) return Error("No SDP body in message");
  auto it = calls_.find(std::string(*call_id));
  if (it == calls_.end()) return Error("Unknown call-id");
  Call& call = it->second;
  absl::StatusOr<Sdp> parsed = Sdp::Parse(*sdp_text);
  if (!parsed.ok()) return Error(Cat("Failed to parse SDP: ", parsed.status().message()));
  Sdp sdp = *std::move(parsed);
  const int side = call.offer_side;  // the offerer, who gets this answer
  const int other = 1 - side;
  if (call.tags[side] != *from_tag) {
    return Error(
        Cat("from-tag '", *from_tag, "' did not make the offer of call-id ", call.call_id));
  }
  if (sdp.media().size() != call.media.size()) {
    return Error(Cat("the answer has ", sdp.media().size(), " media sections, the offer had ",
                     call.media.size()));
  }
  std::string answer_ufrag;
  const bool answer_ice = HasIce(sdp, &answer_ufrag);
  call.ice[other].peer_offered = answer_ice;
  if (answer_ice) call.ice[other].peer_ufrag = answer_ufrag;
  const std::optional<IceSpec> ice_side = IceToward(opt, call, side, call.ice[side].peer_offered);
  std::vector<Media> media = call.media;
  std::vector<SessionUpdate> updates(media.size());
  std::vector<SessionInfo> infos(media.size());
  std::vector<bool> reject(media.size(), false);
  for (size_t i = 0; i < media.size(); ++i) {
    Media& md = media[i];
    const SdpMedia& m = sdp.media(i);
    if (!md.relayed) continue;
    if (md.session_id.empty()) {
      return Error(Cat("media section ", i + 1, ": the session has ended"));
    }
    if (m.rejected()) {
      reject[i] = true;
      continue;
    }
    // The answerer's side.
    SideCrypto& cr = md.crypto[other];
    cr.receive.reset();
    cr.send.reset();
    if (IsSrtpProto(md.proto[other]) && IsSrtpProto(m.proto())) {
      for (std::string_view line : m.crypto()) {
        absl::StatusOr<SdesCrypto> c = ParseSdesCrypto(line);
        if (!c.ok()) continue;
        auto mine = std::find_if(cr.karl_offered.begin(), cr.karl_offered.end(),
                                 [&](const SdesCrypto& k) { return k.tag == c->tag; });
        if (mine == cr.karl_offered.end() || mine->suite != c->suite) continue;
        cr.send = *mine;
        cr.receive = *std::move(c);
        break;
      }
      if (!cr.receive) {
        return Error(Cat("media section ", i + 1,
                         ": the answer has no a=crypto line matching Karl's offer"));
      }
    } else {
      md.proto[other] = m.proto();  // the answerer declined (or never had) SRTP
    }
    // The offerer's side: pick its key, preferably for the answerer's suite.
    SideCrypto& co = md.crypto[side];
    if (IsSrtpProto(md.proto[side])) {
      const SdesCrypto* pick = nullptr;
      for (const SdesCrypto& c : co.offered) {
        if (cr.send && c.suite == cr.send->suite) {
          pick = &c;
          break;
        }
      }
      if (pick == nullptr) pick = &co.offered.front();
      const bool keep_send = co.send && co.send->suite == pick->suite && co.send->tag == pick->tag;
      co.receive = *pick;
      if (!keep_send) {
        absl::StatusOr<SdesCrypto> k = GenerateSdesCrypto(pick->tag, pick->suite);
        if (!k.ok()) return Error(k.status().message());
        co.send = *std::move(k);
      }
    } else {
      co.receive.reset();
      co.send.reset();
    }
    md.rtcp_mux[other] = md.rtcp_mux_offered[other] && m.rtcp_mux();
    SessionUpdate& u = updates[i];
    if (to_tag.ok() && !to_tag->empty()) u.to_tag = std::string(*to_tag);
    u.legs.resize(2);
    LegUpdate lu_other;
    if (std::optional<Endpoint> peer = RemoteEndpoint(sdp, i); peer && peer != md.sdp_peer[other]) {
      md.sdp_peer[other] = peer;
      lu_other.peer = peer;
      if (!md.rtcp_mux[other]) lu_other.peer_rtcp_port = RemoteRtcpPort(m);
    }
    lu_other.rtcp_mux = md.rtcp_mux[other];
    if (opt.asymmetric) lu_other.asymmetric = true;
    if (opt.strict_source) lu_other.strict_source = true;
    for (int s : {0, 1}) {
      SrtpSpec spec;
      if (md.crypto[s].send) spec.send = KeySpec(*md.crypto[s].send);
      if (md.crypto[s].receive) spec.receive = KeySpec(*md.crypto[s].receive);
      LegUpdate& lu = s == other ? lu_other : (u.legs[s] ? *u.legs[s] : u.legs[s].emplace());
      lu.srtp = spec;
    }
    u.legs[other] = lu_other;
    if (!u.legs[side]) u.legs[side].emplace();
    u.legs[side]->ice = ice_side.value_or(IceSpec{});
  }
  for (size_t i = 0; i < media.size(); ++i) {
    if (!media[i].relayed || reject[i]) continue;
    absl::StatusOr<SessionInfo> s = sessions_->UpdateSession(media[i].session_id, updates[i]);
    if (!s.ok()) return Error(Cat("media section ", i + 1, ": ", s.status().message()));
    infos[i] = *std::move(s);
  }
  for (size_t i = 0; i < media.size(); ++i) {
    if (!reject[i]) continue;
    (void)sessions_->DeleteSession(media[i].session_id);
    media[i].session_id.clear();
    media[i].relayed = false;
  }
  if (to_tag.ok() && !to_tag->empty()) call.tags[other] = std::string(*to_tag);

  // Rewrite the answer for the offerer.
  bool first = true;
  for (size_t i = 0; i < media.size(); ++i) {
    const Media& md = media[i];
    if (!md.relayed) continue;
    std::vector<SdesCrypto> crypto;
    if (md.crypto[side].send) crypto.push_back(*md.crypto[side].send);
    const LegInfo& leg = infos[i].legs[side];
    WriteKarlSide(opt, leg, leg.local_rtcp_port, md.proto[side], crypto, md.rtcp_mux[side],
                  ice_side ? &*ice_side : nullptr, md.rtcp_mux[side], &sdp, i, &first);
  }
  call.media = std::move(media);
  call.answered = true;
  std::string out = FinishSdp(call, side, ice_side.has_value(), &sdp);
  BencodeValue r;
  r.Set("result", "ok");
  r.Set("sdp", out);
  return r;
}

std::vector<SessionInfo> NgCommands::CallSessions(const std::string& call_id) {
  std::vector<SessionInfo> out;
  if (auto it = calls_.find(call_id); it != calls_.end()) {
    for (const Media& m : it->second.media) {
      if (m.session_id.empty()) continue;
      absl::StatusOr<SessionInfo> s = sessions_->GetSession(m.session_id);
      if (s.ok() && s->state == "active") out.push_back(*std::move(s));
    }
    if (!out.empty()) return out;
  }
  SessionFilter f;
  f.call_id = call_id;
  f.state = "active";
  f.limit = 1000;
  absl::StatusOr<SessionPage> page = sessions_->ListSessions(f);
  if (page.ok()) out = std::move(page->sessions);
  return out;
}

BencodeValue NgCommands::DescribeCall(const std::string& call_id,
                                      const std::vector<SessionInfo>& sessions,
                                      const Call* call) const {
  (void)call_id;
  BencodeValue r;
  r.Set("result", "ok");
  int64_t created_ms = 0, last_ms = 0;
  for (const SessionInfo& s : sessions) {
    if (created_ms == 0 || s.created_unix_ms < created_ms) created_ms = s.created_unix_ms;
    last_ms = std::max(last_ms, s.last_signal_unix_ms);
  }
  r.Set("created", created_ms / 1000);
  r.Set("created_us", (created_ms % 1000) * 1000);
  r.Set("last signal", last_ms / 1000);
  BencodeValue ssrcs;
  BencodeValue tags;
  struct Totals {
    uint64_t packets = 0, bytes = 0, errors = 0;
  } rtp_tot, rtcp_tot;
  std::string tag_names[2];
  for (int side : {0, 1}) {
    if (call) tag_names[side] = call->tags[side];
    if (tag_names[side].empty() && !sessions.empty()) {
      tag_names[side] = side == 0 ? sessions[0].from_tag : sessions[0].to_tag;
    }
  }
  for (int side : {0, 1}) {
    if (tag_names[side].empty() && side == 1) continue;  // not answered yet
    BencodeValue t;
    t.Set("tag", tag_names[side]);
    t.Set("created", created_ms / 1000);
    // rtpengine 10.5's shape: who this tag's media goes to and comes from.
    BencodeValue peers = BencodeValue::EmptyList();
    if (!tag_names[1 - side].empty()) {
      BencodeValue sub;
      sub.Set("tag", tag_names[1 - side]);
      sub.Set("type", "offer/answer");
      peers.Append(std::move(sub));
    }
    t.Set("subscriptions", peers);
    t.Set("subscribers", std::move(peers));
    BencodeValue medias = BencodeValue::EmptyList();
    for (size_t k = 0; k < sessions.size(); ++k) {
      const SessionInfo& s = sessions[k];
      const LegInfo& leg = s.legs[side];
      // The media index and type come from the ng call when there is one.
      size_t index = k + 1;
      std::string type = "audio";
      std::string proto = leg.srtp ? "RTP/SAVP" : "RTP/AVP";
      if (call) {
        for (size_t i = 0; i < call->media.size(); ++i) {
          if (call->media[i].session_id == s.id) {
            index = i + 1;
            type = call->media[i].type;
            if (!call->media[i].proto[side].empty()) proto = call->media[i].proto[side];
          }
        }
      }
      BencodeValue md;
      md.Set("index", index);
      md.Set("type", type);
      md.Set("protocol", proto);
      BencodeValue streams = BencodeValue::EmptyList();
      for (const bool rtcp : {false, true}) {
        const StreamStats& st = rtcp ? leg.rtcp : leg.rtp;
        BencodeValue sd;
        sd.Set("local port", rtcp ? leg.local_rtcp_port : leg.local.port);
        sd.Set("local address", leg.local.address.ToString());
        sd.Set("family", FamilyName(leg.local.address));
        if (leg.peer) {
          Endpoint e = *leg.peer;
          if (rtcp) e.port = leg.peer_rtcp_port;
          sd.Set("endpoint", EndpointDict(e));
          sd.Set("advertised endpoint", EndpointDict(e));
        }
        const int64_t last =
            st.last_packet_age_s < 0 ? 0 : NowUnix() - static_cast<int64_t>(st.last_packet_age_s);
        sd.Set("last packet", last);
        // The suite this side's peer protects its media with (rtpengine: the stream's
        // crypto).
        if (leg.srtp && leg.srtp->receive) sd.Set("crypto suite", leg.srtp->receive->suite);
        BencodeValue flags = BencodeValue::StringList({rtcp ? "RTCP" : "RTP"});
        if (leg.peer) flags.Append("filled");
        if (leg.rtcp_mux && !rtcp) flags.Append("rtcp-mux");
        sd.Set("flags", std::move(flags));
        BencodeValue stats;
        stats.Set("packets", st.packets);
        stats.Set("bytes", st.bytes);
        stats.Set("errors", st.drops);
        sd.Set("stats", std::move(stats));
        Totals& tot = rtcp ? rtcp_tot : rtp_tot;
        tot.packets += st.packets;
        tot.bytes += st.bytes;
        tot.errors += st.drops;
        if (!rtcp && st.packets > 0) {
          sd.Set("SSRC", st.ssrc);
          const double loss_pct = st.expected > 0
                                      ? 100.0 * static_cast<double>(std::max<int64_t>(0, st.lost)) /
                                            static_cast<double>(st.expected)
                                      : 0.0;
          BencodeValue mos;
          mos.Set("MOS",
                  static_cast<int64_t>(std::lround(EstimateMos(st.jitter_ms, loss_pct, 0) * 10)));
          mos.Set("round-trip time", 0);  // no RTCP RTT yet
          mos.Set("round-trip time leg", 0);
          mos.Set("jitter", static_cast<int64_t>(std::lround(st.jitter_ms)));
          mos.Set("packet loss", static_cast<int64_t>(std::lround(loss_pct)));
          BencodeValue entry;
          entry.Set("bytes", st.bytes);
          entry.Set("packets", st.packets);
          entry.Set("cumulative loss", std::max<int64_t>(0, st.lost));
          BencodeValue avg = mos;
          avg.Set("samples", 1);
          entry.Set("average MOS", std::move(avg));
          BencodeValue at = mos;
          at.Set("reported at", last);
          entry.Set("lowest MOS", at);
          entry.Set("highest MOS", at);
          ssrcs.Set(std::to_string(st.ssrc), std::move(entry));
        }
        streams.Append(std::move(sd));
      }
      md.Set("streams", std::move(streams));
      md.Set("flags", BencodeValue::StringList({"initialized", "send", "recv"}));
      medias.Append(std::move(md));
    }
    t.Set("medias", std::move(medias));
    tags.Set(tag_names[side], std::move(t));
  }
  r.Set("SSRC", std::move(ssrcs));
  r.Set("tags", std::move(tags));
  BencodeValue totals;
  for (const auto& [name, tot] :
       {std::pair<const char*, Totals>{"RTP", rtp_tot}, {"RTCP", rtcp_tot}}) {
    BencodeValue d;
    d.Set("packets", tot.packets);
    d.Set("bytes", tot.bytes);
    d.Set("errors", tot.errors);
    totals.Set(name, std::move(d));
  }
  r.Set("totals", std::move(totals));
  return r;
}

BencodeValue NgCommands::Delete(const BencodeValue& req, Options& opt) {
  (void)opt;
  absl::StatusOr<std::string_view> call_id = req.GetString("call-id");
  if (!call_id.ok() || call_id->empty()) return Error("No call-id in message");
  const std::string id(*call_id);
  auto it = calls_.find(id);
  std::vector<SessionInfo> final_infos;
  if (it != calls_.end()) {
    for (const Media& m : it->second.media) {
      if (m.session_id.empty()) continue;
      absl::StatusOr<SessionInfo> f = sessions_->DeleteSession(m.session_id);
      if (f.ok()) final_infos.push_back(*std::move(f));  // else: ended already (timeout)
    }
  }
  std::vector<SessionInfo> live;
  if (final_infos.empty()) live = CallSessions(id);  // made over REST, or all ended
  if (final_infos.empty() && live.empty()) {
    if (it != calls_.end()) calls_.erase(it);
    BencodeValue r;
    r.Set("result", "ok");
    r.Set("warning", "Call-ID not found or tags didn't match");
    return r;
  }
  for (const SessionInfo& s : live) {
    absl::StatusOr<SessionInfo> f = sessions_->DeleteSession(s.id);
    final_infos.push_back(f.ok() ? *std::move(f) : s);
  }
  BencodeValue r = DescribeCall(id, final_infos, it != calls_.end() ? &it->second : nullptr);
  if (it != calls_.end()) calls_.erase(it);
  ++deleted_total_;
  return r;
}

BencodeValue NgCommands::Query(const BencodeValue& req) {
  absl::StatusOr<std::string_view> call_id = req.GetString("call-id");
  if (!call_id.ok() || call_id->empty()) return Error("No call-id in message");
  const std::string id(*call_id);
  std::vector<SessionInfo> live = CallSessions(id);
  if (live.empty()) return Error("Unknown call-id");
  auto it = calls_.find(id);
  return DescribeCall(id, live, it != calls_.end() ? &it->second : nullptr);
}

BencodeValue NgCommands::List(const BencodeValue& req) {
  int64_t limit = 32;
  if (req.Find("limit") != nullptr) {
    absl::StatusOr<int64_t> l = req.GetInteger("limit");
    if (!l.ok() || *l < 0) return Error("limit must be a non-negative integer");
    limit = *l;
  }
  SessionFilter f;
  f.state = "active";
  f.limit = SIZE_MAX;
  absl::StatusOr<SessionPage> page = sessions_->ListSessions(f);
  if (!page.ok()) return Error(page.status().message());
  std::vector<std::string> ids;
  std::set<std::string> seen;
  for (const SessionInfo& s : page->sessions) {
    if (static_cast<int64_t>(ids.size()) >= limit) break;
    if (seen.insert(s.call_id).second) ids.push_back(s.call_id);
  }
  BencodeValue r;
  r.Set("result", "ok");
  r.Set("calls", BencodeValue::StringList(ids));
  return r;
}

BencodeValue NgCommands::Statistics() {
  const NgTotals t = totals_ ? totals_() : NgTotals{};
  BencodeValue cur;
  cur.Set("sessionsown", t.sessions_active);
  cur.Set("sessionsforeign", 0);
  cur.Set("sessionstotal", t.sessions_active);
  cur.Set("transcodedmedia", 0);
  BencodeValue tot;
  tot.Set("uptime", std::to_string(static_cast<int64_t>(t.uptime_s)));
  tot.Set("managedsessions", t.sessions_created);
  tot.Set("rejectedsessions", 0);
  tot.Set("timeoutsessions", t.sessions_timed_out);
  tot.Set("regularterminatedsessions", deleted_total_);
  tot.Set("relayedpackets", t.relayed_packets);
  tot.Set("relayedbytes", t.relayed_bytes);
  tot.Set("relayedpacketerrors", t.relay_errors);
  BencodeValue stats;
  stats.Set("currentstatistics", std::move(cur));
  stats.Set("totalstatistics", std::move(tot));
  BencodeValue r;
  r.Set("result", "ok");
  r.Set("statistics", std::move(stats));
  return r;
}

}  // namespace karl
