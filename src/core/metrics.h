// Daemon-wide metrics: latency histograms per command class, errors by
// kind, persistence lag. Plain counters, touched only on the loop thread
// (no atomics, no locks on the command path); readers (the control API,
// the metrics listener) run on the same thread.
#pragma once

#include <array>
#include <cstdint>

#include "proto/command_class.h"
#include "proto/result.h"

namespace vtpm {

// Fixed buckets, so an observation is a short scan and two additions.
class LatencyHistogram {
 public:
  // Upper bounds in microseconds; a last, implicit bucket is +Inf.
  static constexpr std::array<std::uint64_t, 17> kBoundsUs = {
      25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};
  static constexpr std::size_t kBuckets = kBoundsUs.size() + 1;

  void observe(std::uint64_t us);
  std::uint64_t count() const { return count_; }
  std::uint64_t sum_us() const { return sum_us_; }
  // Observations in bucket i alone (not cumulative); i == kBoundsUs.size() is +Inf.
  std::uint64_t bucket(std::size_t i) const { return buckets_[i]; }
  // An upper estimate of quantile q (0..1): the bound of the bucket that
  // holds it (the largest finite bound for the +Inf bucket); 0 when empty.
  std::uint64_t quantile_us(double q) const;

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_us_ = 0;
};

inline constexpr std::size_t kErrorCodeCount = static_cast<std::size_t>(ErrorCode::kInternal) + 1;

// Why commands did not get a successful TPM answer: refused or failed by
// vtpmd (by ErrorCode), or answered by the TPM with a non-zero rc.
struct ErrorCounts {
  std::array<std::uint64_t, kErrorCodeCount> by_code{};
  std::uint64_t tpm_rc = 0;

  void count(ErrorCode code) { ++by_code[static_cast<std::size_t>(code)]; }
  std::uint64_t total() const;
};

struct CommandMetrics {
  std::array<LatencyHistogram, tpm::kCommandClassCount> latency;  // by tpm::CommandClass
  ErrorCounts errors;
  std::uint64_t throttled = 0;  // commands that waited for their instance's max_rate

  LatencyHistogram& of(tpm::CommandClass c) { return latency[static_cast<std::size_t>(c)]; }
};

}  // namespace vtpm
