#include "controlplane/sdp.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace karl {
namespace {

// Abseil 20220623's string_view is its own type.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Text from the input for an error message: escaped, at most 60 bytes, in quotes.
std::string Quote(std::string_view s) {
  constexpr size_t kMax = 60;
  std::string out = absl::CHexEscape(Sv(s.substr(0, kMax)));
  if (s.size() > kMax) out.append("...");
  return absl::StrCat("'", out, "'");
}

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("SDP line ", line, ": ", what));
}

// Fields separated by one or more spaces (RFC 8866 wants exactly one; tolerate more).
// Splits at spaces into at most `max` fields; returns how many fields there are (which
// may exceed `max`: only the first `max` are stored). No allocation.
size_t SplitFields(std::string_view s, std::string_view* out, size_t max) {
  size_t n = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i == s.size()) break;
    const size_t end = std::min(s.find(' ', i), s.size());
    if (n < max) out[n] = s.substr(i, end - i);
    ++n;
    i = end;
  }
  return n;
}

std::vector<std::string_view> Fields(std::string_view s) {
  std::vector<std::string_view> out;
  out.reserve(8);
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i == s.size()) break;
    const size_t end = std::min(s.find(' ', i), s.size());
    out.push_back(s.substr(i, end - i));
    i = end;
  }
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Decimal digits only (no sign), value <= max.
std::optional<uint32_t> ParseNumber(std::string_view s, uint32_t max) {
  if (!AllDigits(s) || s.size() > 10) return std::nullopt;
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  if (v > max) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// Parsers for single lines' values; their errors lack the line number (callers add it).

absl::StatusOr<SdpConnection> ParseConnection(std::string_view value, absl::string_view what) {
  std::string_view f[3];
  if (SplitFields(value, f, 3) != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be '<nettype> <addrtype> <address>', got ", Quote(value)));
  }
  if (f[0] != "IN") {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " network type ", Quote(f[0]), " is not IN"));
  }
  if (f[1] != "IP4" && f[1] != "IP6") {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " address type ", Quote(f[1]), " is not IP4 or IP6"));
  }
  return SdpConnection{std::string(f[0]), std::string(f[1]), std::string(f[2])};
}

absl::StatusOr<SdpOrigin> ParseOrigin(std::string_view value) {
  const std::vector<std::string_view> f = Fields(value);
  if (f.size() != 6) {
    return absl::InvalidArgumentError(absl::StrCat(
        "o= must be '<username> <sess-id> <sess-version> <nettype> <addrtype> <address>' (6 "
        "fields), got ",
        f.size(), " in ", Quote(value)));
  }
  if (!AllDigits(f[2])) {
    return absl::InvalidArgumentError(
        absl::StrCat("o= sess-version ", Quote(f[2]), " is not a decimal number"));
  }
  return SdpOrigin{std::string(f[0]), std::string(f[1]), std::string(f[2]),
                   std::string(f[3]), std::string(f[4]), std::string(f[5])};
}

// RFC 3605 §2.1: rtcp-attribute = "a=rtcp:" port [nettype space addrtype space address]
absl::StatusOr<SdpRtcp> ParseRtcp(std::string_view value) {
  const std::vector<std::string_view> f = Fields(value);
  if (f.size() != 1 && f.size() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a=rtcp must be '<port> [IN <IP4|IP6> <address>]' (RFC 3605), got ", Quote(value)));
  }
  const std::optional<uint32_t> port = ParseNumber(f[0], 65535);
  if (!port) {
    return absl::InvalidArgumentError(
        absl::StrCat("a=rtcp port ", Quote(f[0]), " is not a number 0..65535"));
  }
  SdpRtcp r;
  r.port = static_cast<uint16_t>(*port);
  if (f.size() == 4) {
    const std::string_view rest = value.substr(f[1].data() - value.data());
    absl::StatusOr<SdpConnection> c = ParseConnection(rest, "a=rtcp");
    if (!c.ok()) return c.status();
    r.connection = std::move(*c);
  }
  return r;
}

struct MediaLine {
  std::string media;
  uint16_t port = 0;
  std::optional<uint32_t> port_count;
  std::string proto;
  std::vector<std::string> formats;
};

// RFC 8866 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
absl::StatusOr<MediaLine> ParseMediaLine(std::string_view value) {
  const std::vector<std::string_view> f = Fields(value);
  if (f.size() < 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "m= must be '<media> <port>[/<count>] <proto> <fmt> ...', got ", Quote(value)));
  }
  MediaLine m;
  m.media = std::string(f[0]);
  std::string_view port = f[1];
  const size_t slash = port.find('/');
  if (slash != std::string_view::npos) {
    const std::optional<uint32_t> count = ParseNumber(port.substr(slash + 1), 65535);
    if (!count || *count == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "m= port count ", Quote(port.substr(slash + 1)), " is not a number 1..65535"));
    }
    m.port_count = *count;
    port = port.substr(0, slash);
  }
  const std::optional<uint32_t> p = ParseNumber(port, 65535);
  if (!p) {
    return absl::InvalidArgumentError(
        absl::StrCat("m= port ", Quote(port), " is not a number 0..65535"));
  }
  m.port = static_cast<uint16_t>(*p);
  m.proto = std::string(f[2]);
  for (size_t i = 3; i < f.size(); ++i) m.formats.emplace_back(f[i]);
  if (m.formats.empty() && m.port != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("m=", Sv(m.media), " ", m.port, " ", Sv(m.proto), " has no format"));
  }
  return m;
}

bool IsDirection(std::string_view name) {
  return name == "sendrecv" || name == "sendonly" || name == "recvonly" || name == "inactive";
}

bool IsIce(std::string_view name) {
  return std::find(std::begin(kSdpIceAttributes), std::end(kSdpIceAttributes), name) !=
         std::end(kSdpIceAttributes);
}

SdpLine Attr(std::string_view name, std::optional<std::string_view> value) {
  std::string text(name);
  if (value) {
    text.push_back(':');
    text.append(*value);
  }
  return SdpLine{'a', std::move(text), 0};
}

}  // namespace

std::string_view SdpLine::AttributeName() const {
  if (type != 'a') return {};
  const std::string_view v = value;
  return v.substr(0, v.find(':'));
}

std::string_view SdpLine::AttributeValue() const {
  if (type != 'a') return {};
  const std::string_view v = value;
  const size_t colon = v.find(':');
  return colon == std::string_view::npos ? std::string_view() : v.substr(colon + 1);
}

SdpConnection SdpConnection::FromIp(const IpAddress& ip) {
  return SdpConnection{"IN", ip.is_v6() ? "IP6" : "IP4", ip.ToString()};
}

std::optional<IpAddress> SdpConnection::Ip() const {
  const std::string_view a = std::string_view(address).substr(0, address.find('/'));
  std::optional<IpAddress> ip = IpAddress::Parse(a);
  if (!ip || (addrtype == "IP4" && !ip->is_v4()) || (addrtype == "IP6" && !ip->is_v6())) {
    return std::nullopt;
  }
  return ip;
}

std::string SdpConnection::ToString() const {
  return absl::StrCat(nettype, " ", addrtype, " ", address);
}

std::string SdpOrigin::ToString() const {
  return absl::StrCat(username, " ", sess_id, " ", sess_version, " ", nettype, " ", addrtype, " ",
                      address);
}

std::string SdpRtcp::ToString() const {
  if (!connection) return absl::StrCat(port);
  return absl::StrCat(port, " ", connection->ToString());
}

std::string_view SdpDirectionName(SdpDirection d) {
  switch (d) {
    case SdpDirection::kSendRecv:
      return "sendrecv";
    case SdpDirection::kSendOnly:
      return "sendonly";
    case SdpDirection::kRecvOnly:
      return "recvonly";
    case SdpDirection::kInactive:
      return "inactive";
  }
  return "sendrecv";
}

// SdpSection

std::vector<std::string_view> SdpSection::Attributes(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const SdpLine& l : lines_) {
    if (l.type == 'a' && l.AttributeName() == name) out.push_back(l.AttributeValue());
  }
  return out;
}

std::optional<std::string_view> SdpSection::Attribute(std::string_view name) const {
  for (const SdpLine& l : lines_) {
    if (l.type == 'a' && l.AttributeName() == name) return l.AttributeValue();
  }
  return std::nullopt;
}

bool SdpSection::HasAttribute(std::string_view name) const { return Attribute(name).has_value(); }

void SdpSection::AddAttribute(std::string_view name, std::optional<std::string_view> value) {
  lines_.push_back(Attr(name, value));
}

size_t SdpSection::RemoveAttributes(std::string_view name) {
  const size_t before = lines_.size();
  std::erase_if(lines_,
                [&](const SdpLine& l) { return l.type == 'a' && l.AttributeName() == name; });
  return before - lines_.size();
}

std::optional<SdpConnection> SdpSection::connection() const {
  for (const SdpLine& l : lines_) {
    if (l.type != 'c') continue;
    absl::StatusOr<SdpConnection> c = ParseConnection(l.value, "c=");
    if (c.ok()) return *c;  // always, after Sdp::Parse
  }
  return std::nullopt;
}

void SdpSection::SetConnection(const SdpConnection& c) {
  SdpLine line{'c', c.ToString(), 0};
  auto first =
      std::find_if(lines_.begin(), lines_.end(), [](const SdpLine& l) { return l.type == 'c'; });
  if (first != lines_.end()) {
    first->value = std::move(line.value);
    first->line_number = 0;
    const size_t keep = static_cast<size_t>(first - lines_.begin());
    for (size_t i = lines_.size(); i-- > keep + 1;) {
      if (lines_[i].type == 'c') lines_.erase(lines_.begin() + static_cast<ptrdiff_t>(i));
    }
    return;
  }
  // RFC 8866 §5: v o s i u e p c b t r z k a (session); m i c b k a (media).
  auto pos = std::find_if(lines_.begin(), lines_.end(), [](const SdpLine& l) {
    return std::string_view("vosiuepm").find(l.type) == std::string_view::npos;
  });
  lines_.insert(pos, std::move(line));
}

std::optional<SdpDirection> SdpSection::direction() const {
  for (const SdpLine& l : lines_) {
    if (l.type != 'a') continue;
    const std::string_view n = l.AttributeName();
    if (n == "sendrecv") return SdpDirection::kSendRecv;
    if (n == "sendonly") return SdpDirection::kSendOnly;
    if (n == "recvonly") return SdpDirection::kRecvOnly;
    if (n == "inactive") return SdpDirection::kInactive;
  }
  return std::nullopt;
}

void SdpSection::SetDirection(SdpDirection d) {
  auto first = std::find_if(lines_.begin(), lines_.end(), [](const SdpLine& l) {
    return l.type == 'a' && IsDirection(l.AttributeName());
  });
  if (first == lines_.end()) {
    lines_.push_back(Attr(SdpDirectionName(d), std::nullopt));
    return;
  }
  const size_t keep = static_cast<size_t>(first - lines_.begin());
  *first = Attr(SdpDirectionName(d), std::nullopt);
  for (size_t i = lines_.size(); i-- > keep + 1;) {
    if (lines_[i].type == 'a' && IsDirection(lines_[i].AttributeName())) {
      lines_.erase(lines_.begin() + static_cast<ptrdiff_t>(i));
    }
  }
}

size_t SdpSection::RemoveDirection() {
  const size_t before = lines_.size();
  std::erase_if(lines_,
                [](const SdpLine& l) { return l.type == 'a' && IsDirection(l.AttributeName()); });
  return before - lines_.size();
}

size_t SdpSection::RemoveIce() {
  const size_t before = lines_.size();
  std::erase_if(lines_, [](const SdpLine& l) { return l.type == 'a' && IsIce(l.AttributeName()); });
  return before - lines_.size();
}

// SdpMedia

void SdpMedia::RewriteMediaLine() {
  std::string v = absl::StrCat(media_, " ", port_);
  if (port_count_) absl::StrAppend(&v, "/", *port_count_);
  absl::StrAppend(&v, " ", proto_);
  for (const std::string& f : formats_) absl::StrAppend(&v, " ", f);
  lines_.front().value = std::move(v);
}

void SdpMedia::SetPort(uint16_t port) {
  port_ = port;
  RewriteMediaLine();
}

void SdpMedia::SetProto(std::string_view proto) {
  proto_ = std::string(proto);
  RewriteMediaLine();
}

void SdpMedia::SetFormats(std::vector<std::string> formats) {
  formats_ = std::move(formats);
  RewriteMediaLine();
}

std::optional<SdpRtcp> SdpMedia::rtcp() const {
  const std::optional<std::string_view> v = Attribute("rtcp");
  if (!v) return std::nullopt;
  absl::StatusOr<SdpRtcp> r = ParseRtcp(*v);
  if (!r.ok()) return std::nullopt;  // never, after Sdp::Parse
  return *r;
}

void SdpMedia::SetRtcp(const SdpRtcp& rtcp) {
  const std::string value = rtcp.ToString();
  auto first = std::find_if(lines_.begin(), lines_.end(),
                            [](const SdpLine& l) { return l.AttributeName() == "rtcp"; });
  if (first == lines_.end()) {
    AddAttribute("rtcp", value);
    return;
  }
  const size_t keep = static_cast<size_t>(first - lines_.begin());
  *first = Attr("rtcp", value);
  for (size_t i = lines_.size(); i-- > keep + 1;) {
    if (lines_[i].AttributeName() == "rtcp") {
      lines_.erase(lines_.begin() + static_cast<ptrdiff_t>(i));
    }
  }
}

bool SdpMedia::RemoveRtcp() { return RemoveAttributes("rtcp") > 0; }

void SdpMedia::SetRtcpMux(bool on) {
  if (!on) {
    RemoveAttributes("rtcp-mux");
  } else if (!rtcp_mux()) {
    AddAttribute("rtcp-mux");
  }
}

bool SdpMedia::RemoveCrypto(size_t index) {
  size_t n = 0;
  for (auto it = lines_.begin(); it != lines_.end(); ++it) {
    if (it->AttributeName() != "crypto") continue;
    if (n++ == index) {
      lines_.erase(it);
      return true;
    }
  }
  return false;
}

void SdpMedia::AddCrypto(std::string_view value) {
  auto last = std::find_if(lines_.rbegin(), lines_.rend(),
                           [](const SdpLine& l) { return l.AttributeName() == "crypto"; });
  if (last == lines_.rend()) {
    AddAttribute("crypto", value);
    return;
  }
  lines_.insert(last.base(), Attr("crypto", value));
}

// Sdp

absl::StatusOr<Sdp> Sdp::Parse(std::string_view text) {
  Sdp sdp;
  bool seen_v = false;
  int origin_line = 0;
  int name_line = 0;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    if (raw.empty()) continue;
    if (raw.size() < 2 || raw[1] != '=' || raw[0] < 'a' || raw[0] > 'z') {
      return LineError(line_no, absl::StrCat("expected '<letter>=<value>', got ", Quote(raw)));
    }
    SdpLine line{raw[0], std::string(raw.substr(2)), line_no};
    const bool in_media = !sdp.media_.empty();
    if (!seen_v) {
      if (line.type != 'v') {
        return LineError(line_no,
                         absl::StrCat("SDP must start with v=0 (RFC 8866 §5.1), got ", Quote(raw)));
      }
      if (line.value != "0") {
        return LineError(line_no, absl::StrCat("v=", Sv(line.value), ": only version 0 exists"));
      }
      seen_v = true;
      sdp.session_.lines_.push_back(std::move(line));
      continue;
    }
    if (in_media && (line.type == 'v' || line.type == 'o' || line.type == 's')) {
      return LineError(
          line_no,
          absl::StrCat(std::string(1, line.type), "= inside the media section of line ",
                       sdp.media_.back().line_number(), " (only allowed at session level)"));
    }
    switch (line.type) {
      case 'v':
        return LineError(line_no, "second v= line");
      case 'o': {
        if (origin_line != 0) {
          return LineError(line_no,
                           absl::StrCat("second o= line (the first is line ", origin_line, ")"));
        }
        origin_line = line_no;
        absl::StatusOr<SdpOrigin> o = ParseOrigin(line.value);
        if (!o.ok()) return LineError(line_no, o.status().message());
        break;
      }
      case 's':
        if (name_line != 0) {
          return LineError(line_no,
                           absl::StrCat("second s= line (the first is line ", name_line, ")"));
        }
        name_line = line_no;
        break;
      case 'c': {
        absl::StatusOr<SdpConnection> c = ParseConnection(line.value, "c=");
        if (!c.ok()) return LineError(line_no, c.status().message());
        break;
      }
      case 'a':
        if (line.AttributeName() == "rtcp") {
          absl::StatusOr<SdpRtcp> r = ParseRtcp(line.AttributeValue());
          if (!r.ok()) return LineError(line_no, r.status().message());
        }
        break;
      case 'm': {
        absl::StatusOr<MediaLine> m = ParseMediaLine(line.value);
        if (!m.ok()) return LineError(line_no, m.status().message());
        SdpMedia media;
        media.media_ = std::move(m->media);
        media.port_ = m->port;
        media.port_count_ = m->port_count;
        media.proto_ = std::move(m->proto);
        media.formats_ = std::move(m->formats);
        media.lines_.push_back(std::move(line));
        sdp.media_.push_back(std::move(media));
        continue;
      }
      default:
        break;
    }
    if (in_media) {
      sdp.media_.back().lines_.push_back(std::move(line));
    } else {
      sdp.session_.lines_.push_back(std::move(line));
    }
  }
  if (!seen_v) return absl::InvalidArgumentError("SDP is empty (no v= line)");
  if (origin_line == 0) {
    return absl::InvalidArgumentError("SDP has no o= line (RFC 8866 §5.2)");
  }
  if (name_line == 0) {
    return absl::InvalidArgumentError("SDP has no s= line (RFC 8866 §5.3; 's=-' means none)");
  }
  const bool session_c = sdp.session_.connection().has_value();
  for (const SdpMedia& m : sdp.media_) {
    if (!m.rejected() && !session_c && !m.connection()) {
      return LineError(m.line_number(),
                       absl::StrCat("m=", Sv(m.media()),
                                    " has no c= line and the session has none (RFC 8866 §5.7)"));
    }
  }
  return sdp;
}

std::string Sdp::ToString() const {
  std::string out;
  auto emit = [&out](const SdpSection& s) {
    for (const SdpLine& l : s.lines()) {
      out.push_back(l.type);
      out.push_back('=');
      out.append(l.value);
      out.append("\r\n");
    }
  };
  emit(session_);
  for (const SdpMedia& m : media_) emit(m);
  return out;
}

SdpOrigin Sdp::origin() const {
  for (const SdpLine& l : session_.lines_) {
    if (l.type != 'o') continue;
    absl::StatusOr<SdpOrigin> o = ParseOrigin(l.value);
    if (o.ok()) return *o;  // always, after Parse
  }
  return SdpOrigin{};
}

void Sdp::SetOrigin(const SdpOrigin& o) {
  for (SdpLine& l : session_.lines_) {
    if (l.type != 'o') continue;
    l.value = o.ToString();
    l.line_number = 0;
    return;
  }
  // No o= (a default-constructed Sdp): put it after v=.
  auto pos = std::find_if(session_.lines_.begin(), session_.lines_.end(),
                          [](const SdpLine& l) { return l.type != 'v'; });
  session_.lines_.insert(pos, SdpLine{'o', o.ToString(), 0});
}

void Sdp::SetOriginAddress(const SdpConnection& c) {
  SdpOrigin o = origin();
  o.nettype = c.nettype;
  o.addrtype = c.addrtype;
  o.address = c.address;
  SetOrigin(o);
}

void Sdp::BumpSessionVersion() {
  SdpOrigin o = origin();
  std::string& v = o.sess_version;
  size_t i = v.size();
  while (i > 0 && v[i - 1] == '9') v[--i] = '0';
  if (i == 0) {
    v.insert(v.begin(), '1');
  } else {
    ++v[i - 1];
  }
  SetOrigin(o);
}

std::optional<SdpConnection> Sdp::EffectiveConnection(size_t index) const {
  std::optional<SdpConnection> c = media_.at(index).connection();
  return c ? c : session_.connection();
}

void Sdp::SetConnection(const SdpConnection& c) {
  const bool session_c = session_.connection().has_value();
  if (session_c) session_.SetConnection(c);
  for (SdpMedia& m : media_) {
    if (m.connection() || !session_c) m.SetConnection(c);
  }
}

void Sdp::SetMediaConnection(size_t index, const SdpConnection& c) {
  SdpMedia& m = media_.at(index);
  if (m.connection()) {
    m.SetConnection(c);
    return;
  }
  if (const std::optional<SdpConnection> sc = session_.connection()) {
    if (*sc == c) return;
    bool others_inherit = false;
    for (size_t i = 0; i < media_.size(); ++i) {
      // A rejected section carries no media: its address does not matter.
      if (i != index && !media_[i].rejected() && !media_[i].connection()) others_inherit = true;
    }
    if (!others_inherit) {
      session_.SetConnection(c);
      // A media c= added by an earlier call and now equal to the session's is redundant.
      const std::string text = c.ToString();
      for (SdpMedia& other : media_) {
        std::erase_if(other.lines_, [&](const SdpLine& l) {
          return l.type == 'c' && l.line_number == 0 && l.value == text;
        });
      }
      return;
    }
  }
  m.SetConnection(c);
}

SdpDirection Sdp::EffectiveDirection(size_t index) const {
  if (std::optional<SdpDirection> d = media_.at(index).direction()) return *d;
  if (std::optional<SdpDirection> d = session_.direction()) return *d;
  return SdpDirection::kSendRecv;
}

bool Sdp::IsOnHold(size_t index) const {
  const SdpDirection d = EffectiveDirection(index);
  if (d == SdpDirection::kSendOnly || d == SdpDirection::kInactive) return true;
  const std::optional<SdpConnection> c = EffectiveConnection(index);
  if (!c) return false;
  const std::optional<IpAddress> ip = c->Ip();
  if (!ip || !ip->is_v4() || !ip->IsUnspecified()) return false;
  return !media_[index].HasAttribute("ice-ufrag") && !session_.HasAttribute("ice-ufrag");
}

size_t Sdp::RemoveIce() {
  size_t n = session_.RemoveIce();
  for (SdpMedia& m : media_) n += m.RemoveIce();
  return n;
}

}  // namespace karl
