#include "src/core/log.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace vtpm {
namespace {

// A Logger writing into a pipe, with a clock the test moves.
class Capture {
 public:
  explicit Capture(LogFormat format) {
    REQUIRE(::pipe2(fds_, O_NONBLOCK) == 0);
    log_ = std::make_unique<Logger>(LogLevel::kDebug, fds_[1], format, [this] { return now_ms; });
  }
  ~Capture() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  Logger& log() { return *log_; }
  std::vector<std::string> lines() {
    std::string all;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds_[0], buf, sizeof buf)) > 0;) all.append(buf, static_cast<std::size_t>(n));
    std::vector<std::string> out;
    for (std::size_t start = 0, nl; (nl = all.find('\n', start)) != std::string::npos; start = nl + 1) {
      out.push_back(all.substr(start, nl - start));
    }
    return out;
  }
  std::uint64_t now_ms = 1000;

 private:
  int fds_[2] = {-1, -1};
  std::unique_ptr<Logger> log_;
};

const Uuid kGuest = *Uuid::parse("6f0c5d1e-8a4b-4c2d-9e3f-0123456789ab");
const Uuid kOther = *Uuid::parse("11111111-2222-4333-8444-555555555555");

TEST_CASE("JSON lines carry ts, level, pid, msg, instance and fields") {
  Capture c(LogFormat::kJson);
  c.log().log(LogLevel::kWarn, kGuest, "odd \"quoted\"\nmessage", {{"code", "7"}});
  c.log().info("daemon line");
  const auto lines = c.lines();
  REQUIRE(lines.size() == 2);
  const auto first = nlohmann::json::parse(lines[0]);
  CHECK(first["level"] == "warn");
  CHECK(first["msg"] == "odd \"quoted\"\nmessage");
  CHECK(first["instance"] == kGuest.to_string());
  CHECK(first["code"] == "7");
  CHECK(first["pid"] == ::getpid());
  CHECK(first["ts"].get<std::string>().size() == 24);
  const auto second = nlohmann::json::parse(lines[1]);
  CHECK(second["level"] == "info");
  CHECK_FALSE(second.contains("instance"));
}

TEST_CASE("invalid UTF-8 in a message is replaced, not thrown") {
  Capture c(LogFormat::kJson);
  c.log().error(std::string("bad \xff byte"));
  const auto lines = c.lines();
  REQUIRE(lines.size() == 1);
  CHECK(nlohmann::json::parse(lines[0])["msg"].get<std::string>().starts_with("bad "));
}

TEST_CASE("per-instance rate limit: bursts, suppression report, other instances unaffected") {
  Capture c(LogFormat::kHuman);
  c.log().set_instance_rate_limit(2, 3);
  for (int i = 0; i < 10; ++i) c.log().info(kGuest, "line " + std::to_string(i));
  c.log().info(kOther, "other");
  auto lines = c.lines();
  REQUIRE(lines.size() == 4);  // a burst of 3, then the other instance
  CHECK(lines[2].find("line 2") != std::string::npos);
  CHECK(lines[3].find("instance=" + kOther.to_string() + " other") != std::string::npos);
  // Half a second later one token is back: the next line is preceded by
  // the report of the 7 dropped.
  c.now_ms += 500;
  c.log().info(kGuest, "after");
  lines = c.lines();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("WARN instance=" + kGuest.to_string() + " suppressed 7 log line(s)") != std::string::npos);
  CHECK(lines[0].find("suppressed=7") != std::string::npos);
  CHECK(lines[1].find("after") != std::string::npos);
  // Dropped lines of an instance that then goes quiet are reported by the flush.
  c.log().info(kGuest, "dropped");
  c.log().flush_suppressed();
  lines = c.lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("suppressed 1 log line(s)") != std::string::npos);
  c.log().flush_suppressed();
  CHECK(c.lines().empty());
}

TEST_CASE("rate 0 means unlimited; daemon lines are never limited") {
  Capture c(LogFormat::kHuman);
  for (int i = 0; i < 100; ++i) c.log().info(kGuest, "x");
  c.log().set_instance_rate_limit(1, 1);
  for (int i = 0; i < 100; ++i) c.log().info("daemon");
  CHECK(c.lines().size() == 200);
}

TEST_CASE("log format names") {
  CHECK(*parse_log_format("json") == LogFormat::kJson);
  CHECK(*parse_log_format("human") == LogFormat::kHuman);
  CHECK_FALSE(parse_log_format("xml"));
}

}  // namespace
}  // namespace vtpm
