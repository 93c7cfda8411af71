// Karl's logging: one spdlog logger named "karl" installed as the spdlog default,
// writing text or JSON lines to stderr or a size-rotated file, with DPDK's own
// rte_log output routed into it.
//
// Formats (one record per line; control characters in messages are escaped so a
// message can never forge a second record):
//   text: 2026-11-28T02:04:43.123Z info  message
//   json: {"ts":"2026-11-28T02:04:43.123Z","level":"info","logger":"karl","msg":"message"}
// Timestamps are UTC, ISO-8601 with milliseconds. Level names: error, warn, info,
// debug, trace (critical shows as "crit").
#pragma once

#include <spdlog/common.h>
#include <spdlog/formatter.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "controlplane/config.h"

namespace karl {

// Karl levels 1..5 (error, warning, info, debug, trace) to spdlog levels. Values
// outside 1..5 are clamped. Any thread.
spdlog::level::level_enum KarlLevelToSpdlog(int karl_level);

// Inverse of KarlLevelToSpdlog: critical/err -> 1 ... trace -> 5; off -> 0. Any thread.
int SpdlogLevelToKarl(spdlog::level::level_enum level);

// Karl level to the DPDK global log level. Info (3) maps to RTE_LOG_NOTICE so EAL's
// start-up chatter at INFO stays quiet unless the operator asks for debug (4 ->
// RTE_LOG_INFO, 5 -> RTE_LOG_DEBUG). 1 -> RTE_LOG_ERR, 2 -> RTE_LOG_WARNING. Any thread.
uint32_t KarlLevelToDpdk(int karl_level);

// A formatter producing the records described above; `json` selects the format.
// Exposed so tests (and any extra sink) render exactly what the logger writes.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json);

// Installs (first call) or reconfigures (later calls, e.g. on config reload) the
// default logger "karl" from `cfg`. Everything is checked and the new sink is built
// before anything changes: on error the previous logging setup stays in place.
// Errors: InvalidArgument for a bad level/format or a path that cannot be a log
// file, PermissionDenied when the file may not be written; both name the path.
// Reconfiguring is safe while other threads log. Call from the control-plane
// thread (startup, reload); never concurrently with itself.
absl::Status InitLogging(const LogConfig& cfg);

// Same, but rotates the file at `max_file_bytes` instead of cfg.max_size_mb MiB
// (0 = use cfg.max_size_mb). For tests, where megabytes are too coarse.
absl::Status InitLogging(const LogConfig& cfg, uint64_t max_file_bytes);

// Routes DPDK's rte_log output into the karl logger: each line becomes a record
// "dpdk: <line>" at the level rte_log gave it (ERR and more severe -> error,
// WARNING -> warn, NOTICE/INFO -> info, DEBUG -> debug), and DPDK's global log level
// follows the karl level (see KarlLevelToDpdk), also after a later InitLogging.
// Works before rte_eal_init (EAL keeps a stream set with rte_openlog_stream).
// Idempotent. A failure to create the stream is logged and DPDK keeps its own
// output. Call from the main thread, normally right after the first InitLogging.
void RouteDpdkLogs();

// Flushes the karl logger's sink: writes out what a buffered sink (stderr) gathered.
// The control loop calls it when idle; also tests, shutdown. Any thread.
void FlushLogs();

}  // namespace karl
