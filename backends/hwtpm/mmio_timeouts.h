// Timeouts of the MMIO drivers (TIS, CRB), named after the TCG PC Client
// Platform TPM Profile's TIMEOUT_A..D, plus the command duration and the
// polling interval. Tests shrink them; the defaults suit real chips.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include "proto/result.h"

namespace vtpm::hwtpm {

struct MmioTimeouts {
  std::chrono::milliseconds a{750};   // locality granted
  std::chrono::milliseconds b{2000};  // TIS commandReady; the TPM's answer to a cancel
  std::chrono::milliseconds c{200};   // TIS stsValid / dataAvail; CRB cmdReady and goIdle
  // burstCount non-zero. The PTP's TIMEOUT_D is 30 ms, but TPM 2.0 parts
  // stall longer while busy (Linux waits TIMEOUT_A for them), so do we.
  std::chrono::milliseconds d{750};
  // Execution of one command. Key generation on a slow chip takes tens of
  // seconds (Linux allows 300 s for TPM2_CreatePrimary).
  std::chrono::milliseconds command{300000};
  std::chrono::microseconds poll_interval{200};
};

// Clears a driver's cancel flag when its transaction ends, however it ends.
class CancelConsumer {
 public:
  explicit CancelConsumer(std::atomic<bool>& flag) : flag_(flag) {}
  ~CancelConsumer() { flag_ = false; }
  CancelConsumer(const CancelConsumer&) = delete;
  CancelConsumer& operator=(const CancelConsumer&) = delete;

 private:
  std::atomic<bool>& flag_;
};

// Polls `probe` (returning Result<bool>) until it yields true, an error, or
// `timeout` has passed; then false. The probe runs once more after the
// deadline, so a slow scheduler never turns success into a timeout.
template <typename Probe>
Result<bool> poll_until(std::chrono::milliseconds timeout, std::chrono::microseconds interval, Probe&& probe) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool last = std::chrono::steady_clock::now() >= deadline;
    Result<bool> done = probe();
    if (!done.ok() || *done || last) return done;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace vtpm::hwtpm
