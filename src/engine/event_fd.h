// An eventfd owned for its lifetime: the engine thread's "answers are
// ready" signal to the reactor. Unlike uv_async_send, signal() is a single
// write(2) and nothing after it: a reactor that preempts the engine right
// there (one CPU for both) finds the signal complete, where libuv's async
// handle would spin (and yield) until the sender cleared its busy flag.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

namespace vtpm::engine {

class EventFd {
 public:
  EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~EventFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Any thread. Signals merge until consume(); a full counter (never, in
  // practice) is a signal already pending.
  void signal() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(fd_, &one, sizeof one);
  }
  // The reactor: clears the pending signals.
  void consume() const {
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t n = ::read(fd_, &count, sizeof count);
  }

 private:
  int fd_;
};

}  // namespace vtpm::engine
