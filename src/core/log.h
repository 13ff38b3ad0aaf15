// Leveled logging to stderr. Every instance-related line carries the
// instance UUID as "instance=<uuid>" so one guest's history can be grepped.
// Thread-safe (each line is one write(2)).
#pragma once

#include <string>
#include <string_view>

#include "proto/result.h"
#include "proto/uuid.h"

namespace vtpm {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

Result<LogLevel> parse_log_level(std::string_view text);
const char* log_level_name(LogLevel level);

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, int fd = 2) : level_(level), fd_(fd) {}

  void set_level(LogLevel level) { level_ = level; }
  bool enabled(LogLevel level) const { return level <= level_; }

  void log(LogLevel level, std::string_view message) const;
  void log(LogLevel level, const Uuid& instance, std::string_view message) const;

  void error(std::string_view m) const { log(LogLevel::kError, m); }
  void warn(std::string_view m) const { log(LogLevel::kWarn, m); }
  void info(std::string_view m) const { log(LogLevel::kInfo, m); }
  void debug(std::string_view m) const { log(LogLevel::kDebug, m); }
  void error(const Uuid& id, std::string_view m) const { log(LogLevel::kError, id, m); }
  void warn(const Uuid& id, std::string_view m) const { log(LogLevel::kWarn, id, m); }
  void info(const Uuid& id, std::string_view m) const { log(LogLevel::kInfo, id, m); }
  void debug(const Uuid& id, std::string_view m) const { log(LogLevel::kDebug, id, m); }

 private:
  void write_line(LogLevel level, std::string_view instance, std::string_view message) const;

  LogLevel level_;
  int fd_;
};

}  // namespace vtpm
