#include "src/core/metrics.h"

#include <algorithm>
#include <cmath>

namespace vtpm {

void LatencyHistogram::observe(std::uint64_t us) {
  const auto bound = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), us);
  ++buckets_[static_cast<std::size_t>(bound - kBoundsUs.begin())];
  ++count_;
  sum_us_ += us;
}

std::uint64_t LatencyHistogram::quantile_us(double q) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBoundsUs.size(); ++i) {
    seen += buckets_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return kBoundsUs[i];
  }
  return kBoundsUs.back();
}

std::uint64_t ErrorCounts::total() const {
  std::uint64_t sum = tpm_rc;
  for (auto n : by_code) sum += n;
  return sum;
}

}  // namespace vtpm
