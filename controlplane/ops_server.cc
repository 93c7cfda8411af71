#include "controlplane/ops_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controlplane/http_common.h"
#include "controlplane/metrics.h"

namespace karl {
namespace {

using Json = nlohmann::ordered_json;  // keeps the documented field order for humans

constexpr char kJsonContentType[] = "application/json";
constexpr char kAllowedMethods[] = "GET, HEAD";
// Every endpoint; the same pattern routes the 405 answers for other methods.
constexpr char kKnownPaths[] = "/(health|ready|status|metrics)";
// No endpoint takes a body; this bounds what a client can make a request thread read.
constexpr size_t kMaxRequestBody = size_t{64} * 1024;
// Short: an idle keep-alive connection holds one of the few request threads, and
// Stop() waits for it. Prometheus reconnects per scrape anyway.
constexpr time_t kKeepAliveTimeoutS = 1;
constexpr time_t kReadTimeoutS = 5;

// Invalid UTF-8 (from a device name, say) becomes U+FFFD instead of an exception.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body), kJsonContentType);
}

void SendError(httplib::Response& res, int status, const std::string& message) {
  Json error = Json::object();
  error["code"] = status;
  error["message"] = message;
  Json body = Json::object();
  body["error"] = std::move(error);
  SendJson(res, status, body);
}

Json StatusJson(const StatusSnapshot& s) {
  Json workers = Json::array();
  for (const WorkerStatus& w : s.workers) {
    Json drops = Json::object();
    for (size_t r = 0; r < kDropReasonCount; ++r) {
      drops[std::string(DropReasonLabel(static_cast<DropReason>(r)))] = w.drops[r];
    }
    Json counters = Json::object();
    counters["rx_packets"] = w.rx_packets;
    counters["rx_bytes"] = w.rx_bytes;
    counters["tx_packets"] = w.tx_packets;
    counters["tx_bytes"] = w.tx_bytes;
    counters["exceptions"] = w.exceptions;
    counters["udp_packets"] = w.udp_packets;
    counters["loops"] = w.loops;
    counters["busy_loops"] = w.busy_loops;
    counters["drops"] = std::move(drops);
    Json worker = Json::object();
    worker["index"] = w.index;
    worker["lcore"] = w.lcore;
    worker["heartbeat_age_ms"] = w.heartbeat_age_ms;
    worker["stuck"] = w.stuck;
    worker["counters"] = std::move(counters);
    workers.push_back(std::move(worker));
  }

  Json ports = Json::array();
  for (const PortStatus& p : s.ports) {
    Json counters = Json::object();
    counters["rx_packets"] = p.rx_packets;
    counters["rx_bytes"] = p.rx_bytes;
    counters["tx_packets"] = p.tx_packets;
    counters["tx_bytes"] = p.tx_bytes;
    counters["rx_missed"] = p.rx_missed;
    counters["rx_errors"] = p.rx_errors;
    counters["tx_errors"] = p.tx_errors;
    counters["rx_nombuf"] = p.rx_nombuf;
    Json port = Json::object();
    port["name"] = p.name;
    port["device"] = p.device;
    port["port_id"] = p.port_id;
    port["mac"] = p.mac;
    port["addresses"] = p.addresses;
    port["link_up"] = p.link_up;
    port["link_speed_mbps"] = p.link_speed_mbps;
    port["counters"] = std::move(counters);
    ports.push_back(std::move(port));
  }

  Json config = Json::object();
  config["path"] = s.config_path;
  config["sha256"] = s.config_sha256;

  Json body = Json::object();
  body["version"] = s.version;
  body["uptime_s"] = s.uptime_s;
  body["ready"] = s.ready;
  body["healthy"] = s.healthy;
  body["problems"] = s.problems;
  body["config"] = std::move(config);
  body["workers"] = std::move(workers);
  body["ports"] = std::move(ports);
  return body;
}

// A 200 {"status": ok_word} or a 503 {"status": bad_word, "problems": [...]}.
void SendProbe(httplib::Response& res, bool good, const char* ok_word, const char* bad_word,
               const std::vector<std::string>& problems) {
  Json body = Json::object();
  if (good) {
    body["status"] = ok_word;
    SendJson(res, 200, body);
  } else {
    body["status"] = bad_word;
    body["problems"] = problems;
    SendJson(res, 503, body);
  }
}

}  // namespace

OpsServer::OpsServer(SnapshotFn snapshot) : snapshot_(std::move(snapshot)) {}

OpsServer::~OpsServer() { Stop(); }

void OpsServer::AddCollectable(const prometheus::Collectable* collectable) {
  if (started_) {
    spdlog::warn("ops HTTP: collectable added after Start is ignored");
    return;
  }
  if (collectable != nullptr) collectables_.push_back(collectable);
}

void OpsServer::RegisterHandlers() {
  httplib::Server& server = *server_;

  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const StatusSnapshot s = snapshot_();
    SendProbe(res, s.healthy, "ok", "unhealthy", s.problems);
  });
  server.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
    const StatusSnapshot s = snapshot_();
    SendProbe(res, s.ready, "ready", "not ready", s.problems);
  });
  server.Get("/status", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, StatusJson(snapshot_()));
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text = RenderMetrics(snapshot_(), collectables_);
    if (text.empty()) {  // RenderMetrics logged why; never serve an empty scrape as 200
      SendError(res, 500, "rendering metrics failed");
      return;
    }
    res.status = 200;
    res.set_content(text, kMetricsContentType);
  });

  // Registered rather than answered in a pre-routing handler so httplib reads the
  // request body first and the keep-alive connection stays in sync.
  const auto not_allowed = [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Allow", kAllowedMethods);
    SendError(res, 405,
              absl::StrCat("method ", req.method, " not allowed on ", req.path,
                           "; allowed: ", kAllowedMethods));
  };
  server.Post(kKnownPaths, not_allowed);
  server.Put(kKnownPaths, not_allowed);
  server.Patch(kKnownPaths, not_allowed);
  server.Delete(kKnownPaths, not_allowed);
  server.Options(kKnownPaths, not_allowed);

  // Fills in a JSON body for errors httplib produced itself (no route: 404; unknown
  // method: 400; ...). Responses a handler already wrote are left alone.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        try {
          if (res.status == 404) {
            SendError(res, 404, absl::StrCat("no such endpoint: ", req.path));
          } else {
            SendError(res, res.status, HttpErrorText(res.status));
          }
        } catch (...) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        return httplib::Server::HandlerResponse::Handled;
      }));

  // A throwing handler (snapshot, collectable, allocation) answers 500; it must not
  // reach httplib's worker thread, where it would terminate the process.
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        const std::string what = ExceptionText(std::move(ep));
        try {
          spdlog::error("ops HTTP: {} {} failed: {}", req.method, req.path, what);
          res.headers.erase("Allow");
          SendError(res, 500, "internal error; see the karl log");
        } catch (...) {
          res.status = 500;
        }
      });

  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("ops HTTP: {} {} from {} -> {}", req.method, req.path, req.remote_addr,
                  res.status);
  });
}

absl::Status OpsServer::Start(const IpAddress& listen, uint16_t port) {
  if (started_) return absl::FailedPreconditionError("ops HTTP: server already started");
  if (listen.empty()) return absl::InvalidArgumentError("ops HTTP: no listen address");
  const std::string where = HostPort{listen, port}.ToString();
  try {
    server_ = std::make_unique<httplib::Server>();
    httplib::Server& server = *server_;
    server.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
    // httplib's default sets SO_REUSEPORT, which would let a second Karl (or anything
    // else) bind the same port and silently take half the scrapes.
    server.set_socket_options([](int sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    server.set_keep_alive_timeout(kKeepAliveTimeoutS);
    server.set_read_timeout(kReadTimeoutS, 0);
    server.set_payload_max_length(kMaxRequestBody);
    server.set_default_headers({{"Cache-Control", "no-store"}});
    RegisterHandlers();

    const std::string host = listen.ToString();
    const int bound =
        port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
    if (bound <= 0) {
      server_.reset();
      return absl::UnavailableError(absl::StrCat("ops HTTP: cannot listen on ", where, ": ",
                                                 BindFailureReason(listen, port)));
    }
    port_ = static_cast<uint16_t>(bound);
    started_ = true;
    thread_ = std::thread([this] {
      if (!server_->listen_after_bind()) spdlog::error("ops HTTP: accept loop failed");
      listen_returned_ = true;
    });
    // httplib's stop() is a no-op until the accept loop runs; waiting here means a
    // Stop() right after Start() cannot leave the thread listening forever.
    while (!server_->is_running() && !listen_returned_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } catch (const std::exception& e) {
    if (!thread_.joinable()) server_.reset();
    return absl::InternalError(absl::StrCat("ops HTTP: cannot start on ", where, ": ", e.what()));
  }
  spdlog::info("ops HTTP: listening on {}", HostPort{listen, port_}.ToString());
  return absl::OkStatus();
}

void OpsServer::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace karl
