#include "src/daemon/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vtpm {
namespace {

std::string take_env(const char* name) {
  const char* value = std::getenv(name);
  std::string out = value != nullptr ? value : "";
  ::unsetenv(name);
  return out;
}

// STATUS= is one line of the datagram's newline-separated assignments.
std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  return out;
}

}  // namespace

SystemdNotifier::SystemdNotifier() {
  socket_path_ = take_env("NOTIFY_SOCKET");
  const std::string usec = take_env("WATCHDOG_USEC");
  const std::string pid = take_env("WATCHDOG_PID");
  // The watchdog is ours only if systemd meant this process (WATCHDOG_PID
  // unset, or our pid).
  if (!usec.empty() && (pid.empty() || pid == std::to_string(::getpid()))) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(usec.c_str(), &end, 10);
    if (end != nullptr && *end == '\0') watchdog_usec_ = value;
  }
}

SystemdNotifier::~SystemdNotifier() {
  watchdog_.close();
  if (fd_ >= 0) ::close(fd_);
}

Status SystemdNotifier::open() {
  if (socket_path_.empty()) return Status::success();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof address.sun_path || (socket_path_[0] != '/' && socket_path_[0] != '@')) {
    return make_error(ErrorCode::kInvalidArgument, "NOTIFY_SOCKET '" + socket_path_ + "' is not a socket path");
  }
  std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());
  if (socket_path_[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return make_error(ErrorCode::kIo, std::string("NOTIFY_SOCKET: socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    return make_error(ErrorCode::kIo, "NOTIFY_SOCKET " + socket_path_ + ": " + std::strerror(error));
  }
  return Status::success();
}

void SystemdNotifier::send(const std::string& message) {
  if (fd_ < 0) return;
  // Best effort, never blocking: systemd reads its socket promptly, and a
  // lost STATUS= line is harmless (a lost WATCHDOG=1 is repeated).
  (void)::send(fd_, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void SystemdNotifier::ready(std::string_view status) { send("READY=1\nSTATUS=" + one_line(status)); }
void SystemdNotifier::status(std::string_view status) { send("STATUS=" + one_line(status)); }
void SystemdNotifier::stopping(std::string_view status) { send("STOPPING=1\nSTATUS=" + one_line(status)); }

void SystemdNotifier::start_watchdog(uv_loop_t* loop) {
  if (fd_ < 0 || watchdog_usec_ == 0) return;
  const std::uint64_t interval_ms = std::max<std::uint64_t>(1, watchdog_usec_ / 2000);
  uv_timer_init(loop, watchdog_.get());
  watchdog_.mark_live();
  watchdog_.get()->data = this;
  send("WATCHDOG=1");
  uv_timer_start(
      watchdog_.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<SystemdNotifier*>(t->data)) self->send("WATCHDOG=1");
      },
      interval_ms, interval_ms);
}

void SystemdNotifier::stop_watchdog() { watchdog_.close(); }

}  // namespace vtpm
