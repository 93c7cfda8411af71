// SDP (RFC 8866, which obsoletes RFC 4566) parsed into its lines and rewritten in place,
// for the ng protocol's offer/answer: everything Karl does not change comes out byte for
// byte and in the same order; what it changes is regenerated in canonical form.
// Input lines may end in CRLF or LF; output lines end in CRLF (RFC 8866 §5).
// Thread: any (values are plain data; no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_addr.h"

namespace karl {

// One "<type>=<value>" line.
struct SdpLine {
  char type = 0;        // the letter before '=' ('v', 'o', 'c', 'm', 'a', ...)
  std::string value;    // everything after '=', without the line ending
  int line_number = 0;  // 1-based line in the parsed text; 0 for a line Karl added

  // a= lines (RFC 8866 §5.13): the name before the first ':' and the value after it
  // ("" for a property attribute such as a=rtcp-mux).
  std::string_view AttributeName() const;
  std::string_view AttributeValue() const;
  bool operator==(const SdpLine&) const = default;
};

// c= (RFC 8866 §5.7): "IN IP4 192.0.2.1" / "IN IP6 2001:db8::1".
struct SdpConnection {
  std::string nettype = "IN";
  std::string addrtype;  // "IP4" or "IP6"
  std::string address;   // as written (a multicast "/ttl[/count]" suffix included)

  // "IN IP4 <ip>" or "IN IP6 <ip>" for an IP address.
  static SdpConnection FromIp(const IpAddress& ip);
  // The address when it is an IP literal of addrtype's family (the multicast suffix cut).
  std::optional<IpAddress> Ip() const;
  std::string ToString() const;  // "IN IP4 192.0.2.1"
  bool operator==(const SdpConnection&) const = default;
};

// o= (RFC 8866 §5.2). sess-id and sess-version stay text: they may exceed 64 bits.
struct SdpOrigin {
  std::string username;
  std::string sess_id;
  std::string sess_version;  // decimal digits (checked by Sdp::Parse)
  std::string nettype;
  std::string addrtype;
  std::string address;
  std::string ToString() const;  // the o= value
  bool operator==(const SdpOrigin&) const = default;
};

// a=rtcp (RFC 3605 §2.1): "<port> [<nettype> <addrtype> <address>]".
struct SdpRtcp {
  uint16_t port = 0;
  std::optional<SdpConnection> connection;
  std::string ToString() const;  // the attribute value
  bool operator==(const SdpRtcp&) const = default;
};

// RFC 8866 §6.7 media direction attributes; absent means sendrecv.
enum class SdpDirection { kSendRecv, kSendOnly, kRecvOnly, kInactive };
std::string_view SdpDirectionName(SdpDirection d);  // "sendrecv", ...

// The ICE attributes RemoveIce() deletes (RFC 8839 §5; end-of-candidates: RFC 8840).
inline constexpr std::string_view kSdpIceAttributes[] = {
    "candidate",         "ice-ufrag", "ice-pwd",      "ice-options", "end-of-candidates",
    "remote-candidates", "ice-lite",  "ice-mismatch", "ice-pacing",
};

// The lines of one level: the session part (v= up to the first m=) or one media section
// (its m= line first). string_views returned point into the lines and are valid until the
// section is changed.
class SdpSection {
 public:
  const std::vector<SdpLine>& lines() const { return lines_; }

  // Values of every a=<name>[:<value>] line in order ("" for a property attribute).
  // Names compare case-sensitively.
  std::vector<std::string_view> Attributes(std::string_view name) const;
  // The first such value, or nullopt.
  std::optional<std::string_view> Attribute(std::string_view name) const;
  bool HasAttribute(std::string_view name) const;
  // Appends "a=<name>" (no value) or "a=<name>:<value>" at the end of this section.
  void AddAttribute(std::string_view name, std::optional<std::string_view> value = std::nullopt);
  // Removes every a=<name> line; returns how many.
  size_t RemoveAttributes(std::string_view name);

  // This level's c= (the first if several), or nullopt.
  std::optional<SdpConnection> connection() const;
  // Sets this level's c=: rewrites the first c= line (dropping any further ones) or adds
  // one where RFC 8866 §5 puts it (after v/o/s/i/u/e/p at session level, after m/i in a
  // media section).
  void SetConnection(const SdpConnection& c);

  // The direction attribute at this level, or nullopt when there is none.
  std::optional<SdpDirection> direction() const;
  // Writes `d` over the first direction attribute (dropping others), or appends it.
  void SetDirection(SdpDirection d);
  // Removes every direction attribute; returns how many.
  size_t RemoveDirection();

  // Removes every attribute in kSdpIceAttributes; returns how many lines.
  size_t RemoveIce();

 protected:
  friend class Sdp;
  SdpSection() = default;
  std::vector<SdpLine> lines_;
};

// One media description (RFC 8866 §5.14): "m=<media> <port>[/<count>] <proto> <fmt> ...".
class SdpMedia : public SdpSection {
 public:
  const std::string& media() const { return media_; }  // "audio", "video", ...
  uint16_t port() const { return port_; }
  std::optional<uint32_t> port_count() const { return port_count_; }
  const std::string& proto() const { return proto_; }  // "RTP/AVP", "UDP/TLS/RTP/SAVPF", ...
  const std::vector<std::string>& formats() const { return formats_; }
  // Port 0 rejects or disables the stream (RFC 3264 §6, §8.2).
  bool rejected() const { return port_ == 0; }
  // Line number of the m= line in the parsed text.
  int line_number() const { return lines_.front().line_number; }

  // Each rewrites the m= line (keeping the other fields).
  void SetPort(uint16_t port);
  void SetProto(std::string_view proto);
  void SetFormats(std::vector<std::string> formats);

  // a=rtcp (RFC 3605), or nullopt. Checked by Sdp::Parse, so it always parses here.
  std::optional<SdpRtcp> rtcp() const;
  // Writes over the first a=rtcp (dropping others) or appends one.
  void SetRtcp(const SdpRtcp& rtcp);
  // Removes a=rtcp; false when there was none.
  bool RemoveRtcp();

  // a=rtcp-mux (RFC 5761 §5.1.1).
  bool rtcp_mux() const { return HasAttribute("rtcp-mux"); }
  // Adds a=rtcp-mux (appended) when `on` and absent; removes it when not `on`.
  void SetRtcpMux(bool on);

  // a=crypto values (RFC 4568), in order, e.g. "1 AES_CM_128_HMAC_SHA1_80 inline:...";
  // parse them with ParseSdesCrypto (sdes.h).
  std::vector<std::string_view> crypto() const { return Attributes("crypto"); }
  // Removes the index-th a=crypto line (of crypto()); false when out of range.
  bool RemoveCrypto(size_t index);
  // Removes every a=crypto line; returns how many.
  size_t RemoveAllCrypto() { return RemoveAttributes("crypto"); }
  // Adds an a=crypto line after the last one, or at the end when there is none.
  void AddCrypto(std::string_view value);

 private:
  friend class Sdp;
  SdpMedia() = default;
  void RewriteMediaLine();

  std::string media_;
  uint16_t port_ = 0;
  std::optional<uint32_t> port_count_;
  std::string proto_;
  std::vector<std::string> formats_;
};

// A whole session description.
class Sdp {
 public:
  // Parses `text`. Checks: v=0 first; exactly one o= (6 fields, numeric sess-version) and
  // one s= at session level; no v=/o=/s= inside a media section; c= is "IN IP4|IP6 <addr>";
  // m= has a port 0..65535 (optional "/count" >= 1), a proto and, unless the port is 0, a
  // format; a=rtcp has a port and optionally "IN IP4|IP6 <addr>"; every media section with
  // a non-zero port has a c= of its own or at session level. Blank lines are skipped.
  // InvalidArgument names the line: "SDP line 7: m= port '7x' is not a number 0..65535".
  static absl::StatusOr<Sdp> Parse(std::string_view text);

  // The text, every line ending in CRLF.
  std::string ToString() const;

  SdpSection& session() { return session_; }
  const SdpSection& session() const { return session_; }
  const std::vector<SdpMedia>& media() const { return media_; }
  SdpMedia& media(size_t index) { return media_.at(index); }
  const SdpMedia& media(size_t index) const { return media_.at(index); }

  // o=.
  SdpOrigin origin() const;
  void SetOrigin(const SdpOrigin& o);
  // Replaces the o= nettype, addrtype and address (the "replace origin" ng flag).
  void SetOriginAddress(const SdpConnection& c);
  // sess-version + 1 (RFC 3264 §8: every changed offer/answer in a session bumps it),
  // in decimal text of any length.
  void BumpSessionVersion();

  // The c= that applies to media section `index`: its own, else the session's.
  std::optional<SdpConnection> EffectiveConnection(size_t index) const;
  // Points every media section at `c`: rewrites the session c= (if any) and every media
  // c=; adds a media c= where a section has none and there is no session c=.
  void SetConnection(const SdpConnection& c);
  // Points media section `index` at `c`, the others keep theirs: rewrites its own c=;
  // else, when it inherits the session c=, rewrites that if no other section inherits it
  // (or it already equals `c`), otherwise adds a media c=. Applying it to every section in
  // turn leaves no stale session c= behind: the last one rewrites the session c= and the
  // media c= lines added before that now equal it are dropped again. Rejected sections
  // (port 0) do not count as inheriting.
  void SetMediaConnection(size_t index, const SdpConnection& c);

  // The direction of media section `index`: its own attribute, else the session's, else
  // sendrecv (RFC 8866 §6.7).
  SdpDirection EffectiveDirection(size_t index) const;
  // On hold (RFC 3264 §8.4): direction sendonly or inactive, or the RFC 2543 style
  // c=IN IP4 0.0.0.0 — except with ICE (a=ice-ufrag present), where 0.0.0.0 is JSEP's
  // placeholder address (RFC 8829), not hold.
  bool IsOnHold(size_t index) const;

  // Removes the ICE attributes at session level and in every media section.
  size_t RemoveIce();

 private:
  SdpSection session_;
  std::vector<SdpMedia> media_;
};

}  // namespace karl
