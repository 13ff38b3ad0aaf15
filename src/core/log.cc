#include "src/core/log.h"

#include <nlohmann/json.hpp>

#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>

namespace vtpm {
namespace {

std::uint64_t steady_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

std::string utc_timestamp() {
  timeval now{};
  gettimeofday(&now, nullptr);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[40];
  const std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", static_cast<long>(now.tv_usec / 1000));
  return stamp;
}

}  // namespace

Result<LogLevel> parse_log_level(std::string_view text) {
  if (text == "error") return LogLevel::kError;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "info") return LogLevel::kInfo;
  if (text == "debug") return LogLevel::kDebug;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown log level '" + std::string(text) + "' (expected error, warn, info or debug)");
}

Result<LogFormat> parse_log_format(std::string_view text) {
  if (text == "human") return LogFormat::kHuman;
  if (text == "json") return LogFormat::kJson;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown log format '" + std::string(text) + "' (expected human or json)");
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

Logger::Logger(LogLevel level, int fd, LogFormat format, Clock clock)
    : level_(level), fd_(fd), format_(format), clock_(clock ? std::move(clock) : Clock(steady_ms)) {}

void Logger::set_instance_rate_limit(std::uint32_t rate, std::uint32_t burst) {
  std::lock_guard lock(mutex_);
  rate_ = rate;
  burst_ = std::max<std::uint32_t>(burst, 1);
  buckets_.clear();
}

void Logger::log(LogLevel level, std::string_view message, const LogFields& fields) const {
  if (enabled(level)) write_line(level, {}, message, fields);
}

void Logger::log(LogLevel level, const Uuid& instance, std::string_view message, const LogFields& fields) const {
  if (!enabled(level)) return;
  std::uint64_t dropped = 0;
  if (!admit(instance, &dropped)) return;
  if (dropped != 0) write_suppressed(instance, dropped);
  write_line(level, instance.to_string(), message, fields);
}

void Logger::refill(Bucket& b, std::uint64_t now) const {
  if (b.refilled_ms == 0) b.tokens = burst_;  // a new bucket starts full
  else b.tokens = std::min<double>(burst_, b.tokens + static_cast<double>(now - b.refilled_ms) * rate_ / 1000.0);
  b.refilled_ms = std::max<std::uint64_t>(now, 1);
}

bool Logger::admit(const Uuid& instance, std::uint64_t* report) const {
  std::lock_guard lock(mutex_);
  if (rate_ == 0) return true;
  Bucket& b = buckets_[instance];
  refill(b, clock_());
  if (b.tokens < 1.0) {
    ++b.suppressed;
    return false;
  }
  b.tokens -= 1.0;
  *report = std::exchange(b.suppressed, 0);
  return true;
}

void Logger::flush_suppressed() const {
  std::vector<std::pair<Uuid, std::uint64_t>> reports;
  {
    std::lock_guard lock(mutex_);
    const std::uint64_t now = clock_();
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      Bucket& b = it->second;
      if (b.suppressed != 0) reports.emplace_back(it->first, std::exchange(b.suppressed, 0));
      refill(b, now);
      // A full bucket carries no history: forget it (bounded memory).
      it = b.tokens >= burst_ ? buckets_.erase(it) : std::next(it);
    }
  }
  for (const auto& [id, count] : reports) write_suppressed(id, count);
}

void Logger::write_suppressed(const Uuid& instance, std::uint64_t count) const {
  write_line(LogLevel::kWarn, instance.to_string(),
             "suppressed " + std::to_string(count) + " log line(s) of this instance (rate limit " +
                 std::to_string(rate_) + "/s)",
             {{"suppressed", std::to_string(count)}});
}

void Logger::write_line(LogLevel level, std::string_view instance, std::string_view message,
                        const LogFields& fields) const {
  std::string line;
  if (format_ == LogFormat::kJson) {
    std::string lower = log_level_name(level);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    nlohmann::ordered_json j = {{"ts", utc_timestamp()}, {"level", lower}, {"pid", ::getpid()}, {"msg", message}};
    if (!instance.empty()) j["instance"] = instance;
    for (const auto& [key, value] : fields) j[key] = value;
    // Bytes from outside (names, paths) may not be UTF-8: replaced, not thrown.
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line.reserve(96 + message.size());
    line += utc_timestamp();
    line += " vtpmd[" + std::to_string(getpid()) + "] ";
    line += log_level_name(level);
    if (!instance.empty()) {
      line += " instance=";
      line += instance;
    }
    line += ' ';
    line += message;
    for (const auto& [key, value] : fields) line += " " + key + "=" + value;
  }
  line += '\n';
  // One write per line keeps lines whole when threads log concurrently.
  [[maybe_unused]] ssize_t ignored = ::write(fd_, line.data(), line.size());
}

}  // namespace vtpm
