// Per-worker counters: written by exactly one worker lcore, read (summed) by the
// control plane and the ops HTTP threads at scrape time. No read-modify-write
// atomics on the hot path: the writer does a relaxed load + relaxed store, which
// compiles to a plain add on x86 but keeps readers free of data races.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "common/drop_reasons.h"

namespace karl {

inline constexpr unsigned kCacheLine = 64;
inline constexpr unsigned kMaxWorkers = 64;
inline constexpr unsigned kMaxPorts = 16;

class SingleWriterCounter {
 public:
  // Worker (the single writer) only.
  void Add(uint64_t n) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void Set(uint64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  // Any thread.
  uint64_t Read() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Owner: one worker lcore (writer). Readers: any control-plane thread.
struct alignas(kCacheLine) WorkerCounters {
  SingleWriterCounter rx_packets;
  SingleWriterCounter rx_bytes;
  SingleWriterCounter tx_packets;
  SingleWriterCounter tx_bytes;
  SingleWriterCounter exceptions;   // packets handed to the control plane (ARP, ICMP, ...)
  SingleWriterCounter udp_packets;  // valid UDP addressed to one of our addresses
  SingleWriterCounter loops;        // poll-loop iterations
  SingleWriterCounter busy_loops;   // iterations that received at least one packet
  SingleWriterCounter busy_tsc;     // TSC cycles spent in iterations that had packets
  SingleWriterCounter handoffs;     // packets passed to the worker that owns their stream
  SingleWriterCounter events_lost;  // latch events the full event ring did not take
  std::array<SingleWriterCounter, kDropReasonCount> drops;
};

// Owner: one worker lcore (writer, every heartbeat interval). Reader: control plane,
// which declares the worker stuck when the beat is older than the configured limit.
struct alignas(kCacheLine) WorkerHeartbeat {
  std::atomic<uint64_t> tsc{0};  // rte_rdtsc() at the last beat; 0 = not started
};

}  // namespace karl
