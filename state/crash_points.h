// Deliberate crashes at named steps of the state write path, for the
// crash-durability tests: VTPMD_CRASH_AT=<point>:<n> makes vtpmd SIGKILL
// itself the n-th time it reaches <point>. Disarmed unless set.
// Points: blob-written (in place, before its fdatasync), blob-synced,
// manifest-written, manifest-synced, counter-incremented.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vtpm::state {

class CrashPoints {
 public:
  CrashPoints() = default;  // disarmed
  static Result<CrashPoints> parse(std::string_view spec);
  bool armed() const { return count_ != nullptr; }
  std::string describe() const { return point_ + ":" + std::to_string(nth_); }
  // Thread-safe; may not return.
  void reached(std::string_view point) const;

 private:
  std::string point_;
  std::uint64_t nth_ = 0;
  std::shared_ptr<std::atomic<std::uint64_t>> count_;
};

}  // namespace vtpm::state
