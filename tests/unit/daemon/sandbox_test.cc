#include "src/daemon/sandbox.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace vtpm {
namespace {

// Bits a child reports through its exit status.
enum Outcome : int {
  kInstalled = 1,
  kAllowedWork = 2,       // getpid, a Unix socket, FIONBIO, a file write
  kUnshareRefused = 4,    // unshare(0) would succeed without the filter
  kChdirRefused = 8,      // chdir("/") too
  kNetlinkRefused = 16,   // a netlink socket too (socket() is limited by domain)
  kPersonalityRefused = 32,
};

bool refused(int rc) { return rc == -1 && errno == EPERM; }

// Forks; the child installs the filter in `mode`, tries allowed and
// forbidden calls and exits with the Outcome bits it saw.
int outcome_in_child(SeccompMode mode) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int bits = 0;
    if (install_syscall_filter(mode)) bits |= kInstalled;
    int pipe_fds[2];
    const int unix_socket = ::socket(AF_UNIX, SOCK_STREAM, 0);
    int on = 1;
    if (::getpid() > 0 && unix_socket >= 0 && ::ioctl(unix_socket, FIONBIO, &on) == 0 && ::pipe2(pipe_fds, O_CLOEXEC) == 0 &&
        ::write(pipe_fds[1], "x", 1) == 1) {
      bits |= kAllowedWork;
    }
    if (refused(::unshare(0))) bits |= kUnshareRefused;
    if (refused(::chdir("/"))) bits |= kChdirRefused;
    if (refused(::socket(AF_NETLINK, SOCK_RAW, 0))) bits |= kNetlinkRefused;
    if (refused(::personality(0xffffffff))) bits |= kPersonalityRefused;
    ::_exit(bits);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("sandbox: enforce refuses what is not on the list with EPERM and allows the rest") {
  const int bits = outcome_in_child(SeccompMode::kEnforce);
  CHECK((bits & kInstalled) != 0);
  CHECK((bits & kAllowedWork) != 0);
  CHECK((bits & kUnshareRefused) != 0);
  CHECK((bits & kChdirRefused) != 0);
  CHECK((bits & kNetlinkRefused) != 0);
  CHECK((bits & kPersonalityRefused) != 0);
}

TEST_CASE("sandbox: log mode installs a filter but refuses nothing") {
  const int bits = outcome_in_child(SeccompMode::kLog);
  CHECK((bits & kInstalled) != 0);
  CHECK((bits & kAllowedWork) != 0);
  CHECK((bits & (kUnshareRefused | kChdirRefused | kNetlinkRefused | kPersonalityRefused)) == 0);
}

TEST_CASE("sandbox: off installs nothing") {
  CHECK(outcome_in_child(SeccompMode::kOff) == (kInstalled | kAllowedWork));
}

TEST_CASE("sandbox: the list holds what serving guests needs, and nothing to escape with") {
  const auto& names = allowed_syscalls();
  auto has = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  for (const char* needed : {"epoll_wait", "accept4", "futex", "clone", "execve", "fdatasync", "renameat2", "mlock"}) {
    CHECK_MESSAGE(has(needed), needed);
  }
  for (const char* forbidden : {"mount", "umount2", "unshare", "setns", "init_module", "finit_module", "kexec_load",
                                "bpf", "setuid", "setresuid", "chroot", "pivot_root", "process_vm_readv", "keyctl"}) {
    CHECK_MESSAGE(!has(forbidden), forbidden);
  }
}

}  // namespace vtpm
