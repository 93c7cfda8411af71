#include "controlplane/logging.h"

#include <rte_log.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace karl {
namespace {

constexpr char kLoggerName[] = "karl";
constexpr uint64_t kBytesPerMiB = uint64_t{1024} * 1024;

void Append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

void AppendHexEscape(spdlog::memory_buf_t& dest, const char* prefix, unsigned char c) {
  constexpr char kHex[] = "0123456789abcdef";
  Append(dest, prefix);
  dest.push_back(kHex[c >> 4]);
  dest.push_back(kHex[c & 0xf]);
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629 section 4),
// or 0 when the bytes there are not one (overlong, surrogate, > U+10FFFF, truncated).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    len = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    len = 3;
    if (lead == 0xe0) lo = 0xa0;
    if (lead == 0xed) hi = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    len = 4;
    if (lead == 0xf0) lo = 0x90;
    if (lead == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
  }
  return len;
}

// JSON string body (RFC 8259 section 7). Invalid UTF-8 (which would make the whole
// line unparseable for log shippers) becomes U+FFFD.
void AppendJsonEscaped(spdlog::memory_buf_t& dest, std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          Append(dest, "\\\"");
          break;
        case '\\':
          Append(dest, "\\\\");
          break;
        case '\n':
          Append(dest, "\\n");
          break;
        case '\r':
          Append(dest, "\\r");
          break;
        case '\t':
          Append(dest, "\\t");
          break;
        case '\b':
          Append(dest, "\\b");
          break;
        case '\f':
          Append(dest, "\\f");
          break;
        default:
          if (c < 0x20) {
            AppendHexEscape(dest, "\\u00", c);
          } else {
            dest.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    const size_t len = Utf8SequenceLength(s, i);
    if (len == 0) {
      Append(dest, "\\ufffd");
      ++i;
    } else {
      Append(dest, s.substr(i, len));
      i += len;
    }
  }
}

// Text records stay on one line: control characters (other than tab) are shown
// escaped, so untrusted text in a message cannot start a fake record.
void AppendTextEscaped(spdlog::memory_buf_t& dest, std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 0x20 && c != 0x7f) || c == '\t') {
      dest.push_back(ch);
    } else if (c == '\n') {
      Append(dest, "\\n");
    } else if (c == '\r') {
      Append(dest, "\\r");
    } else {
      AppendHexEscape(dest, "\\x", c);
    }
  }
}

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "crit";
    default:
      return "off";
  }
}

class KarlFormatter final : public spdlog::formatter {
 public:
  explicit KarlFormatter(bool json) : json_(json) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view level = LevelName(msg.level);
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (json_) {
      Append(dest, "{\"ts\":\"");
      AppendTimestamp(msg.time, dest);
      Append(dest, "\",\"level\":\"");
      Append(dest, level);
      Append(dest, "\",\"logger\":\"");
      AppendJsonEscaped(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
      Append(dest, "\",\"msg\":\"");
      AppendJsonEscaped(dest, payload);
      Append(dest, "\"}\n");
    } else {
      AppendTimestamp(msg.time, dest);
      dest.push_back(' ');
      Append(dest, level);
      // Pad the level to 5 columns so messages line up.
      for (size_t i = level.size(); i < 5; ++i) dest.push_back(' ');
      dest.push_back(' ');
      AppendTextEscaped(dest, payload);
      dest.push_back('\n');
    }
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<KarlFormatter>(json_);
  }

 private:
  // "2026-11-28T02:04:43.123Z". The seconds part is cached: most records in a burst
  // share it and gmtime_r is the costly step.
  void AppendTimestamp(spdlog::log_clock::time_point tp, spdlog::memory_buf_t& dest) {
    using std::chrono::duration_cast;
    const auto since_epoch = tp.time_since_epoch();
    const auto secs = duration_cast<std::chrono::seconds>(since_epoch);
    auto ms = duration_cast<std::chrono::milliseconds>(since_epoch - secs).count();
    time_t t = static_cast<time_t>(secs.count());
    if (ms < 0) {  // before 1970: keep ms in 0..999
      ms += 1000;
      t -= 1;
    }
    if (t != cached_second_ || cached_len_ == 0) {
      std::tm tm{};
      gmtime_r(&t, &tm);
      cached_len_ = std::strftime(cached_, sizeof(cached_), "%Y-%m-%dT%H:%M:%S", &tm);
      cached_second_ = t;
    }
    dest.append(cached_, cached_ + cached_len_);
    char frac[8];
    const int n = std::snprintf(frac, sizeof(frac), ".%03dZ", static_cast<int>(ms));
    dest.append(frac, frac + n);
  }

  bool json_;
  time_t cached_second_ = 0;
  size_t cached_len_ = 0;
  char cached_[32] = {};
};

// The karl logger's only sink. It forwards to an inner sink that InitLogging can
// replace while other threads log: spdlog's set_default_logger is not safe against
// concurrent spdlog::info(), so the logger object itself is installed once and only
// what is behind this sink changes. The mutex also serializes the inner sink, which
// is therefore a single-threaded (_st) one.
class SwitchableSink final : public spdlog::sinks::sink {
 public:
  void log(const spdlog::details::log_msg& msg) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (inner_) inner_->log(msg);
  }
  void flush() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (inner_) inner_->flush();
  }
  // The format is part of Karl's contract with log shippers: spdlog::set_pattern()
  // elsewhere must not change it.
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

  // Returns the previous sink so it is flushed and closed outside the lock.
  std::shared_ptr<spdlog::sinks::sink> Swap(std::shared_ptr<spdlog::sinks::sink> next) {
    std::lock_guard<std::mutex> lock(mu_);
    inner_.swap(next);
    return next;
  }

 private:
  std::mutex mu_;
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

// stderr without a write(2) per record: spdlog's stderr sink flushes every line, which
// costs the control thread a system call per session created or ended (5% of its time
// at 10,000 ng calls/s). Records gather here and are written when the logger flushes:
// at once for warn and above (flush_on), whenever the control loop goes idle
// (FlushLogs), every second (flush_every), at 64 KiB, and at exit (D23).
class BufferedStderrSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 public:
  ~BufferedStderrSink() override { flush_(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    buffer_.append(formatted.data(), formatted.size());
    if (buffer_.size() >= kFlushBytes) flush_();
  }
  void flush_() override {
    size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(STDERR_FILENO, buffer_.data() + done, buffer_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // stderr closed or full: nothing better to do with the text
      done += static_cast<size_t>(n);
    }
    buffer_.clear();
  }

 private:
  static constexpr size_t kFlushBytes = 64 * 1024;
  std::string buffer_;
};

struct LoggingState {
  std::mutex mu;  // guards the fields below (InitLogging vs. RouteDpdkLogs)
  std::shared_ptr<SwitchableSink> sink;
  std::shared_ptr<spdlog::logger> logger;
  int karl_level = 3;
  bool dpdk_routed = false;
  FILE* dpdk_stream = nullptr;  // lives for the process: DPDK keeps the pointer
};

LoggingState& State() {
  static auto* state = new LoggingState();  // never destroyed: DPDK may log at exit
  return *state;
}

// Checks the log file can be opened for appending, for an error that names the path
// and the reason; spdlog's own exception text is less specific about the cause.
absl::Status CheckLogFileWritable(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "ab");
  if (f != nullptr) {
    std::fclose(f);
    return absl::OkStatus();
  }
  const int err = errno;
  const std::string what =
      absl::StrCat("log.file: cannot open ", path, " for appending: ", std::strerror(err));
  if (err == EACCES || err == EPERM || err == EROFS) return absl::PermissionDeniedError(what);
  return absl::InvalidArgumentError(what);
}

absl::StatusOr<std::shared_ptr<spdlog::sinks::sink>> MakeInnerSink(const LogConfig& cfg,
                                                                   uint64_t max_file_bytes) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (cfg.file.empty()) {
    sink = std::make_shared<BufferedStderrSink>();
  } else {
    if (const absl::Status s = CheckLogFileWritable(cfg.file); !s.ok()) return s;
    const uint64_t max_bytes =
        max_file_bytes != 0 ? max_file_bytes : uint64_t{cfg.max_size_mb} * kBytesPerMiB;
    if (max_bytes == 0) {
      return absl::InvalidArgumentError("log.max_size_mb: must be at least 1");
    }
    if (cfg.max_files == 0) {
      return absl::InvalidArgumentError("log.max_files: must be at least 1");
    }
    try {
      sink = std::make_shared<spdlog::sinks::rotating_file_sink_st>(
          cfg.file, static_cast<size_t>(max_bytes), static_cast<size_t>(cfg.max_files));
    } catch (const spdlog::spdlog_ex& e) {
      return absl::InvalidArgumentError(absl::StrCat("log.file: ", cfg.file, ": ", e.what()));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("log.file: ", cfg.file, ": ", e.what()));
    }
  }
  sink->set_formatter(MakeLogFormatter(cfg.format == "json"));
  sink->set_level(spdlog::level::trace);  // the logger's level filters
  return sink;
}

spdlog::level::level_enum DpdkLevelToSpdlog(int dpdk_level) {
  if (dpdk_level <= static_cast<int>(RTE_LOG_ERR)) return spdlog::level::err;
  if (dpdk_level == static_cast<int>(RTE_LOG_WARNING)) return spdlog::level::warn;
  if (dpdk_level <= static_cast<int>(RTE_LOG_INFO)) return spdlog::level::info;
  return spdlog::level::debug;
}

// fopencookie write callback: DPDK's rte_vlog does vfprintf + fflush per message, so
// one call normally carries one whole message, possibly several lines.
ssize_t DpdkLogWrite(void* /*cookie*/, const char* buf, size_t size) noexcept {
  try {
    const spdlog::level::level_enum level = DpdkLevelToSpdlog(rte_log_cur_msg_loglevel());
    // A shared_ptr copy, not default_logger_raw(): safe if the default logger changes.
    const std::shared_ptr<spdlog::logger> logger = spdlog::default_logger();
    if (logger == nullptr) return static_cast<ssize_t>(size);
    std::string_view rest(buf, size);
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;
      logger->log(level, "dpdk: {}", line);
    }
  } catch (...) {
    // Never let an exception unwind into DPDK's C code; the line is lost.
  }
  return static_cast<ssize_t>(size);
}

}  // namespace

spdlog::level::level_enum KarlLevelToSpdlog(int karl_level) {
  switch (karl_level) {
    case 1:
      return spdlog::level::err;
    case 2:
      return spdlog::level::warn;
    case 3:
      return spdlog::level::info;
    case 4:
      return spdlog::level::debug;
    default:
      return karl_level < 1 ? spdlog::level::err : spdlog::level::trace;
  }
}

int SpdlogLevelToKarl(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical:
    case spdlog::level::err:
      return 1;
    case spdlog::level::warn:
      return 2;
    case spdlog::level::info:
      return 3;
    case spdlog::level::debug:
      return 4;
    case spdlog::level::trace:
      return 5;
    default:
      return 0;
  }
}

uint32_t KarlLevelToDpdk(int karl_level) {
  switch (karl_level) {
    case 1:
      return RTE_LOG_ERR;
    case 2:
      return RTE_LOG_WARNING;
    case 3:
      return RTE_LOG_NOTICE;
    case 4:
      return RTE_LOG_INFO;
    default:
      return karl_level < 1 ? RTE_LOG_ERR : RTE_LOG_DEBUG;
  }
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(bool json) {
  return std::make_unique<KarlFormatter>(json);
}

absl::Status InitLogging(const LogConfig& cfg) { return InitLogging(cfg, 0); }

absl::Status InitLogging(const LogConfig& cfg, uint64_t max_file_bytes) {
  if (cfg.level < 1 || cfg.level > 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("log.level: ", cfg.level, " is out of range; allowed: 1..5"));
  }
  if (cfg.format != "text" && cfg.format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("log.format: \"", cfg.format, "\" is unknown; allowed: text, json"));
  }
  auto inner = MakeInnerSink(cfg, max_file_bytes);
  if (!inner.ok()) return inner.status();

  LoggingState& state = State();
  std::shared_ptr<spdlog::sinks::sink> previous;
  {
    std::lock_guard<std::mutex> lock(state.mu);
    try {
      if (state.logger == nullptr) {
        state.sink = std::make_shared<SwitchableSink>();
        state.logger = std::make_shared<spdlog::logger>(kLoggerName, state.sink);
        state.logger->flush_on(spdlog::level::warn);
      }
      previous = state.sink->Swap(*std::move(inner));
      state.logger->set_level(KarlLevelToSpdlog(cfg.level));
      state.karl_level = cfg.level;
      if (spdlog::default_logger_raw() != state.logger.get()) {
        spdlog::set_default_logger(state.logger);
        // Info and below reach the file within a second even when nothing is flushed.
        spdlog::flush_every(std::chrono::seconds(1));
      }
      if (state.dpdk_routed) rte_log_set_global_level(KarlLevelToDpdk(cfg.level));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("logging setup failed: ", e.what()));
    }
  }
  if (previous != nullptr) previous->flush();
  return absl::OkStatus();
}

void RouteDpdkLogs() {
  LoggingState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  if (state.dpdk_stream == nullptr) {
    cookie_io_functions_t io{};
    io.write = DpdkLogWrite;
    FILE* stream = fopencookie(nullptr, "w", io);
    if (stream == nullptr) {
      spdlog::error("cannot route DPDK logs: fopencookie: {}", std::strerror(errno));
      return;
    }
    // Fully buffered on purpose: rte_vlog flushes after each message, so one write
    // callback sees one message with the level rte_log_cur_msg_loglevel() reports.
    if (rte_openlog_stream(stream) != 0) {
      spdlog::error("cannot route DPDK logs: rte_openlog_stream failed");
      std::fclose(stream);
      return;
    }
    state.dpdk_stream = stream;
  }
  state.dpdk_routed = true;
  rte_log_set_global_level(KarlLevelToDpdk(state.karl_level));
}

void FlushLogs() {
  if (const std::shared_ptr<spdlog::logger> logger = spdlog::default_logger()) logger->flush();
}

}  // namespace karl
