#include "controlplane/ops_server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "controlplane/metrics.h"

namespace karl {
namespace {

constexpr size_t kNoSession = static_cast<size_t>(DropReason::kNoSession);
constexpr size_t kTxFull = static_cast<size_t>(DropReason::kTxFull);

StatusSnapshot SampleSnapshot() {
  StatusSnapshot s;
  s.version = "0.1.0-test";
  s.uptime_s = 12.5;
  s.config_path = "/etc/karl/karl.yaml";
  s.config_sha256 = "ab12";
  s.ready = true;
  s.healthy = true;

  WorkerStatus w0;
  w0.index = 0;
  w0.lcore = 2;
  w0.heartbeat_age_ms = 1.5;
  w0.rx_packets = 10;
  w0.rx_bytes = 1000;
  w0.tx_packets = 8;
  w0.tx_bytes = 800;
  w0.udp_packets = 9;
  w0.loops = 100;
  w0.busy_loops = 5;
  w0.drops[kNoSession] = 3;
  WorkerStatus w1 = w0;
  w1.index = 1;
  w1.lcore = 3;
  w1.rx_packets = 20;
  w1.rx_bytes = 2000;
  w1.drops[kNoSession] = 4;
  w1.drops[kTxFull] = 1;
  s.workers = {w0, w1};

  PortStatus p;
  p.name = "ext0";
  p.device = "net_tap0";
  p.port_id = 0;
  p.mac = "02:00:00:00:00:01";
  p.addresses = {"198.51.100.1/24", "2001:db8::1/64"};
  p.link_up = true;
  p.link_speed_mbps = 10000;
  p.rx_packets = 31;
  p.rx_missed = 2;
  s.ports = {p};
  return s;
}

// True when `text` has a line exactly equal to `line`.
bool HasLine(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

class OpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snapshot_ = SampleSnapshot();
    server_ = std::make_unique<OpsServer>([this] {
      if (throw_) throw std::runtime_error("snapshot exploded");
      std::lock_guard<std::mutex> lock(mu_);
      return snapshot_;
    });
    ASSERT_TRUE(server_->Start(*IpAddress::Parse("127.0.0.1"), 0).ok());
    ASSERT_NE(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
  }

  void SetSnapshot(const StatusSnapshot& s) {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = s;
  }

  std::mutex mu_;
  StatusSnapshot snapshot_;
  std::atomic<bool> throw_{false};
  std::unique_ptr<OpsServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(OpsServerTest, HealthIsOkWhenHealthy) {
  auto res = client_->Get("/health");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(nlohmann::json::parse(res->body), nlohmann::json({{"status", "ok"}}));
}

TEST_F(OpsServerTest, HealthIs503WithProblemsWhenUnhealthy) {
  StatusSnapshot s = SampleSnapshot();
  s.healthy = false;
  s.problems = {"worker 1 stuck: no heartbeat for 2500 ms", "port ext0 link down"};
  SetSnapshot(s);
  auto res = client_->Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body.at("status"), "unhealthy");
  EXPECT_EQ(body.at("problems"), nlohmann::json(s.problems));
}

TEST_F(OpsServerTest, ReadyFollowsTheSnapshot) {
  auto res = client_->Get("/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(nlohmann::json::parse(res->body).at("status"), "ready");

  StatusSnapshot s = SampleSnapshot();
  s.ready = false;
  s.problems = {"starting: restoring sessions"};
  SetSnapshot(s);
  res = client_->Get("/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body.at("status"), "not ready");
  EXPECT_EQ(body.at("problems")[0], "starting: restoring sessions");
}

TEST_F(OpsServerTest, StatusShowsWorkersPortsAndConfig) {
  auto res = client_->Get("/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body.at("version"), "0.1.0-test");
  EXPECT_DOUBLE_EQ(body.at("uptime_s").get<double>(), 12.5);
  EXPECT_EQ(body.at("ready"), true);
  EXPECT_EQ(body.at("healthy"), true);
  EXPECT_TRUE(body.at("problems").empty());
  EXPECT_EQ(body.at("config").at("path"), "/etc/karl/karl.yaml");
  EXPECT_EQ(body.at("config").at("sha256"), "ab12");

  const nlohmann::json& workers = body.at("workers");
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[1].at("index"), 1);
  EXPECT_EQ(workers[1].at("lcore"), 3);
  EXPECT_DOUBLE_EQ(workers[1].at("heartbeat_age_ms").get<double>(), 1.5);
  EXPECT_EQ(workers[1].at("stuck"), false);
  const nlohmann::json& counters = workers[1].at("counters");
  EXPECT_EQ(counters.at("rx_packets"), 20);
  EXPECT_EQ(counters.at("rx_bytes"), 2000);
  EXPECT_EQ(counters.at("loops"), 100);
  EXPECT_EQ(counters.at("busy_loops"), 5);
  EXPECT_EQ(counters.at("drops").size(), kDropReasonCount);
  EXPECT_EQ(counters.at("drops").at("no_session"), 4);
  EXPECT_EQ(counters.at("drops").at("tx_full"), 1);
  EXPECT_EQ(counters.at("drops").at("runt_frame"), 0);

  const nlohmann::json& ports = body.at("ports");
  ASSERT_EQ(ports.size(), 1u);
  EXPECT_EQ(ports[0].at("name"), "ext0");
  EXPECT_EQ(ports[0].at("device"), "net_tap0");
  EXPECT_EQ(ports[0].at("port_id"), 0);
  EXPECT_EQ(ports[0].at("mac"), "02:00:00:00:00:01");
  EXPECT_EQ(ports[0].at("addresses"), nlohmann::json({"198.51.100.1/24", "2001:db8::1/64"}));
  EXPECT_EQ(ports[0].at("link_up"), true);
  EXPECT_EQ(ports[0].at("link_speed_mbps"), 10000);
  EXPECT_EQ(ports[0].at("counters").at("rx_packets"), 31);
  EXPECT_EQ(ports[0].at("counters").at("rx_missed"), 2);
  EXPECT_EQ(ports[0].at("counters").at("rx_nombuf"), 0);
}

TEST_F(OpsServerTest, MetricsArePrometheusText) {
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = res->body;
  EXPECT_TRUE(HasLine(text, "karl_dp_rx_packets_total 30")) << text;
  EXPECT_TRUE(HasLine(text, "karl_dp_drops_total{reason=\"no_session\"} 7")) << text;
  EXPECT_TRUE(HasLine(text, "karl_dp_drops_total{reason=\"tx_full\"} 1")) << text;
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    const std::string label(DropReasonLabel(static_cast<DropReason>(r)));
    EXPECT_NE(text.find("karl_dp_drops_total{reason=\"" + label + "\"} "), std::string::npos)
        << label;
  }
  EXPECT_TRUE(HasLine(text, "karl_build_info{version=\"0.1.0-test\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "karl_worker_rx_packets_total{worker=\"1\"} 20")) << text;
  EXPECT_TRUE(HasLine(text, "karl_worker_heartbeat_age_seconds{worker=\"0\"} 0.0015")) << text;
  EXPECT_TRUE(HasLine(text, "karl_port_rx_missed_total{port=\"ext0\"} 2")) << text;
  EXPECT_TRUE(HasLine(text, "karl_port_link_up{port=\"ext0\"} 1")) << text;
  EXPECT_TRUE(HasLine(text, "# TYPE karl_dp_drops_total counter")) << text;
}

TEST_F(OpsServerTest, UnknownPathIs404Json) {
  auto res = client_->Get("/x");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const nlohmann::json body = nlohmann::json::parse(res->body);
  EXPECT_EQ(body.at("error").at("code"), 404);
  EXPECT_EQ(body.at("error").at("message"), "no such endpoint: /x");
}

TEST_F(OpsServerTest, OtherMethodsOnKnownPathsAre405) {
  auto res = client_->Post("/metrics", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");
  EXPECT_EQ(nlohmann::json::parse(res->body).at("error").at("code"), 405);

  res = client_->Delete("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);

  // The same keep-alive connection still answers correctly afterwards.
  res = client_->Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  res = client_->Head("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());
}

TEST_F(OpsServerTest, ThrowingSnapshotIs500AndServerSurvives) {
  throw_ = true;
  auto res = client_->Get("/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(nlohmann::json::parse(res->body).at("error").at("code"), 500);
  throw_ = false;
  res = client_->Get("/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(OpsServerTest, SecondServerOnTheSamePortFailsNamingIt) {
  OpsServer second([] { return StatusSnapshot(); });
  const absl::Status st = second.Start(*IpAddress::Parse("127.0.0.1"), server_->port());
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  const std::string where = "127.0.0.1:" + std::to_string(server_->port());
  EXPECT_EQ(st.message(), "ops HTTP: cannot listen on " + where + ": Address already in use");
  second.Stop();
  // The first server is unaffected.
  auto res = client_->Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(OpsServerTest, StopIsIdempotentAndClosesThePort) {
  server_->Stop();
  server_->Stop();
  httplib::Client fresh("127.0.0.1", server_->port());
  fresh.set_connection_timeout(1, 0);
  EXPECT_FALSE(fresh.Get("/health"));
  EXPECT_EQ(server_->Start(*IpAddress::Parse("127.0.0.1"), 0).code(),
            absl::StatusCode::kFailedPrecondition);
  server_.reset();  // destructor after Stop is fine too
}

TEST(OpsServerIpv6Test, ServesOnLoopbackV6) {
  OpsServer server([] { return SampleSnapshot(); });
  const absl::Status st = server.Start(*IpAddress::Parse("::1"), 0);
  ASSERT_TRUE(st.ok()) << st;
  httplib::Client client("::1", server.port());
  auto res = client.Get("/ready");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST(OpsServerCollectableTest, MetricsIncludeExtraRegistries) {
  prometheus::Registry registry;
  prometheus::BuildCounter()
      .Name("karl_ng_commands_total")
      .Help("ng commands")
      .Register(registry)
      .Add({{"command", "offer"}})
      .Increment(3);
  OpsServer server([] { return SampleSnapshot(); });
  server.AddCollectable(&registry);
  ASSERT_TRUE(server.Start(*IpAddress::Parse("127.0.0.1"), 0).ok());
  httplib::Client client("127.0.0.1", server.port());
  auto res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_TRUE(HasLine(res->body, "karl_ng_commands_total{command=\"offer\"} 3")) << res->body;
  EXPECT_TRUE(HasLine(res->body, "karl_dp_rx_packets_total 30"));
}

TEST(MetricsTest, EveryFamilyIsNamedDocumentedAndTyped) {
  const std::vector<prometheus::MetricFamily> families = SnapshotMetricFamilies(SampleSnapshot());
  ASSERT_FALSE(families.empty());
  for (const prometheus::MetricFamily& f : families) {
    EXPECT_EQ(f.name.rfind("karl_", 0), 0u) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    const bool is_total = f.name.ends_with("_total");
    EXPECT_EQ(is_total, f.type == prometheus::MetricType::Counter) << f.name;
    EXPECT_TRUE(f.type == prometheus::MetricType::Counter ||
                f.type == prometheus::MetricType::Gauge)
        << f.name;
  }
}

TEST(MetricsTest, EmptySnapshotStillHasEveryDropReason) {
  const std::string text = RenderMetrics(StatusSnapshot(), {});
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    const std::string label(DropReasonLabel(static_cast<DropReason>(r)));
    EXPECT_TRUE(HasLine(text, "karl_dp_drops_total{reason=\"" + label + "\"} 0")) << label;
  }
  EXPECT_TRUE(HasLine(text, "karl_dp_rx_packets_total 0"));
  EXPECT_TRUE(HasLine(text, "karl_ready 0"));
  EXPECT_TRUE(HasLine(text, "# HELP karl_uptime_seconds Seconds since karl-dp started."));
}

class ThrowingCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    throw std::runtime_error("broken collector");
  }
};

TEST(MetricsTest, ThrowingCollectableIsSkipped) {
  ThrowingCollectable broken;
  const std::string text = RenderMetrics(SampleSnapshot(), {&broken});
  EXPECT_TRUE(HasLine(text, "karl_dp_rx_packets_total 30"));
}

}  // namespace
}  // namespace karl
