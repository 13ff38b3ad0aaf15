#include "src/core/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <ctime>

namespace vtpm {

Result<LogLevel> parse_log_level(std::string_view text) {
  if (text == "error") return LogLevel::kError;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "info") return LogLevel::kInfo;
  if (text == "debug") return LogLevel::kDebug;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown log level '" + std::string(text) + "' (expected error, warn, info or debug)");
}

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "ERROR";
    case LogLevel::kWarn: return "WARN";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kDebug: return "DEBUG";
  }
  return "?";
}

void Logger::log(LogLevel level, std::string_view message) const {
  if (enabled(level)) write_line(level, {}, message);
}

void Logger::log(LogLevel level, const Uuid& instance, std::string_view message) const {
  if (enabled(level)) write_line(level, instance.to_string(), message);
}

void Logger::write_line(LogLevel level, std::string_view instance, std::string_view message) const {
  timeval now{};
  gettimeofday(&now, nullptr);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[40];
  const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", static_cast<long>(now.tv_usec / 1000));
  std::string line;
  line.reserve(96 + message.size());
  line += stamp;
  line += " vtpmd[" + std::to_string(getpid()) + "] ";
  line += log_level_name(level);
  if (!instance.empty()) {
    line += " instance=";
    line += instance;
  }
  line += ' ';
  line += message;
  line += '\n';
  // One write per line keeps lines whole when threads log concurrently.
  [[maybe_unused]] ssize_t ignored = ::write(fd_, line.data(), line.size());
}

}  // namespace vtpm
