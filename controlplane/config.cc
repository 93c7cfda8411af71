#include "controlplane/config.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <map>
#include <set>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

extern char** environ;

namespace karl {
namespace {

constexpr size_t kMaxPorts = 16;
// Bounds on what we read, so a config pointing at /dev/zero fails instead of eating memory.
constexpr size_t kMaxConfigBytes = 4u << 20;
constexpr size_t kMaxSecretBytes = 64u << 10;
// Beyond this many errors the rest are usually consequences of the first ones.
constexpr size_t kMaxErrors = 20;
constexpr absl::string_view kRedacted = "<redacted>";

constexpr absl::string_view kTopKeys[] = {"ports", "rtp", "dataplane", "srtp",     "ops",
                                          "api",   "ng",  "log",       "database", "sip"};
constexpr absl::string_view kSrtpKeys[] = {"engine", "ipsec_mb_path", "replay_window"};
constexpr absl::string_view kPortKeys[] = {
    "name",         "device", "addresses", "gateway_v4",     "gateway_v6",
    "next_hop_mac", "vlan",   "mtu",       "rx_descriptors", "tx_descriptors"};
constexpr absl::string_view kRtpKeys[] = {"port_min", "port_max", "media_timeout_s"};
constexpr absl::string_view kDataplaneKeys[] = {"burst_size",           "mbufs",
                                                "mbuf_cache",           "tx_drain_us",
                                                "heartbeat_timeout_ms", "exception_ring_size",
                                                "command_ring_size",    "rss",
                                                "max_streams",          "verify_udp_checksum",
                                                "tx_checksum_offload"};
constexpr absl::string_view kOpsKeys[] = {"listen", "port"};
constexpr absl::string_view kApiKeys[] = {"enabled",     "listen",        "port",
                                          "tokens_file", "tls_cert_file", "tls_key_file"};
constexpr absl::string_view kNgKeys[] = {"enabled", "listen", "allowed_sources"};
constexpr absl::string_view kLogKeys[] = {"level", "format", "file", "max_size_mb", "max_files"};
constexpr absl::string_view kDatabaseKeys[] = {
    "enabled",       "host", "port",     "socket",           "name", "user", "password",
    "password_file", "key",  "key_file", "write_queue_limit"};
constexpr absl::string_view kSipKeys[] = {"enabled", "listen", "registrations"};
constexpr absl::string_view kRegistrationKeys[] = {"registrar", "aor",           "user",
                                                   "password",  "password_file", "expires_s"};

constexpr absl::string_view kListenAllowed = "IP:port or [IPv6]:port, port 1..65535";
constexpr absl::string_view kAddressAllowed = "an IPv4 or IPv6 address without brackets";

// User text inside a message, quoted and escaped so a stray newline or control byte cannot
// forge another error line.
std::string Quote(absl::string_view text) { return absl::StrCat("'", absl::CHexEscape(text), "'"); }

std::string JoinKey(absl::string_view parent, absl::string_view key) {
  return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
}

std::string Index(absl::string_view parent, size_t i) { return absl::StrCat(parent, "[", i, "]"); }

// "ports[0].addresses[1]" -> "ports[0].addresses" -> "ports[0]" -> "ports" -> "".
std::string ParentPath(absl::string_view path) {
  const size_t cut = path.find_last_of(".[");
  return cut == absl::string_view::npos ? std::string() : std::string(path.substr(0, cut));
}

absl::string_view TypeName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a single value";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Decimal digits only: YAML's 0x/0o/1e3 spellings are more surprise than help in a config.
std::optional<uint64_t> ParseUnsigned(absl::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

bool IsLoopback(const IpAddress& a) {
  if (a.is_v4()) return a.bytes()[0] == 127;
  if (!a.is_v6()) return false;
  for (size_t i = 0; i < 15; ++i) {
    if (a.bytes()[i] != 0) return false;
  }
  return a.bytes()[15] == 1;
}

bool IsMulticast(const IpAddress& a) {
  return a.is_v4() ? (a.bytes()[0] & 0xf0) == 0xe0 : a.is_v6() && a.bytes()[0] == 0xff;
}

// Two sockets collide when their addresses are equal or one is a wildcard that covers the
// other (an IPv6 wildcard socket is dual-stack by default, so it also covers IPv4).
bool AddressesOverlap(const IpAddress& a, const IpAddress& b) {
  if (a == b) return true;
  auto covers = [](const IpAddress& wild, const IpAddress& other) {
    return wild.IsUnspecified() && (wild.family() == other.family() || wild.is_v6());
  };
  return covers(a, b) || covers(b, a);
}

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

// Reads a whole file of at most `max_bytes`. Messages are "PATH: strerror".
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, size_t max_bytes) {
  auto errno_status = [&path](int err) {
    const std::string message = absl::StrCat(path, ": ", std::strerror(err));
    switch (err) {
      case ENOENT:
      case ENOTDIR:
        return absl::NotFoundError(message);
      case EACCES:
      case EPERM:
        return absl::PermissionDeniedError(message);
      default:
        return absl::InvalidArgumentError(message);
    }
  };
  // open() would stop at a NUL and read some other file.
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(absl::CHexEscape(path), ": path contains a NUL byte"));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status(errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_status(err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return errno_status(EISDIR);
  }
  std::string data;
  char buf[8192];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return errno_status(err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > max_bytes) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", max_bytes, " bytes"));
    }
  }
  ::close(fd);
  return data;
}

using Entries = std::map<std::string, YAML::Node, std::less<>>;

// A listening socket of the control plane, for clash checks.
struct Listener {
  std::string path;  // "ng.listen"
  IpAddress address;
  uint16_t port = 0;
};

// Walks one YAML document into a Config, collecting every error it finds (up to kMaxErrors)
// so an operator fixes a file in one pass instead of one error per run.
class Parser {
 public:
  Parser(std::string origin, const Environment& env) : origin_(std::move(origin)), env_(env) {}

  absl::StatusOr<Config> Parse(const std::string& text) {
    Config config;
    config.path = origin_;
    config.sha256 = Sha256Hex(text);
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(e.mark), ": YAML syntax error: ", e.msg));
    }
    if (docs.empty() || docs[0].IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat(origin_, ":1:1: empty configuration; at least `ports` is required"));
    }
    if (docs.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(docs[1].Mark()), ": (document): a second YAML document; allowed: one document"));
    }
    ParseRoot(docs[0], &config);
    if (errors_.empty()) ApplyEnvironment(&config);
    // Cross-field rules only make sense on values that parsed; otherwise they would repeat
    // the earlier errors in other words.
    if (errors_.empty()) Validate(&config);
    if (!errors_.empty()) {
      if (dropped_errors_ > 0) {
        errors_.push_back(absl::StrCat("(", dropped_errors_, " more errors not shown)"));
      }
      return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
    }
    return config;
  }

 private:
  std::string Where(const YAML::Mark& mark) const {
    if (mark.is_null()) return origin_;
    return absl::StrCat(origin_, ":", mark.line + 1, ":", mark.column + 1);
  }

  void AddError(std::string message) {
    if (errors_.size() >= kMaxErrors) {
      ++dropped_errors_;
      return;
    }
    errors_.push_back(std::move(message));
  }

  void Fail(const YAML::Mark& mark, absl::string_view path, absl::string_view what,
            absl::string_view allowed) {
    AddError(absl::StrCat(Where(mark), ": ", path.empty() ? "(top level)" : path, ": ", what,
                          "; allowed: ", allowed));
  }

  // Reports at the location recorded for `path`, or its nearest recorded parent when the
  // value is a default. A value set from the environment is reported as NAME=value.
  void FailAt(const std::string& path, absl::string_view what, absl::string_view allowed) {
    if (auto env = env_sources_.find(path); env != env_sources_.end()) {
      AddError(absl::StrCat(env->second, ": ", path, ": ", what, "; allowed: ", allowed));
      return;
    }
    std::string p = path;
    while (true) {
      if (auto it = marks_.find(p); it != marks_.end()) {
        Fail(it->second, path, what, allowed);
        return;
      }
      if (p.empty()) break;
      p = ParentPath(p);
    }
    Fail(YAML::Mark::null_mark(), path, what, allowed);
  }

  // Whether environment variable `name` is set to something other than blanks.
  bool EnvSet(const char* name) const {
    if (name == nullptr) return false;
    auto it = env_.find(name);
    return it != env_.end() && !absl::StripAsciiWhitespace(it->second).empty();
  }

  // Whether the file or the environment gave `path` a value.
  bool IsSet(const std::string& path) const {
    return marks_.count(path) > 0 || env_sources_.count(path) > 0;
  }

  // Location for a value: a null value's own mark points at whatever follows it, so use
  // its key's mark instead.
  void Remember(const std::string& path, const YAML::Node& key, const YAML::Node& value) {
    marks_[path] = value.IsNull() ? key.Mark() : value.Mark();
  }

  // Checks that `node` is a map (an empty value counts as an empty map) whose keys are all in
  // `allowed`. Returns nullopt after reporting when it is not a map.
  std::optional<Entries> ReadMap(const YAML::Node& node, const std::string& path,
                                 std::span<const absl::string_view> allowed) {
    Entries entries;
    if (node.IsNull()) return entries;
    const std::string allowed_text = absl::StrJoin(allowed, ", ");
    if (!node.IsMap()) {
      Fail(node.Mark(), path, absl::StrCat("expected a map of keys, found ", TypeName(node)),
           allowed_text);
      return std::nullopt;
    }
    if (!marks_.count(path)) marks_[path] = node.Mark();
    for (auto it = node.begin(); it != node.end(); ++it) {
      // Copies: the iterator's pair is a temporary proxy.
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        Fail(key.Mark(), path, absl::StrCat("a key must be a plain name, found ", TypeName(key)),
             allowed_text);
        continue;
      }
      const std::string& name = key.Scalar();
      const std::string child = JoinKey(path, name);
      if (std::find(std::begin(allowed), std::end(allowed), name) == std::end(allowed)) {
        Fail(key.Mark(), JoinKey(path, absl::CHexEscape(name)),
             absl::StrCat("unknown key ", Quote(name)), allowed_text);
        continue;
      }
      if (entries.count(name)) {
        Fail(key.Mark(), child, absl::StrCat("key ", Quote(name), " appears twice"),
             "each key once");
        continue;
      }
      entries.emplace(name, value);
      Remember(child, key, value);
    }
    return entries;
  }

  // The list under `path`, or nullopt after reporting when it is something else.
  std::optional<std::vector<YAML::Node>> ReadList(const YAML::Node& node, const std::string& path,
                                                  absl::string_view allowed) {
    std::vector<YAML::Node> items;
    if (node.IsNull()) return items;
    if (!node.IsSequence()) {
      FailAt(path, absl::StrCat("expected a list, found ", TypeName(node)), allowed);
      return std::nullopt;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node item = *it;
      marks_[Index(path, items.size())] = item.Mark();
      items.push_back(item);
    }
    return items;
  }

  // Text of a scalar; an empty value reads as "" when `empty_ok`.
  std::optional<std::string> ReadScalar(const YAML::Node& node, const std::string& path,
                                        absl::string_view expected, absl::string_view allowed,
                                        bool empty_ok) {
    if (node.IsNull() && empty_ok) return std::string();
    if (!node.IsScalar()) {
      FailAt(path, absl::StrCat("expected ", expected, ", found ", TypeName(node)), allowed);
      return std::nullopt;
    }
    return node.Scalar();
  }

  // An unsigned integer in [min, max]; nullopt when absent or after reporting.
  std::optional<uint64_t> ReadUint(const Entries& e, absl::string_view key,
                                   const std::string& parent, uint64_t min, uint64_t max,
                                   absl::string_view allowed = {}) {
    auto it = e.find(key);
    if (it == e.end()) return std::nullopt;
    const std::string path = JoinKey(parent, key);
    const std::string range = allowed.empty() ? absl::StrCat(min, "..", max) : std::string(allowed);
    auto text = ReadScalar(it->second, path, "a whole number", range, false);
    if (!text) return std::nullopt;
    auto value = ParseUnsigned(*text);
    if (!value) {
      FailAt(path, absl::StrCat(Quote(*text), " is not a whole number"), range);
      return std::nullopt;
    }
    if (*value < min || *value > max) {
      FailAt(path, absl::StrCat(*value, " is out of range"), range);
      return std::nullopt;
    }
    return value;
  }

  template <typename T>
  void SetUint(const Entries& e, absl::string_view key, const std::string& parent, uint64_t min,
               uint64_t max, T* out, absl::string_view allowed = {}) {
    if (auto v = ReadUint(e, key, parent, min, max, allowed)) *out = static_cast<T>(*v);
  }

  template <typename T>
  void SetPowerOfTwo(const Entries& e, absl::string_view key, const std::string& parent,
                     uint64_t min, uint64_t max, T* out) {
    const std::string allowed = absl::StrCat("a power of two ", min, "..", max);
    auto v = ReadUint(e, key, parent, min, max, allowed);
    if (!v) return;
    if (!IsPowerOfTwo(*v)) {
      FailAt(JoinKey(parent, key), absl::StrCat(*v, " is not a power of two"), allowed);
      return;
    }
    *out = static_cast<T>(*v);
  }

  void SetBool(const Entries& e, absl::string_view key, const std::string& parent, bool* out) {
    auto it = e.find(key);
    if (it == e.end()) return;
    const std::string path = JoinKey(parent, key);
    auto text = ReadScalar(it->second, path, "true or false", "true, false", false);
    if (!text) return;
    const std::string lower = absl::AsciiStrToLower(*text);
    if (lower == "true") {
      *out = true;
    } else if (lower == "false") {
      *out = false;
    } else {
      FailAt(path, absl::StrCat(Quote(*text), " is not a boolean"), "true, false");
    }
  }

  // A string value; an empty value means "".
  bool SetString(const Entries& e, absl::string_view key, const std::string& parent,
                 std::string* out, absl::string_view allowed) {
    auto it = e.find(key);
    if (it == e.end()) return false;
    auto text = ReadScalar(it->second, JoinKey(parent, key), "a string", allowed, true);
    if (!text) return false;
    *out = *text;
    return true;
  }

  // Reports `parent.key` as missing when absent; true when present.
  bool Require(const Entries& e, absl::string_view key, const std::string& parent,
               absl::string_view allowed) {
    if (e.count(key)) return true;
    FailAt(JoinKey(parent, key), "required key is missing", allowed);
    return false;
  }

  void SetAddress(const Entries& e, absl::string_view key, const std::string& parent,
                  IpAddress* out) {
    std::string text;
    if (!SetString(e, key, parent, &text, kAddressAllowed)) return;
    auto addr = IpAddress::Parse(text);
    if (!addr) {
      FailAt(JoinKey(parent, key), absl::StrCat(Quote(text), " is not an IP address"),
             kAddressAllowed);
      return;
    }
    *out = *addr;
  }

  void SetHostPort(const Entries& e, absl::string_view key, const std::string& parent,
                   HostPort* out) {
    std::string text;
    if (!SetString(e, key, parent, &text, kListenAllowed)) return;
    auto hp = HostPort::Parse(text);
    if (!hp || hp->port == 0) {
      FailAt(JoinKey(parent, key), absl::StrCat(Quote(text), " is not an address and port"),
             kListenAllowed);
      return;
    }
    *out = *hp;
  }

  // `inline_key` (the secret itself) or `file_key` (a file holding it), never both.
  // `env_name` is the variable that overrides this secret, if any.
  void SetSecret(const Entries& e, absl::string_view inline_key, absl::string_view file_key,
                 const std::string& parent, Secret* out, const char* env_name = nullptr) {
    const bool has_inline = e.count(inline_key) > 0;
    const bool has_file = e.count(file_key) > 0;
    const std::string inline_path = JoinKey(parent, inline_key);
    const std::string file_path = JoinKey(parent, file_key);
    const std::string allowed =
        absl::StrCat("either '", inline_key, "' or '", file_key, "' (a file holding it)");
    if (has_inline && has_file) {
      FailAt(file_path, absl::StrCat("both '", inline_key, "' and '", file_key, "' are set"),
             allowed);
      return;
    }
    if (has_inline) {
      std::string value;
      if (!SetString(e, inline_key, parent, &value, allowed)) return;
      // A config copied from RenderConfig must not silently become this literal password;
      // it is fine when the environment supplies the real one, as it did when rendered.
      if (value == kRedacted && !EnvSet(env_name)) {
        FailAt(inline_path,
               absl::StrCat(Quote(kRedacted), " is the placeholder printed for a hidden secret"),
               allowed);
        return;
      }
      if (value.empty()) return;
      *out = Secret{value, "inline"};
      return;
    }
    if (has_file) {
      std::string file;
      if (!SetString(e, file_key, parent, &file, "a path to a readable file")) return;
      if (file.empty()) {
        FailAt(file_path, "empty path", "a path to a readable file");
        return;
      }
      auto data = ReadWholeFile(file, kMaxSecretBytes);
      if (!data.ok()) {
        FailAt(file_path, absl::StrCat("cannot read ", data.status().message()),
               "a path to a readable file holding the secret");
        return;
      }
      // Files written by `echo` or editors end in a newline that is not part of the secret.
      std::string value = *std::move(data);
      while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
      if (value.empty()) {
        FailAt(file_path, absl::StrCat(file, " is empty"),
               "a path to a readable file holding the secret");
        return;
      }
      *out = Secret{std::move(value), absl::StrCat("file:", file)};
    }
  }

  void ParseRoot(const YAML::Node& root, Config* config) {
    auto e = ReadMap(root, "", kTopKeys);
    if (!e) return;
    if (Require(*e, "ports", "", "a list of 1..16 ports")) ParsePorts(e->at("ports"), config);
    if (e->count("rtp")) ParseRtp(e->at("rtp"), &config->rtp);
    if (e->count("dataplane")) ParseDataplane(e->at("dataplane"), &config->dataplane);
    if (e->count("srtp")) ParseSrtp(e->at("srtp"), &config->srtp);
    if (e->count("ops")) ParseOps(e->at("ops"), &config->ops);
    if (e->count("api")) ParseApi(e->at("api"), &config->api);
    if (e->count("ng")) ParseNg(e->at("ng"), &config->ng);
    if (e->count("log")) ParseLog(e->at("log"), &config->log);
    if (e->count("database")) ParseDatabase(e->at("database"), &config->database);
    if (e->count("sip")) ParseSip(e->at("sip"), &config->sip);
  }

  void ParsePorts(const YAML::Node& node, Config* config) {
    const std::string allowed = absl::StrCat("a list of 1..", kMaxPorts, " ports");
    auto items = ReadList(node, "ports", allowed);
    if (!items) return;
    if (items->empty()) {
      FailAt("ports", "no ports configured", allowed);
      return;
    }
    if (items->size() > kMaxPorts) {
      FailAt("ports", absl::StrCat(items->size(), " ports configured"), allowed);
      return;
    }
    for (size_t i = 0; i < items->size(); ++i) {
      PortConfig port;
      ParsePort((*items)[i], Index("ports", i), &port);
      config->ports.push_back(std::move(port));
    }
  }

  void ParsePort(const YAML::Node& node, const std::string& path, PortConfig* port) {
    auto e = ReadMap(node, path, kPortKeys);
    if (!e) return;
    constexpr absl::string_view kNameAllowed = "1..32 of A-Z a-z 0-9 _ - .";
    constexpr absl::string_view kDeviceAllowed =
        "a DPDK device name (net_tap0) or PCI address (0000:3b:00.0)";
    if (Require(*e, "name", path, kNameAllowed) &&
        SetString(*e, "name", path, &port->name, kNameAllowed)) {
      const bool charset_ok = std::all_of(port->name.begin(), port->name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
               c == '.';
      });
      // The name becomes a metrics label and a log field: keep it plain.
      if (port->name.empty() || port->name.size() > 32 || !charset_ok) {
        FailAt(JoinKey(path, "name"), absl::StrCat(Quote(port->name), " is not a valid name"),
               kNameAllowed);
      }
    }
    if (Require(*e, "device", path, kDeviceAllowed) &&
        SetString(*e, "device", path, &port->device, kDeviceAllowed) && port->device.empty()) {
      FailAt(JoinKey(path, "device"), "empty device", kDeviceAllowed);
    }
    if (Require(*e, "addresses", path, "a list of addr/len")) {
      ParsePortAddresses(e->at("addresses"), JoinKey(path, "addresses"), port);
    }
    ParseGateway(*e, "gateway_v4", path, IpAddress::Family::kV4, &port->gateway_v4);
    ParseGateway(*e, "gateway_v6", path, IpAddress::Family::kV6, &port->gateway_v6);
    if (auto it = e->find("next_hop_mac"); it != e->end() && !it->second.IsNull()) {
      constexpr absl::string_view kMacAllowed = "a unicast MAC such as 02:00:00:00:00:01";
      std::string text;
      if (SetString(*e, "next_hop_mac", path, &text, kMacAllowed)) {
        auto mac = MacAddress::Parse(text);
        const bool zero = mac && *mac == MacAddress();
        if (!mac || zero || (mac->bytes()[0] & 0x01) != 0) {
          FailAt(JoinKey(path, "next_hop_mac"),
                 absl::StrCat(Quote(text), " is not a unicast MAC address"), kMacAllowed);
        } else {
          port->next_hop_mac = *mac;
        }
      }
    }
    SetUint(*e, "vlan", path, 0, 4094, &port->vlan, "0 (untagged) or 1..4094");
    SetUint(*e, "mtu", path, 576, 9000, &port->mtu);
    SetPowerOfTwo(*e, "rx_descriptors", path, 64, 16384, &port->rx_descriptors);
    SetPowerOfTwo(*e, "tx_descriptors", path, 64, 16384, &port->tx_descriptors);
  }

  void ParsePortAddresses(const YAML::Node& node, const std::string& path, PortConfig* port) {
    constexpr absl::string_view kAllowed =
        "a list of unicast addr/len such as 198.51.100.1/24 or 2001:db8::1/64";
    auto items = ReadList(node, path, kAllowed);
    if (!items) return;
    if (items->empty()) {
      FailAt(path, "a port needs at least one address", kAllowed);
      return;
    }
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string item_path = Index(path, i);
      auto text = ReadScalar((*items)[i], item_path, "addr/len", kAllowed, false);
      if (!text) continue;
      auto prefix = IpPrefix::Parse(*text);
      // A bare address would silently mean /32 and make every peer off-link.
      if (!prefix || text->find('/') == std::string::npos) {
        FailAt(item_path, absl::StrCat(Quote(*text), " is not addr/len"), kAllowed);
        continue;
      }
      if (prefix->address.IsUnspecified() || IsMulticast(prefix->address)) {
        FailAt(item_path, absl::StrCat(Quote(*text), " is not a unicast address"), kAllowed);
        continue;
      }
      port->addresses.push_back(*prefix);
    }
  }

  void ParseGateway(const Entries& e, absl::string_view key, const std::string& parent,
                    IpAddress::Family family, std::optional<IpAddress>* out) {
    auto it = e.find(key);
    if (it == e.end() || it->second.IsNull()) return;
    const bool v4 = family == IpAddress::Family::kV4;
    const std::string allowed = v4 ? "an IPv4 address inside one of the port's IPv4 prefixes"
                                   : "an IPv6 address inside one of the port's IPv6 prefixes";
    std::string text;
    if (!SetString(e, key, parent, &text, allowed)) return;
    auto addr = IpAddress::Parse(text);
    if (!addr || addr->family() != family) {
      FailAt(JoinKey(parent, key),
             absl::StrCat(Quote(text), " is not an ", v4 ? "IPv4" : "IPv6", " address"), allowed);
      return;
    }
    *out = *addr;
  }

  void ParseRtp(const YAML::Node& node, RtpConfig* rtp) {
    auto e = ReadMap(node, "rtp", kRtpKeys);
    if (!e) return;
    constexpr absl::string_view kMinAllowed = "an even number 1024..65534";
    if (auto v = ReadUint(*e, "port_min", "rtp", 1024, 65534, kMinAllowed)) {
      if (*v % 2 != 0) {
        FailAt("rtp.port_min", absl::StrCat(*v, " is odd (RTP takes the even port of a pair)"),
               kMinAllowed);
      } else {
        rtp->port_min = static_cast<uint16_t>(*v);
      }
    }
    SetUint(*e, "port_max", "rtp", 0, 65535, &rtp->port_max, "port_min+1..65535");
    SetUint(*e, "media_timeout_s", "rtp", 1, 86400, &rtp->media_timeout_s);
  }

  void ParseDataplane(const YAML::Node& node, DataplaneConfig* dp) {
    auto e = ReadMap(node, "dataplane", kDataplaneKeys);
    if (!e) return;
    SetUint(*e, "burst_size", "dataplane", 1, 256, &dp->burst_size);
    if (auto v = ReadUint(*e, "mbufs", "dataplane", 0, UINT32_MAX, "0 (automatic) or 1024..")) {
      if (*v != 0 && *v < 1024) {
        FailAt("dataplane.mbufs", absl::StrCat(*v, " is too few"),
               absl::StrCat("0 (automatic) or 1024..", UINT32_MAX));
      } else {
        dp->mbufs = static_cast<uint32_t>(*v);
      }
    }
    SetUint(*e, "mbuf_cache", "dataplane", 0, 512, &dp->mbuf_cache);
    SetUint(*e, "tx_drain_us", "dataplane", 1, 10000, &dp->tx_drain_us);
    SetUint(*e, "heartbeat_timeout_ms", "dataplane", 10, 60000, &dp->heartbeat_timeout_ms);
    SetPowerOfTwo(*e, "exception_ring_size", "dataplane", 64, 65536, &dp->exception_ring_size);
    SetPowerOfTwo(*e, "command_ring_size", "dataplane", 64, 65536, &dp->command_ring_size);
    SetBool(*e, "rss", "dataplane", &dp->rss);
    SetUint(*e, "max_streams", "dataplane", 0, 4u << 20, &dp->max_streams);
    SetBool(*e, "verify_udp_checksum", "dataplane", &dp->verify_udp_checksum);
    SetBool(*e, "tx_checksum_offload", "dataplane", &dp->tx_checksum_offload);
  }

  void ParseSrtp(const YAML::Node& node, SrtpConfigSection* srtp) {
    auto e = ReadMap(node, "srtp", kSrtpKeys);
    if (!e) return;
    std::string engine;
    if (SetString(*e, "engine", "srtp", &engine, "ipsec_mb, openssl, libsrtp")) {
      if (engine != "ipsec_mb" && engine != "openssl" && engine != "libsrtp") {
        FailAt("srtp.engine", absl::StrCat(Quote(engine), " is not an SRTP engine"),
               "ipsec_mb, openssl, libsrtp");
      } else {
        srtp->engine = engine;
      }
    }
    std::string path;
    if (SetString(*e, "ipsec_mb_path", "srtp", &path, "direct, cryptodev")) {
      if (path != "direct" && path != "cryptodev") {
        FailAt("srtp.ipsec_mb_path", absl::StrCat(Quote(path), " is not a path to intel-ipsec-mb"),
               "direct, cryptodev");
      } else {
        srtp->ipsec_mb_path = path;
      }
    }
    SetUint(*e, "replay_window", "srtp", 128, 32768, &srtp->replay_window);
  }

  void ParseOps(const YAML::Node& node, OpsConfig* ops) {
    auto e = ReadMap(node, "ops", kOpsKeys);
    if (!e) return;
    SetAddress(*e, "listen", "ops", &ops->listen);
    SetUint(*e, "port", "ops", 1, 65535, &ops->port);
  }

  void ParseApi(const YAML::Node& node, ApiConfig* api) {
    auto e = ReadMap(node, "api", kApiKeys);
    if (!e) return;
    SetBool(*e, "enabled", "api", &api->enabled);
    SetAddress(*e, "listen", "api", &api->listen);
    SetUint(*e, "port", "api", 1, 65535, &api->port);
    SetString(*e, "tokens_file", "api", &api->tokens_file, "a file path, or empty");
    SetString(*e, "tls_cert_file", "api", &api->tls_cert_file, "a PEM file path, or empty");
    SetString(*e, "tls_key_file", "api", &api->tls_key_file, "a PEM file path, or empty");
  }

  void ParseNg(const YAML::Node& node, NgConfig* ng) {
    auto e = ReadMap(node, "ng", kNgKeys);
    if (!e) return;
    SetBool(*e, "enabled", "ng", &ng->enabled);
    SetHostPort(*e, "listen", "ng", &ng->listen);
    if (auto it = e->find("allowed_sources"); it != e->end()) {
      constexpr absl::string_view kAllowed = "a list of addr/len such as 203.0.113.0/24";
      auto items = ReadList(it->second, "ng.allowed_sources", kAllowed);
      if (!items) return;
      for (size_t i = 0; i < items->size(); ++i) {
        const std::string path = Index("ng.allowed_sources", i);
        auto text = ReadScalar((*items)[i], path, "addr/len", kAllowed, false);
        if (!text) continue;
        auto prefix = IpPrefix::Parse(*text);
        if (!prefix) {
          FailAt(path, absl::StrCat(Quote(*text), " is not addr/len"), kAllowed);
          continue;
        }
        ng->allowed_sources.push_back(*prefix);
      }
    }
  }

  void ParseLog(const YAML::Node& node, LogConfig* log) {
    auto e = ReadMap(node, "log", kLogKeys);
    if (!e) return;
    SetUint(*e, "level", "log", 1, 5, &log->level,
            "1 (error), 2 (warning), 3 (info), 4 (debug), 5 (trace)");
    std::string format;
    if (SetString(*e, "format", "log", &format, "text, json")) {
      if (format != "text" && format != "json") {
        FailAt("log.format", absl::StrCat(Quote(format), " is not a log format"), "text, json");
      } else {
        log->format = format;
      }
    }
    SetString(*e, "file", "log", &log->file, "a file path, or empty for stderr");
    SetUint(*e, "max_size_mb", "log", 1, 10240, &log->max_size_mb);
    SetUint(*e, "max_files", "log", 1, 100, &log->max_files);
  }

  void ParseDatabase(const YAML::Node& node, DatabaseConfig* db) {
    auto e = ReadMap(node, "database", kDatabaseKeys);
    if (!e) return;
    SetBool(*e, "enabled", "database", &db->enabled);
    SetString(*e, "host", "database", &db->host, "a host name or IP address");
    SetUint(*e, "port", "database", 1, 65535, &db->port);
    SetString(*e, "socket", "database", &db->socket, "a unix socket path, or empty");
    SetString(*e, "name", "database", &db->name, "a database name");
    SetString(*e, "user", "database", &db->user, "a user name");
    SetSecret(*e, "password", "password_file", "database", &db->password, "KARL_DB_PASSWORD");
    SetSecret(*e, "key", "key_file", "database", &db->key, "KARL_DB_KEY");
    SetUint(*e, "write_queue_limit", "database", 1, 10000000, &db->write_queue_limit);
  }

  void ParseSip(const YAML::Node& node, SipConfig* sip) {
    auto e = ReadMap(node, "sip", kSipKeys);
    if (!e) return;
    SetBool(*e, "enabled", "sip", &sip->enabled);
    SetHostPort(*e, "listen", "sip", &sip->listen);
    if (auto it = e->find("registrations"); it != e->end()) {
      auto items = ReadList(it->second, "sip.registrations", "a list of registrations");
      if (!items) return;
      for (size_t i = 0; i < items->size(); ++i) {
        SipRegistration reg;
        ParseRegistration((*items)[i], Index("sip.registrations", i), &reg);
        sip->registrations.push_back(std::move(reg));
      }
    }
  }

  void ParseRegistration(const YAML::Node& node, const std::string& path, SipRegistration* reg) {
    auto e = ReadMap(node, path, kRegistrationKeys);
    if (!e) return;
    constexpr absl::string_view kRegistrarAllowed = "sip:host[:port] or sips:host[:port]";
    constexpr absl::string_view kAorAllowed = "sip:user@domain or sips:user@domain";
    if (Require(*e, "registrar", path, kRegistrarAllowed) &&
        SetString(*e, "registrar", path, &reg->registrar, kRegistrarAllowed)) {
      absl::string_view rest = reg->registrar;
      const bool scheme = absl::ConsumePrefix(&rest, "sips:") || absl::ConsumePrefix(&rest, "sip:");
      if (!scheme || rest.empty() || absl::StrContains(rest, " ")) {
        FailAt(JoinKey(path, "registrar"), absl::StrCat(Quote(reg->registrar), " is not a SIP URI"),
               kRegistrarAllowed);
      }
    }
    std::string aor_user;
    if (Require(*e, "aor", path, kAorAllowed) &&
        SetString(*e, "aor", path, &reg->aor, kAorAllowed)) {
      absl::string_view rest = reg->aor;
      const bool scheme = absl::ConsumePrefix(&rest, "sips:") || absl::ConsumePrefix(&rest, "sip:");
      const size_t at = rest.find('@');
      if (!scheme || at == absl::string_view::npos || at == 0 || at + 1 == rest.size() ||
          rest.find('@', at + 1) != absl::string_view::npos || absl::StrContains(rest, " ")) {
        FailAt(JoinKey(path, "aor"), absl::StrCat(Quote(reg->aor), " is not sip:user@domain"),
               kAorAllowed);
      } else {
        aor_user = std::string(rest.substr(0, at));
      }
    }
    SetString(*e, "user", path, &reg->user, "a digest user name (default: the AOR's user)");
    if (reg->user.empty()) reg->user = aor_user;
    SetSecret(*e, "password", "password_file", path, &reg->password);
    SetUint(*e, "expires_s", path, 60, 86400, &reg->expires_s);
  }

  // KARL_* variables win over the file. Empty variables count as unset, so `KARL_X=` in a
  // unit file does not turn into an error.
  void ApplyEnvironment(Config* config) {
    auto get = [this](const char* name) -> const std::string* {
      return EnvSet(name) ? &env_.at(name) : nullptr;
    };
    if (const std::string* v = get("KARL_LOG_LEVEL")) {
      auto n = ParseUnsigned(absl::StripAsciiWhitespace(*v));
      if (!n || *n < 1 || *n > 5) {
        AddError(absl::StrCat("KARL_LOG_LEVEL=", absl::CHexEscape(*v),
                              ": must be 1..5 (1 error, 2 warning, 3 info, 4 debug, 5 trace)"));
      } else {
        config->log.level = static_cast<int>(*n);
        Override(config, "log.level", absl::StrCat("KARL_LOG_LEVEL=", *n));
      }
    }
    if (const std::string* v = get("KARL_METRICS_PORT")) {
      auto n = ParseUnsigned(absl::StripAsciiWhitespace(*v));
      if (!n || *n < 1 || *n > 65535) {
        AddError(absl::StrCat("KARL_METRICS_PORT=", absl::CHexEscape(*v),
                              ": must be 1..65535 (ops.port)"));
      } else {
        config->ops.port = static_cast<uint16_t>(*n);
        Override(config, "ops.port", absl::StrCat("KARL_METRICS_PORT=", *n));
      }
    }
    // Secrets are taken byte for byte and recorded by name only: overrides end up in logs.
    if (const std::string* v = get("KARL_DB_PASSWORD")) {
      config->database.password = Secret{*v, "env:KARL_DB_PASSWORD"};
      Override(config, "database.password", absl::StrCat("KARL_DB_PASSWORD=", kRedacted));
    }
    if (const std::string* v = get("KARL_DB_KEY")) {
      config->database.key = Secret{*v, "env:KARL_DB_KEY"};
      Override(config, "database.key", absl::StrCat("KARL_DB_KEY=", kRedacted));
    }
  }

  void Override(Config* config, const std::string& path, std::string entry) {
    env_sources_[path] = entry;
    config->overrides.push_back(std::move(entry));
  }

  void Validate(Config* config) {
    ValidatePorts(*config);
    const RtpConfig& rtp = config->rtp;
    if (rtp.port_max <= rtp.port_min) {
      FailAt("rtp.port_max",
             absl::StrCat(rtp.port_max, " is not above rtp.port_min ", rtp.port_min,
                          " (the range would be empty)"),
             absl::StrCat(rtp.port_min + 1, "..65535"));
    } else if (rtp.port_max - rtp.port_min + 1 < 2) {
      FailAt("rtp.port_max", "the range holds fewer than 2 ports (one RTP/RTCP pair)",
             absl::StrCat(rtp.port_min + 1, "..65535"));
    }
    ValidateListeners(*config);
    const ApiConfig& api = config->api;
    if (api.enabled && api.tokens_file.empty() && !IsLoopback(api.listen)) {
      FailAt("api.tokens_file",
             absl::StrCat("empty while api.listen ", api.listen.ToString(),
                          " is not loopback (the API would take orders from anyone)"),
             "a tokens file, or a loopback api.listen");
    }
    if (api.tls_cert_file.empty() != api.tls_key_file.empty()) {
      FailAt(api.tls_cert_file.empty() ? "api.tls_cert_file" : "api.tls_key_file",
             "TLS needs both a certificate and a key",
             "both tls_cert_file and tls_key_file, or neither");
    }
    const DatabaseConfig& db = config->database;
    if (db.enabled) {
      if (db.name.empty()) FailAt("database.name", "empty while database.enabled", "a name");
      if (db.user.empty()) FailAt("database.user", "empty while database.enabled", "a name");
      if (db.host.empty() && db.socket.empty()) {
        FailAt("database.host", "neither host nor socket is set", "a host, or a socket path");
      }
    }
    if (config->sip.enabled && config->sip.registrations.empty()) {
      FailAt("sip.registrations", "sip.enabled is true but there is nothing to register",
             "one or more registrations, or sip.enabled: false");
    }
  }

  void ValidatePorts(const Config& config) {
    std::map<std::string, size_t> names;
    std::map<std::string, size_t> devices;
    std::map<IpAddress, std::string> addresses;  // address -> path where first seen
    for (size_t i = 0; i < config.ports.size(); ++i) {
      const PortConfig& port = config.ports[i];
      const std::string path = Index("ports", i);
      if (auto [it, fresh] = names.emplace(port.name, i); !fresh) {
        FailAt(JoinKey(path, "name"),
               absl::StrCat(Quote(port.name), " is already the name of ports[", it->second, "]"),
               "a name unique among ports");
      }
      if (auto [it, fresh] = devices.emplace(port.device, i); !fresh) {
        FailAt(JoinKey(path, "device"),
               absl::StrCat(Quote(port.device), " is already used by ports[", it->second, "]"),
               "a device unique among ports");
      }
      bool has_v6 = false;
      for (size_t a = 0; a < port.addresses.size(); ++a) {
        const std::string apath = Index(JoinKey(path, "addresses"), a);
        has_v6 = has_v6 || port.addresses[a].address.is_v6();
        if (auto [it, fresh] = addresses.emplace(port.addresses[a].address, apath); !fresh) {
          FailAt(apath,
                 absl::StrCat(port.addresses[a].address.ToString(), " is already used by ",
                              it->second),
                 "each address on one port only, once");
        }
      }
      // RFC 8200 section 5: every IPv6 link carries at least 1280-byte packets.
      if (has_v6 && port.mtu < 1280) {
        FailAt(JoinKey(path, "mtu"), absl::StrCat(port.mtu, " is below the IPv6 minimum"),
               "1280..9000 on a port with an IPv6 address");
      }
      CheckGateway(port, path, "gateway_v4", port.gateway_v4);
      CheckGateway(port, path, "gateway_v6", port.gateway_v6);
    }
  }

  void CheckGateway(const PortConfig& port, const std::string& path, absl::string_view key,
                    const std::optional<IpAddress>& gateway) {
    if (!gateway) return;
    const std::string gpath = JoinKey(path, key);
    const std::string family = gateway->is_v4() ? "IPv4" : "IPv6";
    std::vector<std::string> prefixes;
    bool inside = false;
    for (const IpPrefix& p : port.addresses) {
      if (p.address.family() != gateway->family()) continue;
      prefixes.push_back(p.ToString());
      if (p.address == *gateway) {
        FailAt(gpath, absl::StrCat(gateway->ToString(), " is the port's own address"),
               "a neighbour's address on the port's prefixes");
        return;
      }
      inside = inside || p.Contains(*gateway);
    }
    if (prefixes.empty()) {
      FailAt(gpath, absl::StrCat("the port has no ", family, " address"),
             absl::StrCat("no ", key, ", or add an ", family, " address to the port"));
    } else if (!inside) {
      FailAt(gpath,
             absl::StrCat(gateway->ToString(), " is not on the port's ", family, " prefixes"),
             absl::StrCat("an address inside ", absl::StrJoin(prefixes, ", ")));
    }
  }

  void ValidateListeners(const Config& config) {
    std::vector<Listener> listeners;
    listeners.push_back({"ops.port", config.ops.listen, config.ops.port});
    if (config.api.enabled) listeners.push_back({"api.port", config.api.listen, config.api.port});
    if (config.ng.enabled) {
      listeners.push_back({"ng.listen", config.ng.listen.address, config.ng.listen.port});
    }
    if (config.sip.enabled) {
      listeners.push_back({"sip.listen", config.sip.listen.address, config.sip.listen.port});
    }
    for (size_t i = 0; i < listeners.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        // Blame the listener the operator set, not the one left at its default.
        const bool swap = !IsSet(listeners[i].path) && IsSet(listeners[j].path);
        const Listener& a = swap ? listeners[i] : listeners[j];
        const Listener& b = swap ? listeners[j] : listeners[i];
        if (a.port == b.port && AddressesOverlap(a.address, b.address)) {
          FailAt(b.path,
                 absl::StrCat("port ", b.port, " on ", b.address.ToString(),
                              " is already taken by ", a.path, " on ", a.address.ToString()),
                 "a port no other listener uses on the same address");
        }
      }
    }
    // The dataplane owns the RTP range on its own addresses; a control-plane socket there
    // would shadow media ports the allocator hands out.
    const RtpConfig& rtp = config.rtp;
    for (const Listener& l : listeners) {
      if (l.port < rtp.port_min || l.port > rtp.port_max) continue;
      for (const PortConfig& port : config.ports) {
        for (const IpPrefix& p : port.addresses) {
          if (p.address != l.address) continue;
          FailAt(l.path,
                 absl::StrCat("port ", l.port, " on dataplane address ", l.address.ToString(),
                              " is inside the RTP range ", rtp.port_min, "..", rtp.port_max),
                 absl::StrCat("a port outside ", rtp.port_min, "..", rtp.port_max,
                              ", or an address the dataplane does not own"));
        }
      }
    }
  }

  const std::string origin_;
  const Environment& env_;
  std::vector<std::string> errors_;
  size_t dropped_errors_ = 0;
  std::map<std::string, YAML::Mark> marks_;         // path -> where its value is
  std::map<std::string, std::string> env_sources_;  // path -> "NAME=value" that set it
};

// ---- RenderConfig helpers ----

void EmitSecret(YAML::Emitter& out, absl::string_view inline_key, absl::string_view file_key,
                const Secret& secret) {
  if (secret.empty()) return;
  if (absl::StartsWith(secret.source, "file:")) {
    out << YAML::Key << std::string(file_key) << YAML::Value << YAML::DoubleQuoted
        << secret.source.substr(5);
    return;
  }
  out << YAML::Key << std::string(inline_key) << YAML::Value << std::string(kRedacted)
      << YAML::Comment(absl::StrCat("from ", secret.source));
}

void EmitString(YAML::Emitter& out, absl::string_view key, const std::string& value) {
  out << YAML::Key << std::string(key) << YAML::Value << YAML::DoubleQuoted << value;
}

void EmitOptional(YAML::Emitter& out, absl::string_view key, const std::optional<IpAddress>& a) {
  out << YAML::Key << std::string(key) << YAML::Value;
  if (a) {
    out << a->ToString();
  } else {
    out << YAML::Null;
  }
}

std::string RenderOrThrow(const Config& c) {
  YAML::Emitter out;
  out << YAML::Comment(absl::StrCat("Karl effective configuration from ",
                                    c.path.empty() ? "(built in)" : c.path,
                                    c.sha256.empty() ? "" : absl::StrCat(" sha256 ", c.sha256)));
  if (!c.overrides.empty()) {
    out << YAML::Newline
        << YAML::Comment(absl::StrCat("environment overrides: ", absl::StrJoin(c.overrides, " ")));
  }
  out << YAML::BeginMap;

  out << YAML::Key << "ports" << YAML::Value << YAML::BeginSeq;
  for (const PortConfig& p : c.ports) {
    out << YAML::BeginMap;
    EmitString(out, "name", p.name);
    EmitString(out, "device", p.device);
    out << YAML::Key << "addresses" << YAML::Value << YAML::BeginSeq;
    for (const IpPrefix& a : p.addresses) out << a.ToString();
    out << YAML::EndSeq;
    EmitOptional(out, "gateway_v4", p.gateway_v4);
    EmitOptional(out, "gateway_v6", p.gateway_v6);
    out << YAML::Key << "next_hop_mac" << YAML::Value;
    if (p.next_hop_mac) {
      out << YAML::DoubleQuoted << p.next_hop_mac->ToString();
    } else {
      out << YAML::Null;
    }
    out << YAML::Key << "vlan" << YAML::Value << p.vlan;
    out << YAML::Key << "mtu" << YAML::Value << p.mtu;
    out << YAML::Key << "rx_descriptors" << YAML::Value << p.rx_descriptors;
    out << YAML::Key << "tx_descriptors" << YAML::Value << p.tx_descriptors;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "rtp" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "port_min" << YAML::Value << c.rtp.port_min;
  out << YAML::Key << "port_max" << YAML::Value << c.rtp.port_max;
  out << YAML::Key << "media_timeout_s" << YAML::Value << c.rtp.media_timeout_s;
  out << YAML::EndMap;

  const DataplaneConfig& dp = c.dataplane;
  out << YAML::Key << "dataplane" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "burst_size" << YAML::Value << dp.burst_size;
  out << YAML::Key << "mbufs" << YAML::Value << dp.mbufs;
  out << YAML::Key << "mbuf_cache" << YAML::Value << dp.mbuf_cache;
  out << YAML::Key << "tx_drain_us" << YAML::Value << dp.tx_drain_us;
  out << YAML::Key << "heartbeat_timeout_ms" << YAML::Value << dp.heartbeat_timeout_ms;
  out << YAML::Key << "exception_ring_size" << YAML::Value << dp.exception_ring_size;
  out << YAML::Key << "command_ring_size" << YAML::Value << dp.command_ring_size;
  out << YAML::Key << "rss" << YAML::Value << dp.rss;
  out << YAML::Key << "max_streams" << YAML::Value << dp.max_streams;
  out << YAML::Key << "verify_udp_checksum" << YAML::Value << dp.verify_udp_checksum;
  out << YAML::Key << "tx_checksum_offload" << YAML::Value << dp.tx_checksum_offload;
  out << YAML::EndMap;

  out << YAML::Key << "srtp" << YAML::Value << YAML::BeginMap;
  EmitString(out, "engine", c.srtp.engine);
  EmitString(out, "ipsec_mb_path", c.srtp.ipsec_mb_path);
  out << YAML::Key << "replay_window" << YAML::Value << c.srtp.replay_window;
  out << YAML::EndMap;

  out << YAML::Key << "ops" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "listen" << YAML::Value << c.ops.listen.ToString();
  out << YAML::Key << "port" << YAML::Value << c.ops.port;
  out << YAML::EndMap;

  out << YAML::Key << "api" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.api.enabled;
  out << YAML::Key << "listen" << YAML::Value << c.api.listen.ToString();
  out << YAML::Key << "port" << YAML::Value << c.api.port;
  EmitString(out, "tokens_file", c.api.tokens_file);
  EmitString(out, "tls_cert_file", c.api.tls_cert_file);
  EmitString(out, "tls_key_file", c.api.tls_key_file);
  out << YAML::EndMap;

  out << YAML::Key << "ng" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.ng.enabled;
  out << YAML::Key << "listen" << YAML::Value << YAML::DoubleQuoted << c.ng.listen.ToString();
  out << YAML::Key << "allowed_sources" << YAML::Value;
  if (c.ng.allowed_sources.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const IpPrefix& p : c.ng.allowed_sources) out << p.ToString();
  out << YAML::EndSeq;
  out << YAML::EndMap;

  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << c.log.level;
  EmitString(out, "format", c.log.format);
  EmitString(out, "file", c.log.file);
  out << YAML::Key << "max_size_mb" << YAML::Value << c.log.max_size_mb;
  out << YAML::Key << "max_files" << YAML::Value << c.log.max_files;
  out << YAML::EndMap;

  const DatabaseConfig& db = c.database;
  out << YAML::Key << "database" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << db.enabled;
  EmitString(out, "host", db.host);
  out << YAML::Key << "port" << YAML::Value << db.port;
  EmitString(out, "socket", db.socket);
  EmitString(out, "name", db.name);
  EmitString(out, "user", db.user);
  EmitSecret(out, "password", "password_file", db.password);
  EmitSecret(out, "key", "key_file", db.key);
  out << YAML::Key << "write_queue_limit" << YAML::Value << db.write_queue_limit;
  out << YAML::EndMap;

  out << YAML::Key << "sip" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << c.sip.enabled;
  out << YAML::Key << "listen" << YAML::Value << YAML::DoubleQuoted << c.sip.listen.ToString();
  out << YAML::Key << "registrations" << YAML::Value;
  if (c.sip.registrations.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const SipRegistration& r : c.sip.registrations) {
    out << YAML::BeginMap;
    EmitString(out, "registrar", r.registrar);
    EmitString(out, "aor", r.aor);
    EmitString(out, "user", r.user);
    EmitSecret(out, "password", "password_file", r.password);
    out << YAML::Key << "expires_s" << YAML::Value << r.expires_s;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;

  out << YAML::EndMap;
  if (!out.good()) return absl::StrCat("# RenderConfig failed: ", out.GetLastError(), "\n");
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace

Environment CurrentEnvironment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                                   const Environment& env) {
  // yaml-cpp reports through exceptions; none may leave this module.
  try {
    return Parser(origin, env).Parse(yaml_text);
  } catch (const YAML::Exception& e) {
    const std::string where =
        e.mark.is_null() ? origin
                         : absl::StrCat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1);
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(origin, ": unexpected error while parsing: ", e.what()));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path, const Environment& env) {
  auto text = ReadWholeFile(path, kMaxConfigBytes);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("config file ", text.status().message()));
  }
  return ParseConfig(*text, path, env);
}

std::string RenderConfig(const Config& config) {
  try {
    return RenderOrThrow(config);
  } catch (const std::exception& e) {
    return absl::StrCat("# RenderConfig failed: ", e.what(), "\n");
  }
}

}  // namespace karl
