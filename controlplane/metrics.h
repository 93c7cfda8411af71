// Prometheus exposition of Karl's state for the ops HTTP /metrics endpoint. The
// metrics are built from a StatusSnapshot at scrape time (the snapshot already holds
// the per-worker counters summed or read); nothing here keeps long-lived counters.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "controlplane/status.h"

namespace karl {

// Content-Type of RenderMetrics' output (Prometheus text format 0.0.4).
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// The karl_* metric families for `snapshot`: build info, uptime, ready/healthy,
// dataplane totals, karl_dp_drops_total with one sample per drop reason (zeros
// included), per-worker and per-port families. Any thread.
std::vector<prometheus::MetricFamily> SnapshotMetricFamilies(const StatusSnapshot& snapshot);

// SnapshotMetricFamilies plus every family collected from `extra`, in the Prometheus
// text format. A collectable that throws is skipped (and logged) so one broken module
// cannot take the whole scrape down. Never throws. Any thread; each collectable's
// Collect() must be safe to call from that thread.
std::string RenderMetrics(const StatusSnapshot& snapshot,
                          const std::vector<const prometheus::Collectable*>& extra);

}  // namespace karl
