#include "state/crash_points.h"

#include <signal.h>
#include <unistd.h>

#include <array>

namespace vtpm::state {
namespace {

constexpr std::array<std::string_view, 5> kPoints = {
    "blob-written", "blob-synced", "manifest-written", "manifest-synced", "counter-incremented",
};

}  // namespace

Result<CrashPoints> CrashPoints::parse(std::string_view spec) {
  CrashPoints c;
  if (spec.empty()) return c;
  const auto colon = spec.rfind(':');
  const std::string_view point = spec.substr(0, colon);
  const std::string_view count = colon == std::string_view::npos ? "" : spec.substr(colon + 1);
  bool known = false;
  for (auto p : kPoints) known = known || p == point;
  if (!known || count.empty() || count.size() > 9 || count.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(count)) == 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "VTPMD_CRASH_AT must be <point>:<n> (n >= 1) with point one of blob-written, blob-synced, "
                      "manifest-written, manifest-synced, counter-incremented; "
                      "got '" + std::string(spec) + "'");
  }
  c.point_ = std::string(point);
  c.nth_ = std::stoul(std::string(count));
  c.count_ = std::make_shared<std::atomic<std::uint64_t>>(0);
  return c;
}

void CrashPoints::reached(std::string_view point) const {
  if (!count_ || point != point_) return;
  if (count_->fetch_add(1) + 1 != nth_) return;
  const std::string line = "vtpmd: crash point " + point_ + " reached (VTPMD_CRASH_AT); killing myself\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
  ::kill(::getpid(), SIGKILL);
}

}  // namespace vtpm::state
