// TpmTransport over the Command Response Buffer interface (TCG PC Client
// Platform TPM Profile, CRB): request a locality (LOC_CTRL), cmdReady, write
// the command into the command buffer, START, wait for START to clear, read
// the response from the response buffer, goIdle, relinquish.
//
// The buffers' addresses and sizes come from the TPM's own registers; they
// are checked against the mapped window before any byte is touched, so a
// wrong or hostile value is an Error, never an access outside the mapping.
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

struct CrbOptions {
  std::uint8_t locality = 2;  // see TisOptions::locality
  MmioTimeouts timeouts;
  std::size_t max_response = 4096;
};

class CrbTransport final : public TpmTransport {
 public:
  static constexpr std::size_t kLocalityStride = 0x1000;
  static constexpr std::size_t kWindowSize = 5 * kLocalityStride;

  // Checks that a CRB answers at the address (TPM_LOC_STATE valid).
  static Result<std::unique_ptr<CrbTransport>> create(std::shared_ptr<MmioRegion> region, CrbOptions options = {});

  std::string describe() const override;
  Result<std::vector<std::uint8_t>> transact(std::span<const std::uint8_t> command) override;
  // Aborts the command in flight (within one poll interval), or the next
  // one if none is running yet: callers racing their own worker lose nothing.
  void cancel() override { cancel_requested_ = true; }
  Status set_locality(std::uint8_t locality) override;

  CrbTransport(std::shared_ptr<MmioRegion> region, CrbOptions options, std::uint32_t did_vid);

 private:
  class Lease;
  struct Buffer {
    std::size_t offset;  // within the window
    std::size_t size;
  };

  Result<Lease> acquire_locality();
  void release_locality();
  Result<std::vector<std::uint8_t>> run_command(std::span<const std::uint8_t> command);
  Status wait_request_bit_clear(std::uint32_t bit, const char* name);
  Result<Buffer> buffer(std::size_t size_reg, std::size_t address_low_reg, std::size_t address_high_reg,
                        const char* name);
  Status wait_for_start_clear();
  Status check_not_fatal();
  Status go_idle();

  std::size_t reg(std::size_t offset) const { return options_.locality * kLocalityStride + offset; }
  Error failure(ErrorCode code, const std::string& what) const;

  std::shared_ptr<MmioRegion> region_;
  CrbOptions options_;
  std::uint32_t did_vid_;
  std::mutex transact_mutex_;
  std::atomic<bool> cancel_requested_{false};
};

}  // namespace vtpm::hwtpm
