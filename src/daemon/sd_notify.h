// systemd's notification protocol (sd_notify(3)), spoken directly: one
// datagram per state change to the AF_UNIX socket named by NOTIFY_SOCKET
// (a path, or "@name" for the abstract namespace). READY=1 once serving,
// STATUS=... for `systemctl status`, STOPPING=1 at shutdown, and
// WATCHDOG=1 every half WATCHDOG_USEC from a timer on the loop, so a loop
// that is stuck stops the pings and systemd restarts the service.
//
// Without NOTIFY_SOCKET (not started by systemd) every call does nothing.
// The socket is connected at start-up, before the system-call filter, so
// sending needs only sendto/sendmsg. NOTIFY_SOCKET is removed from the
// environment, so the engine workers vtpmd spawns do not inherit it.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/result.h"
#include "src/core/uv_handle.h"

namespace vtpm {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then unsets them.
  SystemdNotifier();
  ~SystemdNotifier();
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  // Connects to the socket; an error if NOTIFY_SOCKET is set but unusable.
  Status open();
  bool enabled() const { return fd_ >= 0; }
  std::uint64_t watchdog_usec() const { return watchdog_usec_; }

  void ready(std::string_view status);
  void status(std::string_view status);
  void stopping(std::string_view status);
  // Starts WATCHDOG=1 pings on `loop` every half WATCHDOG_USEC, if systemd
  // asked for a watchdog.
  void start_watchdog(uv_loop_t* loop);
  void stop_watchdog();

 private:
  void send(const std::string& message);

  std::string socket_path_;
  std::uint64_t watchdog_usec_ = 0;
  int fd_ = -1;
  UvHandle<uv_timer_t> watchdog_;
};

}  // namespace vtpm
