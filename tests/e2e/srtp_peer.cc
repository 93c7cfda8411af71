// karl-srtp-peer: an RTP/SRTP media peer on libsrtp2 for the end-to-end tests. It is
// the independent SRTP implementation Karl's (and rtpengine's) output is checked
// against: it sends numbered packets, receives and unprotects what comes back, checks
// every payload, and prints one JSON line of counts.
//
//   karl-srtp-peer --bind ADDR:PORT --remote ADDR:PORT [--suite NAME]
//                  [--send-suite NAME] [--recv-suite NAME]
//                  [--send-key inline:...] [--recv-key inline:...]
//                  [--count N] [--interval-us U] [--payload-size S] [--ssrc X]
//                  [--send-delay-ms D] [--seq-start Q] [--remote-ssrc X]
//                  [--replay-window W] [--replay K]
//                  [--rtcp] [--rtcp-count R] [--remote-rtcp-port P]
//                  [--expect N] [--expect-rtcp M] [--timeout S]
//   karl-srtp-peer --gen-key SUITE
//
// ADDR:PORT is 198.51.100.2:4000 or [2001:db8::2]:4000. A direction without a key is
// plain RTP. --replay K sends each of the last K protected RTP packets twice, back to
// back, byte for byte (a receiver's replay check must drop the copies). --rtcp sends R
// SRTCP (SR + SDES) compounds to the remote port + 1 (or P) and receives on the bind
// port + 1; without --remote it only receives. --send-delay-ms D receives for D ms
// before the first send, so that two peers started together both listen before either
// sends. The run ends when everything is sent and N RTP / M RTCP packets arrived, or
// after S seconds, whichever is first; exit status 0 unless the arguments or a socket
// failed (2).
//
// Payload of RTP packet i: 4-octet big-endian i, then octet j = (i * 7 + j * 13 + 0x5A).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <srtp2/srtp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kRtcpMarker = 0x4B41524C;  // "KARL" in the SR's NTP seconds
constexpr char kCname[] = "karl-srtp-peer";
constexpr size_t kMaxPacket = 1500;
constexpr size_t kMaxSources = 8;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "karl-srtp-peer: %s\n", what.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------- suites

struct Suite {
  const char* name;
  size_t key_salt_len;  // master key + master salt, octets
  void (*rtp)(srtp_crypto_policy_t*);
  void (*rtcp)(srtp_crypto_policy_t*);
};

// RFC 4568 §6.2 (SRTCP keeps the 80-bit tag for the _32 suites, §6.2.2), RFC 6188 §3,
// RFC 7714 §14.2. (libsrtp2's aes_cm_128_hmac_sha1_80 setter is a macro for the default.)
constexpr Suite kSuites[] = {
    {"AES_CM_128_HMAC_SHA1_80", 30, srtp_crypto_policy_set_rtp_default,
     srtp_crypto_policy_set_rtp_default},
    {"AES_CM_128_HMAC_SHA1_32", 30, srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32,
     srtp_crypto_policy_set_rtp_default},
    {"AES_256_CM_HMAC_SHA1_80", 46, srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80,
     srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80},
    {"AES_256_CM_HMAC_SHA1_32", 46, srtp_crypto_policy_set_aes_cm_256_hmac_sha1_32,
     srtp_crypto_policy_set_aes_cm_256_hmac_sha1_80},
    {"AEAD_AES_128_GCM", 28, srtp_crypto_policy_set_aes_gcm_128_16_auth,
     srtp_crypto_policy_set_aes_gcm_128_16_auth},
    {"AEAD_AES_256_GCM", 44, srtp_crypto_policy_set_aes_gcm_256_16_auth,
     srtp_crypto_policy_set_aes_gcm_256_16_auth},
};

const Suite& FindSuite(std::string_view name) {
  for (const Suite& s : kSuites) {
    if (name == s.name) return s;
  }
  Die("unknown suite '" + std::string(name) + "'");
}

const char* ErrorName(srtp_err_status_t e) {
  constexpr const char* kNames[] = {
      "ok",         "fail",      "bad_param",   "alloc_fail",  "dealloc_fail", "init_fail",
      "terminus",   "auth_fail", "cipher_fail", "replay_fail", "replay_old",   "algo_fail",
      "no_such_op", "no_ctx",    "cant_check",  "key_expired", "socket_err",   "signal_err",
      "nonce_bad",  "read_fail", "write_fail",  "parse_err",   "encode_err",   "semaphore_err",
      "pfkey_err",  "bad_mki",   "pkt_idx_old", "pkt_idx_adv"};
  const auto i = static_cast<size_t>(e);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "unknown";
}

// ---------------------------------------------------------------- base64, keys

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64(const Bytes& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint32_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint32_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= in[i + 2];
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kB64[v & 63] : '=';
  }
  return out;
}

// Padding is optional (rtpengine leaves it out by default).
std::optional<Bytes> Unbase64(std::string_view in) {
  Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : in) {
    if (c == '=') break;
    const char* p = std::strchr(kB64, c);
    if (c == '\0' || p == nullptr) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
    }
  }
  return out;
}

// RFC 4568 §6.1 key-params: "inline:" key||salt ["|" lifetime] ["|" MKI ":" length].
struct InlineKey {
  Bytes key_salt;
  Bytes mki;  // empty: no MKI
};

uint64_t Number(std::string_view text, uint64_t max) {
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 0);
  if (errno != 0 || end == s.c_str() || *end != '\0' || v > max) {
    Die("bad number '" + s + "'");
  }
  return v;
}

InlineKey ParseInlineKey(std::string_view text, const Suite& suite) {
  constexpr std::string_view kPrefix = "inline:";
  if (text.substr(0, kPrefix.size()) != kPrefix) Die("key must start with inline:");
  text.remove_prefix(kPrefix.size());
  std::vector<std::string_view> parts;
  for (size_t bar; (bar = text.find('|')) != std::string_view::npos;) {
    parts.push_back(text.substr(0, bar));
    text.remove_prefix(bar + 1);
  }
  parts.push_back(text);
  InlineKey key;
  auto raw = Unbase64(parts[0]);
  if (!raw || raw->size() != suite.key_salt_len) {
    Die("key for " + std::string(suite.name) + " must be " + std::to_string(suite.key_salt_len) +
        " octets of base64");
  }
  key.key_salt = *raw;
  for (size_t i = 1; i < parts.size(); ++i) {
    const size_t colon = parts[i].find(':');
    if (colon == std::string_view::npos) continue;  // lifetime: libsrtp's default applies
    const uint64_t value = Number(parts[i].substr(0, colon), UINT64_MAX);
    const uint64_t length = Number(parts[i].substr(colon + 1), 8);
    if (length < 1) Die("MKI length must be 1..8 here");
    for (uint64_t b = 0; b < length; ++b) {
      key.mki.push_back(static_cast<uint8_t>(value >> (8 * (length - 1 - b))));
    }
  }
  return key;
}

Bytes RandomBytes(size_t n) {
  Bytes out(n);
  size_t got = 0;
  for (int tries = 0; got < n && tries < 16; ++tries) {
    const ssize_t r = getrandom(out.data() + got, n - got, 0);
    if (r > 0) got += static_cast<size_t>(r);
  }
  if (got != n) Die("getrandom failed");
  return out;
}

// ---------------------------------------------------------------- SRTP sessions

class SrtpSession {
 public:
  // outbound: protects packets of `ssrc`; inbound: unprotects those of `ssrc`, or of
  // any SSRC when none is given (libsrtp then clones a stream per new SSRC).
  SrtpSession(const Suite& suite, const InlineKey& key, bool outbound, std::optional<uint32_t> ssrc,
              unsigned replay_window)
      : key_(key) {
    srtp_policy_t p;
    std::memset(&p, 0, sizeof(p));
    suite.rtp(&p.rtp);
    suite.rtcp(&p.rtcp);
    if (ssrc) {
      p.ssrc.type = ssrc_specific;
      p.ssrc.value = *ssrc;
    } else {
      p.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    }
    p.window_size = replay_window;
    if (key_.mki.empty()) {
      p.key = key_.key_salt.data();
    } else {
      master_.key = key_.key_salt.data();
      master_.mki_id = key_.mki.data();
      master_.mki_size = static_cast<unsigned>(key_.mki.size());
      masters_[0] = &master_;
      p.keys = masters_;
      p.num_master_keys = 1;
    }
    const srtp_err_status_t e = srtp_create(&ctx_, &p);
    if (e != srtp_err_status_ok) Die(std::string("srtp_create: ") + ErrorName(e));
  }
  ~SrtpSession() { srtp_dealloc(ctx_); }
  SrtpSession(const SrtpSession&) = delete;
  SrtpSession& operator=(const SrtpSession&) = delete;

  // In place; buf has room for SRTP_MAX_TRAILER_LEN more octets.
  srtp_err_status_t Protect(uint8_t* buf, int* len, bool rtcp) {
    const unsigned use_mki = key_.mki.empty() ? 0 : 1;
    return rtcp ? srtp_protect_rtcp_mki(ctx_, buf, len, use_mki, 0)
                : srtp_protect_mki(ctx_, buf, len, use_mki, 0);
  }
  srtp_err_status_t Unprotect(uint8_t* buf, int* len, bool rtcp) {
    const unsigned use_mki = key_.mki.empty() ? 0 : 1;
    return rtcp ? srtp_unprotect_rtcp_mki(ctx_, buf, len, use_mki)
                : srtp_unprotect_mki(ctx_, buf, len, use_mki);
  }

 private:
  InlineKey key_;
  srtp_master_key_t master_{};
  srtp_master_key_t* masters_[1] = {nullptr};
  srtp_t ctx_ = nullptr;
};

// ---------------------------------------------------------------- sockets

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

Endpoint ParseEndpoint(std::string_view text) {
  std::string host;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find("]:");
    if (close == std::string_view::npos) Die("bad endpoint " + std::string(text));
    host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) Die("bad endpoint " + std::string(text));
    host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  const auto p = static_cast<uint16_t>(Number(port, 65535));
  Endpoint e;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(p);
    e.len = sizeof(sockaddr_in);
    e.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(p);
    e.len = sizeof(sockaddr_in6);
    e.family = AF_INET6;
  } else {
    Die("bad address in " + std::string(text));
  }
  return e;
}

uint16_t PortOf(const Endpoint& e) {
  return ntohs(e.family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&e.addr)->sin_port
                                   : reinterpret_cast<const sockaddr_in6*>(&e.addr)->sin6_port);
}

Endpoint WithPort(Endpoint e, uint16_t port) {
  if (e.family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&e.addr)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&e.addr)->sin6_port = htons(port);
  }
  return e;
}

// "addr:port" (no brackets for IPv6, as the Python peer prints its sources).
std::string Format(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    port = ntohs(v4->sin_port);
  } else {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    port = ntohs(v6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

int OpenSocket(const Endpoint& bind_to) {
  const int fd = socket(bind_to.family, SOCK_DGRAM, 0);
  if (fd < 0) Die("socket: " + std::string(std::strerror(errno)));
  const int one = 1;
  const int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  if (bind_to.family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&bind_to.addr), bind_to.len) != 0) {
    Die("bind " + Format(bind_to.addr) + ": " + std::strerror(errno));
  }
  return fd;
}

// ---------------------------------------------------------------- packets

void Put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, v >> 16);
  Put16(p + 2, v);
}
uint32_t Get16(const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 8 | p[1]; }
uint32_t Get32(const uint8_t* p) { return Get16(p) << 16 | Get16(p + 2); }

uint8_t PatternByte(uint32_t counter, size_t j) {
  return static_cast<uint8_t>(counter * 7 + j * 13 + 0x5A);
}

// RTP v2, PT 0, 20 ms of 8 kHz per packet (RFC 3550 §5.1).
int BuildRtp(uint8_t* buf, uint32_t counter, uint16_t seq, uint32_t ssrc, size_t payload_size) {
  buf[0] = 0x80;
  buf[1] = 0;
  Put16(buf + 2, seq);
  Put32(buf + 4, counter * 160);
  Put32(buf + 8, ssrc);
  uint8_t* pl = buf + 12;
  Put32(pl, counter);
  for (size_t j = 4; j < payload_size; ++j) pl[j] = PatternByte(counter, j);
  return static_cast<int>(12 + payload_size);
}

// An SR (RFC 3550 §6.4.1) with the marker and counter as its NTP time, then an SDES
// CNAME chunk (§6.5), as one compound packet.
int BuildRtcp(uint8_t* buf, uint32_t counter, uint32_t ssrc, uint32_t packets, uint32_t octets) {
  buf[0] = 0x80;
  buf[1] = 200;
  Put16(buf + 2, 6);
  Put32(buf + 4, ssrc);
  Put32(buf + 8, kRtcpMarker);
  Put32(buf + 12, counter);
  Put32(buf + 16, packets * 160);
  Put32(buf + 20, packets);
  Put32(buf + 24, octets);
  uint8_t* sdes = buf + 28;
  const size_t cname_len = sizeof(kCname) - 1;
  const size_t chunk = (4 + 2 + cname_len + 1 + 3) / 4 * 4;  // item list ends with a 0
  std::memset(sdes, 0, 4 + chunk);
  sdes[0] = 0x81;
  sdes[1] = 202;
  Put16(sdes + 2, static_cast<uint32_t>(chunk / 4));
  Put32(sdes + 4, ssrc);
  sdes[8] = 1;  // CNAME
  sdes[9] = static_cast<uint8_t>(cname_len);
  std::memcpy(sdes + 10, kCname, cname_len);
  return static_cast<int>(28 + 4 + chunk);
}

// ---------------------------------------------------------------- options

struct Options {
  std::optional<Endpoint> bind_to;
  std::optional<Endpoint> remote;
  std::string send_suite = "AES_CM_128_HMAC_SHA1_80";
  std::string recv_suite = "AES_CM_128_HMAC_SHA1_80";
  std::string send_key;
  std::string recv_key;
  uint32_t count = 0;
  uint32_t interval_us = 1000;
  uint32_t send_delay_ms = 0;
  size_t payload_size = 160;
  uint32_t ssrc = 0x5352540A;
  uint16_t seq_start = 1000;
  std::optional<uint32_t> remote_ssrc;
  unsigned replay_window = 128;
  uint32_t replay = 0;
  bool rtcp = false;
  uint32_t rtcp_count = 5;
  std::optional<uint16_t> remote_rtcp_port;
  uint32_t expect = 0;
  uint32_t expect_rtcp = 0;
  double timeout_s = 10;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) Die(std::string(a) + " needs a value");
      return argv[++i];
    };
    if (a == "--gen-key") {
      const Suite& s = FindSuite(value());
      std::printf("inline:%s\n", Base64(RandomBytes(s.key_salt_len)).c_str());
      std::exit(0);
    } else if (a == "--bind") {
      o.bind_to = ParseEndpoint(value());
    } else if (a == "--remote") {
      o.remote = ParseEndpoint(value());
    } else if (a == "--suite") {
      o.send_suite = o.recv_suite = value();
    } else if (a == "--send-suite") {
      o.send_suite = value();
    } else if (a == "--recv-suite") {
      o.recv_suite = value();
    } else if (a == "--send-key") {
      o.send_key = value();
    } else if (a == "--recv-key") {
      o.recv_key = value();
    } else if (a == "--count") {
      o.count = static_cast<uint32_t>(Number(value(), 10000000));
    } else if (a == "--interval-us") {
      o.interval_us = static_cast<uint32_t>(Number(value(), 10000000));
    } else if (a == "--send-delay-ms") {
      o.send_delay_ms = static_cast<uint32_t>(Number(value(), 60000));
    } else if (a == "--payload-size") {
      o.payload_size = Number(value(), kMaxPacket - 12 - SRTP_MAX_TRAILER_LEN);
      if (o.payload_size < 4) Die("--payload-size must be at least 4");
    } else if (a == "--ssrc") {
      o.ssrc = static_cast<uint32_t>(Number(value(), 0xFFFFFFFF));
    } else if (a == "--seq-start") {
      o.seq_start = static_cast<uint16_t>(Number(value(), 0xFFFF));
    } else if (a == "--remote-ssrc") {
      o.remote_ssrc = static_cast<uint32_t>(Number(value(), 0xFFFFFFFF));
    } else if (a == "--replay-window") {
      o.replay_window = static_cast<unsigned>(Number(value(), 0x7FFF));
    } else if (a == "--replay") {
      o.replay = static_cast<uint32_t>(Number(value(), 10000000));
    } else if (a == "--rtcp") {
      o.rtcp = true;
    } else if (a == "--rtcp-count") {
      o.rtcp_count = static_cast<uint32_t>(Number(value(), 1000));
    } else if (a == "--remote-rtcp-port") {
      o.remote_rtcp_port = static_cast<uint16_t>(Number(value(), 0xFFFF));
    } else if (a == "--expect") {
      o.expect = static_cast<uint32_t>(Number(value(), 10000000));
    } else if (a == "--expect-rtcp") {
      o.expect_rtcp = static_cast<uint32_t>(Number(value(), 10000000));
    } else if (a == "--timeout") {
      o.timeout_s = std::atof(value());
      if (!(o.timeout_s > 0 && o.timeout_s <= 600)) Die("--timeout must be in (0, 600]");
    } else {
      Die("unknown option " + std::string(a));
    }
  }
  if (!o.bind_to) Die("--bind is required");
  if (!o.remote && o.count > 0) Die("--remote is required to send");
  if (o.remote && o.remote->family != o.bind_to->family) {
    Die("--bind and --remote must be the same address family");
  }
  if (o.replay > o.count) Die("--replay must not exceed --count");
  return o;
}

// ---------------------------------------------------------------- receiving

struct Counts {
  uint32_t received = 0;  // intact, first copy
  uint32_t duplicates = 0;
  uint32_t out_of_order = 0;
  uint32_t corrupt = 0;
  uint32_t not_rtp = 0;
  uint32_t seq_offset_changes = 0;  // RTP seq - counter changed: someone renumbered
  std::optional<uint32_t> first_counter;
  std::optional<uint32_t> last_counter;
  std::optional<uint32_t> highest;
  std::optional<uint16_t> seq_offset;
  std::set<uint32_t> seen;
  std::set<uint32_t> ssrcs;
  std::set<std::string> sources;
  std::map<std::string, uint32_t> unprotect_errors;

  uint32_t rtcp_received = 0;
  uint32_t rtcp_corrupt = 0;
  std::set<std::string> rtcp_sources;
  std::map<std::string, uint32_t> rtcp_unprotect_errors;
};

void NoteSource(std::set<std::string>* set, const sockaddr_storage& from) {
  if (set->size() < kMaxSources) set->insert(Format(from));
}

void HandleRtcp(uint8_t* buf, int len, SrtpSession* rx, Counts* c) {
  if (rx != nullptr) {
    const srtp_err_status_t e = rx->Unprotect(buf, &len, true);
    if (e != srtp_err_status_ok) {
      ++c->rtcp_unprotect_errors[ErrorName(e)];
      return;
    }
  }
  if (len >= 28 && buf[1] == 200 && (buf[0] & 0xC0) == 0x80 && Get32(buf + 8) == kRtcpMarker) {
    ++c->rtcp_received;
  } else {
    ++c->rtcp_corrupt;
  }
}

void HandleRtp(uint8_t* buf, int len, SrtpSession* rx, size_t payload_size, Counts* c) {
  if (len < 12 || (buf[0] & 0xC0) != 0x80) {
    ++c->not_rtp;
    return;
  }
  if (rx != nullptr) {
    const srtp_err_status_t e = rx->Unprotect(buf, &len, false);
    if (e != srtp_err_status_ok) {
      ++c->unprotect_errors[ErrorName(e)];
      return;
    }
  }
  size_t off = 12 + 4 * static_cast<size_t>(buf[0] & 0x0F);
  if ((buf[0] & 0x10) != 0 && off + 4 <= static_cast<size_t>(len)) {
    off += 4 + 4 * Get16(buf + off + 2);  // header extension (RFC 3550 §5.3.1)
  }
  size_t end = static_cast<size_t>(len);
  if ((buf[0] & 0x20) != 0 && end > off) end -= std::min<size_t>(buf[end - 1], end - off);
  if (off > end || end - off != payload_size) {
    ++c->corrupt;
    return;
  }
  const uint8_t* pl = buf + off;
  const uint32_t counter = Get32(pl);
  for (size_t j = 4; j < payload_size; ++j) {
    if (pl[j] != PatternByte(counter, j)) {
      ++c->corrupt;
      return;
    }
  }
  if (!c->seen.insert(counter).second) {
    ++c->duplicates;
    return;
  }
  if (c->highest && counter < *c->highest) ++c->out_of_order;
  if (!c->highest || counter > *c->highest) c->highest = counter;
  const auto offset = static_cast<uint16_t>(Get16(buf + 2) - counter);
  if (c->seq_offset && *c->seq_offset != offset) ++c->seq_offset_changes;
  c->seq_offset = offset;
  if (!c->first_counter) c->first_counter = counter;
  c->last_counter = counter;
  if (c->ssrcs.size() < kMaxSources) c->ssrcs.insert(Get32(buf + 8));
  ++c->received;
}

// Reads what is queued on fd without blocking (at most 256 datagrams per call).
void Drain(int fd, bool is_rtcp_socket, SrtpSession* rx, const Options& o, Counts* c) {
  uint8_t buf[kMaxPacket + SRTP_MAX_TRAILER_LEN];
  for (int n = 0; n < 256; ++n) {
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    const ssize_t r =
        recvfrom(fd, buf, kMaxPacket, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (r < 0) return;
    const int len = static_cast<int>(r);
    // RTCP on the RTP port (rtcp-mux, RFC 5761 §4): packet types 192..223.
    const bool rtcp = is_rtcp_socket || (len >= 2 && buf[1] >= 192 && buf[1] <= 223);
    if (rtcp) {
      NoteSource(&c->rtcp_sources, from);
      HandleRtcp(buf, len, rx, c);
    } else {
      NoteSource(&c->sources, from);
      HandleRtp(buf, len, rx, o.payload_size, c);
    }
  }
}

// ---------------------------------------------------------------- output

std::string JsonMap(const std::map<std::string, uint32_t>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) {
    if (out.size() > 1) out += ",";
    out += "\"" + k + "\":" + std::to_string(v);
  }
  return out + "}";
}

std::string JsonStrings(const std::set<std::string>& s) {
  std::string out = "[";
  for (const auto& v : s) {
    if (out.size() > 1) out += ",";
    out += "\"" + v + "\"";
  }
  return out + "]";
}

std::string JsonNumbers(const std::set<uint32_t>& s) {
  std::string out = "[";
  for (const uint32_t v : s) {
    if (out.size() > 1) out += ",";
    out += std::to_string(v);
  }
  return out + "]";
}

std::string JsonOpt(const std::optional<uint32_t>& v) {
  return v ? std::to_string(*v) : std::string("null");
}

}  // namespace

int main(int argc, char** argv) {
  if (srtp_init() != srtp_err_status_ok) Die("srtp_init failed");
  const Options o = ParseOptions(argc, argv);

  std::optional<SrtpSession> tx;
  std::optional<SrtpSession> rx;
  if (!o.send_key.empty()) {
    const Suite& s = FindSuite(o.send_suite);
    tx.emplace(s, ParseInlineKey(o.send_key, s), true, o.ssrc, o.replay_window);
  }
  if (!o.recv_key.empty()) {
    const Suite& s = FindSuite(o.recv_suite);
    rx.emplace(s, ParseInlineKey(o.recv_key, s), false, o.remote_ssrc, o.replay_window);
  }

  const int rtp_fd = OpenSocket(*o.bind_to);
  int rtcp_fd = -1;
  std::optional<Endpoint> remote_rtcp;
  if (o.rtcp) {
    rtcp_fd = OpenSocket(WithPort(*o.bind_to, static_cast<uint16_t>(PortOf(*o.bind_to) + 1)));
    if (o.remote) {
      remote_rtcp = WithPort(
          *o.remote, o.remote_rtcp_port.value_or(static_cast<uint16_t>(PortOf(*o.remote) + 1)));
    }
  }

  Counts c;
  uint32_t sent = 0;
  uint32_t replayed = 0;
  uint32_t rtcp_sent = 0;
  uint32_t octets_sent = 0;
  std::map<std::string, uint32_t> protect_errors;
  const uint32_t rtcp_total = remote_rtcp ? o.rtcp_count : 0;  // --rtcp alone: receive only
  const uint32_t rtcp_every = std::max<uint32_t>(1, o.count / std::max<uint32_t>(1, rtcp_total));

  auto send_to = [&](int fd, const Endpoint& to, const uint8_t* p, int len) {
    // A full socket buffer or an ICMP error from an earlier datagram is not fatal here:
    // the receiver's counts show what got through.
    (void)sendto(fd, p, static_cast<size_t>(len), 0, reinterpret_cast<const sockaddr*>(&to.addr),
                 to.len);
  };
  auto send_rtcp = [&]() {
    uint8_t buf[kMaxPacket + SRTP_MAX_TRAILER_LEN];
    int len = BuildRtcp(buf, rtcp_sent++, o.ssrc, sent, octets_sent);
    if (tx) {
      const srtp_err_status_t e = tx->Protect(buf, &len, true);
      if (e != srtp_err_status_ok) {
        ++protect_errors[ErrorName(e)];
        return;
      }
    }
    send_to(rtcp_fd, *remote_rtcp, buf, len);
  };

  const auto t0 = Clock::now();
  const auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout_s));
  const auto interval = std::chrono::microseconds(o.interval_us);
  auto next_send = t0 + std::chrono::milliseconds(o.send_delay_ms);
  // Bounded by the deadline; each pass sends at most one RTP packet and drains the
  // sockets.
  for (;;) {
    auto now = Clock::now();
    if (now >= deadline) break;
    if (sent < o.count && now >= next_send) {
      uint8_t buf[kMaxPacket + SRTP_MAX_TRAILER_LEN];
      int len =
          BuildRtp(buf, sent, static_cast<uint16_t>(o.seq_start + sent), o.ssrc, o.payload_size);
      bool ok = true;
      if (tx) {
        const srtp_err_status_t e = tx->Protect(buf, &len, false);
        if (e != srtp_err_status_ok) {
          ++protect_errors[ErrorName(e)];
          ok = false;
        }
      }
      if (ok) {
        send_to(rtp_fd, *o.remote, buf, len);
        if (sent >= o.count - o.replay) {
          send_to(rtp_fd, *o.remote, buf, len);
          ++replayed;
        }
        octets_sent += static_cast<uint32_t>(o.payload_size);
      }
      ++sent;
      next_send += interval;
      if (rtcp_sent < rtcp_total && sent % rtcp_every == 0) send_rtcp();
    }
    if (rtcp_sent < rtcp_total && sent == o.count && now >= next_send) {
      while (rtcp_sent < rtcp_total) send_rtcp();  // the rest once the RTP is out
    }
    const bool sending = sent < o.count || rtcp_sent < rtcp_total;
    if (!sending && c.received >= o.expect && c.rtcp_received >= o.expect_rtcp) break;

    now = Clock::now();
    auto wait = deadline - now;
    if (sending) wait = std::min(wait, next_send - now);
    if (wait < Clock::duration::zero()) wait = Clock::duration::zero();
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    pollfd fds[2] = {{rtp_fd, POLLIN, 0}, {rtcp_fd, POLLIN, 0}};
    if (ppoll(fds, rtcp_fd >= 0 ? 2 : 1, &ts, nullptr) > 0) {
      SrtpSession* unprotect = rx ? &*rx : nullptr;
      if ((fds[0].revents & POLLIN) != 0) Drain(rtp_fd, false, unprotect, o, &c);
      if (rtcp_fd >= 0 && (fds[1].revents & POLLIN) != 0) Drain(rtcp_fd, true, unprotect, o, &c);
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  std::printf(
      "{\"sent\":%u,\"replayed\":%u,\"sent_rtcp\":%u,\"protect_errors\":%s,"
      "\"received\":%u,\"duplicates\":%u,\"out_of_order\":%u,\"corrupt\":%u,\"not_rtp\":%u,"
      "\"seq_offset_changes\":%u,\"first_counter\":%s,\"last_counter\":%s,"
      "\"unprotect_errors\":%s,\"ssrcs\":%s,\"sources\":%s,"
      "\"received_rtcp\":%u,\"rtcp_corrupt\":%u,\"rtcp_unprotect_errors\":%s,"
      "\"rtcp_sources\":%s,\"elapsed_s\":%.3f}\n",
      sent, replayed, rtcp_sent, JsonMap(protect_errors).c_str(), c.received, c.duplicates,
      c.out_of_order, c.corrupt, c.not_rtp, c.seq_offset_changes, JsonOpt(c.first_counter).c_str(),
      JsonOpt(c.last_counter).c_str(), JsonMap(c.unprotect_errors).c_str(),
      JsonNumbers(c.ssrcs).c_str(), JsonStrings(c.sources).c_str(), c.rtcp_received, c.rtcp_corrupt,
      JsonMap(c.rtcp_unprotect_errors).c_str(), JsonStrings(c.rtcp_sources).c_str(), elapsed);
  std::fflush(stdout);
  close(rtp_fd);
  if (rtcp_fd >= 0) close(rtcp_fd);
  tx.reset();
  rx.reset();
  srtp_shutdown();
  return 0;
}
