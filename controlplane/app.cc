#include "controlplane/app.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_version.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/config.h"
#include "controlplane/control_queue.h"
#include "controlplane/logging.h"
#include "controlplane/ng_commands.h"
#include "controlplane/ng_server.h"
#include "controlplane/ops_server.h"
#include "controlplane/rest_api.h"
#include "controlplane/session_manager.h"
#include "controlplane/status.h"
#include "dataplane/dataplane.h"
#include "spdlog/spdlog.h"

namespace karl {

extern const char kEmbeddedConfig[];
extern const unsigned long kEmbeddedConfig_size;

namespace {

constexpr char kUsage[] =
    "usage: karl-dp [EAL options] -- [Karl options]\n"
    "\n"
    "Karl options:\n"
    "  --config FILE     configuration file (default: $KARL_CONFIG_PATH, else the\n"
    "                    built-in default, a copy of config/karl.yaml)\n"
    "  --check-config    validate the configuration and exit 0 (valid) or 1\n"
    "  --print           with --check-config: print the effective configuration,\n"
    "                    defaults filled in and secrets redacted\n"
    "  --version         print the version and exit\n"
    "  --help            this text\n"
    "\n"
    "Environment: KARL_CONFIG_PATH, KARL_LOG_LEVEL (1 error .. 5 trace),\n"
    "KARL_METRICS_PORT (ops HTTP port, default 9091), KARL_DB_PASSWORD, KARL_DB_KEY.\n"
    "\n"
    "Example: karl-dp -l 2-9 -- --config /etc/karl/karl.yaml\n"
    "Laptop:  karl-dp -l 0-1 --no-huge -m 512 --no-pci --vdev net_tap0,iface=karl0 -- \\\n"
    "           --config config/karl.yaml\n";

std::atomic<int> g_signals{0};
std::atomic<bool> g_reload_requested{false};

void OnTerminate(int) {
  if (g_signals.fetch_add(1) >= 1) _exit(1);  // second signal: leave at once
}
void OnHangup(int) { g_reload_requested.store(true); }

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnTerminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = OnHangup;
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

struct KarlArgs {
  std::string config_path;
  bool check_config = false;
  bool print = false;
  bool version = false;
  bool help = false;
};

int Fail(const std::string& message) {
  FlushLogs();  // what was logged before the error comes first
  std::fprintf(stderr, "karl-dp: error: %s\n", message.c_str());
  return 1;
}

bool IsKarlOption(const std::string& a) {
  return a == "--config" || a.rfind("--config=", 0) == 0 || a == "--check-config" ||
         a == "--print" || a == "--version" || a == "--help" || a == "-h";
}

absl::Status ParseKarlArgs(const std::vector<std::string>& args, KarlArgs* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--config") {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--config needs a FILE");
      out->config_path = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      out->config_path = a.substr(9);
    } else if (a == "--check-config") {
      out->check_config = true;
    } else if (a == "--print") {
      out->print = true;
    } else if (a == "--version") {
      out->version = true;
    } else if (a == "--help" || a == "-h") {
      out->help = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option '", a, "' after --; see karl-dp --help"));
    }
  }
  if (out->print && !out->check_config) {
    return absl::InvalidArgumentError("--print goes with --check-config");
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> LoadConfig(const KarlArgs& args, const Environment& env) {
  std::string path = args.config_path;
  if (path.empty()) {
    if (auto it = env.find("KARL_CONFIG_PATH"); it != env.end() && !it->second.empty()) {
      path = it->second;
    }
  }
  if (path.empty()) {
    return ParseConfig(std::string(kEmbeddedConfig, kEmbeddedConfig_size),
                       "<built-in config/karl.yaml>", env);
  }
  return LoadConfigFile(path, env);
}

dp::Settings ToDataplaneSettings(const Config& c) {
  dp::Settings s;
  for (const PortConfig& p : c.ports) {
    dp::PortSettings ps;
    ps.name = p.name;
    ps.device = p.device;
    ps.addresses = p.addresses;
    ps.vlan = p.vlan;
    ps.mtu = p.mtu;
    ps.rx_descriptors = p.rx_descriptors;
    ps.tx_descriptors = p.tx_descriptors;
    s.ports.push_back(std::move(ps));
  }
  s.rtp_port_min = c.rtp.port_min;
  s.rtp_port_max = c.rtp.port_max;
  s.burst_size = c.dataplane.burst_size;
  s.mbufs = c.dataplane.mbufs;
  s.mbuf_cache = c.dataplane.mbuf_cache;
  s.tx_drain_us = c.dataplane.tx_drain_us;
  s.exception_ring_size = c.dataplane.exception_ring_size;
  s.rss = c.dataplane.rss;
  s.max_streams = c.dataplane.max_streams;
  s.verify_udp_checksum = c.dataplane.verify_udp_checksum;
  s.tx_checksum_offload = c.dataplane.tx_checksum_offload;
  dp::ParseSrtpEngineKind(c.srtp.engine, &s.srtp_engine);        // validated by the config parser
  dp::ParseIpsecMbPath(c.srtp.ipsec_mb_path, &s.ipsec_mb_path);  // likewise
  return s;
}

// Removes the EAL runtime directory this primary process created (config, memseg
// fbarrays, the mp socket), so an exit leaves nothing behind in /var/run/dpdk.
void RemoveRuntimeDir(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::filesystem::remove(entry.path(), ec);
  }
  std::filesystem::remove(dir, ec);
}

// Everything the running process owns. Thread: main (control plane), except
// Snapshot(), which ops HTTP threads call.
class Karl {
 public:
  explicit Karl(Config config) : config_(std::move(config)) {}

  absl::Status Start() {
    if (absl::Status st = dataplane_.Init(ToDataplaneSettings(config_)); !st.ok()) return st;
    sessions_ = std::make_unique<SessionManager>(config_, &dataplane_);
    dataplane_.SetStunHandler(
        [this](const dp::StunRequest& request) { return sessions_->AnswerStun(request); });
    session_service_ = std::make_unique<SessionServiceQueue>(sessions_.get(), &queue_);
    ops_ = std::make_unique<OpsServer>([this] { return Snapshot(); });
    // ng runs on this (the control-plane) thread: no queue hop per request (D19).
    direct_sessions_ = std::make_unique<SessionServiceDirect>(sessions_.get());
    ng_commands_ = std::make_unique<NgCommands>(config_, direct_sessions_.get(),
                                                [this] { return NgTotalsNow(); });
    ng_ = std::make_unique<NgServer>([this](const BencodeValue& request, const NgRequestContext&) {
      return ng_commands_->Handle(request);
    });
    if (absl::Status st = ng_->Start(config_.ng); !st.ok()) return st;
    ops_->AddCollectable(ng_->metrics());
    if (absl::Status st = ops_->Start(config_.ops.listen, config_.ops.port); !st.ok()) return st;
    rest_ = std::make_unique<RestApi>(session_service_.get(), config_.api);
    if (absl::Status st = rest_->Start(); !st.ok()) return st;
    if (absl::Status st = dataplane_.Start(); !st.ok()) return st;
    RefreshPorts();
    started_at_ = std::chrono::steady_clock::now();
    if (config_.ng.enabled) {
      spdlog::info("ng protocol on udp {}:{}", config_.ng.listen.address.ToString(), ng_->port());
    }
    spdlog::info(
        "karl-dp {} running: {} worker(s), {} port(s); ops HTTP on http://{}:{} "
        "(/health /ready /status /metrics)",
        KARL_VERSION, dataplane_.worker_count(), dataplane_.port_count(),
        config_.ops.listen.ToString(), ops_->port());
    for (size_t i = 0; i < dataplane_.port_count(); ++i) {
      const dp::PortRuntime& p = dataplane_.port(i);
      std::string addrs;
      for (const IpPrefix& a : p.settings.addresses) absl::StrAppend(&addrs, " ", a.ToString());
      const char* tx_offload = p.tx_udp_cksum_offload ? (p.tx_ip_cksum_offload ? "ipv4+udp" : "udp")
                                                      : (p.tx_ip_cksum_offload ? "ipv4" : "none");
      spdlog::info("port {} ({}, dpdk port {}) mac {} addresses{}; tx checksum offload: {}",
                   p.settings.name, p.settings.device, p.port_id, p.mac.ToString(), addrs,
                   tx_offload);
    }
    return absl::OkStatus();
  }

  // The control-plane loop: exceptions, port and heartbeat watch, signals.
  void Run() {
    auto last_refresh = std::chrono::steady_clock::now();
    ready_.store(true);
    while (g_signals.load() == 0) {
      unsigned handled = dataplane_.ServiceExceptions(256);
      handled += static_cast<unsigned>(queue_.RunPending());
      sessions_->Tick();
      sessions_active_.store(sessions_->active_sessions());
      sessions_created_.store(sessions_->sessions_created());
      sessions_timed_out_.store(sessions_->sessions_ended_timeout());
      free_port_pairs_.store(sessions_->free_port_pairs());
      unresolved_sent_.store(sessions_->unresolved_sent());
      unresolved_dropped_.store(sessions_->unresolved_dropped());
      ice_answered_.store(sessions_->stun_answered());
      ice_rejected_.store(sessions_->stun_rejected());
      ice_nominations_.store(sessions_->ice_nominations());
      const auto now = std::chrono::steady_clock::now();
      if (now - last_refresh >= std::chrono::milliseconds(200)) {
        RefreshPorts();
        LogHealthChanges();
        last_refresh = now;
      }
      if (g_reload_requested.exchange(false)) {
        spdlog::warn(
            "SIGHUP received: live configuration reload is not implemented yet; "
            "restart karl-dp to apply a changed configuration");
      }
      handled += static_cast<unsigned>(ng_->Poll(std::chrono::microseconds(0)));
      // Idle: write out the log lines gathered while busy (D23), then wait in poll(2) on
      // the ng socket, so an ng request is served at once.
      if (handled == 0) {
        FlushLogs();
        ng_->Poll(std::chrono::microseconds(200));
      }
    }
    spdlog::info("signal received: shutting down");
  }

  void Shutdown() {
    ready_.store(false);
    if (rest_) rest_->Stop();
    if (ops_) ops_->Stop();
    if (sessions_) sessions_->DropHeldPackets();  // their mbufs belong to the dataplane's pool
    dataplane_.Close();
  }

  // Totals for the ng `statistics` command. Control-plane thread.
  NgTotals NgTotalsNow() const {
    const StatusSnapshot s = Snapshot();
    NgTotals t;
    t.uptime_s = s.uptime_s;
    t.sessions_active = sessions_->active_sessions();
    t.sessions_created = sessions_->sessions_created();
    t.sessions_timed_out = sessions_->sessions_ended_timeout();
    for (const WorkerStatus& w : s.workers) {
      t.relayed_packets += w.tx_packets;
      t.relayed_bytes += w.tx_bytes;
      for (uint64_t d : w.drops) t.relay_errors += d;
    }
    return t;
  }

  StatusSnapshot Snapshot() const {
    StatusSnapshot s;
    s.version = KARL_VERSION;
    s.uptime_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    s.config_path = config_.path.empty() ? "<built-in config/karl.yaml>" : config_.path;
    s.config_sha256 = config_.sha256;
    {
      std::lock_guard<std::mutex> lock(ports_mu_);
      s.ports = ports_;
    }
    const uint64_t now = rte_rdtsc();
    const double tsc_per_ms = static_cast<double>(rte_get_tsc_hz()) / 1000.0;
    for (unsigned i = 0; i < dataplane_.worker_count(); ++i) {
      const dp::WorkerState& w = dataplane_.worker(i);
      WorkerStatus ws;
      ws.index = w.index;
      ws.lcore = w.lcore;
      const uint64_t beat = w.heartbeat.tsc.load(std::memory_order_relaxed);
      ws.heartbeat_age_ms =
          beat == 0 ? -1 : static_cast<double>(now - std::min(now, beat)) / tsc_per_ms;
      ws.stuck = beat == 0 || ws.heartbeat_age_ms > config_.dataplane.heartbeat_timeout_ms;
      const WorkerCounters& c = w.counters;
      ws.rx_packets = c.rx_packets.Read();
      ws.rx_bytes = c.rx_bytes.Read();
      ws.tx_packets = c.tx_packets.Read();
      ws.tx_bytes = c.tx_bytes.Read();
      ws.exceptions = c.exceptions.Read();
      ws.udp_packets = c.udp_packets.Read();
      ws.loops = c.loops.Read();
      ws.busy_loops = c.busy_loops.Read();
      ws.handoffs = c.handoffs.Read();
      ws.busy_s = static_cast<double>(c.busy_tsc.Read()) / static_cast<double>(rte_get_tsc_hz());
      for (size_t r = 0; r < kDropReasonCount; ++r) ws.drops[r] = c.drops[r].Read();
      if (ws.stuck) {
        s.problems.push_back(absl::StrCat("worker ", ws.index, " (lcore ", ws.lcore,
                                          ") heartbeat is ",
                                          static_cast<int64_t>(ws.heartbeat_age_ms), " ms old"));
      }
      s.workers.push_back(ws);
    }
    for (const PortStatus& p : s.ports) {
      if (!p.link_up) s.problems.push_back(absl::StrCat("port ", p.name, " link is down"));
    }
    s.sessions_active = sessions_active_.load();
    s.sessions_created = sessions_created_.load();
    s.sessions_timed_out = sessions_timed_out_.load();
    s.free_port_pairs = free_port_pairs_.load();
    s.unresolved_sent = unresolved_sent_.load();
    s.unresolved_dropped = unresolved_dropped_.load();
    s.ice_checks_answered = ice_answered_.load();
    s.ice_checks_rejected = ice_rejected_.load();
    s.ice_nominations = ice_nominations_.load();
    s.ready = ready_.load() && dataplane_.running();
    s.healthy = s.ready && s.problems.empty();
    if (!s.ready) s.problems.insert(s.problems.begin(), "not running (starting or stopping)");
    return s;
  }

 private:
  void RefreshPorts() {
    std::vector<PortStatus> fresh;
    for (size_t i = 0; i < dataplane_.port_count(); ++i) {
      const dp::PortRuntime& p = dataplane_.port(i);
      const dp::PortReading r = dataplane_.ReadPort(i);
      PortStatus ps;
      ps.name = p.settings.name;
      ps.device = p.settings.device;
      ps.port_id = p.port_id;
      ps.mac = p.mac.ToString();
      for (const IpPrefix& a : p.settings.addresses) ps.addresses.push_back(a.ToString());
      ps.link_up = r.link_up;
      ps.link_speed_mbps = r.speed_mbps;
      ps.rx_packets = r.stats.ipackets;
      ps.rx_bytes = r.stats.ibytes;
      ps.tx_packets = r.stats.opackets;
      ps.tx_bytes = r.stats.obytes;
      ps.rx_missed = r.stats.imissed;
      ps.rx_errors = r.stats.ierrors;
      ps.tx_errors = r.stats.oerrors;
      ps.rx_nombuf = r.stats.rx_nombuf;
      fresh.push_back(std::move(ps));
    }
    std::lock_guard<std::mutex> lock(ports_mu_);
    ports_ = std::move(fresh);
  }

  void LogHealthChanges() {
    const StatusSnapshot s = Snapshot();
    if (s.healthy != last_healthy_) {
      if (s.healthy) {
        spdlog::info("healthy");
      } else {
        for (const std::string& p : s.problems) spdlog::warn("unhealthy: {}", p);
      }
      last_healthy_ = s.healthy;
    }
  }

  const Config config_;
  dp::Dataplane dataplane_;
  ControlQueue queue_;
  std::unique_ptr<SessionManager> sessions_;
  std::unique_ptr<SessionServiceQueue> session_service_;
  std::unique_ptr<OpsServer> ops_;
  std::unique_ptr<RestApi> rest_;
  std::unique_ptr<SessionServiceDirect> direct_sessions_;
  std::unique_ptr<NgCommands> ng_commands_;
  std::unique_ptr<NgServer> ng_;
  // Published by the control thread each loop for the HTTP threads.
  std::atomic<uint64_t> sessions_active_{0};
  std::atomic<uint64_t> sessions_created_{0};
  std::atomic<uint64_t> sessions_timed_out_{0};
  std::atomic<uint64_t> free_port_pairs_{0};
  std::atomic<uint64_t> unresolved_sent_{0};
  std::atomic<uint64_t> unresolved_dropped_{0};
  std::atomic<uint64_t> ice_answered_{0};
  std::atomic<uint64_t> ice_rejected_{0};
  std::atomic<uint64_t> ice_nominations_{0};
  std::atomic<bool> ready_{false};
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  mutable std::mutex ports_mu_;
  std::vector<PortStatus> ports_;  // guarded by ports_mu_; written by the control thread
  bool last_healthy_ = true;
};

}  // namespace

int RunKarl(int argc, char** argv) {
  // Split `[EAL args] -- [Karl args]`. Without `--`, Karl's own options alone are
  // accepted (karl-dp --version), anything else goes to EAL.
  std::vector<char*> eal_argv{argv[0]};
  std::vector<std::string> karl_args;
  int sep = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      sep = i;
      break;
    }
  }
  if (sep >= 0) {
    for (int i = 1; i < sep; ++i) eal_argv.push_back(argv[i]);
    for (int i = sep + 1; i < argc; ++i) karl_args.emplace_back(argv[i]);
  } else if (argc > 1 && IsKarlOption(argv[1])) {
    for (int i = 1; i < argc; ++i) karl_args.emplace_back(argv[i]);
  } else {
    for (int i = 1; i < argc; ++i) eal_argv.push_back(argv[i]);
  }

  KarlArgs args;
  if (absl::Status st = ParseKarlArgs(karl_args, &args); !st.ok()) {
    return Fail(std::string(st.message()));
  }
  if (args.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.version) {
    std::printf("karl-dp %s (%s)\n", KARL_VERSION, rte_version());
    return 0;
  }

  const Environment env = CurrentEnvironment();
  absl::StatusOr<Config> config = LoadConfig(args, env);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  if (args.check_config) {
    if (args.print) {
      std::fputs(RenderConfig(*config).c_str(), stdout);
    } else {
      std::printf("karl-dp: configuration %s is valid\n",
                  config->path.empty() ? "<built-in config/karl.yaml>" : config->path.c_str());
    }
    return 0;
  }

  if (absl::Status st = InitLogging(config->log); !st.ok()) return Fail(std::string(st.message()));
  RouteDpdkLogs();
  for (const std::string& o : config->overrides) spdlog::info("environment override {}", o);

  eal_argv.push_back(nullptr);
  const int eal_argc = static_cast<int>(eal_argv.size()) - 1;
  if (rte_eal_init(eal_argc, eal_argv.data()) < 0) {
    const int err = rte_errno;
    return Fail(absl::StrCat("DPDK EAL initialisation failed: ", rte_strerror(err),
                             " (check the EAL options before --; see karl-dp --help)"));
  }
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  InstallSignalHandlers();

  int rc = 0;
  {
    Karl karl(*std::move(config));
    if (absl::Status st = karl.Start(); !st.ok()) {
      spdlog::error("{}", std::string(st.message()));  // flushes the log (flush_on)
      std::fprintf(stderr, "karl-dp: error: %s\n", std::string(st.message()).c_str());
      rc = 1;
    } else {
      karl.Run();
    }
    karl.Shutdown();
  }
  uint16_t id;
  RTE_ETH_FOREACH_DEV(id) { rte_eth_dev_close(id); }  // vdevs given on the command line too
  rte_eal_cleanup();
  RemoveRuntimeDir(runtime_dir);
  spdlog::info("karl-dp stopped");
  FlushLogs();
  spdlog::shutdown();
  return rc;
}

}  // namespace karl
