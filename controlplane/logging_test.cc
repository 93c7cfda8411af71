#include "controlplane/logging.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rte_log.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace karl {
namespace {

namespace fs = std::filesystem;

// "2026-11-28T02:04:43.123Z": digits where digits belong, the rest literal. (Not
// std::regex: GCC 12 warns inside it in sanitizer builds, and -Werror is on.)
bool IsUtcMillisTimestamp(std::string_view ts) {
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (ts.size() != kShape.size()) return false;
  for (size_t i = 0; i < ts.size(); ++i) {
    const bool ok = kShape[i] == 'd' ? (ts[i] >= '0' && ts[i] <= '9') : ts[i] == kShape[i];
    if (!ok) return false;
  }
  return true;
}

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "karl-logging-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }

  void TearDown() override {
    // Back to stderr so later tests never write into the removed directory.
    LogConfig quiet;
    quiet.level = 2;
    EXPECT_TRUE(InitLogging(quiet).ok());
    fs::remove_all(dir_);
  }

  LogConfig FileConfig(int level, const std::string& format, const std::string& name = "karl.log") {
    LogConfig cfg;
    cfg.level = level;
    cfg.format = format;
    cfg.file = (dir_ / name).string();
    return cfg;
  }

  static std::vector<std::string> ReadLines(const std::string& path) {
    FlushLogs();
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  fs::path dir_;
};

TEST_F(LoggingTest, JsonLinesParseAndEscapeMessages) {
  const LogConfig cfg = FileConfig(3, "json");
  ASSERT_TRUE(InitLogging(cfg).ok());
  const std::string tricky = "say \"hi\" C:\\path\nsecond line\ttab \x01 bell\x07 caf\xc3\xa9";
  spdlog::info("{}", tricky);
  spdlog::warn("invalid utf-8: \xff\xfe end");

  const std::vector<std::string> lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 2u);  // the embedded newline did not split the record
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first.at("level"), "info");
  EXPECT_EQ(first.at("logger"), "karl");
  EXPECT_EQ(first.at("msg"), tricky);
  EXPECT_TRUE(IsUtcMillisTimestamp(first.at("ts").get<std::string>())) << first.at("ts");
  // Field order is part of the format shippers see.
  EXPECT_EQ(lines[0].rfind("{\"ts\":\"", 0), 0u) << lines[0];

  const nlohmann::json second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second.at("level"), "warn");
  EXPECT_EQ(second.at("msg"), "invalid utf-8: \xef\xbf\xbd\xef\xbf\xbd end");
}

TEST_F(LoggingTest, TextFormatIsOneLinePerRecord) {
  const LogConfig cfg = FileConfig(3, "text");
  ASSERT_TRUE(InitLogging(cfg).ok());
  spdlog::info("hello world");
  spdlog::error("two\nlines");

  const std::vector<std::string> lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 2u);
  ASSERT_GT(lines[0].size(), 24u);
  EXPECT_TRUE(IsUtcMillisTimestamp(std::string_view(lines[0]).substr(0, 24))) << lines[0];
  EXPECT_EQ(lines[0].substr(24), " info  hello world");
  EXPECT_TRUE(lines[1].ends_with(" error two\\nlines")) << lines[1];
}

TEST_F(LoggingTest, LevelTwoDropsInfoKeepsWarnings) {
  const LogConfig cfg = FileConfig(2, "json");
  ASSERT_TRUE(InitLogging(cfg).ok());
  spdlog::debug("debug message");
  spdlog::info("info message");
  spdlog::warn("warn message");
  spdlog::error("error message");

  const std::vector<std::string> lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("msg"), "warn message");
  EXPECT_EQ(nlohmann::json::parse(lines[1]).at("msg"), "error message");
}

TEST_F(LoggingTest, LevelFiveLogsTrace) {
  const LogConfig cfg = FileConfig(5, "json");
  ASSERT_TRUE(InitLogging(cfg).ok());
  spdlog::trace("trace message");
  const std::vector<std::string> lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("level"), "trace");
}

TEST_F(LoggingTest, RotatesWhenTheFileIsFull) {
  LogConfig cfg = FileConfig(3, "text");
  cfg.max_files = 2;
  ASSERT_TRUE(InitLogging(cfg, /*max_file_bytes=*/1024).ok());
  const std::string filler(100, 'x');
  for (int i = 0; i < 100; ++i) spdlog::info("{} {}", i, filler);
  FlushLogs();

  EXPECT_TRUE(fs::exists(dir_ / "karl.log"));
  EXPECT_TRUE(fs::exists(dir_ / "karl.1.log"));
  EXPECT_TRUE(fs::exists(dir_ / "karl.2.log"));
  EXPECT_FALSE(fs::exists(dir_ / "karl.3.log"));  // only max_files rotated files kept
  for (const char* name : {"karl.log", "karl.1.log", "karl.2.log"}) {
    EXPECT_LE(fs::file_size(dir_ / name), 1024u) << name;
  }
  // The newest record is in the live file.
  const std::vector<std::string> lines = ReadLines((dir_ / "karl.log").string());
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("info  99 xxx"), std::string::npos) << lines.back();
}

TEST_F(LoggingTest, UnopenableFileIsAnErrorNamingThePathAndKeepsTheOldSetup) {
  const LogConfig good = FileConfig(3, "text");
  ASSERT_TRUE(InitLogging(good).ok());

  // A directory component that is a regular file can never hold a log file.
  std::ofstream(dir_ / "plain").put('x');
  const LogConfig bad = FileConfig(3, "text", "plain/karl.log");
  const absl::Status st = InitLogging(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_NE(st.message().find(bad.file), std::string_view::npos) << st;
  EXPECT_NE(st.message().find("Not a directory"), std::string_view::npos) << st;

  // Nothing half-applied: records still reach the previous file.
  spdlog::info("still here");
  const std::vector<std::string> lines = ReadLines(good.file);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].ends_with("still here"));
}

TEST_F(LoggingTest, UnwritableFileIsPermissionDenied) {
  LogConfig bad = FileConfig(3, "text", "ro/karl.log");
  const fs::path ro = dir_ / "ro";
  fs::create_directory(ro);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
  if (geteuid() == 0) {
    // Root ignores directory modes; a read-only sysfs attribute refuses even root.
    bad.file = "/sys/kernel/notes";
    ASSERT_TRUE(fs::exists(bad.file)) << "need sysfs to provoke EACCES as root";
  }
  const absl::Status st = InitLogging(bad);
  fs::permissions(ro, fs::perms::owner_all);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << st;
  EXPECT_NE(st.message().find(bad.file), std::string_view::npos) << st;
}

TEST_F(LoggingTest, RejectsBadLevelAndFormat) {
  LogConfig cfg;
  cfg.level = 6;
  EXPECT_EQ(InitLogging(cfg).code(), absl::StatusCode::kInvalidArgument);
  cfg.level = 3;
  cfg.format = "xml";
  const absl::Status st = InitLogging(cfg);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("xml"), std::string_view::npos) << st;
}

TEST_F(LoggingTest, DpdkLogsAreRoutedWithTheirLevel) {
  const LogConfig cfg = FileConfig(3, "text");
  ASSERT_TRUE(InitLogging(cfg).ok());
  RouteDpdkLogs();
  EXPECT_EQ(rte_log_get_global_level(), RTE_LOG_NOTICE);

  rte_log(RTE_LOG_ERR, RTE_LOGTYPE_EAL, "hello %d\n", 5);
  rte_log(RTE_LOG_WARNING, RTE_LOGTYPE_EAL, "first\nsecond\n");
  rte_log(RTE_LOG_NOTICE, RTE_LOGTYPE_EAL, "no newline");
  rte_log(RTE_LOG_INFO, RTE_LOGTYPE_EAL, "EAL chatter stays quiet at level 3\n");

  std::vector<std::string> lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0].ends_with(" error dpdk: hello 5")) << lines[0];
  EXPECT_TRUE(lines[1].ends_with(" warn  dpdk: first")) << lines[1];
  EXPECT_TRUE(lines[2].ends_with(" warn  dpdk: second")) << lines[2];
  EXPECT_TRUE(lines[3].ends_with(" info  dpdk: no newline")) << lines[3];

  // A reload to debug opens DPDK's INFO messages too.
  ASSERT_TRUE(InitLogging(FileConfig(4, "text")).ok());
  EXPECT_EQ(rte_log_get_global_level(), RTE_LOG_INFO);
  rte_log(RTE_LOG_INFO, RTE_LOGTYPE_EAL, "now visible\n");
  lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_TRUE(lines[4].ends_with(" info  dpdk: now visible")) << lines[4];

  RouteDpdkLogs();  // idempotent
  rte_log(RTE_LOG_ERR, RTE_LOGTYPE_EAL, "once\n");
  lines = ReadLines(cfg.file);
  ASSERT_EQ(lines.size(), 6u);
}

TEST_F(LoggingTest, ReloadWhileOtherThreadsLogLosesNothingAfterTheSwitch) {
  const LogConfig first = FileConfig(3, "text", "first.log");
  const LogConfig second = FileConfig(3, "json", "second.log");
  ASSERT_TRUE(InitLogging(first).ok());
  std::atomic<bool> stop{false};
  std::vector<std::thread> loggers;
  for (int t = 0; t < 4; ++t) {
    loggers.emplace_back([&stop, t] {
      while (!stop) spdlog::info("thread {}", t);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(InitLogging(second).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (std::thread& t : loggers) t.join();
  spdlog::info("last");

  // Every line of the new file is a complete JSON record: no torn or mixed lines.
  const std::vector<std::string> lines = ReadLines(second.file);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
  EXPECT_EQ(nlohmann::json::parse(lines.back()).at("msg"), "last");
  EXPECT_FALSE(ReadLines(first.file).empty());
}

// stderr gathers records and writes them when the logger flushes (D23): info waits for
// FlushLogs (the control loop calls it when idle), a warning goes out at once with
// everything before it, in order.
TEST_F(LoggingTest, StderrIsWrittenOnFlushAndAtOnceForWarnings) {
  const std::string path = (dir_ / "stderr.txt").string();
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(saved, 0);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  close(fd);
  const auto contents = [&] {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  LogConfig cfg;
  cfg.level = 3;
  ASSERT_TRUE(InitLogging(cfg).ok());
  // The once-a-second flusher thread may write between a record and the read below
  // (tens of microseconds out of a second): try again then, it is not due again so soon.
  std::string before_flush;
  for (int attempt = 0; attempt < 3; ++attempt) {
    FlushLogs();
    ASSERT_EQ(ftruncate(STDERR_FILENO, 0), 0);
    ASSERT_EQ(lseek(STDERR_FILENO, 0, SEEK_SET), 0);
    spdlog::info("first record");
    spdlog::info("second record");
    before_flush = contents();
    if (before_flush.empty()) break;
  }
  FlushLogs();
  const std::string after_flush = contents();
  spdlog::info("third record");
  spdlog::warn("a warning");
  const std::string after_warning = contents();
  ASSERT_EQ(dup2(saved, STDERR_FILENO), STDERR_FILENO);
  close(saved);

  EXPECT_EQ(before_flush, "");
  EXPECT_NE(after_flush.find("first record"), std::string::npos) << after_flush;
  EXPECT_LT(after_flush.find("first record"), after_flush.find("second record"));
  EXPECT_EQ(after_flush.find("third record"), std::string::npos);
  const size_t third = after_warning.find("third record");
  ASSERT_NE(third, std::string::npos) << after_warning;
  EXPECT_LT(third, after_warning.find("a warning"));
  EXPECT_EQ(after_warning.find("first record"), after_warning.rfind("first record"));  // once
}

TEST(LogLevelTest, KarlLevelsMapBothWays) {
  EXPECT_EQ(KarlLevelToSpdlog(1), spdlog::level::err);
  EXPECT_EQ(KarlLevelToSpdlog(2), spdlog::level::warn);
  EXPECT_EQ(KarlLevelToSpdlog(3), spdlog::level::info);
  EXPECT_EQ(KarlLevelToSpdlog(4), spdlog::level::debug);
  EXPECT_EQ(KarlLevelToSpdlog(5), spdlog::level::trace);
  for (int level = 1; level <= 5; ++level) {
    EXPECT_EQ(SpdlogLevelToKarl(KarlLevelToSpdlog(level)), level);
  }
  EXPECT_EQ(KarlLevelToDpdk(1), RTE_LOG_ERR);
  EXPECT_EQ(KarlLevelToDpdk(2), RTE_LOG_WARNING);
  EXPECT_EQ(KarlLevelToDpdk(3), RTE_LOG_NOTICE);
  EXPECT_EQ(KarlLevelToDpdk(4), RTE_LOG_INFO);
  EXPECT_EQ(KarlLevelToDpdk(5), RTE_LOG_DEBUG);
}

}  // namespace
}  // namespace karl
