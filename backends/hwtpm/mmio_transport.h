// What the two MMIO drivers (TIS FIFO, CRB) share: one transaction at a
// time, the frame check, the locality held for exactly one transaction, the
// cancel flag, and how they name themselves in descriptions and errors.
// Each subclass implements the register protocol of its interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "backends/hwtpm/mmio_region.h"
#include "backends/hwtpm/mmio_timeouts.h"
#include "backends/hwtpm/tpm_transport.h"

namespace vtpm::hwtpm {

struct MmioOptions {
  // Locality 2 by default: dom0's own stack (firmware, a kernel driver
  // loaded later) uses 0, and must not collide with vtpmd.
  std::uint8_t locality = 2;
  MmioTimeouts timeouts;
  std::size_t max_response = 4096;
};

class MmioTransport : public TpmTransport {
 public:
  static constexpr std::size_t kLocalityStride = 0x1000;
  static constexpr std::size_t kWindowSize = 5 * kLocalityStride;  // localities 0..4

  std::string describe() const final;
  Result<std::vector<std::uint8_t>> transact(std::span<const std::uint8_t> command) final;
  // Aborts the command in flight (within one poll interval), or the next
  // one if none is running yet: callers racing their own worker lose nothing.
  void cancel() final { cancel_requested_ = true; }
  Status set_locality(std::uint8_t locality) final;

 protected:
  // `interface` names the driver in messages: "TIS" or "CRB".
  MmioTransport(const char* interface, std::shared_ptr<MmioRegion> region, MmioOptions options, std::uint32_t did_vid);
  // The checks both create()s make before touching a register.
  static Status check_window(const char* interface, const MmioRegion& region, std::uint8_t locality);

  // Requests the locality and waits until it is granted.
  virtual Status acquire_locality() = 0;
  virtual void release_locality() = 0;
  virtual Result<std::vector<std::uint8_t>> run_command(std::span<const std::uint8_t> command) = 0;
  // Back to idle after every transaction: the normal end after a success;
  // after a failure it drops whatever the TPM still holds (a half-sent
  // command, an unread response) so the next transaction starts clean.
  virtual Status end_transaction() = 0;

  std::size_t reg(std::size_t offset) const { return options_.locality * kLocalityStride + offset; }
  Error failure(ErrorCode code, const std::string& what) const;

  std::shared_ptr<MmioRegion> region_;
  MmioOptions options_;
  std::atomic<bool> cancel_requested_{false};

 private:
  const char* interface_;
  std::uint32_t did_vid_;
  std::mutex transact_mutex_;  // one command at a time
};

// "0x" and `width` hex digits, for register values in messages.
std::string mmio_hex(std::uint64_t value, int width = 2);
std::string mmio_ms(std::chrono::milliseconds t);

}  // namespace vtpm::hwtpm
