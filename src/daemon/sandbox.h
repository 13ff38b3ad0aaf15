// The system-call allow-list (seccomp, libseccomp). vtpmd installs it once
// it runs: the root of trust is open, the state loaded, the control socket
// listening and root (if any) dropped. From then on vtpmd may use only
// what serving guests needs: its event loop (epoll, eventfd, pipes,
// signals), threads (clone, futex), memory, files in its directories,
// Unix and TCP sockets for new endpoints, and spawning vtpmd-engine
// workers (fork, execve; a worker inherits the filter and needs nothing
// outside it either). Anything else — mount, ptrace, module loading,
// kexec, bpf, namespaces, setuid... — fails.
//
// The filter is inherited by every thread created later (libuv's pool
// included) and by child processes; threads already running are covered
// too (SECCOMP_FILTER_FLAG_TSYNC).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "proto/result.h"

#include "src/core/config.h"

namespace vtpm {

// enforce: a call outside the list fails with EPERM and the kernel logs it
// (audit, where the kernel logs seccomp actions); log: the call is allowed
// and logged, to find what a new code path needs; off: nothing installed.
// Fails with kUnsupported where the kernel (or valgrind) cannot filter
// every thread: vtpmd then runs without a filter and says so.
// `extra_ioctls`: requests a backend needs on its own devices (the Xen
// backend's gntdev and evtchn calls).
Status install_syscall_filter(SeccompMode mode, std::span<const unsigned long> extra_ioctls = {});

// The names on the allow-list (for the docs and tests).
const std::vector<std::string>& allowed_syscalls();

const char* describe(SeccompMode mode);

}  // namespace vtpm
