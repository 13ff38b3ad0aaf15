// Leveled logging to stderr, one line per message: human-readable by
// default, or JSON lines (--log-format=json: {"ts","level","pid","msg",
// "instance", fields...}). Every instance-related line carries the
// instance UUID ("instance=<uuid>" / "instance") so one guest's history
// can be grepped.
//
// Lines about an instance are rate-limited per instance (a token bucket,
// --log-rate-limit lines per second with bursts of --log-burst), so a
// hostile guest that provokes errors cannot flood the log; what was
// dropped is reported as a "suppressed N log lines" line with a
// `suppressed` field, before the instance's next line or at the next
// flush_suppressed() (the daemon calls it every second).
//
// Thread-safe: each line is one write(2); the rate limiter takes a mutex
// (log lines are rare next to commands).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proto/result.h"
#include "proto/uuid.h"

namespace vtpm {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };
enum class LogFormat { kHuman, kJson };

Result<LogLevel> parse_log_level(std::string_view text);
const char* log_level_name(LogLevel level);
Result<LogFormat> parse_log_format(std::string_view text);

// Extra key/value pairs of a line (values are text; in JSON, strings).
using LogFields = std::vector<std::pair<std::string, std::string>>;

class Logger {
 public:
  using Clock = std::function<std::uint64_t()>;  // milliseconds, monotonic

  explicit Logger(LogLevel level = LogLevel::kInfo, int fd = 2, LogFormat format = LogFormat::kHuman,
                  Clock clock = {});

  void set_level(LogLevel level) { level_ = level; }
  bool enabled(LogLevel level) const { return level <= level_; }
  // `rate` lines per second per instance, bursts of `burst`; rate 0: unlimited.
  void set_instance_rate_limit(std::uint32_t rate, std::uint32_t burst);

  void log(LogLevel level, std::string_view message, const LogFields& fields = {}) const;
  void log(LogLevel level, const Uuid& instance, std::string_view message, const LogFields& fields = {}) const;
  // Reports lines suppressed since the last report and forgets instances
  // that have been quiet long enough to have a full bucket.
  void flush_suppressed() const;

  void error(std::string_view m) const { log(LogLevel::kError, m); }
  void warn(std::string_view m) const { log(LogLevel::kWarn, m); }
  void info(std::string_view m) const { log(LogLevel::kInfo, m); }
  void debug(std::string_view m) const { log(LogLevel::kDebug, m); }
  void error(const Uuid& id, std::string_view m) const { log(LogLevel::kError, id, m); }
  void warn(const Uuid& id, std::string_view m) const { log(LogLevel::kWarn, id, m); }
  void info(const Uuid& id, std::string_view m) const { log(LogLevel::kInfo, id, m); }
  void debug(const Uuid& id, std::string_view m) const { log(LogLevel::kDebug, id, m); }

 private:
  struct Bucket {
    double tokens = 0;
    std::uint64_t refilled_ms = 0;
    std::uint64_t suppressed = 0;
  };
  // Takes a token from the instance's bucket; false if the line is to be
  // dropped. `*report` is set to the count of lines dropped before it.
  bool admit(const Uuid& instance, std::uint64_t* report) const;
  void refill(Bucket& bucket, std::uint64_t now) const;
  void write_suppressed(const Uuid& instance, std::uint64_t count) const;
  void write_line(LogLevel level, std::string_view instance, std::string_view message, const LogFields& fields) const;

  LogLevel level_;
  int fd_;
  LogFormat format_;
  Clock clock_;
  std::uint32_t rate_ = 0;
  std::uint32_t burst_ = 0;
  mutable std::mutex mutex_;
  mutable std::unordered_map<Uuid, Bucket> buckets_;
};

}  // namespace vtpm
