#include "controlplane/rest_api.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "controlplane/http_common.h"

namespace karl {
namespace {

using Json = nlohmann::json;           // request bodies (keys looked up, order irrelevant)
using OJson = nlohmann::ordered_json;  // responses keep the documented field order

constexpr char kJsonContentType[] = "application/json";
constexpr char kSessionsPath[] = "/v1/sessions";
constexpr char kSessionPathPrefix[] = "/v1/sessions/";
// httplib matches routes with std::regex inside its library; the id itself is cut from
// the path (SessionIdOf) so no regex is instantiated here.
constexpr char kSessionPattern[] = "/v1/sessions/[^/]+";
constexpr char kAnyV1Pattern[] = "/v1(/.*)?";
constexpr char kSessionsAllow[] = "GET, HEAD, POST";
constexpr char kSessionAllow[] = "GET, HEAD, PATCH, DELETE";
constexpr char kRequestIdHeader[] = "X-Request-Id";
constexpr char kWwwAuthenticate[] = "Bearer realm=\"karl\"";

constexpr size_t kMaxStringChars = 255;  // call_id, tags, interface, query call_id
constexpr int64_t kMaxMediaTimeoutS = 86400;
constexpr size_t kLegCount = 2;
constexpr size_t kMaxLimit = 1000;
// Karl's bodies nest four levels; the cap keeps a hostile body from building a deep tree.
constexpr int kMaxJsonDepth = 32;
constexpr size_t kMaxRequestIdLength = 64;
// Idle keep-alive connections hold a request thread and Stop() waits for them, so
// keep them short; API clients reusing a connection within a burst still benefit.
constexpr time_t kKeepAliveTimeoutS = 2;
constexpr time_t kReadTimeoutS = 5;
constexpr time_t kWriteTimeoutS = 5;
constexpr int64_t kAuthWarningIntervalMs = 10000;
constexpr int kListenBacklog = 128;

// ---------------------------------------------------------------- request bodies

absl::Status FieldError(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

std::string Child(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(parent, ".", key);
}

std::string Element(absl::string_view parent, size_t index) {
  return absl::StrCat(parent, "[", index, "]");
}

// Thrown by the parser callback to stop at kMaxJsonDepth; caught in ParseJsonObject.
struct JsonTooDeep : std::exception {
  const char* what() const noexcept override { return "JSON nested too deep"; }
};

// nlohmann's messages start with "[json.exception.parse_error.101] "; the tag means
// nothing to an API user.
absl::string_view WithoutExceptionTag(absl::string_view what) {
  if (!what.empty() && what.front() == '[') {
    const size_t end = what.find("] ");
    if (end != absl::string_view::npos) return what.substr(end + 2);
  }
  return what;
}

// Parses a request body that must be one JSON object. Duplicate keys are refused
// (nlohmann would silently keep the last one, and another parser the first).
absl::StatusOr<Json> ParseJsonObject(const std::string& body) {
  std::vector<std::set<std::string>> open_objects;  // keys seen, per open object
  std::string duplicate;
  bool has_duplicate = false;
  const Json::parser_callback_t callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) throw JsonTooDeep();
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && !has_duplicate) {
          has_duplicate = true;
          duplicate = parsed.get<std::string>();
        }
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  Json value;
  try {
    value = Json::parse(body, callback);
  } catch (const JsonTooDeep&) {
    return FieldError("body", absl::StrCat("nested deeper than ", kMaxJsonDepth, " levels"));
  } catch (const std::exception& e) {
    return FieldError("body", absl::StrCat("invalid JSON: ", WithoutExceptionTag(e.what())));
  }
  if (has_duplicate) return FieldError("body", absl::StrCat("duplicate key \"", duplicate, "\""));
  if (!value.is_object()) {
    return FieldError("body", absl::StrCat("must be a JSON object, not ", value.type_name()));
  }
  return value;
}

absl::Status CheckKeys(const Json& object, absl::string_view path,
                       std::initializer_list<absl::string_view> allowed) {
  for (const auto& item : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end()) {
      return FieldError(Child(path, item.key()), "unknown field");
    }
  }
  return absl::OkStatus();
}

// The member `key` of `object`, nullptr when absent.
const Json* Member(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// Code points of a UTF-8 string (nlohmann has validated the encoding).
size_t Utf8Length(absl::string_view s) {
  size_t n = 0;
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool HasControlCharacter(absl::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

absl::Status CheckText(absl::string_view s, absl::string_view path, size_t min_chars) {
  const size_t chars = Utf8Length(s);
  if (chars < min_chars || chars > kMaxStringChars) {
    return FieldError(path, min_chars > 0
                                ? absl::StrCat("must be ", min_chars, " to ", kMaxStringChars,
                                               " characters long, is ", chars)
                                : absl::StrCat("must be at most ", kMaxStringChars,
                                               " characters long, is ", chars));
  }
  if (HasControlCharacter(s)) return FieldError(path, "must not contain control characters");
  return absl::OkStatus();
}

absl::Status ReadString(const Json& v, absl::string_view path, size_t min_chars, std::string* out) {
  if (!v.is_string()) return FieldError(path, "must be a string");
  const std::string& s = v.get_ref<const std::string&>();
  KARL_RETURN_IF_ERROR(CheckText(s, path, min_chars));
  *out = s;
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& v, absl::string_view path, bool* out) {
  if (!v.is_boolean()) return FieldError(path, "must be a boolean");
  *out = v.get<bool>();
  return absl::OkStatus();
}

// An integer in [min, max]; 5.0 is refused like "5" (a float is never an integer here).
absl::Status ReadInt(const Json& v, absl::string_view path, int64_t min, int64_t max,
                     int64_t* out) {
  const auto range_error = [&] {
    return FieldError(path, absl::StrCat("must be an integer between ", min, " and ", max));
  };
  if (!v.is_number_integer()) return range_error();
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(max) || static_cast<int64_t>(u) < min) return range_error();
    *out = static_cast<int64_t>(u);
  } else {
    const int64_t s = v.get<int64_t>();
    if (s < min || s > max) return range_error();
    *out = s;
  }
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadIntAs(const Json& v, absl::string_view path, int64_t min, int64_t max, T* out) {
  int64_t value = 0;
  KARL_RETURN_IF_ERROR(ReadInt(v, path, min, max, &value));
  *out = static_cast<T>(value);
  return absl::OkStatus();
}

absl::StatusOr<Endpoint> ReadEndpoint(const Json& v, const std::string& path) {
  if (!v.is_object()) return FieldError(path, "must be an object with address and port");
  KARL_RETURN_IF_ERROR(CheckKeys(v, path, {"address", "port"}));
  const Json* address = Member(v, "address");
  const Json* port = Member(v, "port");
  const std::string address_path = Child(path, "address");
  if (address == nullptr) return FieldError(address_path, "required");
  if (!address->is_string()) return FieldError(address_path, "must be a string");
  const std::string& text = address->get_ref<const std::string&>();
  const std::optional<IpAddress> parsed = IpAddress::Parse(text);
  if (!parsed) {
    return FieldError(address_path, absl::StrCat("\"", text, "\" is not an IPv4 or IPv6 address"));
  }
  if (parsed->IsUnspecified()) {
    return FieldError(address_path,
                      absl::StrCat(text, " is unspecified; omit peer to learn it from media"));
  }
  Endpoint endpoint;
  endpoint.address = *parsed;
  if (port == nullptr) return FieldError(Child(path, "port"), "required");
  KARL_RETURN_IF_ERROR(ReadIntAs(*port, Child(path, "port"), 1, 65535, &endpoint.port));
  return endpoint;
}

absl::Status ReadFamily(const Json& v, absl::string_view path, IpAddress::Family* out) {
  if (v.is_string() && v.get_ref<const std::string&>() == "ipv4") {
    *out = IpAddress::Family::kV4;
  } else if (v.is_string() && v.get_ref<const std::string&>() == "ipv6") {
    *out = IpAddress::Family::kV6;
  } else {
    return FieldError(path, "must be \"ipv4\" or \"ipv6\"");
  }
  return absl::OkStatus();
}

absl::string_view FamilyName(IpAddress::Family family) {
  return family == IpAddress::Family::kV6 ? "ipv6" : "ipv4";
}

// {"suite": "...", "key": "inline:..."}; the session manager checks suite and key.
absl::StatusOr<SrtpKeySpec> ReadSrtpKey(const Json& v, const std::string& path, bool key_required) {
  if (!v.is_object()) return FieldError(path, "must be an object");
  KARL_RETURN_IF_ERROR(CheckKeys(v, path, {"suite", "key"}));
  SrtpKeySpec out;
  const Json* suite = Member(v, "suite");
  if (suite == nullptr) {
    return FieldError(Child(path, "suite"), "required (e.g. \"AES_CM_128_HMAC_SHA1_80\")");
  }
  KARL_RETURN_IF_ERROR(ReadString(*suite, Child(path, "suite"), 1, &out.suite));
  const Json* key = Member(v, "key");
  if (key != nullptr && !key->is_null()) {
    if (!key->is_string()) return FieldError(Child(path, "key"), "must be a string");
    out.key = key->get<std::string>();
    if (out.key.empty() || out.key.size() > 512) {
      return FieldError(Child(path, "key"),
                        "must be 'inline:<base64 key||salt>[|lifetime][|MKI:len]'");
    }
  } else if (key_required) {
    return FieldError(Child(path, "key"),
                      "required: the key the peer encrypts with ('inline:...')");
  }
  return out;
}

// {"send": {...}|null, "receive": {...}|null, "replay_window": n}
absl::StatusOr<SrtpSpec> ReadSrtpSpec(const Json& v, const std::string& path) {
  if (!v.is_object()) return FieldError(path, "must be an object");
  KARL_RETURN_IF_ERROR(CheckKeys(v, path, {"send", "receive", "replay_window"}));
  SrtpSpec out;
  if (const Json* send = Member(v, "send"); send != nullptr && !send->is_null()) {
    KARL_ASSIGN_OR_RETURN(out.send, ReadSrtpKey(*send, Child(path, "send"), false));
  }
  if (const Json* receive = Member(v, "receive"); receive != nullptr && !receive->is_null()) {
    KARL_ASSIGN_OR_RETURN(out.receive, ReadSrtpKey(*receive, Child(path, "receive"), true));
  }
  if (const Json* window = Member(v, "replay_window")) {
    KARL_RETURN_IF_ERROR(
        ReadIntAs(*window, Child(path, "replay_window"), 128, 32768, &out.replay_window));
  }
  return out;
}

// {"ufrag": "...", "pwd": "..."}: Karl's ICE-lite credentials on the leg (RFC 8839
// §5.4: ice-chars, ufrag 4..256 and pwd 22..256 characters).
absl::StatusOr<IceSpec> ReadIce(const Json& v, const std::string& path) {
  if (!v.is_object()) return FieldError(path, "must be an object {\"ufrag\", \"pwd\"}");
  KARL_RETURN_IF_ERROR(CheckKeys(v, path, {"ufrag", "pwd"}));
  IceSpec out;
  struct Field {
    const char* name;
    size_t min;
    std::string* value;
  };
  for (const Field& f : {Field{"ufrag", 4, &out.ufrag}, Field{"pwd", 22, &out.pwd}}) {
    const Json* j = Member(v, f.name);
    const std::string where = Child(path, f.name);
    if (j == nullptr) return FieldError(where, "required");
    KARL_RETURN_IF_ERROR(ReadString(*j, where, 1, f.value));
    const bool chars_ok = std::all_of(f.value->begin(), f.value->end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
    });
    if (!chars_ok || f.value->size() < f.min || f.value->size() > 256) {
      return FieldError(
          where, absl::StrCat("must be ", f.min, "..256 characters of A-Z a-z 0-9 + / (RFC 8839)"));
    }
  }
  return out;
}

absl::StatusOr<LegSpec> ParseLegSpec(const Json& v, const std::string& path) {
  if (!v.is_object()) return FieldError(path, "must be an object");
  KARL_RETURN_IF_ERROR(CheckKeys(v, path,
                                 {"peer", "peer_rtcp_port", "interface", "family", "rtcp_mux",
                                  "strict_source", "asymmetric", "dscp", "srtp", "ice"}));
  LegSpec leg;
  // null means "not given" for the two fields SessionInfo itself shows as null.
  if (const Json* peer = Member(v, "peer"); peer != nullptr && !peer->is_null()) {
    KARL_ASSIGN_OR_RETURN(leg.peer, ReadEndpoint(*peer, Child(path, "peer")));
  }
  if (const Json* port = Member(v, "peer_rtcp_port")) {
    uint16_t value = 0;
    KARL_RETURN_IF_ERROR(ReadIntAs(*port, Child(path, "peer_rtcp_port"), 1, 65535, &value));
    leg.peer_rtcp_port = value;
  }
  if (const Json* name = Member(v, "interface")) {
    KARL_RETURN_IF_ERROR(ReadString(*name, Child(path, "interface"), 0, &leg.interface));
  }
  if (const Json* family = Member(v, "family")) {
    IpAddress::Family value = IpAddress::Family::kNone;
    KARL_RETURN_IF_ERROR(ReadFamily(*family, Child(path, "family"), &value));
    // A local address of one family cannot exchange UDP with a peer of the other.
    if (leg.peer && leg.peer->address.family() != value) {
      return FieldError(Child(path, "family"),
                        absl::StrCat(FamilyName(value), " does not match the peer address ",
                                     leg.peer->address.ToString()));
    }
    leg.family = value;
  }
  if (const Json* b = Member(v, "rtcp_mux")) {
    KARL_RETURN_IF_ERROR(ReadBool(*b, Child(path, "rtcp_mux"), &leg.rtcp_mux));
  }
  if (const Json* b = Member(v, "strict_source")) {
    KARL_RETURN_IF_ERROR(ReadBool(*b, Child(path, "strict_source"), &leg.strict_source));
  }
  if (const Json* b = Member(v, "asymmetric")) {
    KARL_RETURN_IF_ERROR(ReadBool(*b, Child(path, "asymmetric"), &leg.asymmetric));
  }
  if (const Json* dscp = Member(v, "dscp"); dscp != nullptr && !dscp->is_null()) {
    uint8_t value = 0;
    KARL_RETURN_IF_ERROR(ReadIntAs(*dscp, Child(path, "dscp"), 0, 63, &value));
    leg.dscp = value;
  }
  if (const Json* srtp = Member(v, "srtp"); srtp != nullptr && !srtp->is_null()) {
    KARL_ASSIGN_OR_RETURN(leg.srtp, ReadSrtpSpec(*srtp, Child(path, "srtp")));
  }
  if (const Json* ice = Member(v, "ice"); ice != nullptr && !ice->is_null()) {
    KARL_ASSIGN_OR_RETURN(leg.ice, ReadIce(*ice, Child(path, "ice")));
  }
  return leg;
}

// In a PATCH an absent field keeps its value; null would read as "clear it", which
// no field supports, so it is refused rather than guessed at.
absl::Status RefuseNull(const Json& v, absl::string_view path) {
  if (v.is_null()) return FieldError(path, "must not be null; omit it to keep the current value");
  return absl::OkStatus();
}

absl::StatusOr<LegUpdate> ParseLegUpdate(const Json& v, const std::string& path) {
  KARL_RETURN_IF_ERROR(CheckKeys(
      v, path, {"peer", "peer_rtcp_port", "strict_source", "asymmetric", "dscp", "srtp", "ice"}));
  LegUpdate leg;
  if (const Json* peer = Member(v, "peer")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*peer, Child(path, "peer")));
    KARL_ASSIGN_OR_RETURN(leg.peer, ReadEndpoint(*peer, Child(path, "peer")));
  }
  if (const Json* port = Member(v, "peer_rtcp_port")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*port, Child(path, "peer_rtcp_port")));
    uint16_t value = 0;
    KARL_RETURN_IF_ERROR(ReadIntAs(*port, Child(path, "peer_rtcp_port"), 1, 65535, &value));
    leg.peer_rtcp_port = value;
  }
  if (const Json* b = Member(v, "strict_source")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*b, Child(path, "strict_source")));
    bool value = false;
    KARL_RETURN_IF_ERROR(ReadBool(*b, Child(path, "strict_source"), &value));
    leg.strict_source = value;
  }
  if (const Json* b = Member(v, "asymmetric")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*b, Child(path, "asymmetric")));
    bool value = false;
    KARL_RETURN_IF_ERROR(ReadBool(*b, Child(path, "asymmetric"), &value));
    leg.asymmetric = value;
  }
  if (const Json* dscp = Member(v, "dscp")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*dscp, Child(path, "dscp")));
    uint8_t value = 0;
    KARL_RETURN_IF_ERROR(ReadIntAs(*dscp, Child(path, "dscp"), 0, 63, &value));
    leg.dscp = value;
  }
  if (const Json* srtp = Member(v, "srtp")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*srtp, Child(path, "srtp")));
    KARL_ASSIGN_OR_RETURN(leg.srtp, ReadSrtpSpec(*srtp, Child(path, "srtp")));
  }
  if (const Json* ice = Member(v, "ice")) {
    // false turns ICE off; an object sets (or changes: an ICE restart) the credentials.
    if (ice->is_boolean() && !ice->get<bool>()) {
      leg.ice = IceSpec{};
    } else {
      KARL_RETURN_IF_ERROR(RefuseNull(*ice, Child(path, "ice")));
      KARL_ASSIGN_OR_RETURN(leg.ice, ReadIce(*ice, Child(path, "ice")));
    }
  }
  return leg;
}

// A non-negative decimal without sign or spaces, at most `max`.
bool ParseDecimal(absl::string_view text, uint64_t max, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > max) return false;
  *out = value;
  return true;
}

// ---------------------------------------------------------------- responses

OJson EndpointJson(const Endpoint& e) {
  OJson j = OJson::object();
  j["address"] = e.address.ToString();
  j["port"] = e.port;
  return j;
}

OJson StatsJson(const StreamStats& s) {
  OJson drops = OJson::object();
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    if (s.drops_by_reason[r] == 0) continue;
    drops[std::string(DropReasonLabel(static_cast<DropReason>(r)))] = s.drops_by_reason[r];
  }
  OJson j = OJson::object();
  j["packets"] = s.packets;
  j["bytes"] = s.bytes;
  j["drops"] = s.drops;
  j["drops_by_reason"] = std::move(drops);
  j["last_packet_age_s"] = s.last_packet_age_s < 0 ? OJson(nullptr) : OJson(s.last_packet_age_s);
  j["ssrc"] = s.ssrc;
  j["ssrc_changes"] = s.ssrc_changes;
  j["expected"] = s.expected;
  j["lost"] = s.lost;
  j["jitter_ms"] = s.jitter_ms;
  return j;
}

OJson SrtpKeyJson(const std::optional<SrtpKeySpec>& k) {
  if (!k) return OJson(nullptr);
  OJson j = OJson::object();
  j["suite"] = k->suite;
  j["key"] = k->key;
  return j;
}

OJson SrtpJson(const std::optional<SrtpSpec>& s) {
  if (!s) return OJson(nullptr);
  OJson j = OJson::object();
  j["send"] = SrtpKeyJson(s->send);
  j["receive"] = SrtpKeyJson(s->receive);
  j["replay_window"] = s->replay_window;
  return j;
}

OJson LegJson(const LegInfo& leg) {
  OJson stats = OJson::object();
  stats["rtp"] = StatsJson(leg.rtp);
  stats["rtcp"] = StatsJson(leg.rtcp);
  OJson j = OJson::object();
  j["index"] = leg.index;
  j["interface"] = leg.interface;
  j["local"] = EndpointJson(leg.local);
  j["local_rtcp_port"] = leg.local_rtcp_port;
  j["peer"] = leg.peer ? EndpointJson(*leg.peer) : OJson(nullptr);
  j["peer_rtcp_port"] = leg.peer_rtcp_port;
  j["latched"] = leg.latched;
  j["rtcp_mux"] = leg.rtcp_mux;
  j["strict_source"] = leg.strict_source;
  j["asymmetric"] = leg.asymmetric;
  j["dscp"] = leg.dscp ? OJson(*leg.dscp) : OJson(nullptr);
  j["srtp"] = SrtpJson(leg.srtp);
  if (leg.ice) {
    j["ice"] = OJson::object();
    j["ice"]["ufrag"] = leg.ice->ufrag;
    j["ice"]["pwd"] = leg.ice->pwd;
  } else {
    j["ice"] = OJson(nullptr);
  }
  j["stats"] = std::move(stats);
  return j;
}

// Invalid UTF-8 (from a call-id the ng side accepted, say) becomes U+FFFD instead of
// an exception.
std::string Dump(const OJson& j) { return j.dump(-1, ' ', false, OJson::error_handler_t::replace); }

void SendJson(httplib::Response& res, int status, const OJson& body) {
  res.status = status;
  res.set_content(Dump(body), kJsonContentType);
}

OJson ErrorBody(int status, absl::string_view message, absl::string_view field) {
  OJson error = OJson::object();
  error["code"] = status;
  error["message"] = message;
  error["field"] = field.empty() ? OJson(nullptr) : OJson(field);
  OJson body = OJson::object();
  body["error"] = std::move(error);
  return body;
}

void SendError(httplib::Response& res, int status, absl::string_view message) {
  SendJson(res, status, ErrorBody(status, message, ""));
}

std::string RequestIdOf(const httplib::Response& res) {
  return res.get_header_value(kRequestIdHeader);
}

void SendStatus(const httplib::Request& req, httplib::Response& res, const absl::Status& status) {
  const int http = HttpStatusForCode(status.code());
  if (http >= 500) {
    spdlog::warn("REST API: {} {} -> {}: {} [request {}]", req.method, req.path, http,
                 std::string(status.message()), RequestIdOf(res));
  }
  SendJson(res, http, ErrorJson(status));
}

// A client's X-Request-Id is kept when it is short and plain (it ends up in logs);
// otherwise the request gets a fresh random one.
std::string RequestIdFor(const httplib::Request& req) {
  const std::string& given = req.get_header_value(kRequestIdHeader);
  if (!given.empty() && given.size() <= kMaxRequestIdLength &&
      std::all_of(given.begin(), given.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
               c == '.';
      })) {
    return given;
  }
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16));
}

// Session ids come from the SessionService; anything outside RFC 3986 "unreserved"
// is percent-encoded so the Location header is always a valid URI reference.
std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (absl::ascii_isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%", absl::Hex(u, absl::kZeroPad2));
    }
  }
  return out;
}

std::string SessionIdOf(const httplib::Request& req) {
  return req.path.substr(sizeof(kSessionPathPrefix) - 1);
}

// Text for an error httplib answered on its own (the request never reached a handler).
std::string ErrorText(int status) {
  if (status == 413) {
    return absl::StrCat("request body larger than ", RestApi::kMaxRequestBody, " bytes");
  }
  return HttpErrorText(status);
}

// ---------------------------------------------------------------- auth and sockets

bool IsBearerTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == '~' || c == '+' || c == '/';
}

// RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool IsBearerToken(absl::string_view t) {
  size_t i = 0;
  while (i < t.size() && IsBearerTokenChar(t[i])) ++i;
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

// The token of an "Authorization: Bearer <token>" value; the scheme name is
// case-insensitive (RFC 9110 section 11.1). nullopt when the value is not a Bearer
// credential.
std::optional<absl::string_view> BearerTokenOf(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  constexpr absl::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
    return std::nullopt;
  }
  return absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
}

std::string OpenSslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {  // NOLINT(google-runtime-int): OpenSSL's type
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

absl::Status CheckReadable(const std::string& path, absl::string_view key) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    const int err = errno;
    const std::string message =
        absl::StrCat("REST API: cannot read ", key, " ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::FailedPreconditionError(message);
  }
  std::fclose(f);
  return absl::OkStatus();
}

// Never prompt on a terminal for a key passphrase: an encrypted key fails to load.
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeTlsServer(const std::string& cert,
                                                               const std::string& key) {
  KARL_RETURN_IF_ERROR(CheckReadable(cert, "api.tls_cert_file"));
  KARL_RETURN_IF_ERROR(CheckReadable(key, "api.tls_key_file"));
  std::string error;
  ERR_clear_error();
  auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    // httplib's own default allows TLS 1.1; nothing that talks to Karl needs it.
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_default_passwd_cb(&ctx, NoPassphrase);
    if (SSL_CTX_use_certificate_chain_file(&ctx, cert.c_str()) != 1) {
      error = absl::StrCat("api.tls_cert_file ", cert, ": ", OpenSslErrors());
      return false;
    }
    if (SSL_CTX_use_PrivateKey_file(&ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
      error = absl::StrCat(
          "api.tls_key_file ", key,
          mismatch ? absl::StrCat(" does not match the certificate in ", cert) : std::string(),
          ": ", OpenSslErrors());
      return false;
    }
    if (SSL_CTX_check_private_key(&ctx) != 1) {
      error = absl::StrCat("api.tls_key_file ", key, " does not match the certificate in ", cert,
                           ": ", OpenSslErrors());
      return false;
    }
    return true;
  });
  if (!server->is_valid()) {
    return absl::InvalidArgumentError(
        absl::StrCat("REST API: cannot set up TLS: ", error.empty() ? OpenSslErrors() : error));
  }
  return std::unique_ptr<httplib::Server>(std::move(server));
}

bool IsLoopback(const IpAddress& a) {
  if (a.is_v4()) return (a.v4() >> 24) == 127;
  return a.is_v6() && a == *IpAddress::Parse("::1");
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---------------------------------------------------------------- public conversions

absl::StatusOr<SessionSpec> ParseSessionSpec(const std::string& body) {
  KARL_ASSIGN_OR_RETURN(const Json j, ParseJsonObject(body));
  KARL_RETURN_IF_ERROR(
      CheckKeys(j, "", {"call_id", "from_tag", "to_tag", "media_timeout_s", "legs"}));
  SessionSpec spec;
  const Json* call_id = Member(j, "call_id");
  if (call_id == nullptr) return FieldError("call_id", "required");
  KARL_RETURN_IF_ERROR(ReadString(*call_id, "call_id", 1, &spec.call_id));
  if (const Json* tag = Member(j, "from_tag")) {
    KARL_RETURN_IF_ERROR(ReadString(*tag, "from_tag", 0, &spec.from_tag));
  }
  if (const Json* tag = Member(j, "to_tag")) {
    KARL_RETURN_IF_ERROR(ReadString(*tag, "to_tag", 0, &spec.to_tag));
  }
  if (const Json* timeout = Member(j, "media_timeout_s")) {
    KARL_RETURN_IF_ERROR(
        ReadIntAs(*timeout, "media_timeout_s", 1, kMaxMediaTimeoutS, &spec.media_timeout_s));
  }
  const Json* legs = Member(j, "legs");
  if (legs == nullptr) return FieldError("legs", "required");
  if (!legs->is_array()) return FieldError("legs", "must be an array of 2 legs");
  if (legs->size() != kLegCount) {
    return FieldError("legs",
                      absl::StrCat("must have exactly ", kLegCount, " legs, has ", legs->size()));
  }
  for (size_t i = 0; i < legs->size(); ++i) {
    KARL_ASSIGN_OR_RETURN(LegSpec leg, ParseLegSpec((*legs)[i], Element("legs", i)));
    spec.legs.push_back(std::move(leg));
  }
  return spec;
}

absl::StatusOr<SessionUpdate> ParseSessionUpdate(const std::string& body) {
  KARL_ASSIGN_OR_RETURN(const Json j, ParseJsonObject(body));
  KARL_RETURN_IF_ERROR(CheckKeys(j, "", {"to_tag", "media_timeout_s", "legs", "reset_stats"}));
  SessionUpdate update;
  if (const Json* reset = Member(j, "reset_stats")) {
    if (!reset->is_boolean()) return FieldError("reset_stats", "must be true or false");
    update.reset_stats = reset->get<bool>();
  }
  if (const Json* tag = Member(j, "to_tag")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*tag, "to_tag"));
    std::string value;
    KARL_RETURN_IF_ERROR(ReadString(*tag, "to_tag", 0, &value));
    update.to_tag = std::move(value);
  }
  if (const Json* timeout = Member(j, "media_timeout_s")) {
    KARL_RETURN_IF_ERROR(RefuseNull(*timeout, "media_timeout_s"));
    uint32_t value = 0;
    KARL_RETURN_IF_ERROR(ReadIntAs(*timeout, "media_timeout_s", 1, kMaxMediaTimeoutS, &value));
    update.media_timeout_s = value;
  }
  if (const Json* legs = Member(j, "legs")) {
    if (!legs->is_array()) {
      return FieldError("legs", "must be an array (by leg index) of leg changes or null");
    }
    if (legs->size() > kLegCount) {
      return FieldError("legs", absl::StrCat("has ", legs->size(), " entries; a session has ",
                                             kLegCount, " legs"));
    }
    for (size_t i = 0; i < legs->size(); ++i) {
      const Json& entry = (*legs)[i];
      const std::string path = Element("legs", i);
      if (entry.is_null()) {
        update.legs.emplace_back(std::nullopt);
        continue;
      }
      if (!entry.is_object()) return FieldError(path, "must be an object or null");
      KARL_ASSIGN_OR_RETURN(LegUpdate leg, ParseLegUpdate(entry, path));
      update.legs.emplace_back(std::move(leg));
    }
  }
  return update;
}

absl::StatusOr<SessionFilter> ParseSessionFilter(const QueryParams& query) {
  SessionFilter filter;
  for (const auto& [key, value] : query) {
    if (query.count(key) > 1) return FieldError(key, "given more than once");
    if (key == "call_id") {
      KARL_RETURN_IF_ERROR(CheckText(value, key, 0));
      filter.call_id = value;
    } else if (key == "state") {
      if (!value.empty() && value != "active" && value != "ended") {
        return FieldError(key, "must be active or ended");
      }
      filter.state = value;
    } else if (key == "offset") {
      uint64_t offset = 0;
      if (!ParseDecimal(value, UINT32_MAX, &offset)) {
        return FieldError(key, absl::StrCat("must be an integer between 0 and ", UINT32_MAX));
      }
      filter.offset = offset;
    } else if (key == "limit") {
      uint64_t limit = 0;
      if (!ParseDecimal(value, kMaxLimit, &limit) || limit == 0) {
        return FieldError(key, absl::StrCat("must be an integer between 1 and ", kMaxLimit));
      }
      filter.limit = limit;
    } else {
      return FieldError(key, "unknown query parameter; known: call_id, state, offset, limit");
    }
  }
  return filter;
}

std::string FormatRfc3339Ms(int64_t unix_ms) {
  int64_t seconds = unix_ms / 1000;
  int64_t millis = unix_ms % 1000;
  if (millis < 0) {  // floor, so -1 ms is 23:59:59.999 of the day before
    millis += 1000;
    --seconds;
  }
  const time_t t = static_cast<time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

nlohmann::ordered_json SessionInfoToJson(const SessionInfo& info) {
  OJson legs = OJson::array();
  for (const LegInfo& leg : info.legs) legs.push_back(LegJson(leg));
  OJson j = OJson::object();
  j["id"] = info.id;
  j["call_id"] = info.call_id;
  j["from_tag"] = info.from_tag;
  j["to_tag"] = info.to_tag;
  j["state"] = info.state;
  j["end_reason"] =
      info.state == "active" || info.end_reason.empty() ? OJson(nullptr) : OJson(info.end_reason);
  j["created_at"] = FormatRfc3339Ms(info.created_unix_ms);
  j["last_signal_at"] = FormatRfc3339Ms(info.last_signal_unix_ms);
  j["media_timeout_s"] = info.media_timeout_s;
  j["legs"] = std::move(legs);
  return j;
}

nlohmann::ordered_json SessionPageToJson(const SessionPage& page, const SessionFilter& filter) {
  OJson sessions = OJson::array();
  for (const SessionInfo& s : page.sessions) sessions.push_back(SessionInfoToJson(s));
  OJson j = OJson::object();
  j["sessions"] = std::move(sessions);
  j["total"] = page.total;
  j["offset"] = filter.offset;
  j["limit"] = filter.limit;
  return j;
}

int HttpStatusForCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorField(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos || colon == 0) return "";
  const absl::string_view path = message.substr(0, colon);
  const bool looks_like_path = std::all_of(path.begin(), path.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '[' || c == ']';
  });
  if (!looks_like_path || path == "body") return "";
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    const absl::string_view first = path.substr(0, path.find_first_of(".["));
    constexpr absl::string_view kBodyFields[] = {"call_id", "from_tag", "to_tag", "media_timeout_s",
                                                 "legs"};
    if (std::find(std::begin(kBodyFields), std::end(kBodyFields), first) == std::end(kBodyFields)) {
      return "";
    }
  }
  return std::string(path);
}

nlohmann::ordered_json ErrorJson(const absl::Status& status) {
  const int http = HttpStatusForCode(status.code());
  return ErrorBody(http, status.message(), ErrorField(status));
}

absl::StatusOr<std::vector<std::string>> LoadBearerTokens(const std::string& path) {
  const std::string where = absl::StrCat("api.tokens_file ", path);
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": is a directory, not a file"));
  }
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    const std::string message = absl::StrCat(where, ": cannot read: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::FailedPreconditionError(message);
  }
  std::vector<std::string> tokens;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    if (!IsBearerToken(text)) {
      // The line is a secret: say what is wrong with it, never echo it.
      return absl::InvalidArgumentError(absl::StrCat(
          where, ":", number,
          ": not a bearer token: use only letters, digits and -._~+/ (then optional '='), "
          "one token per line"));
    }
    tokens.emplace_back(text);
  }
  if (in.bad()) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": read error"));
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": no tokens (only blank lines and # comments)"));
  }
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
    spdlog::warn("REST API: {} is readable by every user; chmod o-r it", where);
  }
  return tokens;
}

// ---------------------------------------------------------------- RestApi

RestApi::RestApi(SessionService* sessions, ApiConfig config)
    : sessions_(sessions), config_(std::move(config)) {}

RestApi::~RestApi() { Stop(); }

bool RestApi::Authorize(const httplib::Request& req, httplib::Response& res) {
  if (tokens_.empty()) return true;
  const std::string& header = req.get_header_value("Authorization");
  const std::optional<absl::string_view> presented = BearerTokenOf(header);
  bool match = false;
  if (presented) {
    // Every token is compared (no early exit) in constant time, so response timing
    // says nothing about which token, or how much of one, was right.
    for (const std::string& token : tokens_) {
      if (token.size() == presented->size()) {
        match |= CRYPTO_memcmp(token.data(), presented->data(), token.size()) == 0;
      }
    }
  }
  if (match) return true;

  const absl::string_view why = header.empty() ? "missing bearer token"
                                : presented    ? "invalid bearer token"
                                               : "Authorization is not a Bearer credential";
  const uint64_t failures = ++auth_failures_;
  // Rate limited: a scanner must not be able to flood the log.
  const int64_t now = NowMs();
  int64_t last = last_auth_warning_ms_.load(std::memory_order_relaxed);
  if ((last == 0 || now - last >= kAuthWarningIntervalMs) &&
      last_auth_warning_ms_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    spdlog::warn("REST API: refused {} {} from {}: {} ({} refused since start) [request {}]",
                 req.method, req.path, req.remote_addr, std::string(why), failures,
                 RequestIdOf(res));
  }
  res.set_header("WWW-Authenticate", kWwwAuthenticate);
  SendError(res, 401, absl::StrCat(why, "; send Authorization: Bearer <token>"));
  return false;
}

void RestApi::HandleCreate(const httplib::Request& req, httplib::Response& res) {
  const absl::StatusOr<SessionSpec> spec = ParseSessionSpec(req.body);
  if (!spec.ok()) {
    SendStatus(req, res, spec.status());
    return;
  }
  const absl::StatusOr<SessionInfo> info = sessions_->CreateSession(*spec);
  if (!info.ok()) {
    SendStatus(req, res, info.status());
    return;
  }
  res.set_header("Location", absl::StrCat(kSessionPathPrefix, PercentEncode(info->id)));
  SendJson(res, 201, SessionInfoToJson(*info));
  spdlog::info("REST API: created session {} for call-id {} [request {}]", info->id, info->call_id,
               RequestIdOf(res));
}

void RestApi::HandleList(const httplib::Request& req, httplib::Response& res) {
  const absl::StatusOr<SessionFilter> filter = ParseSessionFilter(req.params);
  if (!filter.ok()) {
    SendStatus(req, res, filter.status());
    return;
  }
  const absl::StatusOr<SessionPage> page = sessions_->ListSessions(*filter);
  if (!page.ok()) {
    SendStatus(req, res, page.status());
    return;
  }
  SendJson(res, 200, SessionPageToJson(*page, *filter));
}

void RestApi::HandleGet(const httplib::Request& req, httplib::Response& res) {
  const absl::StatusOr<SessionInfo> info = sessions_->GetSession(SessionIdOf(req));
  if (!info.ok()) {
    SendStatus(req, res, info.status());
    return;
  }
  SendJson(res, 200, SessionInfoToJson(*info));
}

void RestApi::HandlePatch(const httplib::Request& req, httplib::Response& res) {
  const absl::StatusOr<SessionUpdate> update = ParseSessionUpdate(req.body);
  if (!update.ok()) {
    SendStatus(req, res, update.status());
    return;
  }
  const std::string id = SessionIdOf(req);
  const absl::StatusOr<SessionInfo> info = sessions_->UpdateSession(id, *update);
  if (!info.ok()) {
    SendStatus(req, res, info.status());
    return;
  }
  SendJson(res, 200, SessionInfoToJson(*info));
  spdlog::info("REST API: updated session {} [request {}]", id, RequestIdOf(res));
}

void RestApi::HandleDelete(const httplib::Request& req, httplib::Response& res) {
  const std::string id = SessionIdOf(req);
  const absl::StatusOr<SessionInfo> info = sessions_->DeleteSession(id);
  if (!info.ok()) {
    SendStatus(req, res, info.status());
    return;
  }
  SendJson(res, 200, SessionInfoToJson(*info));
  spdlog::info("REST API: deleted session {} [request {}]", id, RequestIdOf(res));
}

void RestApi::RegisterHandlers() {
  httplib::Server& server = *server_;
  using Handler = void (RestApi::*)(const httplib::Request&, httplib::Response&);

  // Every /v1 answer, including 404 and 405, needs a valid token first: an
  // unauthenticated client learns nothing about what exists.
  const auto guarded = [this](Handler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      if (Authorize(req, res)) (this->*handler)(req, res);
    };
  };
  // Registered rather than answered in a pre-routing handler so httplib reads the
  // request body first and the keep-alive connection stays in sync.
  const auto not_allowed = [this](const char* allow) {
    return [this, allow](const httplib::Request& req, httplib::Response& res) {
      if (!Authorize(req, res)) return;
      res.set_header("Allow", allow);
      SendError(
          res, 405,
          absl::StrCat("method ", req.method, " not allowed on ", req.path, "; allowed: ", allow));
    };
  };
  const auto not_found = [this](const httplib::Request& req, httplib::Response& res) {
    if (!Authorize(req, res)) return;
    SendError(res, 404, absl::StrCat("no such endpoint: ", req.path));
  };

  // httplib tries the routes of a method in registration order: specific first.
  server.Get(kSessionsPath, guarded(&RestApi::HandleList));
  server.Post(kSessionsPath, guarded(&RestApi::HandleCreate));
  server.Put(kSessionsPath, not_allowed(kSessionsAllow));
  server.Patch(kSessionsPath, not_allowed(kSessionsAllow));
  server.Delete(kSessionsPath, not_allowed(kSessionsAllow));
  server.Options(kSessionsPath, not_allowed(kSessionsAllow));

  server.Get(kSessionPattern, guarded(&RestApi::HandleGet));
  server.Patch(kSessionPattern, guarded(&RestApi::HandlePatch));
  server.Delete(kSessionPattern, guarded(&RestApi::HandleDelete));
  server.Post(kSessionPattern, not_allowed(kSessionAllow));
  server.Put(kSessionPattern, not_allowed(kSessionAllow));
  server.Options(kSessionPattern, not_allowed(kSessionAllow));

  server.Get(kAnyV1Pattern, not_found);
  server.Post(kAnyV1Pattern, not_found);
  server.Put(kAnyV1Pattern, not_found);
  server.Patch(kAnyV1Pattern, not_found);
  server.Delete(kAnyV1Pattern, not_found);
  server.Options(kAnyV1Pattern, not_found);

  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    res.set_header(kRequestIdHeader, RequestIdFor(req));
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // Fills in a JSON body for errors httplib produced itself (no route outside /v1:
  // 404; unknown method: 400; body too large: 413; ...). Responses a handler already
  // wrote are left alone.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        try {
          if (res.status == 404) {
            SendError(res, 404, absl::StrCat("no such endpoint: ", req.path));
          } else {
            SendError(res, res.status, ErrorText(res.status));
          }
        } catch (...) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        return httplib::Server::HandlerResponse::Handled;
      }));

  // A throwing handler (allocation, a SessionService that throws) answers 500; it
  // must not reach httplib's worker thread, where it would terminate the process.
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        const std::string what = ExceptionText(std::move(ep));
        try {
          spdlog::error("REST API: {} {} failed: {} [request {}]", req.method, req.path, what,
                        RequestIdOf(res));
          res.headers.erase("Allow");
          res.headers.erase("Location");
          SendError(res, 500, "internal error; see the karl log");
        } catch (...) {
          res.status = 500;
        }
      });

  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    // Reads are frequent (monitoring polls), changes are not; a refused token is
    // logged by Authorize with a rate limit.
    const bool quiet = req.method == "GET" || req.method == "HEAD" || res.status == 401;
    spdlog::log(quiet && res.status < 500 ? spdlog::level::debug : spdlog::level::info,
                "REST API: {} {} from {} -> {} [request {}]", req.method, req.path, req.remote_addr,
                res.status, RequestIdOf(res));
  });
}

absl::Status RestApi::Start() {
  if (started_) return absl::FailedPreconditionError("REST API: server already started");
  if (!config_.enabled) {
    spdlog::info("REST API: disabled (api.enabled is false)");
    return absl::OkStatus();
  }
  if (config_.listen.empty()) return absl::InvalidArgumentError("REST API: no listen address");
  if (sessions_ == nullptr) return absl::InvalidArgumentError("REST API: no session service");
  const bool tls = !config_.tls_cert_file.empty() || !config_.tls_key_file.empty();
  if (config_.tls_cert_file.empty() != config_.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "REST API: set both api.tls_cert_file and api.tls_key_file, or neither");
  }
  const std::string where = HostPort{config_.listen, config_.port}.ToString();
  try {
    std::vector<std::string> tokens;
    if (!config_.tokens_file.empty()) {
      KARL_ASSIGN_OR_RETURN(tokens, LoadBearerTokens(config_.tokens_file));
    }
    std::unique_ptr<httplib::Server> server;
    if (tls) {
      KARL_ASSIGN_OR_RETURN(server, MakeTlsServer(config_.tls_cert_file, config_.tls_key_file));
    } else {
      server = std::make_unique<httplib::Server>();
    }
    tokens_ = std::move(tokens);
    server_ = std::move(server);
    httplib::Server& s = *server_;
    s.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    // httplib's default sets SO_REUSEPORT, which would let a second Karl (or anything
    // else) bind the same port and silently take half the requests.
    auto listen_fd = std::make_shared<int>(-1);
    s.set_socket_options([listen_fd](int sock) {
      *listen_fd = sock;
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    s.set_tcp_nodelay(true);
    s.set_keep_alive_timeout(kKeepAliveTimeoutS);
    s.set_read_timeout(kReadTimeoutS, 0);
    s.set_write_timeout(kWriteTimeoutS, 0);
    s.set_payload_max_length(kMaxRequestBody);
    s.set_default_headers({{"Cache-Control", "no-store"}});
    RegisterHandlers();

    const std::string host = config_.listen.ToString();
    const int bound = config_.port == 0 ? s.bind_to_any_port(host)
                                        : (s.bind_to_port(host, config_.port) ? config_.port : -1);
    if (bound <= 0) {
      server_.reset();
      tokens_.clear();
      return absl::UnavailableError(absl::StrCat("REST API: cannot listen on ", where, ": ",
                                                 BindFailureReason(config_.listen, config_.port)));
    }
    // httplib listens with a backlog of 5: a burst of new connections (an SBC
    // reconnecting its pool) would see SYNs dropped and a 1 s retransmit stall. On
    // Linux, listen() again on the bound socket raises the backlog.
    if (*listen_fd >= 0 && ::listen(*listen_fd, kListenBacklog) != 0) {
      spdlog::warn("REST API: cannot raise the listen backlog to {}: {}", kListenBacklog,
                   std::strerror(errno));
    }
    port_ = static_cast<uint16_t>(bound);
    started_ = true;
    thread_ = std::thread([this] {
      if (!server_->listen_after_bind()) spdlog::error("REST API: accept loop failed");
      listen_returned_ = true;
    });
    // httplib's stop() is a no-op until the accept loop runs; waiting here means a
    // Stop() right after Start() cannot leave the thread listening forever.
    while (!server_->is_running() && !listen_returned_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } catch (const std::exception& e) {
    if (!thread_.joinable()) server_.reset();
    return absl::InternalError(absl::StrCat("REST API: cannot start on ", where, ": ", e.what()));
  }
  const HostPort bound_at{config_.listen, port_};
  spdlog::info(
      "REST API: listening on {}{} ({})", tls ? "https://" : "http://", bound_at.ToString(),
      tokens_.empty() ? "no authentication" : absl::StrCat(tokens_.size(), " bearer token(s)"));
  if (!tokens_.empty() && !tls && !IsLoopback(config_.listen)) {
    spdlog::warn(
        "REST API: bearer tokens cross the network in clear text on {}; set "
        "api.tls_cert_file and api.tls_key_file",
        bound_at.ToString());
  }
  return absl::OkStatus();
}

void RestApi::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace karl
