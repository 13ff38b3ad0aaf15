#include "src/core/metrics.h"

#include <doctest/doctest.h>

namespace vtpm {
namespace {

TEST_CASE("latency histogram: buckets, count, sum and quantile bounds") {
  LatencyHistogram h;
  CHECK(h.quantile_us(0.5) == 0);
  h.observe(10);      // <= 25
  h.observe(25);      // <= 25 (bounds are inclusive, as Prometheus' le)
  h.observe(26);      // <= 50
  h.observe(900);     // <= 1000
  h.observe(99999999);  // +Inf
  CHECK(h.count() == 5);
  CHECK(h.sum_us() == 10 + 25 + 26 + 900 + 99999999);
  CHECK(h.bucket(0) == 2);
  CHECK(h.bucket(1) == 1);
  CHECK(h.bucket(5) == 1);
  CHECK(h.bucket(LatencyHistogram::kBoundsUs.size()) == 1);
  CHECK(h.quantile_us(0.0) == 25);
  CHECK(h.quantile_us(0.4) == 25);
  CHECK(h.quantile_us(0.6) == 50);
  CHECK(h.quantile_us(0.8) == 1000);
  CHECK(h.quantile_us(1.0) == LatencyHistogram::kBoundsUs.back());
}

TEST_CASE("error counts by kind") {
  ErrorCounts e;
  e.count(ErrorCode::kBusy);
  e.count(ErrorCode::kBusy);
  e.count(ErrorCode::kInternal);
  e.tpm_rc = 4;
  CHECK(e.by_code[static_cast<std::size_t>(ErrorCode::kBusy)] == 2);
  CHECK(e.total() == 7);
}

}  // namespace
}  // namespace vtpm
