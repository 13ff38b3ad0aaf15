// A window of memory-mapped device registers. The TIS and CRB drivers reach
// the TPM only through this interface, never through raw pointers: every
// access is bounds-checked against the window, so a bad offset (a register
// miscomputed, a buffer address the TPM reported) is an Error, not a read of
// whatever lies beyond the mapping. DevmemRegion maps real hardware; the
// tests put register-level models of a TIS and a CRB behind it.
//
// Accesses may come from two threads (a transaction and a cancel), so
// implementations must tolerate concurrent calls; real MMIO does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/result.h"

namespace vtpm::hwtpm {

class MmioRegion {
 public:
  virtual ~MmioRegion() = default;

  // Physical address of offset 0: the CRB reports its buffers as physical
  // addresses, which the driver translates back into offsets.
  virtual std::uint64_t physical_base() const = 0;
  virtual std::size_t size() const = 0;
  virtual std::string describe() const = 0;

  Result<std::uint8_t> read8(std::size_t offset);
  Result<std::uint32_t> read32(std::size_t offset);  // little-endian, 4-byte aligned
  Status write8(std::size_t offset, std::uint8_t value);
  Status write32(std::size_t offset, std::uint32_t value);

  // True if [offset, offset + length) lies inside the window.
  bool contains(std::size_t offset, std::size_t length) const;

 protected:
  // Called only with in-bounds (and for 32-bit, aligned) offsets.
  virtual std::uint8_t load8(std::size_t offset) = 0;
  virtual std::uint32_t load32(std::size_t offset) = 0;
  virtual void store8(std::size_t offset, std::uint8_t value) = 0;
  virtual void store32(std::size_t offset, std::uint32_t value) = 0;

 private:
  Status check(std::size_t offset, std::size_t width, const char* what) const;
};

}  // namespace vtpm::hwtpm
