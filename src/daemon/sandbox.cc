#include "src/daemon/sandbox.h"

#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace vtpm {
namespace {

// What a running vtpmd (and a vtpmd-engine worker, which inherits the
// filter) calls. Grouped by why; names the running kernel's architecture
// does not know (e.g. open on arm64) are skipped.
const std::vector<std::string> kAllowed = {
    // The event loop and I/O on descriptors it holds.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek", "close",
    "close_range", "dup", "dup2", "dup3", "fcntl", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "poll", "ppoll", "eventfd2", "pipe", "pipe2",
    // Sockets: control connections, guest endpoints created by `attach`
    // (socket() is limited to Unix and IP below), worker socketpairs, the
    // metrics listener, systemd notifications (a datagram socket connected
    // before the filter: only sendto).
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername", "getsockopt",
    "setsockopt", "shutdown", "sendmsg", "recvmsg", "sendto", "recvfrom", "sendmmsg", "recvmmsg",
    // Files in the state and socket directories (sealed blobs, manifest,
    // counter, endpoint sockets).
    "open", "openat", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "mkdir", "mkdirat", "unlink", "unlinkat",
    "rename", "renameat", "renameat2", "fsync", "fdatasync", "ftruncate", "fallocate", "chmod", "fchmod",
    "fchmodat", "umask", "getcwd", "flock",
    // Memory, including the key arena (MADV_DONTDUMP, mlock).
    "mmap", "munmap", "mremap", "mprotect", "madvise", "brk", "mlock", "munlock",
    // Threads: the engine thread, libuv's pool, the workers' reader threads.
    "clone", "clone3", "futex", "set_robust_list", "set_tid_address", "rseq", "sched_yield",
    "sched_getaffinity", "gettid", "exit", "exit_group", "restart_syscall",
    // Signals: SIGTERM/SIGINT handling, SIGCHLD from workers, raise/abort.
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "kill", "tgkill", "tkill",
    // Spawning and reaping vtpmd-engine workers; what a worker does as it
    // starts (loader, PR_SET_PDEATHSIG, PR_SET_DUMPABLE).
    "fork", "vfork", "execve", "wait4", "waitid", "setsid", "setpgid", "getpid", "getppid", "prctl", "arch_prctl",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "getrlimit", "prlimit64",
    "uname", "sysinfo", "getrusage",
    // Time and randomness (mbedTLS and libtpms entropy).
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep", "clock_nanosleep", "getrandom",
#if defined(__SANITIZE_ADDRESS__)
    // ASan/UBSan test builds only: LeakSanitizer stops the world with
    // ptrace at exit. Never in a release build.
    "ptrace",
#endif
};

// ioctls libuv and the C library use on our own descriptors: non-blocking
// and close-on-exec switches, bytes readable, isatty().
constexpr unsigned long kAllowedIoctls[] = {FIONBIO, FIOCLEX, FIONCLEX, FIONREAD, TCGETS};
constexpr int kAllowedSocketDomains[] = {AF_UNIX, AF_INET, AF_INET6};

Error failed(const std::string& what, int rc) {
  return make_error(ErrorCode::kInternal, "seccomp: " + what + ": " + std::strerror(-rc));
}

using Filter = std::unique_ptr<void, decltype(&seccomp_release)>;

}  // namespace

const std::vector<std::string>& allowed_syscalls() { return kAllowed; }

const char* describe(SeccompMode mode) {
  switch (mode) {
    case SeccompMode::kOff: return "off";
    case SeccompMode::kLog: return "log";
    case SeccompMode::kEnforce: return "enforce";
  }
  return "?";
}

Status install_syscall_filter(SeccompMode mode, std::span<const unsigned long> extra_ioctls) {
  if (mode == SeccompMode::kOff) return Status::success();
  // Filtering every thread at once (TSYNC) needs the seccomp() system call
  // (Linux 3.17); valgrind, for one, does not emulate it.
  if (seccomp_api_get() < 2) {
    return make_error(ErrorCode::kUnsupported, "seccomp: this platform cannot filter every thread (no seccomp() call)");
  }
  const std::uint32_t otherwise = mode == SeccompMode::kEnforce ? SCMP_ACT_ERRNO(EPERM) : SCMP_ACT_LOG;
  Filter filter(seccomp_init(otherwise), seccomp_release);
  if (!filter) return make_error(ErrorCode::kInternal, "seccomp: cannot create a filter");
  // Denials reach the kernel's log (audit), not only the caller's errno.
  if (int rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_LOG, 1); rc != 0 && mode == SeccompMode::kLog) {
    return failed("this kernel cannot log seccomp actions", rc);
  }
  // Threads that already run (the engine thread, libuv's pool) too.
  if (int rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc != 0) return failed("TSYNC", rc);
  for (const auto& name : kAllowed) {
    const int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) continue;
    if (int rc = seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, nr, 0); rc != 0) return failed("allow " + name, rc);
  }
  std::vector<unsigned long> ioctls(std::begin(kAllowedIoctls), std::end(kAllowedIoctls));
  ioctls.insert(ioctls.end(), extra_ioctls.begin(), extra_ioctls.end());
  for (unsigned long request : ioctls) {
    if (int rc = seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                  SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(request)));
        rc != 0) {
      return failed("allow ioctl", rc);
    }
  }
  for (int domain : kAllowedSocketDomains) {
    if (int rc = seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                                  SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(domain)));
        rc != 0) {
      return failed("allow socket", rc);
    }
  }
  if (int rc = seccomp_load(filter.get()); rc != 0) return failed("cannot load the filter", rc);
  return Status::success();
}

}  // namespace vtpm
