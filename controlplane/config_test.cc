#include "controlplane/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

#ifndef KARL_SOURCE_DIR
#error "KARL_SOURCE_DIR must point at the source tree (see controlplane/meson.build)"
#endif

namespace karl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One valid port; tests append sections or replace pieces of it.
constexpr char kPorts[] =
    "ports:\n"
    "  - name: ext0\n"
    "    device: net_tap0\n"
    "    addresses: [198.51.100.1/24]\n";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A scratch directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string pattern = testing::TempDir() + "karl_config_test_XXXXXX";
    char* made = mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string Write(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

absl::StatusOr<Config> Parse(const std::string& text, const Environment& env = {}) {
  return ParseConfig(text, "t.yaml", env);
}

// The message of a failed parse, or a marker that makes the caller's check fail.
std::string ErrorOf(const std::string& text, const Environment& env = {}) {
  auto c = Parse(text, env);
  if (c.ok()) return "<parsed without error>";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  return std::string(c.status().message());
}

// Minimal config with one extra section appended.
std::string WithPorts(const std::string& rest) { return std::string(kPorts) + rest; }

void ExpectSameSecret(const Secret& a, const Secret& b) {
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.source, b.source);
}

// Every field except path/sha256/overrides.
void ExpectSameConfig(const Config& a, const Config& b) {
  ASSERT_EQ(a.ports.size(), b.ports.size());
  for (size_t i = 0; i < a.ports.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("ports[", i, "]"));
    const PortConfig& x = a.ports[i];
    const PortConfig& y = b.ports[i];
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.device, y.device);
    EXPECT_EQ(x.addresses, y.addresses);
    EXPECT_EQ(x.gateway_v4, y.gateway_v4);
    EXPECT_EQ(x.gateway_v6, y.gateway_v6);
    EXPECT_EQ(x.next_hop_mac, y.next_hop_mac);
    EXPECT_EQ(x.vlan, y.vlan);
    EXPECT_EQ(x.mtu, y.mtu);
    EXPECT_EQ(x.rx_descriptors, y.rx_descriptors);
    EXPECT_EQ(x.tx_descriptors, y.tx_descriptors);
  }
  EXPECT_EQ(a.rtp.port_min, b.rtp.port_min);
  EXPECT_EQ(a.rtp.port_max, b.rtp.port_max);
  EXPECT_EQ(a.rtp.media_timeout_s, b.rtp.media_timeout_s);
  EXPECT_EQ(a.dataplane.burst_size, b.dataplane.burst_size);
  EXPECT_EQ(a.dataplane.mbufs, b.dataplane.mbufs);
  EXPECT_EQ(a.dataplane.mbuf_cache, b.dataplane.mbuf_cache);
  EXPECT_EQ(a.dataplane.tx_drain_us, b.dataplane.tx_drain_us);
  EXPECT_EQ(a.dataplane.heartbeat_timeout_ms, b.dataplane.heartbeat_timeout_ms);
  EXPECT_EQ(a.dataplane.exception_ring_size, b.dataplane.exception_ring_size);
  EXPECT_EQ(a.dataplane.command_ring_size, b.dataplane.command_ring_size);
  EXPECT_EQ(a.dataplane.rss, b.dataplane.rss);
  EXPECT_EQ(a.dataplane.verify_udp_checksum, b.dataplane.verify_udp_checksum);
  EXPECT_EQ(a.dataplane.tx_checksum_offload, b.dataplane.tx_checksum_offload);
  EXPECT_EQ(a.ops.listen, b.ops.listen);
  EXPECT_EQ(a.ops.port, b.ops.port);
  EXPECT_EQ(a.api.enabled, b.api.enabled);
  EXPECT_EQ(a.api.listen, b.api.listen);
  EXPECT_EQ(a.api.port, b.api.port);
  EXPECT_EQ(a.api.tokens_file, b.api.tokens_file);
  EXPECT_EQ(a.api.tls_cert_file, b.api.tls_cert_file);
  EXPECT_EQ(a.api.tls_key_file, b.api.tls_key_file);
  EXPECT_EQ(a.ng.enabled, b.ng.enabled);
  EXPECT_EQ(a.ng.listen.address, b.ng.listen.address);
  EXPECT_EQ(a.ng.listen.port, b.ng.listen.port);
  EXPECT_EQ(a.ng.allowed_sources, b.ng.allowed_sources);
  EXPECT_EQ(a.log.level, b.log.level);
  EXPECT_EQ(a.log.format, b.log.format);
  EXPECT_EQ(a.log.file, b.log.file);
  EXPECT_EQ(a.log.max_size_mb, b.log.max_size_mb);
  EXPECT_EQ(a.log.max_files, b.log.max_files);
  EXPECT_EQ(a.database.enabled, b.database.enabled);
  EXPECT_EQ(a.database.host, b.database.host);
  EXPECT_EQ(a.database.port, b.database.port);
  EXPECT_EQ(a.database.socket, b.database.socket);
  EXPECT_EQ(a.database.name, b.database.name);
  EXPECT_EQ(a.database.user, b.database.user);
  ExpectSameSecret(a.database.password, b.database.password);
  ExpectSameSecret(a.database.key, b.database.key);
  EXPECT_EQ(a.database.write_queue_limit, b.database.write_queue_limit);
  EXPECT_EQ(a.sip.enabled, b.sip.enabled);
  EXPECT_EQ(a.sip.listen.address, b.sip.listen.address);
  EXPECT_EQ(a.sip.listen.port, b.sip.listen.port);
  ASSERT_EQ(a.sip.registrations.size(), b.sip.registrations.size());
  for (size_t i = 0; i < a.sip.registrations.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("registrations[", i, "]"));
    EXPECT_EQ(a.sip.registrations[i].registrar, b.sip.registrations[i].registrar);
    EXPECT_EQ(a.sip.registrations[i].aor, b.sip.registrations[i].aor);
    EXPECT_EQ(a.sip.registrations[i].user, b.sip.registrations[i].user);
    ExpectSameSecret(a.sip.registrations[i].password, b.sip.registrations[i].password);
    EXPECT_EQ(a.sip.registrations[i].expires_s, b.sip.registrations[i].expires_s);
  }
}

// ---------------------------------------------------------------------------------------
// Parsing and error shape

TEST(ConfigParseTest, MinimalFileTakesEveryDefault) {
  auto c = Parse(kPorts);
  ASSERT_TRUE(c.ok()) << c.status();
  Config expected;
  PortConfig port;
  port.name = "ext0";
  port.device = "net_tap0";
  port.addresses = {*IpPrefix::Parse("198.51.100.1/24")};
  expected.ports = {port};
  ExpectSameConfig(*c, expected);
  EXPECT_EQ(c->path, "t.yaml");
  EXPECT_TRUE(c->overrides.empty());
}

TEST(ConfigParseTest, Sha256IsLowercaseHexOfTheText) {
  auto c = Parse(kPorts);
  ASSERT_TRUE(c.ok()) << c.status();
  // printf 'ports:\n  - name: ext0\n    device: net_tap0\n    addresses: [198.51.100.1/24]\n'
  //   | sha256sum
  EXPECT_EQ(c->sha256, "f403a3a1acb732186098afd452a9d61c49858446d8255280cd940cd9fe7eb4ef")
      << "recompute with the command above if kPorts changes";
}

TEST(ConfigParseTest, EveryKeyIsRead) {
  TempDir dir;
  const std::string tokens = dir.Write("tokens", "t1\n");
  const std::string text = absl::StrCat(R"(
ports:
  - name: a
    device: "0000:3b:00.0"
    addresses: [203.0.113.10/26, "2001:db8:1::10/64"]
    gateway_v4: 203.0.113.1
    gateway_v6: 2001:db8:1::1
    next_hop_mac: "02:00:00:00:00:01"
    vlan: 4094
    mtu: 9000
    rx_descriptors: 64
    tx_descriptors: 16384
  - name: b
    device: net_ring0
    addresses: [203.0.113.70/26]
rtp: {port_min: 1024, port_max: 65535, media_timeout_s: 86400}
dataplane:
  burst_size: 256
  mbufs: 1024
  mbuf_cache: 512
  tx_drain_us: 10000
  heartbeat_timeout_ms: 10
  exception_ring_size: 65536
  command_ring_size: 64
  rss: false
  tx_checksum_offload: false
ops: {listen: "::1", port: 1}
api:
  enabled: false
  listen: 0.0.0.0
  port: 65535
  tokens_file: )",
                                        tokens, R"(
  tls_cert_file: /c.pem
  tls_key_file: /k.pem
ng:
  enabled: false
  listen: "[::1]:22223"
  allowed_sources: [203.0.113.0/24, "2001:db8::/32"]
log: {level: 5, format: json, file: /tmp/k.log, max_size_mb: 10240, max_files: 100}
database:
  enabled: true
  host: db.example.net
  port: 3307
  socket: /run/mysqld/mysqld.sock
  name: karldb
  user: karluser
  password: s3cret
  key: k3y
  write_queue_limit: 1
sip:
  enabled: true
  listen: "203.0.113.200:5080"
  registrations:
    - registrar: "sips:203.0.113.130:5061"
      aor: sip:edge@example.net
      user: other
      password: p
      expires_s: 60
)");
  auto c = Parse(text);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->ports.size(), 2u);
  const PortConfig& a = c->ports[0];
  EXPECT_EQ(a.device, "0000:3b:00.0");
  ASSERT_EQ(a.addresses.size(), 2u);
  EXPECT_EQ(a.addresses[1].ToString(), "2001:db8:1::10/64");
  EXPECT_EQ(a.gateway_v4->ToString(), "203.0.113.1");
  EXPECT_EQ(a.gateway_v6->ToString(), "2001:db8:1::1");
  EXPECT_EQ(a.next_hop_mac->ToString(), "02:00:00:00:00:01");
  EXPECT_EQ(a.vlan, 4094);
  EXPECT_EQ(a.mtu, 9000);
  EXPECT_EQ(a.rx_descriptors, 64);
  EXPECT_EQ(a.tx_descriptors, 16384);
  EXPECT_FALSE(c->ports[1].gateway_v4.has_value());
  EXPECT_EQ(c->rtp.port_min, 1024);
  EXPECT_EQ(c->rtp.port_max, 65535);
  EXPECT_EQ(c->rtp.media_timeout_s, 86400u);
  EXPECT_EQ(c->dataplane.burst_size, 256);
  EXPECT_EQ(c->dataplane.mbufs, 1024u);
  EXPECT_EQ(c->dataplane.mbuf_cache, 512);
  EXPECT_EQ(c->dataplane.tx_drain_us, 10000u);
  EXPECT_EQ(c->dataplane.heartbeat_timeout_ms, 10u);
  EXPECT_EQ(c->dataplane.exception_ring_size, 65536u);
  EXPECT_EQ(c->dataplane.command_ring_size, 64u);
  EXPECT_FALSE(c->dataplane.rss);
  EXPECT_FALSE(c->dataplane.tx_checksum_offload);
  EXPECT_EQ(c->ops.listen.ToString(), "::1");
  EXPECT_EQ(c->ops.port, 1);
  EXPECT_FALSE(c->api.enabled);
  EXPECT_EQ(c->api.listen.ToString(), "0.0.0.0");
  EXPECT_EQ(c->api.port, 65535);
  EXPECT_EQ(c->api.tokens_file, tokens);
  EXPECT_EQ(c->api.tls_cert_file, "/c.pem");
  EXPECT_EQ(c->api.tls_key_file, "/k.pem");
  EXPECT_FALSE(c->ng.enabled);
  EXPECT_EQ(c->ng.listen.ToString(), "[::1]:22223");
  ASSERT_EQ(c->ng.allowed_sources.size(), 2u);
  EXPECT_EQ(c->ng.allowed_sources[1].ToString(), "2001:db8::/32");
  EXPECT_EQ(c->log.level, 5);
  EXPECT_EQ(c->log.format, "json");
  EXPECT_EQ(c->log.file, "/tmp/k.log");
  EXPECT_EQ(c->log.max_size_mb, 10240u);
  EXPECT_EQ(c->log.max_files, 100u);
  EXPECT_TRUE(c->database.enabled);
  EXPECT_EQ(c->database.host, "db.example.net");
  EXPECT_EQ(c->database.port, 3307);
  EXPECT_EQ(c->database.socket, "/run/mysqld/mysqld.sock");
  EXPECT_EQ(c->database.name, "karldb");
  EXPECT_EQ(c->database.user, "karluser");
  EXPECT_EQ(c->database.password.value, "s3cret");
  EXPECT_EQ(c->database.password.source, "inline");
  EXPECT_EQ(c->database.key.value, "k3y");
  EXPECT_EQ(c->database.write_queue_limit, 1u);
  EXPECT_TRUE(c->sip.enabled);
  EXPECT_EQ(c->sip.listen.ToString(), "203.0.113.200:5080");
  ASSERT_EQ(c->sip.registrations.size(), 1u);
  EXPECT_EQ(c->sip.registrations[0].registrar, "sips:203.0.113.130:5061");
  EXPECT_EQ(c->sip.registrations[0].aor, "sip:edge@example.net");
  EXPECT_EQ(c->sip.registrations[0].user, "other");
  EXPECT_EQ(c->sip.registrations[0].password.value, "p");
  EXPECT_EQ(c->sip.registrations[0].expires_s, 60u);
}

TEST(ConfigParseTest, ErrorHasOriginLineColumnPathAndAllowed) {
  EXPECT_EQ(ErrorOf(WithPorts("rtp:\n  port_min: 80\n")),
            "t.yaml:6:13: rtp.port_min: 80 is out of range; allowed: an even number 1024..65534");
}

TEST(ConfigParseTest, EmptyAndCommentOnlyFilesAreErrors) {
  EXPECT_EQ(ErrorOf(""), "t.yaml:1:1: empty configuration; at least `ports` is required");
  EXPECT_EQ(ErrorOf("# nothing here\n\n# really\n"),
            "t.yaml:1:1: empty configuration; at least `ports` is required");
  EXPECT_EQ(ErrorOf("---\n...\n"), "t.yaml:1:1: empty configuration; at least `ports` is required");
}

TEST(ConfigParseTest, YamlSyntaxErrorHasLocation) {
  EXPECT_THAT(ErrorOf("ports: [a\n"), HasSubstr("t.yaml:2:1: YAML syntax error: "));
  EXPECT_THAT(ErrorOf("ports:\n  - name: a\n   device: x\n"), HasSubstr("t.yaml:3:"));
  EXPECT_THAT(ErrorOf("a: 1\n  b: 2\n"), HasSubstr("t.yaml:2:4: YAML syntax error"));
}

TEST(ConfigParseTest, SecondDocumentIsAnError) {
  EXPECT_THAT(ErrorOf(WithPorts("---\nrtp: {}\n")),
              HasSubstr("t.yaml:6:1: (document): a second YAML document"));
}

TEST(ConfigParseTest, TopLevelMustBeAMap) {
  EXPECT_THAT(ErrorOf("- a\n- b\n"),
              HasSubstr("t.yaml:1:1: (top level): expected a map of keys, found a list; "
                        "allowed: ports, rtp, dataplane, srtp, ops, api, ng, log, database, sip"));
  EXPECT_THAT(ErrorOf("just text\n"), HasSubstr("found a single value"));
}

TEST(ConfigParseTest, UnknownKeysAreErrorsListingAllowedOnes) {
  EXPECT_EQ(ErrorOf(WithPorts("colour: blue\n")),
            "t.yaml:5:1: colour: unknown key 'colour'; allowed: ports, rtp, dataplane, srtp, ops, "
            "api, ng, log, database, sip");
  EXPECT_EQ(ErrorOf(WithPorts("rtp:\n  port_mn: 30000\n")),
            "t.yaml:6:3: rtp.port_mn: unknown key 'port_mn'; allowed: port_min, port_max, "
            "media_timeout_s");
  EXPECT_THAT(ErrorOf("ports:\n  - name: a\n    device: d\n    addresses: [198.51.100.1/24]\n"
                      "    speed: 25G\n"),
              HasSubstr("t.yaml:5:5: ports[0].speed: unknown key 'speed'; allowed: name, "));
}

TEST(ConfigParseTest, ControlCharactersInValuesAreEscaped) {
  const std::string message = ErrorOf(WithPorts("log: {format: \"a\\nt.yaml:1:1: b\"}\n"));
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_THAT(message, HasSubstr("log.format: 'a\\nt.yaml:1:1: b' is not a log format"));
  EXPECT_THAT(ErrorOf(WithPorts("\"x\\ty\": 1\n")), HasSubstr("x\\ty: unknown key 'x\\ty'"));
}

TEST(ConfigParseTest, DuplicateKeyIsAnError) {
  EXPECT_THAT(ErrorOf(WithPorts("log:\n  level: 2\n  level: 4\n")),
              HasSubstr("t.yaml:7:3: log.level: key 'level' appears twice"));
}

TEST(ConfigParseTest, WrongTypesAreErrors) {
  EXPECT_EQ(ErrorOf(WithPorts("rtp:\n  port_min: abc\n")),
            "t.yaml:6:13: rtp.port_min: 'abc' is not a whole number; allowed: an even number "
            "1024..65534");
  EXPECT_THAT(ErrorOf(WithPorts("rtp:\n  port_min: [1, 2]\n")),
              HasSubstr("rtp.port_min: expected a whole number, found a list"));
  EXPECT_THAT(ErrorOf("ports:\n  name: ext0\n"),
              HasSubstr("t.yaml:2:3: ports: expected a list, found a map"));
  EXPECT_THAT(ErrorOf(WithPorts("rtp: 5\n")),
              HasSubstr("t.yaml:5:6: rtp: expected a map of keys, found a single value"));
  EXPECT_THAT(ErrorOf("ports:\n  - name: [a]\n    device: d\n    addresses: [198.51.100.1/24]\n"),
              HasSubstr("ports[0].name: expected a string, found a list"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane: {rss: maybe}\n")),
              HasSubstr("dataplane.rss: 'maybe' is not a boolean; allowed: true, false"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane: {tx_checksum_offload: 1.5}\n")),
              HasSubstr("dataplane.tx_checksum_offload: '1.5' is not a boolean"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane: {burst_size: -1}\n")),
              HasSubstr("'-1' is not a whole number"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane: {burst_size: 1.5}\n")),
              HasSubstr("'1.5' is not a whole number"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane: {burst_size: 0x20}\n")),
              HasSubstr("'0x20' is not a whole number"));
  EXPECT_THAT(ErrorOf(WithPorts("dataplane:\n  burst_size:\n")),
              HasSubstr("t.yaml:6:3: dataplane.burst_size: expected a whole number, found "
                        "nothing"));
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_max: 99999999999999999999999}\n")),
              HasSubstr("is not a whole number"));
}

TEST(ConfigParseTest, EmptySectionMeansDefaults) {
  auto c = Parse(WithPorts("rtp:\ndataplane: {}\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rtp.port_min, RtpConfig().port_min);
}

TEST(ConfigParseTest, MissingRequiredKeysNameTheParent) {
  EXPECT_EQ(ErrorOf("rtp: {}\n"),
            "t.yaml:1:1: ports: required key is missing; allowed: a list of 1..16 ports");
  EXPECT_THAT(ErrorOf("log: {}\nports:\n  - name: a\n    addresses: [198.51.100.1/24]\n"),
              HasSubstr("t.yaml:3:5: ports[0].device: required key is missing; allowed: "));
  EXPECT_THAT(ErrorOf("ports:\n  - device: d\n    addresses: [198.51.100.1/24]\n"),
              HasSubstr("t.yaml:2:5: ports[0].name: required key is missing"));
  EXPECT_THAT(ErrorOf("ports:\n  - name: a\n    device: d\n"),
              HasSubstr("t.yaml:2:5: ports[0].addresses: required key is missing"));
}

TEST(ConfigParseTest, AllErrorsAreReportedOneLineEach) {
  const std::string message = ErrorOf(WithPorts("rtp: {port_min: 1}\nlog: {level: 9}\n"));
  EXPECT_THAT(message, HasSubstr("t.yaml:5:17: rtp.port_min: 1 is out of range"));
  EXPECT_THAT(message, HasSubstr("\nt.yaml:6:14: log.level: 9 is out of range"));
}

TEST(ConfigParseTest, ManyErrorsAreCapped) {
  std::string text = WithPorts("log:\n");
  for (int i = 0; i < 40; ++i) text += absl::StrCat("  bad", i, ": 1\n");
  const std::string message = ErrorOf(text);
  EXPECT_THAT(message, HasSubstr("(20 more errors not shown)"));
}

TEST(ConfigParseTest, NoExceptionEscapesOnHostileInput) {
  // Deep nesting, aliases to maps and binary junk: each is an error, not a crash.
  std::string deep(2000, '[');
  EXPECT_FALSE(Parse(deep).ok());
  EXPECT_FALSE(Parse(WithPorts("rtp: &a {port_min: 30000}\nlog: *a\n")).ok());
  EXPECT_FALSE(Parse(std::string("\0\x01\xff: \xfe", 6)).ok());
  EXPECT_FALSE(Parse("ports: !!binary AAAA\n").ok());
  EXPECT_FALSE(Parse("? [a, b]\n: 1\n").ok());
}

// ---------------------------------------------------------------------------------------
// Ports

std::string OnePort(const std::string& extra, const std::string& addresses = "[198.51.100.1/24]") {
  return absl::StrCat("ports:\n  - name: ext0\n    device: net_tap0\n    addresses: ", addresses,
                      "\n", extra);
}

TEST(ConfigPortsTest, EmptyListIsAnError) {
  EXPECT_EQ(ErrorOf("ports: []\n"),
            "t.yaml:1:8: ports: no ports configured; allowed: a list of 1..16 ports");
  EXPECT_THAT(ErrorOf("ports:\n"), HasSubstr("ports: no ports configured"));
}

TEST(ConfigPortsTest, AtMostSixteen) {
  std::string text = "ports:\n";
  for (int i = 0; i < 17; ++i) {
    text += absl::StrCat("  - {name: p", i, ", device: net_ring", i, ", addresses: [198.51.100.",
                         i + 1, "/24]}\n");
  }
  EXPECT_THAT(ErrorOf(text), HasSubstr("ports: 17 ports configured; allowed: a list of 1..16"));
}

TEST(ConfigPortsTest, NamesAndDevicesAreUnique) {
  const std::string dup_name =
      "ports:\n"
      "  - {name: a, device: net_ring0, addresses: [198.51.100.1/24]}\n"
      "  - {name: a, device: net_ring1, addresses: [203.0.113.1/24]}\n";
  EXPECT_THAT(ErrorOf(dup_name),
              HasSubstr("t.yaml:3:12: ports[1].name: 'a' is already the name of ports[0]"));
  const std::string dup_device =
      "ports:\n"
      "  - {name: a, device: net_ring0, addresses: [198.51.100.1/24]}\n"
      "  - {name: b, device: net_ring0, addresses: [203.0.113.1/24]}\n";
  EXPECT_THAT(ErrorOf(dup_device),
              HasSubstr("ports[1].device: 'net_ring0' is already used by ports[0]"));
}

TEST(ConfigPortsTest, NameMustBePlain) {
  EXPECT_THAT(ErrorOf("ports:\n  - {name: 'a b', device: d, addresses: [198.51.100.1/24]}\n"),
              HasSubstr("ports[0].name: 'a b' is not a valid name"));
  EXPECT_THAT(ErrorOf("ports:\n  - {name: '', device: d, addresses: [198.51.100.1/24]}\n"),
              HasSubstr("ports[0].name: '' is not a valid name"));
  EXPECT_THAT(ErrorOf("ports:\n  - {name: a, device: '', addresses: [198.51.100.1/24]}\n"),
              HasSubstr("ports[0].device: empty device"));
}

TEST(ConfigPortsTest, AddressesMustParse) {
  EXPECT_EQ(ErrorOf(OnePort("", "[198.51.100.1/24, 198.51.100.300/24]")),
            "t.yaml:4:34: ports[0].addresses[1]: '198.51.100.300/24' is not addr/len; allowed: "
            "a list of unicast addr/len such as 198.51.100.1/24 or 2001:db8::1/64");
  EXPECT_THAT(ErrorOf(OnePort("", "[198.51.100.1/33]")), HasSubstr("is not addr/len"));
  EXPECT_THAT(ErrorOf(OnePort("", "[198.51.100.1]")), HasSubstr("'198.51.100.1' is not addr/len"));
  EXPECT_THAT(ErrorOf(OnePort("", "[\"2001:db8::1/129\"]")), HasSubstr("is not addr/len"));
  EXPECT_THAT(ErrorOf(OnePort("", "[0.0.0.0/0]")), HasSubstr("is not a unicast address"));
  EXPECT_THAT(ErrorOf(OnePort("", "[224.0.0.1/24]")), HasSubstr("is not a unicast address"));
  EXPECT_THAT(ErrorOf(OnePort("", "198.51.100.1/24")),
              HasSubstr("ports[0].addresses: expected a list, found a single value"));
}

TEST(ConfigPortsTest, AtLeastOneAddress) {
  EXPECT_THAT(ErrorOf(OnePort("", "[]")),
              HasSubstr("t.yaml:4:16: ports[0].addresses: a port needs at least one address"));
}

TEST(ConfigPortsTest, AddressUsedOnlyOnce) {
  const std::string text =
      "ports:\n"
      "  - {name: a, device: net_ring0, addresses: [198.51.100.1/24]}\n"
      "  - {name: b, device: net_ring1, addresses: [198.51.100.1/25]}\n";
  EXPECT_THAT(ErrorOf(text), HasSubstr("ports[1].addresses[0]: 198.51.100.1 is already used by "
                                       "ports[0].addresses[0]"));
  EXPECT_THAT(ErrorOf(OnePort("", "[198.51.100.1/24, 198.51.100.1/24]")),
              HasSubstr("ports[0].addresses[1]: 198.51.100.1 is already used"));
  // Same prefix, different host: fine.
  EXPECT_TRUE(Parse(OnePort("", "[198.51.100.1/24, 198.51.100.2/24]")).ok());
}

TEST(ConfigPortsTest, GatewayMustBeOnAPrefixOfItsFamily) {
  auto good = Parse(OnePort("    gateway_v4: 198.51.100.254\n"));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->ports[0].gateway_v4->ToString(), "198.51.100.254");
  EXPECT_TRUE(Parse(OnePort("    gateway_v4: ~\n")).ok());

  EXPECT_EQ(ErrorOf(OnePort("    gateway_v4: 203.0.113.1\n")),
            "t.yaml:5:17: ports[0].gateway_v4: 203.0.113.1 is not on the port's IPv4 prefixes; "
            "allowed: an address inside 198.51.100.1/24");
  EXPECT_THAT(ErrorOf(OnePort("    gateway_v4: 2001:db8::1\n")),
              HasSubstr("ports[0].gateway_v4: '2001:db8::1' is not an IPv4 address"));
  EXPECT_THAT(ErrorOf(OnePort("    gateway_v6: 2001:db8::1\n")),
              HasSubstr("ports[0].gateway_v6: the port has no IPv6 address"));
  EXPECT_THAT(ErrorOf(OnePort("    gateway_v4: 198.51.100.1\n")),
              HasSubstr("198.51.100.1 is the port's own address"));
  EXPECT_THAT(ErrorOf(OnePort("    gateway_v4: gw.example.net\n")),
              HasSubstr("'gw.example.net' is not an IPv4 address"));
  auto v6 =
      Parse(OnePort("    gateway_v6: 2001:db8:0:1::1\n", "[198.51.100.1/24, \"2001:db8::5/48\"]"));
  EXPECT_TRUE(v6.ok()) << v6.status();
}

TEST(ConfigPortsTest, NextHopMac) {
  auto c = Parse(OnePort("    next_hop_mac: 02-00-5E-10-00-01\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ports[0].next_hop_mac->ToString(), "02:00:5e:10:00:01");
  EXPECT_THAT(ErrorOf(OnePort("    next_hop_mac: 02:00:5e:10:00\n")),
              HasSubstr("ports[0].next_hop_mac: '02:00:5e:10:00' is not a unicast MAC"));
  EXPECT_THAT(ErrorOf(OnePort("    next_hop_mac: 01:00:5e:00:00:01\n")),
              HasSubstr("is not a unicast MAC"));
  EXPECT_THAT(ErrorOf(OnePort("    next_hop_mac: 00:00:00:00:00:00\n")),
              HasSubstr("is not a unicast MAC"));
}

TEST(ConfigPortsTest, VlanRange) {
  EXPECT_TRUE(Parse(OnePort("    vlan: 4094\n")).ok());
  EXPECT_EQ(ErrorOf(OnePort("    vlan: 4095\n")),
            "t.yaml:5:11: ports[0].vlan: 4095 is out of range; allowed: 0 (untagged) or 1..4094");
}

TEST(ConfigPortsTest, MtuRange) {
  EXPECT_TRUE(Parse(OnePort("    mtu: 576\n")).ok());
  EXPECT_THAT(ErrorOf(OnePort("    mtu: 575\n")),
              HasSubstr("ports[0].mtu: 575 is out of range; allowed: 576..9000"));
  EXPECT_THAT(ErrorOf(OnePort("    mtu: 9001\n")), HasSubstr("9001 is out of range"));
  EXPECT_THAT(ErrorOf(OnePort("    mtu: 1000\n", "[\"2001:db8::1/64\"]")),
              HasSubstr("ports[0].mtu: 1000 is below the IPv6 minimum"));
}

TEST(ConfigPortsTest, DescriptorsArePowersOfTwo) {
  EXPECT_TRUE(Parse(OnePort("    rx_descriptors: 64\n    tx_descriptors: 16384\n")).ok());
  EXPECT_THAT(ErrorOf(OnePort("    rx_descriptors: 1000\n")),
              HasSubstr("ports[0].rx_descriptors: 1000 is not a power of two; allowed: a power "
                        "of two 64..16384"));
  EXPECT_THAT(ErrorOf(OnePort("    tx_descriptors: 32\n")), HasSubstr("32 is out of range"));
  EXPECT_THAT(ErrorOf(OnePort("    tx_descriptors: 32768\n")), HasSubstr("32768 is out of range"));
}

// ---------------------------------------------------------------------------------------
// rtp and dataplane

TEST(ConfigRtpTest, PortMinEvenAndAbove1024) {
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_min: 30001}\n")),
              HasSubstr("rtp.port_min: 30001 is odd"));
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_min: 1022}\n")),
              HasSubstr("rtp.port_min: 1022 is out of range"));
}

TEST(ConfigRtpTest, PortMaxAbovePortMin) {
  EXPECT_EQ(ErrorOf(WithPorts("rtp: {port_min: 30000, port_max: 20000}\n")),
            "t.yaml:5:34: rtp.port_max: 20000 is not above rtp.port_min 30000 (the range would "
            "be empty); allowed: 30001..65535");
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_min: 30000, port_max: 30000}\n")),
              HasSubstr("rtp.port_max: 30000 is not above rtp.port_min 30000"));
  // Default port_min is 30000.
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_max: 2000}\n")),
              HasSubstr("rtp.port_max: 2000 is not above rtp.port_min 30000"));
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {port_max: 65536}\n")),
              HasSubstr("rtp.port_max: 65536 is out of range"));
  auto two = Parse(WithPorts("rtp: {port_min: 65534, port_max: 65535}\n"));
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->rtp.port_max, 65535);
}

TEST(ConfigRtpTest, MediaTimeout) {
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {media_timeout_s: 0}\n")),
              HasSubstr("rtp.media_timeout_s: 0 is out of range; allowed: 1..86400"));
  EXPECT_THAT(ErrorOf(WithPorts("rtp: {media_timeout_s: 86401}\n")),
              HasSubstr("86401 is out of range"));
}

TEST(ConfigDataplaneTest, Ranges) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const Case cases[] = {
      {"burst_size: 0", "dataplane.burst_size: 0 is out of range; allowed: 1..256"},
      {"burst_size: 257", "dataplane.burst_size: 257 is out of range"},
      {"mbuf_cache: 513", "dataplane.mbuf_cache: 513 is out of range; allowed: 0..512"},
      {"mbufs: 1023", "dataplane.mbufs: 1023 is too few; allowed: 0 (automatic) or 1024.."},
      {"tx_drain_us: 0", "dataplane.tx_drain_us: 0 is out of range; allowed: 1..10000"},
      {"tx_drain_us: 10001", "dataplane.tx_drain_us: 10001 is out of range"},
      {"heartbeat_timeout_ms: 9",
       "dataplane.heartbeat_timeout_ms: 9 is out of range; allowed: 10..60000"},
      {"heartbeat_timeout_ms: 60001", "dataplane.heartbeat_timeout_ms: 60001 is out of range"},
      {"exception_ring_size: 1000",
       "dataplane.exception_ring_size: 1000 is not a power of two; allowed: a power of two "
       "64..65536"},
      {"exception_ring_size: 32", "dataplane.exception_ring_size: 32 is out of range"},
      {"command_ring_size: 131072", "dataplane.command_ring_size: 131072 is out of range"},
      {"command_ring_size: 3000", "dataplane.command_ring_size: 3000 is not a power of two"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ErrorOf(WithPorts(absl::StrCat("dataplane:\n  ", c.yaml, "\n"))),
                HasSubstr(c.error))
        << c.yaml;
  }
  EXPECT_TRUE(Parse(WithPorts("dataplane: {mbufs: 0, mbuf_cache: 0}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("dataplane: {mbufs: 1024, burst_size: 1}\n")).ok());
}

TEST(ConfigSrtpTest, EngineAndPath) {
  auto d = Parse(WithPorts(""));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->srtp.engine, "ipsec_mb");
  EXPECT_EQ(d->srtp.ipsec_mb_path, "direct");
  EXPECT_EQ(d->srtp.replay_window, 128u);
  auto c =
      Parse(WithPorts("srtp: {engine: openssl, ipsec_mb_path: cryptodev, replay_window: 256}\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->srtp.engine, "openssl");
  EXPECT_EQ(c->srtp.ipsec_mb_path, "cryptodev");
  EXPECT_EQ(c->srtp.replay_window, 256u);
  EXPECT_THAT(
      ErrorOf(WithPorts("srtp:\n  engine: nss\n")),
      HasSubstr(
          "t.yaml:6:11: srtp.engine: 'nss' is not an SRTP engine; allowed: ipsec_mb, openssl, "
          "libsrtp"));
  EXPECT_THAT(
      ErrorOf(WithPorts("srtp:\n  ipsec_mb_path: qat\n")),
      HasSubstr("t.yaml:6:18: srtp.ipsec_mb_path: 'qat' is not a path to intel-ipsec-mb; allowed: "
                "direct, cryptodev"));
  EXPECT_THAT(ErrorOf(WithPorts("srtp:\n  replay_window: 64\n")),
              HasSubstr("srtp.replay_window: 64 is out of range; allowed: 128..32768"));
}

// ---------------------------------------------------------------------------------------
// Listeners

TEST(ConfigListenTest, AddressesAndHostPorts) {
  auto c =
      Parse(WithPorts("ops: {listen: '::1'}\nng: {listen: '[::1]:22222'}\n"
                      "sip: {listen: '127.0.0.1:5071'}\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->ops.listen.is_v6());
  EXPECT_EQ(c->ng.listen.ToString(), "[::1]:22222");
  EXPECT_EQ(c->sip.listen.port, 5071);
  EXPECT_THAT(ErrorOf(WithPorts("ops: {listen: localhost}\n")),
              HasSubstr("ops.listen: 'localhost' is not an IP address"));
  EXPECT_THAT(ErrorOf(WithPorts("api: {listen: '[::1]'}\n")),
              HasSubstr("api.listen: '[::1]' is not an IP address"));
  EXPECT_THAT(ErrorOf(WithPorts("ng: {listen: 'localhost:22222'}\n")),
              HasSubstr("ng.listen: 'localhost:22222' is not an address and port; allowed: "
                        "IP:port or [IPv6]:port"));
  EXPECT_THAT(ErrorOf(WithPorts("ng: {listen: '::1:22222'}\n")),
              HasSubstr("is not an address and port"));
  EXPECT_THAT(ErrorOf(WithPorts("ng: {listen: '127.0.0.1:0'}\n")),
              HasSubstr("is not an address and port"));
  EXPECT_THAT(ErrorOf(WithPorts("sip: {listen: '127.0.0.1'}\n")),
              HasSubstr("sip.listen: '127.0.0.1' is not an address and port"));
  EXPECT_THAT(ErrorOf(WithPorts("ops: {port: 0}\n")),
              HasSubstr("ops.port: 0 is out of range; allowed: 1..65535"));
  EXPECT_THAT(ErrorOf(WithPorts("api: {port: 65536}\n")),
              HasSubstr("api.port: 65536 is out of range"));
}

TEST(ConfigListenTest, PortsDifferOnTheSameAddress) {
  EXPECT_EQ(ErrorOf(WithPorts("ops: {port: 8080}\n")),
            "t.yaml:5:13: ops.port: port 8080 on 127.0.0.1 is already taken by api.port on "
            "127.0.0.1; allowed: a port no other listener uses on the same address");
  EXPECT_THAT(ErrorOf(WithPorts("ng: {listen: '0.0.0.0:9091'}\n")),
              HasSubstr("ng.listen: port 9091 on 0.0.0.0 is already taken by ops.port"));
  EXPECT_THAT(ErrorOf(WithPorts("ops: {listen: '::', port: 22222}\n")),
              HasSubstr("t.yaml:5:27: ops.port: port 22222 on :: is already taken by ng.listen "
                        "on 127.0.0.1"));
  EXPECT_THAT(ErrorOf(WithPorts("sip: {enabled: true, listen: '127.0.0.1:8080', registrations: "
                                "[{registrar: 'sip:203.0.113.5', aor: 'sip:a@example.net'}]}\n")),
              HasSubstr("sip.listen: port 8080 on 127.0.0.1 is already taken by api.port"));
  // Different addresses, or the other listener switched off: fine.
  EXPECT_TRUE(Parse(WithPorts("ops: {listen: 127.0.0.2, port: 8080}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("ops: {port: 8080}\napi: {enabled: false}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("ops: {listen: '::1', port: 8080}\n")).ok());
}

TEST(ConfigListenTest, RtpRangeMustNotCoverListenersOnDataplaneAddresses) {
  EXPECT_EQ(ErrorOf(WithPorts("ng: {listen: '198.51.100.1:30000'}\n")),
            "t.yaml:5:14: ng.listen: port 30000 on dataplane address 198.51.100.1 is inside the "
            "RTP range 30000..39999; allowed: a port outside 30000..39999, or an address the "
            "dataplane does not own");
  EXPECT_THAT(ErrorOf(WithPorts("ops: {listen: 198.51.100.1, port: 39999}\n")),
              HasSubstr("ops.port: port 39999 on dataplane address 198.51.100.1"));
  // Same port on an address the dataplane does not own, or outside the range: fine.
  EXPECT_TRUE(Parse(WithPorts("ng: {listen: '127.0.0.1:30000'}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("ng: {listen: '198.51.100.1:22222'}\n")).ok());
}

TEST(ConfigListenTest, ApiOffLoopbackNeedsTokens) {
  EXPECT_THAT(ErrorOf(WithPorts("api: {listen: 203.0.113.5}\n")),
              HasSubstr("api.tokens_file: empty while api.listen 203.0.113.5 is not loopback"));
  EXPECT_TRUE(Parse(WithPorts("api: {listen: 203.0.113.5, tokens_file: /etc/t}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("api: {listen: 203.0.113.5, enabled: false}\n")).ok());
}

TEST(ConfigListenTest, TlsNeedsCertAndKey) {
  EXPECT_THAT(ErrorOf(WithPorts("api: {tls_cert_file: /c.pem}\n")),
              HasSubstr("api.tls_key_file: TLS needs both a certificate and a key"));
  EXPECT_THAT(ErrorOf(WithPorts("api: {tls_key_file: /k.pem}\n")),
              HasSubstr("api.tls_cert_file: TLS needs both"));
}

TEST(ConfigListenTest, NgAllowedSources) {
  auto c = Parse(WithPorts("ng: {allowed_sources: [203.0.113.0/24, 203.0.113.7]}\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ng.allowed_sources[1].ToString(), "203.0.113.7/32");
  EXPECT_THAT(ErrorOf(WithPorts("ng: {allowed_sources: [203.0.113.0/99]}\n")),
              HasSubstr("ng.allowed_sources[0]: '203.0.113.0/99' is not addr/len"));
  EXPECT_THAT(ErrorOf(WithPorts("ng: {allowed_sources: 203.0.113.0/24}\n")),
              HasSubstr("ng.allowed_sources: expected a list"));
}

// ---------------------------------------------------------------------------------------
// log, database, sip

TEST(ConfigLogTest, Ranges) {
  EXPECT_THAT(ErrorOf(WithPorts("log: {level: 0}\n")),
              HasSubstr("log.level: 0 is out of range; allowed: 1 (error), 2 (warning), 3 "
                        "(info), 4 (debug), 5 (trace)"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {level: 6}\n")), HasSubstr("log.level: 6 is out of range"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {format: xml}\n")),
              HasSubstr("log.format: 'xml' is not a log format; allowed: text, json"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {max_size_mb: 0}\n")),
              HasSubstr("log.max_size_mb: 0 is out of range; allowed: 1..10240"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {max_size_mb: 10241}\n")),
              HasSubstr("10241 is out of range"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {max_files: 0}\n")),
              HasSubstr("log.max_files: 0 is out of range; allowed: 1..100"));
  EXPECT_THAT(ErrorOf(WithPorts("log: {max_files: 101}\n")), HasSubstr("101 is out of range"));
}

TEST(ConfigDatabaseTest, EnabledNeedsNameAndUser) {
  EXPECT_THAT(ErrorOf(WithPorts("database: {enabled: true, name: ''}\n")),
              HasSubstr("database.name: empty while database.enabled"));
  EXPECT_THAT(ErrorOf(WithPorts("database: {enabled: true, user: }\n")),
              HasSubstr("database.user: empty while database.enabled"));
  EXPECT_THAT(ErrorOf(WithPorts("database: {enabled: true, host: '', socket: ''}\n")),
              HasSubstr("database.host: neither host nor socket is set"));
  // Disabled: nothing is required.
  EXPECT_TRUE(Parse(WithPorts("database: {enabled: false, name: '', user: ''}\n")).ok());
  EXPECT_TRUE(Parse(WithPorts("database: {enabled: true}\n")).ok());
  EXPECT_THAT(ErrorOf(WithPorts("database: {write_queue_limit: 0}\n")),
              HasSubstr("database.write_queue_limit: 0 is out of range"));
}

std::string Sip(const std::string& registration) {
  return WithPorts(
      absl::StrCat("sip:\n  enabled: true\n  registrations:\n    - ", registration, "\n"));
}

TEST(ConfigSipTest, Registrations) {
  auto c = Parse(Sip("{registrar: 'sip:203.0.113.130', aor: 'sip:edge1@example.net'}"));
  ASSERT_TRUE(c.ok()) << c.status();
  const SipRegistration& r = c->sip.registrations[0];
  EXPECT_EQ(r.user, "edge1") << "user defaults to the AOR's user part";
  EXPECT_EQ(r.expires_s, 3600u);
  EXPECT_TRUE(r.password.empty());

  EXPECT_THAT(ErrorOf(Sip("{registrar: 'http://203.0.113.130', aor: 'sip:a@example.net'}")),
              HasSubstr("sip.registrations[0].registrar: 'http://203.0.113.130' is not a SIP "
                        "URI; allowed: sip:host[:port] or sips:host[:port]"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:', aor: 'sip:a@example.net'}")),
              HasSubstr("'sip:' is not a SIP URI"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'sip:example.net'}")),
              HasSubstr("sip.registrations[0].aor: 'sip:example.net' is not sip:user@domain"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'a@example.net'}")),
              HasSubstr("is not sip:user@domain"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'sip:a@'}")),
              HasSubstr("is not sip:user@domain"));
  EXPECT_THAT(
      ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'sip:a@example.net', expires_s: 59}")),
      HasSubstr("sip.registrations[0].expires_s: 59 is out of range; allowed: 60..86400"));
  EXPECT_THAT(
      ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'sip:a@example.net', expires_s: 86401}")),
      HasSubstr("86401 is out of range"));
  EXPECT_THAT(ErrorOf(Sip("{aor: 'sip:a@example.net'}")),
              HasSubstr("sip.registrations[0].registrar: required key is missing"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:r.example.net'}")),
              HasSubstr("sip.registrations[0].aor: required key is missing"));
}

TEST(ConfigSipTest, EnabledNeedsARegistration) {
  EXPECT_THAT(ErrorOf(WithPorts("sip: {enabled: true}\n")),
              HasSubstr("sip.registrations: sip.enabled is true but there is nothing to "
                        "register"));
  EXPECT_TRUE(Parse(WithPorts("sip: {enabled: false}\n")).ok());
}

// ---------------------------------------------------------------------------------------
// Secrets

TEST(ConfigSecretTest, InlineAndFromFile) {
  TempDir dir;
  const std::string file = dir.Write("db_password", "from-file\n");
  auto c =
      Parse(WithPorts(absl::StrCat("database: {password_file: '", file, "', key: inline-key}\n")));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->database.password.value, "from-file") << "trailing newline is stripped";
  EXPECT_EQ(c->database.password.source, "file:" + file);
  EXPECT_EQ(c->database.key.value, "inline-key");
  EXPECT_EQ(c->database.key.source, "inline");

  const std::string crlf = dir.Write("key", "k\r\n");
  c = Parse(WithPorts(absl::StrCat("database: {key_file: '", crlf, "'}\n")));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->database.key.value, "k");

  c =
      Parse(Sip(absl::StrCat("{registrar: 'sip:r.example.net', aor: 'sip:a@example.net', "
                             "password_file: '",
                             file, "'}")));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->sip.registrations[0].password.value, "from-file");
}

TEST(ConfigSecretTest, BothInlineAndFileIsAnError) {
  EXPECT_THAT(ErrorOf(WithPorts("database: {password: a, password_file: /x}\n")),
              HasSubstr("database.password_file: both 'password' and 'password_file' are set"));
  EXPECT_THAT(ErrorOf(WithPorts("database: {key: a, key_file: /x}\n")),
              HasSubstr("database.key_file: both 'key' and 'key_file' are set"));
  EXPECT_THAT(ErrorOf(Sip("{registrar: 'sip:r.example.net', aor: 'sip:a@example.net', "
                          "password: a, password_file: /x}")),
              HasSubstr("sip.registrations[0].password_file: both"));
}

TEST(ConfigSecretTest, UnreadableOrEmptyFileNamesThePath) {
  TempDir dir;
  const std::string missing = dir.path() + "/nope";
  EXPECT_EQ(ErrorOf(WithPorts(absl::StrCat("database:\n  password_file: ", missing, "\n"))),
            absl::StrCat("t.yaml:6:18: database.password_file: cannot read ", missing,
                         ": No such file or directory; allowed: a path to a readable file "
                         "holding the secret"));
  EXPECT_THAT(ErrorOf(WithPorts(absl::StrCat("database: {key_file: '", dir.path(), "'}\n"))),
              HasSubstr(absl::StrCat("cannot read ", dir.path(), ": Is a directory")));
  const std::string empty = dir.Write("empty", "\n");
  EXPECT_THAT(ErrorOf(WithPorts(absl::StrCat("database: {password_file: '", empty, "'}\n"))),
              HasSubstr(absl::StrCat("database.password_file: ", empty, " is empty")));
  EXPECT_THAT(ErrorOf(WithPorts("database: {password_file: ''}\n")),
              HasSubstr("database.password_file: empty path"));
  EXPECT_THAT(ErrorOf(WithPorts("database: {password_file: \"/etc/passwd\\0x\"}\n")),
              HasSubstr("database.password_file: cannot read /etc/passwd\\x00x: path contains "
                        "a NUL byte"));
}

TEST(ConfigSecretTest, RedactedPlaceholderIsRefused) {
  EXPECT_THAT(ErrorOf(WithPorts("database: {password: <redacted>}\n")),
              HasSubstr("database.password: '<redacted>' is the placeholder printed for a "
                        "hidden secret"));
}

// ---------------------------------------------------------------------------------------
// Environment

TEST(ConfigEnvTest, LogLevelAndMetricsPort) {
  auto c = Parse(kPorts, {{"KARL_LOG_LEVEL", "4"},
                          {"KARL_METRICS_PORT", "9200"},
                          {"KARL_CONFIG_PATH", "/elsewhere.yaml"},
                          {"HOME", "/root"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log.level, 4);
  EXPECT_EQ(c->ops.port, 9200);
  EXPECT_EQ(c->overrides, (std::vector<std::string>{"KARL_LOG_LEVEL=4", "KARL_METRICS_PORT=9200"}));
}

TEST(ConfigEnvTest, EnvironmentWinsOverTheFile) {
  auto c = Parse(WithPorts("log: {level: 2}\nops: {port: 9100}\n"),
                 {{"KARL_LOG_LEVEL", "5"}, {"KARL_METRICS_PORT", "9300"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log.level, 5);
  EXPECT_EQ(c->ops.port, 9300);
}

TEST(ConfigEnvTest, InvalidValuesNameTheVariable) {
  EXPECT_EQ(ErrorOf(kPorts, {{"KARL_LOG_LEVEL", "9"}}),
            "KARL_LOG_LEVEL=9: must be 1..5 (1 error, 2 warning, 3 info, 4 debug, 5 trace)");
  EXPECT_THAT(ErrorOf(kPorts, {{"KARL_LOG_LEVEL", "debug"}}),
              HasSubstr("KARL_LOG_LEVEL=debug: must be 1..5"));
  EXPECT_THAT(ErrorOf(kPorts, {{"KARL_METRICS_PORT", "0"}}),
              HasSubstr("KARL_METRICS_PORT=0: must be 1..65535"));
  EXPECT_THAT(ErrorOf(kPorts, {{"KARL_METRICS_PORT", "70000"}}),
              HasSubstr("KARL_METRICS_PORT=70000: must be 1..65535"));
}

TEST(ConfigEnvTest, OverrideThatClashesIsReportedAsTheVariable) {
  EXPECT_EQ(ErrorOf(kPorts, {{"KARL_METRICS_PORT", "8080"}}),
            "KARL_METRICS_PORT=8080: ops.port: port 8080 on 127.0.0.1 is already taken by "
            "api.port on 127.0.0.1; allowed: a port no other listener uses on the same address");
  EXPECT_THAT(
      ErrorOf(WithPorts("api: {port: 8081}\nops: {port: 8080}\n"), {{"KARL_METRICS_PORT", "8081"}}),
      HasSubstr("api.port: port 8081"));
  EXPECT_THAT(ErrorOf(WithPorts("ops: {listen: 198.51.100.1}\n"), {{"KARL_METRICS_PORT", "30000"}}),
              HasSubstr("KARL_METRICS_PORT=30000: ops.port: port 30000 on dataplane address"));
}

TEST(ConfigEnvTest, EmptyVariablesAreUnset) {
  auto c =
      Parse(kPorts, {{"KARL_LOG_LEVEL", ""}, {"KARL_METRICS_PORT", " "}, {"KARL_DB_PASSWORD", ""}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->log.level, 3);
  EXPECT_TRUE(c->database.password.empty());
  EXPECT_TRUE(c->overrides.empty());
}

TEST(ConfigEnvTest, SecretsFromEnvironmentAreNotRecordedInClear) {
  auto c = Parse(WithPorts("database: {password: file-pw}\n"),
                 {{"KARL_DB_PASSWORD", "env-pw"}, {"KARL_DB_KEY", "env-key"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->database.password.value, "env-pw");
  EXPECT_EQ(c->database.password.source, "env:KARL_DB_PASSWORD");
  EXPECT_EQ(c->database.key.value, "env-key");
  EXPECT_EQ(c->database.key.source, "env:KARL_DB_KEY");
  EXPECT_EQ(c->overrides,
            (std::vector<std::string>{"KARL_DB_PASSWORD=<redacted>", "KARL_DB_KEY=<redacted>"}));
}

TEST(ConfigEnvTest, CurrentEnvironmentReadsTheProcessEnvironment) {
  ASSERT_EQ(setenv("KARL_CONFIG_TEST_VAR", "a=b", 1), 0);
  const Environment env = CurrentEnvironment();
  unsetenv("KARL_CONFIG_TEST_VAR");
  auto it = env.find("KARL_CONFIG_TEST_VAR");
  ASSERT_NE(it, env.end());
  EXPECT_EQ(it->second, "a=b") << "only the first '=' separates name and value";
}

// ---------------------------------------------------------------------------------------
// Files

TEST(ConfigFileTest, LoadsAndRecordsPathAndHash) {
  TempDir dir;
  const std::string path = dir.Write("karl.yaml", kPorts);
  auto c = LoadConfigFile(path, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->path, path);
  EXPECT_EQ(c->sha256, Parse(kPorts)->sha256);
  EXPECT_EQ(c->sha256.size(), 64u);
}

TEST(ConfigFileTest, ErrorsCarryTheFilePath) {
  TempDir dir;
  const std::string path = dir.Write("bad.yaml", WithPorts("rtp: {port_min: 3}\n"));
  auto c = LoadConfigFile(path, {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr(path + ":5:17: rtp.port_min:"));
}

TEST(ConfigFileTest, MissingFileIsNotFound) {
  auto c = LoadConfigFile("/nonexistent/karl.yaml", {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.status().message(), "config file /nonexistent/karl.yaml: No such file or directory");
}

TEST(ConfigFileTest, DirectoryIsAnError) {
  TempDir dir;
  auto c = LoadConfigFile(dir.path(), {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), absl::StrCat("config file ", dir.path(), ": Is a directory"));
}

// Exit code 0 when loading `path` fails with PermissionDenied naming the path.
[[noreturn]] void ExitWithPermissionCheck(const std::string& path) {
  auto c = LoadConfigFile(path, {});
  const bool ok = c.status().code() == absl::StatusCode::kPermissionDenied &&
                  absl::StrContains(c.status().message(), path);
  std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
  std::exit(ok ? 0 : 1);
}

TEST(ConfigFileTest, UnreadableFileIsPermissionDenied) {
  TempDir dir;
  const std::string path = dir.Write("secret.yaml", kPorts);
  ASSERT_EQ(chmod(path.c_str(), 0), 0);
  if (geteuid() != 0) {
    EXPECT_EXIT(ExitWithPermissionCheck(path), testing::ExitedWithCode(0), "");
    return;
  }
  // Root reads any file: drop to nobody in the child so the check still means something.
  EXPECT_EXIT(
      {
        if (setgid(65534) != 0 || setuid(65534) != 0) std::exit(2);
        ExitWithPermissionCheck(path);
      },
      testing::ExitedWithCode(0), "PERMISSION_DENIED");
}

// ---------------------------------------------------------------------------------------
// Rendering

TEST(ConfigRenderTest, RoundTripsEveryValue) {
  TempDir dir;
  const std::string pw = dir.Write("pw", "hunter2\n");
  const std::string text = absl::StrCat(R"(
ports:
  - name: a
    device: "0000:3b:00.0"
    addresses: [203.0.113.10/26, "2001:db8:1::10/64"]
    gateway_v4: 203.0.113.1
    gateway_v6: 2001:db8:1::1
    next_hop_mac: "02:00:00:00:00:01"
    vlan: 7
    mtu: 1280
    rx_descriptors: 256
    tx_descriptors: 512
  - {name: "true", device: "~", addresses: [203.0.113.70/26]}
rtp: {port_min: 20000, port_max: 20001, media_timeout_s: 5}
dataplane: {burst_size: 8, mbufs: 4096, rss: false, command_ring_size: 128}
ops: {listen: "::", port: 9999}
api: {listen: 203.0.113.200, tokens_file: "/etc/karl/tokens with space", port: 1234}
ng: {listen: "[2001:db8::9]:22222", allowed_sources: [203.0.113.0/24]}
log: {level: 1, format: json, file: "/var/log/k: \"x\".log"}
database: {enabled: true, socket: /run/m.sock, password_file: )",
                                        pw, R"(}
sip:
  enabled: true
  registrations:
    - {registrar: "sip:203.0.113.130", aor: "sip:e@example.net", password_file: )",
                                        pw, R"(}
)");
  auto first = Parse(text);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string rendered = RenderConfig(*first);
  auto second = ParseConfig(rendered, "rendered", {});
  ASSERT_TRUE(second.ok()) << second.status() << "\n" << rendered;
  ExpectSameConfig(*first, *second);
  EXPECT_THAT(rendered, HasSubstr(absl::StrCat("password_file: \"", pw, "\"")));
  EXPECT_THAT(rendered, Not(HasSubstr("hunter2")));
}

TEST(ConfigRenderTest, DefaultsAreFilledIn) {
  auto c = Parse(kPorts);
  ASSERT_TRUE(c.ok());
  const std::string rendered = RenderConfig(*c);
  for (const char* line :
       {"port_min: 30000", "media_timeout_s: 60", "heartbeat_timeout_ms: 1000", "rss: true",
        "listen: 127.0.0.1", "port: 9091", "port: 8080", "listen: \"127.0.0.1:22222\"", "level: 3",
        "max_files: 5", "write_queue_limit: 100000", "listen: \"127.0.0.1:5070\"", "gateway_v4: ~",
        "next_hop_mac: ~", "registrations: []", "allowed_sources: []"}) {
    EXPECT_THAT(rendered, HasSubstr(line));
  }
  EXPECT_THAT(rendered, HasSubstr(c->sha256)) << "the header names the file's hash";
}

TEST(ConfigRenderTest, SecretsAreNeverPrinted) {
  auto c = Parse(WithPorts("database: {password: 'pw-inline-1'}\n"
                           "sip:\n  enabled: true\n  registrations:\n"
                           "    - {registrar: 'sip:r.example.net', aor: 'sip:a@example.net', "
                           "password: 'pw-sip-2'}\n"),
                 {{"KARL_DB_KEY", "key-env-3"}});
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string rendered = RenderConfig(*c);
  for (const char* secret : {"pw-inline-1", "pw-sip-2", "key-env-3"}) {
    EXPECT_THAT(rendered, Not(HasSubstr(secret))) << rendered;
  }
  EXPECT_THAT(rendered, HasSubstr("password: <redacted>  # from inline"));
  EXPECT_THAT(rendered, HasSubstr("key: <redacted>  # from env:KARL_DB_KEY"));
  EXPECT_THAT(rendered, HasSubstr("KARL_DB_KEY=<redacted>"));
  // Pasting the rendered text back must not make "<redacted>" a password...
  auto again = ParseConfig(rendered, "rendered", {{"KARL_DB_KEY", "key-env-3"}});
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(again.status().message(),
              HasSubstr("database.password: '<redacted>' is the placeholder printed"));
  EXPECT_THAT(again.status().message(), Not(HasSubstr("database.key:")))
      << "the environment supplies the key, as it did when the text was rendered";
}

TEST(ConfigRenderTest, RoundTripWithSecretsRemoved) {
  auto c = Parse(WithPorts("database: {password: 'pw', key: 'k'}\n"));
  ASSERT_TRUE(c.ok());
  Config without = *c;
  without.database.password = {};
  without.database.key = {};
  auto again = ParseConfig(RenderConfig(without), "rendered", {});
  ASSERT_TRUE(again.ok()) << again.status();
  ExpectSameConfig(without, *again);
}

// ---------------------------------------------------------------------------------------
// The shipped files

const std::string kSourceDir = KARL_SOURCE_DIR;

TEST(ConfigShippedTest, DefaultFileParsesAndIsTheLaptopSetup) {
  const std::string path = kSourceDir + "/config/karl.yaml";
  auto c = LoadConfigFile(path, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->ports.size(), 1u);
  EXPECT_EQ(c->ports[0].name, "ext0");
  EXPECT_EQ(c->ports[0].device, "net_tap0");
  EXPECT_EQ(c->ports[0].addresses, (std::vector<IpPrefix>{*IpPrefix::Parse("198.51.100.1/24")}));
  EXPECT_FALSE(c->ports[0].gateway_v4.has_value());
  EXPECT_FALSE(c->database.enabled);
  EXPECT_FALSE(c->sip.enabled);
  EXPECT_EQ(c->ops.listen.ToString(), "127.0.0.1");
  EXPECT_EQ(c->ops.port, 9091);
  EXPECT_EQ(c->api.listen.ToString(), "127.0.0.1");
  EXPECT_EQ(c->api.port, 8080);
  EXPECT_EQ(c->ng.listen.ToString(), "127.0.0.1:22222");
}

TEST(ConfigShippedTest, DefaultFileDocumentsTheCodeDefaults) {
  auto c = LoadConfigFile(kSourceDir + "/config/karl.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  // Everything but the port must equal what the code uses when a key is left out.
  Config defaults;
  defaults.ports = c->ports;
  PortConfig port_defaults;
  port_defaults.name = c->ports[0].name;
  port_defaults.device = c->ports[0].device;
  port_defaults.addresses = c->ports[0].addresses;
  defaults.ports = {port_defaults};
  ExpectSameConfig(*c, defaults);
}

TEST(ConfigShippedTest, DefaultFileMentionsEveryKey) {
  const std::string text = ReadFile(kSourceDir + "/config/karl.yaml");
  for (const char* key : {"ports:",
                          "name:",
                          "device:",
                          "addresses:",
                          "gateway_v4:",
                          "gateway_v6:",
                          "next_hop_mac:",
                          "vlan:",
                          "mtu:",
                          "rx_descriptors:",
                          "tx_descriptors:",
                          "rtp:",
                          "port_min:",
                          "port_max:",
                          "media_timeout_s:",
                          "dataplane:",
                          "burst_size:",
                          "mbufs:",
                          "mbuf_cache:",
                          "tx_drain_us:",
                          "heartbeat_timeout_ms:",
                          "exception_ring_size:",
                          "command_ring_size:",
                          "rss:",
                          "ops:",
                          "listen:",
                          "port:",
                          "api:",
                          "enabled:",
                          "tokens_file:",
                          "tls_cert_file:",
                          "tls_key_file:",
                          "ng:",
                          "allowed_sources:",
                          "log:",
                          "level:",
                          "format:",
                          "file:",
                          "max_size_mb:",
                          "max_files:",
                          "database:",
                          "host:",
                          "socket:",
                          "user:",
                          "password:",
                          "password_file:",
                          "key:",
                          "key_file:",
                          "write_queue_limit:",
                          "sip:",
                          "registrations:",
                          "registrar:",
                          "aor:",
                          "expires_s:",
                          "KARL_LOG_LEVEL",
                          "KARL_METRICS_PORT",
                          "KARL_DB_PASSWORD",
                          "KARL_DB_KEY"}) {
    EXPECT_THAT(text, HasSubstr(key));
  }
}

TEST(ConfigShippedTest, ProductionExampleNeedsItsSecretFiles) {
  auto c = LoadConfigFile(kSourceDir + "/config/karl.production.example.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("database.password_file: cannot read /etc/karl/secrets/db_password: "));
}

TEST(ConfigShippedTest, ProductionExampleIsValidWithItsSecretFiles) {
  TempDir dir;
  std::string text = ReadFile(kSourceDir + "/config/karl.production.example.yaml");
  ASSERT_FALSE(text.empty());
  dir.Write("db_password", "db-pw\n");
  dir.Write("db_key", "db-key\n");
  dir.Write("sip_password", "sip-pw\n");
  text = absl::StrReplaceAll(text, {{"/etc/karl/secrets", dir.path()}});
  auto c = ParseConfig(text, "karl.production.example.yaml", {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->ports.size(), 2u);
  EXPECT_EQ(c->ports[0].device, "0000:3b:00.0");
  EXPECT_EQ(c->ports[1].device, "0000:3b:00.1");
  EXPECT_TRUE(c->ports[0].gateway_v4.has_value());
  EXPECT_TRUE(c->ports[1].next_hop_mac.has_value());
  EXPECT_TRUE(c->database.enabled);
  EXPECT_EQ(c->database.password.value, "db-pw");
  EXPECT_TRUE(c->sip.enabled);
  EXPECT_EQ(c->sip.registrations[0].password.value, "sip-pw");
  EXPECT_EQ(c->log.format, "json");
  EXPECT_FALSE(c->log.file.empty());
  // Only documentation ranges (RFC 5737 / RFC 3849) on a public example.
  const IpPrefix v4 = *IpPrefix::Parse("203.0.113.0/24");
  const IpPrefix v6 = *IpPrefix::Parse("2001:db8::/32");
  auto documentation = [&](const IpAddress& a) { return v4.Contains(a) || v6.Contains(a); };
  for (const PortConfig& p : c->ports) {
    for (const IpPrefix& a : p.addresses) EXPECT_TRUE(documentation(a.address)) << a.ToString();
    if (p.gateway_v4) {
      EXPECT_TRUE(documentation(*p.gateway_v4));
    }
    if (p.gateway_v6) {
      EXPECT_TRUE(documentation(*p.gateway_v6));
    }
  }
  EXPECT_TRUE(documentation(c->ops.listen));
  EXPECT_TRUE(documentation(c->api.listen));
  EXPECT_TRUE(documentation(c->ng.listen.address));
  EXPECT_TRUE(documentation(c->sip.listen.address));
  for (const IpPrefix& p : c->ng.allowed_sources) EXPECT_TRUE(documentation(p.address));
}

}  // namespace
}  // namespace karl
