#include "controlplane/metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <exception>
#include <string>
#include <utility>

namespace karl {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

// Adds one sample; `label_name` empty = no label.
void AddSample(MetricFamily& family, double value, const std::string& label_name = "",
               std::string label_value = "") {
  ClientMetric metric;
  if (!label_name.empty()) metric.label.push_back({label_name, std::move(label_value)});
  if (family.type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

MetricFamily Single(std::string name, std::string help, MetricType type, double value) {
  MetricFamily family = Family(std::move(name), std::move(help), type);
  AddSample(family, value);
  return family;
}

double AsDouble(uint64_t v) { return static_cast<double>(v); }
double AsDouble(bool v) { return v ? 1.0 : 0.0; }

// One family with a sample per worker, value taken by `field` from WorkerStatus.
template <typename Field>
MetricFamily PerWorker(const StatusSnapshot& s, std::string name, std::string help, MetricType type,
                       Field field) {
  MetricFamily family = Family(std::move(name), std::move(help), type);
  for (const WorkerStatus& w : s.workers) {
    AddSample(family, field(w), "worker", std::to_string(w.index));
  }
  return family;
}

template <typename Field>
MetricFamily PerPort(const StatusSnapshot& s, std::string name, std::string help, MetricType type,
                     Field field) {
  MetricFamily family = Family(std::move(name), std::move(help), type);
  for (const PortStatus& p : s.ports) AddSample(family, field(p), "port", p.name);
  return family;
}

// Sum of one worker counter over all workers.
template <typename Field>
MetricFamily SummedCounter(const StatusSnapshot& s, std::string name, std::string help,
                           Field field) {
  uint64_t total = 0;
  for (const WorkerStatus& w : s.workers) total += field(w);
  return Single(std::move(name), std::move(help), MetricType::Counter, AsDouble(total));
}

}  // namespace

std::vector<MetricFamily> SnapshotMetricFamilies(const StatusSnapshot& s) {
  constexpr MetricType kCounter = MetricType::Counter;
  constexpr MetricType kGauge = MetricType::Gauge;
  std::vector<MetricFamily> out;

  MetricFamily build = Family("karl_build_info", "Karl build; the value is always 1.", kGauge);
  AddSample(build, 1.0, "version", s.version);
  out.push_back(std::move(build));
  out.push_back(
      Single("karl_uptime_seconds", "Seconds since karl-dp started.", kGauge, s.uptime_s));
  out.push_back(
      Single("karl_ready", "1 when Karl is started and taking work.", kGauge, AsDouble(s.ready)));
  out.push_back(Single("karl_healthy", "1 when no worker is stuck and every port is up.", kGauge,
                       AsDouble(s.healthy)));

  out.push_back(SummedCounter(s, "karl_dp_rx_packets_total",
                              "Packets received by all dataplane workers.",
                              [](const WorkerStatus& w) { return w.rx_packets; }));
  out.push_back(SummedCounter(s, "karl_dp_rx_bytes_total",
                              "Bytes received by all dataplane workers.",
                              [](const WorkerStatus& w) { return w.rx_bytes; }));
  out.push_back(SummedCounter(s, "karl_dp_tx_packets_total",
                              "Packets transmitted by all dataplane workers.",
                              [](const WorkerStatus& w) { return w.tx_packets; }));
  out.push_back(SummedCounter(s, "karl_dp_tx_bytes_total",
                              "Bytes transmitted by all dataplane workers.",
                              [](const WorkerStatus& w) { return w.tx_bytes; }));
  out.push_back(SummedCounter(
      s, "karl_dp_exceptions_total",
      "Packets handed from the workers to the control plane (ARP, ICMP, unknown flows).",
      [](const WorkerStatus& w) { return w.exceptions; }));
  out.push_back(SummedCounter(s, "karl_dp_udp_packets_total",
                              "Valid UDP packets addressed to one of Karl's addresses.",
                              [](const WorkerStatus& w) { return w.udp_packets; }));

  // Every reason gets a sample, zero or not, so rate() and alerts work from the start.
  MetricFamily drops = Family("karl_dp_drops_total",
                              "Packets dropped by the dataplane workers, by reason "
                              "(see docs/drops.md).",
                              kCounter);
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    uint64_t total = 0;
    for (const WorkerStatus& w : s.workers) total += w.drops[r];
    AddSample(drops, AsDouble(total), "reason",
              std::string(DropReasonLabel(static_cast<DropReason>(r))));
  }
  out.push_back(std::move(drops));

  out.push_back(PerWorker(s, "karl_worker_rx_packets_total", "Packets received by a worker.",
                          kCounter, [](const WorkerStatus& w) { return AsDouble(w.rx_packets); }));
  out.push_back(PerWorker(s, "karl_worker_loops_total", "Poll-loop iterations of a worker.",
                          kCounter, [](const WorkerStatus& w) { return AsDouble(w.loops); }));
  out.push_back(PerWorker(s, "karl_worker_busy_loops_total",
                          "Poll-loop iterations of a worker that received at least one packet.",
                          kCounter, [](const WorkerStatus& w) { return AsDouble(w.busy_loops); }));
  out.push_back(PerWorker(s, "karl_worker_busy_seconds_total",
                          "Time a worker spent on iterations that had packets (its load).",
                          kCounter, [](const WorkerStatus& w) { return w.busy_s; }));
  out.push_back(PerWorker(s, "karl_worker_heartbeat_age_seconds",
                          "Seconds since the worker's last heartbeat.", kGauge,
                          [](const WorkerStatus& w) { return w.heartbeat_age_ms / 1000.0; }));
  out.push_back(PerWorker(s, "karl_worker_stuck",
                          "1 when the worker's heartbeat is older than the configured limit.",
                          kGauge, [](const WorkerStatus& w) { return AsDouble(w.stuck); }));

  out.push_back(PerPort(s, "karl_port_rx_packets_total", "Packets received by the port (NIC).",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.rx_packets); }));
  out.push_back(PerPort(s, "karl_port_rx_bytes_total", "Bytes received by the port (NIC).",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.rx_bytes); }));
  out.push_back(PerPort(s, "karl_port_tx_packets_total", "Packets transmitted by the port (NIC).",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.tx_packets); }));
  out.push_back(PerPort(s, "karl_port_tx_bytes_total", "Bytes transmitted by the port (NIC).",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.tx_bytes); }));
  out.push_back(PerPort(s, "karl_port_rx_missed_total",
                        "Packets the NIC dropped because an RX ring was full.", kCounter,
                        [](const PortStatus& p) { return AsDouble(p.rx_missed); }));
  out.push_back(PerPort(s, "karl_port_rx_errors_total", "Erroneous packets received by the port.",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.rx_errors); }));
  out.push_back(PerPort(s, "karl_port_tx_errors_total", "Packets the port failed to transmit.",
                        kCounter, [](const PortStatus& p) { return AsDouble(p.tx_errors); }));
  out.push_back(PerPort(s, "karl_port_rx_nombuf_total",
                        "Receive failures for lack of an mbuf in the pool.", kCounter,
                        [](const PortStatus& p) { return AsDouble(p.rx_nombuf); }));
  out.push_back(PerPort(s, "karl_port_link_up", "1 when the port's link is up.", kGauge,
                        [](const PortStatus& p) { return AsDouble(p.link_up); }));

  out.push_back(SummedCounter(s, "karl_dp_handoffs_total",
                              "Packets a worker passed to the worker owning their stream.",
                              [](const WorkerStatus& w) { return w.handoffs; }));
  out.push_back(Single("karl_sessions_active", "Sessions (calls) currently anchored.", kGauge,
                       AsDouble(s.sessions_active)));
  out.push_back(Single("karl_sessions_created_total", "Sessions created since start.", kCounter,
                       AsDouble(s.sessions_created)));
  out.push_back(Single("karl_sessions_timed_out_total",
                       "Sessions ended because no media arrived for media_timeout_s.", kCounter,
                       AsDouble(s.sessions_timed_out)));
  out.push_back(Single("karl_port_pairs_free", "Local RTP/RTCP port pairs free on all addresses.",
                       kGauge, AsDouble(s.free_port_pairs)));
  out.push_back(Single("karl_neighbor_held_sent_total",
                       "Media packets held until ARP/NDP resolved their next hop, then sent.",
                       kCounter, AsDouble(s.unresolved_sent)));
  out.push_back(Single("karl_neighbor_held_dropped_total",
                       "Media packets held for ARP/NDP and dropped (no answer within 3 s, or "
                       "the queue of the next hop was full).",
                       kCounter, AsDouble(s.unresolved_dropped)));
  out.push_back(Single("karl_ice_checks_answered_total",
                       "ICE connectivity checks (STUN Binding requests) answered with success on "
                       "legs with ICE (Karl is ICE-lite).",
                       kCounter, AsDouble(s.ice_checks_answered)));
  out.push_back(
      Single("karl_ice_checks_rejected_total",
             "STUN messages on ICE legs' ports refused (400/401/420) or dropped: malformed, wrong "
             "credentials, failed MESSAGE-INTEGRITY or FINGERPRINT.",
             kCounter, AsDouble(s.ice_checks_rejected)));
  out.push_back(Single("karl_ice_nominations_total",
                       "Candidate pairs nominated by the peer (USE-CANDIDATE) that moved a "
                       "leg's media to a new address.",
                       kCounter, AsDouble(s.ice_nominations)));
  return out;
}

std::string RenderMetrics(const StatusSnapshot& snapshot,
                          const std::vector<const prometheus::Collectable*>& extra) {
  try {
    std::vector<MetricFamily> families = SnapshotMetricFamilies(snapshot);
    for (const prometheus::Collectable* collectable : extra) {
      if (collectable == nullptr) continue;
      try {
        std::vector<MetricFamily> more = collectable->Collect();
        for (MetricFamily& f : more) families.push_back(std::move(f));
      } catch (const std::exception& e) {
        spdlog::warn("metrics: a collector failed and was skipped: {}", e.what());
      }
    }
    return prometheus::TextSerializer().Serialize(families);
  } catch (const std::exception& e) {
    spdlog::error("metrics: rendering failed: {}", e.what());
    return std::string();
  }
}

}  // namespace karl
