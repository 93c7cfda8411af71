// Karl's configuration: one YAML file, validated with file:line errors, documented
// defaults (config/karl.yaml), KARL_* environment overrides and secrets from files
// or the environment. Thread: loaded by the control-plane thread; the resulting
// Config is immutable and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/net_addr.h"

namespace karl {

// A secret value (password, token). Never printed: Redacted() is what shows.
struct Secret {
  std::string value;   // the secret itself (empty when not configured)
  std::string source;  // where it came from: "inline", "file:/path", "env:NAME", or ""
  bool empty() const { return value.empty(); }
};

struct PortConfig {
  std::string name;                        // operator's name for the port, e.g. "ext0" (unique)
  std::string device;                      // DPDK device name ("net_tap0") or PCI address
  std::vector<IpPrefix> addresses;         // Karl's own addresses on this port (>= 1)
  std::optional<IpAddress> gateway_v4;     // next hop for off-link IPv4 peers
  std::optional<IpAddress> gateway_v6;     // next hop for off-link IPv6 peers
  std::optional<MacAddress> next_hop_mac;  // static next-hop MAC (no ARP/NDP then)
  uint16_t vlan = 0;                       // 802.1Q VLAN id, 0 = untagged (1..4094)
  uint16_t mtu = 1500;                     // 576..9000
  uint16_t rx_descriptors = 1024;          // per RX queue, power of two 64..16384
  uint16_t tx_descriptors = 1024;          // per TX queue, power of two 64..16384
};

struct RtpConfig {
  uint16_t port_min = 30000;      // first local RTP port (even), >= 1024
  uint16_t port_max = 39999;      // last local port (RTCP of the last pair included)
  uint32_t media_timeout_s = 60;  // no media on any stream this long -> session ended
};

struct DataplaneConfig {
  uint16_t burst_size = 128;             // packets per rx/tx burst, 1..256
  uint32_t mbufs = 0;                    // mbufs in the pool; 0 = sized from ports/queues/workers
  uint16_t mbuf_cache = 256;             // per-lcore mempool cache, 0..512
  uint32_t tx_drain_us = 100;            // buffered TX flushed at least this often, 1..10000
  uint32_t heartbeat_timeout_ms = 1000;  // worker beat older than this -> /health 503
  uint32_t exception_ring_size = 1024;   // per worker, power of two 64..65536
  uint32_t command_ring_size = 1024;     // per worker, power of two 64..65536
  bool rss = true;                       // spread UDP flows over workers by RSS when supported
  uint32_t max_streams = 0;              // stream slots; 0 = one per local port (range x addresses)
  bool verify_udp_checksum = true;       // software UDP checksum check when no NIC offload
  bool tx_checksum_offload = true;       // let the NIC fill IPv4/UDP checksums when it can
};

struct SrtpConfigSection {
  std::string engine = "ipsec_mb";       // ipsec_mb (intel-ipsec-mb), openssl or libsrtp
  std::string ipsec_mb_path = "direct";  // ipsec_mb: direct (the library) or cryptodev (D27)
  uint32_t replay_window = 128;          // SRTP/SRTCP replay window in packets, 128..32768
};

struct OpsConfig {
  IpAddress listen = *IpAddress::Parse("127.0.0.1");  // ops HTTP address
  uint16_t port = 9091;                               // KARL_METRICS_PORT overrides
};

struct ApiConfig {
  bool enabled = true;
  IpAddress listen = *IpAddress::Parse("127.0.0.1");
  uint16_t port = 8080;
  std::string tokens_file;  // bearer tokens, one per line; empty = no auth (loopback only)
  std::string tls_cert_file;
  std::string tls_key_file;
};

struct NgConfig {
  bool enabled = true;
  HostPort listen{*IpAddress::Parse("127.0.0.1"), 22222};
  std::vector<IpPrefix> allowed_sources;  // empty = loopback only
};

struct LogConfig {
  int level = 3;                // 1 error, 2 warning, 3 info, 4 debug, 5 trace (KARL_LOG_LEVEL)
  std::string format = "text";  // "text" or "json"
  std::string file;             // empty = stderr
  uint32_t max_size_mb = 100;   // rotate the file at this size, 1..10240
  uint32_t max_files = 5;       // rotated files kept, 1..100
};

struct DatabaseConfig {
  bool enabled = false;
  std::string host = "127.0.0.1";
  uint16_t port = 3306;
  std::string socket;  // unix socket path; overrides host/port when set
  std::string name = "karl";
  std::string user = "karl";
  Secret password;  // password / password_file / KARL_DB_PASSWORD
  Secret key;       // key for SRTP keys at rest: key / key_file / KARL_DB_KEY
  uint32_t write_queue_limit = 100000;
};

struct SipRegistration {
  std::string registrar;      // sip:host[:port]
  std::string aor;            // address of record, sip:user@domain
  std::string user;           // digest user name (default: AOR user)
  Secret password;            // password / password_file
  uint32_t expires_s = 3600;  // 60..86400
};

struct SipConfig {
  bool enabled = false;
  HostPort listen{*IpAddress::Parse("127.0.0.1"), 5070};
  std::vector<SipRegistration> registrations;
};

struct Config {
  std::string path;    // file it came from ("" for the embedded default)
  std::string sha256;  // hex SHA-256 of the file's bytes
  std::vector<PortConfig> ports;
  RtpConfig rtp;
  DataplaneConfig dataplane;
  SrtpConfigSection srtp;
  OpsConfig ops;
  ApiConfig api;
  NgConfig ng;
  LogConfig log;
  DatabaseConfig database;
  SipConfig sip;
  // Environment overrides that were applied, as "KARL_LOG_LEVEL=4" (for --print and logs).
  std::vector<std::string> overrides;
};

// Environment as a map so tests can inject it. Production: CurrentEnvironment().
using Environment = std::map<std::string, std::string>;
Environment CurrentEnvironment();

// Parses and validates YAML text. `origin` names the source in errors ("karl.yaml").
// Errors are InvalidArgument with a message "origin:line:column: key: what is wrong;
// allowed: ...". Unknown keys are errors. Applies env overrides from `env`.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text, const std::string& origin,
                                   const Environment& env);

// Reads and parses a file (NotFound / PermissionDenied with the path when unreadable).
absl::StatusOr<Config> LoadConfigFile(const std::string& path, const Environment& env);

// The full effective configuration as YAML, defaults filled in. A secret from a file is
// shown as its `*_file:` path; any other secret as `<redacted>` with a "# from SOURCE"
// comment, never its value. Output re-parses to the same Config, except that an inline
// `<redacted>` is refused as a secret unless the environment supplies that secret.
std::string RenderConfig(const Config& config);

}  // namespace karl
