#include "backends/hwtpm/mmio_region.h"

#include <cstdio>

namespace vtpm::hwtpm {

namespace {

std::string hex(std::size_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%zx", v);
  return buf;
}

}  // namespace

bool MmioRegion::contains(std::size_t offset, std::size_t length) const {
  return offset <= size() && length <= size() - offset;
}

Status MmioRegion::check(std::size_t offset, std::size_t width, const char* what) const {
  if (!contains(offset, width)) {
    return make_error(ErrorCode::kInvalidArgument, std::string(what) + " at offset " + hex(offset) +
                                                       " is outside the " + hex(size()) + "-byte window of " +
                                                       describe());
  }
  if (offset % width != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(what) + " at offset " + hex(offset) + " is not " + std::to_string(width) +
                          "-byte aligned (" + describe() + ")");
  }
  return Status::success();
}

Result<std::uint8_t> MmioRegion::read8(std::size_t offset) {
  if (auto s = check(offset, 1, "8-bit read"); !s) return s.error();
  return load8(offset);
}

Result<std::uint32_t> MmioRegion::read32(std::size_t offset) {
  if (auto s = check(offset, 4, "32-bit read"); !s) return s.error();
  return load32(offset);
}

Status MmioRegion::write8(std::size_t offset, std::uint8_t value) {
  if (auto s = check(offset, 1, "8-bit write"); !s) return s;
  store8(offset, value);
  return Status::success();
}

Status MmioRegion::write32(std::size_t offset, std::uint32_t value) {
  if (auto s = check(offset, 4, "32-bit write"); !s) return s;
  store32(offset, value);
  return Status::success();
}

}  // namespace vtpm::hwtpm
