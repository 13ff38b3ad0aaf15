// Closed-loop TPM load generator for tools/bench/compare.py (not a test).
//
// Connects once to each instance's swtpm-compatible Unix data socket (the
// same kind of socket for vtpmd and for swtpm), runs the prep commands once
// per instance, then keeps `clients` commands in flight for the timed window:
// client c owns the instances c, c+C, c+2C, ... and sends its next command to
// the next of them as soon as the previous answer is in, so one client over
// many instances interleaves them command by command. One epoll thread; the
// answer is JSON on stdout.
//
//   loadgen --sockets FILE --command HEX [--prep HEX[:RC,RC]]... [--clients C]
//           [--seconds S] [--warmup S] [--flush-created] [--vary-offset N]
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::uint8_t>;
constexpr std::uint32_t kCreatePrimary = 0x131;
constexpr std::size_t kHeader = 10;
constexpr std::size_t kMaxResponse = 1 << 16;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

Bytes from_hex(const std::string& hex) {
  if (hex.size() % 2) fail("odd hex length: " + hex);
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

Bytes flush_context(std::uint32_t handle) {
  Bytes c = {0x80, 0x01, 0, 0, 0, 14, 0, 0, 0x01, 0x65, 0, 0, 0, 0};
  for (int i = 0; i < 4; ++i) c[10 + i] = static_cast<std::uint8_t>(handle >> (24 - 8 * i));
  return c;
}

struct PrepCommand {
  Bytes bytes;
  std::vector<std::uint32_t> accepted = {0};
};

struct Options {
  std::vector<std::string> sockets;
  Bytes command;
  std::vector<PrepCommand> prep;
  std::size_t clients = 1;
  double seconds = 2;
  double warmup = 0.2;
  bool flush_created = false;
  std::optional<std::size_t> vary_offset;
};

// One instance's data connection: one command at a time, as on a TPM bus.
struct Connection {
  Fd fd;
  Bytes in;
  Clock::time_point sent_at;
  bool timed = false;        // the answer counts (not prep, not the flush)
  bool flushing = false;     // the FlushContext after a CreatePrimary is out
  std::size_t prep_step = 0;
  std::size_t client = 0;
};

class LoadGen {
 public:
  explicit LoadGen(Options o) : o_(std::move(o)), epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_.get() < 0) fail("epoll_create1");
    o_.clients = std::clamp<std::size_t>(o_.clients, 1, o_.sockets.size());
    for (std::size_t i = 0; i < o_.sockets.size(); ++i) connect_one(i);
    next_of_client_.resize(o_.clients);
    for (std::size_t c = 0; c < o_.clients; ++c) next_of_client_[c] = c;
  }

  nlohmann::json run() {
    run_prep();
    const auto start = Clock::now();
    window_begin_ = start + to_duration(o_.warmup);
    window_end_ = window_begin_ + to_duration(o_.seconds);
    for (std::size_t c = 0; c < o_.clients; ++c) send_next(c);
    while (Clock::now() < window_end_) poll_once(window_end_);
    drain();
    return report();
  }

 private:
  static Clock::duration to_duration(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  // Waits for the answers still outstanding and flushes what they created,
  // so that the next run finds the TPMs' object slots free.
  void drain() {
    stopping_ = true;
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (in_flight_ > 0) {
      if (Clock::now() > deadline) fail("outstanding answers did not arrive in 120 s");
      poll_once(deadline);
    }
  }

  void connect_one(std::size_t index) {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) fail("socket: " + std::string(std::strerror(errno)));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const auto& path = o_.sockets[index];
    if (path.size() >= sizeof addr.sun_path) fail("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      fail("connect " + path + ": " + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = index;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) fail("epoll_ctl");
    Connection c;
    c.fd = std::move(fd);
    c.client = index % o_.clients;
    conns_.push_back(std::move(c));
  }

  void write_all(Connection& c, const Bytes& bytes) {
    c.sent_at = Clock::now();
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(c.fd.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("send: " + std::string(std::strerror(errno)));
      off += static_cast<std::size_t>(n);
    }
  }

  // Prep: every instance runs the prep list once, all instances in parallel.
  void run_prep() {
    if (o_.prep.empty()) return;
    prepping_ = conns_.size();
    for (auto& c : conns_) write_all(c, o_.prep[0].bytes);
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    while (prepping_ > 0) {
      if (Clock::now() > deadline) fail("prep commands did not finish in 120 s");
      poll_once(deadline);
    }
  }

  void send_next(std::size_t client) {
    const std::size_t index = next_of_client_[client];
    auto next = index + o_.clients;
    next_of_client_[client] = next < conns_.size() ? next : client;
    Connection& c = conns_[index];
    c.timed = true;
    ++in_flight_;
    if (o_.vary_offset) {
      ++sequence_;
      for (int i = 0; i < 8; ++i) o_.command[*o_.vary_offset + i] = static_cast<std::uint8_t>(sequence_ >> (8 * i));
    }
    write_all(c, o_.command);
  }

  void poll_once(Clock::time_point until) {
    epoll_event events[256];
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    const int n = epoll_wait(epoll_.get(), events, 256, static_cast<int>(std::max<long long>(0, left) + 1));
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; ++i) readable(events[i].data.u64);
  }

  void readable(std::size_t index) {
    Connection& c = conns_[index];
    std::uint8_t buf[4096];
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) fail("instance " + std::to_string(index) + " closed its data socket");
    c.in.insert(c.in.end(), buf, buf + n);
    if (c.in.size() < kHeader) return;
    const std::uint32_t size = be32(&c.in[2]);
    if (size < kHeader || size > kMaxResponse) fail("bad response size from instance " + std::to_string(index));
    if (c.in.size() < size) return;
    if (c.in.size() > size) fail("more bytes than one response from instance " + std::to_string(index));
    Bytes response = std::move(c.in);
    c.in.clear();
    answered(index, c, response);
  }

  void answered(std::size_t index, Connection& c, const Bytes& response) {
    const auto now = Clock::now();
    const std::uint32_t rc = be32(&response[6]);
    if (!c.timed) return prep_answered(index, c, rc);
    --in_flight_;
    if (c.flushing) {
      c.flushing = false;
      if (rc != 0) fail("FlushContext failed: rc 0x" + hex(rc));
      if (!stopping_) send_next(c.client);
      return;
    }
    if (rc != 0) {
      ++rc_errors_[rc];
      if (++errors_ > 100) fail("more than 100 error responses, e.g. rc 0x" + hex(rc));
    } else if (now >= window_begin_ && now < window_end_) {
      latencies_ns_.push_back(static_cast<std::uint32_t>(
          std::min<long long>(UINT32_MAX, std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.sent_at).count())));
    }
    if (o_.flush_created && rc == 0 && be32(&o_.command[6]) == kCreatePrimary) {
      c.flushing = true;
      ++in_flight_;
      return write_all(c, flush_context(be32(&response[kHeader])));
    }
    if (!stopping_) send_next(c.client);
  }

  void prep_answered(std::size_t index, Connection& c, std::uint32_t rc) {
    const auto& accepted = o_.prep[c.prep_step].accepted;
    if (std::find(accepted.begin(), accepted.end(), rc) == accepted.end())
      fail("prep command " + std::to_string(c.prep_step) + " on instance " + std::to_string(index) + ": rc 0x" + hex(rc));
    if (++c.prep_step < o_.prep.size()) return write_all(c, o_.prep[c.prep_step].bytes);
    --prepping_;
  }

  static std::string hex(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%x", v);
    return buf;
  }

  nlohmann::json report() {
    std::sort(latencies_ns_.begin(), latencies_ns_.end());
    auto pct = [&](double f) -> nlohmann::json {
      if (latencies_ns_.empty()) return nullptr;
      const auto rank = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(f * static_cast<double>(latencies_ns_.size()))));
      return latencies_ns_[rank - 1] / 1000.0;
    };
    rusage self{};
    getrusage(RUSAGE_SELF, &self);
    const double cpu = static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
                       static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
    nlohmann::json errors = nlohmann::json::object();
    for (const auto& [rc, count] : rc_errors_) errors["0x" + hex(rc)] = count;
    return {{"instances", conns_.size()},
            {"clients", o_.clients},
            {"seconds", o_.seconds},
            {"ops", latencies_ns_.size()},
            {"ops_per_s", static_cast<double>(latencies_ns_.size()) / o_.seconds},
            {"p50_us", pct(0.50)},
            {"p90_us", pct(0.90)},
            {"p99_us", pct(0.99)},
            {"max_us", pct(1.0)},
            {"errors", errors},
            {"loadgen_cpu_s", cpu}};
  }

  Options o_;
  Fd epoll_;
  std::vector<Connection> conns_;
  std::vector<std::size_t> next_of_client_;
  std::vector<std::uint32_t> latencies_ns_;
  std::map<std::uint32_t, std::uint64_t> rc_errors_;
  std::uint64_t errors_ = 0;
  std::uint64_t sequence_ = 0;
  std::size_t prepping_ = 0;
  std::size_t in_flight_ = 0;  // timed commands and flushes sent, not yet answered
  bool stopping_ = false;
  Clock::time_point window_begin_, window_end_;
};

PrepCommand parse_prep(const std::string& arg) {
  PrepCommand p;
  const auto colon = arg.find(':');
  p.bytes = from_hex(arg.substr(0, colon));
  if (colon != std::string::npos) {
    p.accepted.clear();
    std::size_t pos = colon + 1;
    while (pos <= arg.size()) {
      const auto comma = std::min(arg.find(',', pos), arg.size());
      p.accepted.push_back(static_cast<std::uint32_t>(std::stoul(arg.substr(pos, comma - pos), nullptr, 0)));
      pos = comma + 1;
    }
  }
  return p;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--sockets") {
      std::ifstream f(value());
      for (std::string line; std::getline(f, line);)
        if (!line.empty()) o.sockets.push_back(line);
    } else if (a == "--command") {
      o.command = from_hex(value());
    } else if (a == "--prep") {
      o.prep.push_back(parse_prep(value()));
    } else if (a == "--clients") {
      o.clients = std::stoul(value());
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--warmup") {
      o.warmup = std::stod(value());
    } else if (a == "--flush-created") {
      o.flush_created = true;
    } else if (a == "--vary-offset") {
      o.vary_offset = std::stoul(value());
    } else {
      fail("unknown argument " + a);
    }
  }
  if (o.sockets.empty()) fail("--sockets FILE with at least one path is required");
  if (o.command.size() < kHeader) fail("--command HEX is required");
  if (o.vary_offset && *o.vary_offset + 8 > o.command.size()) fail("--vary-offset beyond the command");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    LoadGen gen(parse(argc, argv));
    std::printf("%s\n", gen.run().dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loadgen: %s\n", e.what());
    return 1;
  }
}
