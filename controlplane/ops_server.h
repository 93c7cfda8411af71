// The ops HTTP server (default 127.0.0.1:9091): /health, /ready, /status (JSON) and
// /metrics (Prometheus text) for load balancers, orchestration and Prometheus.
// Every response is rendered from a fresh StatusSnapshot.
//
// Threads: the owner (the control-plane thread) constructs, calls AddCollectable,
// Start, port and Stop. The server runs on its own thread with a small pool of
// request threads; those call the SnapshotFn and the collectables concurrently.
#pragma once

#include <prometheus/collectable.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/net_addr.h"
#include "controlplane/status.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace karl {

class OpsServer {
 public:
  // Must be safe to call from several request threads at once.
  using SnapshotFn = std::function<StatusSnapshot()>;

  // Request threads serving HTTP; an ops endpoint needs few.
  static constexpr int kThreads = 4;

  explicit OpsServer(SnapshotFn snapshot);
  ~OpsServer();  // Stop()s
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  // Adds a registry (or any collectable) whose families /metrics appends. The pointee
  // must outlive the server. Call before Start; later calls are ignored (logged).
  void AddCollectable(const prometheus::Collectable* collectable);

  // Binds listen:port (port 0 = chosen by the OS) and starts serving. Bind errors are
  // reported here, synchronously: UnavailableError("ops HTTP: cannot listen on
  // 127.0.0.1:9091: Address already in use"). FailedPrecondition when already
  // started. A server can be started once.
  absl::Status Start(const IpAddress& listen, uint16_t port);

  // The bound port (useful after Start with port 0); 0 before Start.
  uint16_t port() const { return port_; }

  // Stops accepting, finishes in-flight requests and joins the server thread.
  // Idempotent; the destructor calls it.
  void Stop();

 private:
  void RegisterHandlers();

  const SnapshotFn snapshot_;
  std::vector<const prometheus::Collectable*> collectables_;  // fixed once started
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_{false};  // set by thread_ when listening ends
  std::mutex stop_mu_;                        // serializes Stop with itself
  bool started_ = false;
  uint16_t port_ = 0;
};

}  // namespace karl
