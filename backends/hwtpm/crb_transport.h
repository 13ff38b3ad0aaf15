// TpmTransport over the Command Response Buffer interface (TCG PC Client
// Platform TPM Profile, CRB): request a locality (LOC_CTRL), cmdReady, write
// the command into the command buffer, START, wait for START to clear, read
// the response from the response buffer, goIdle, relinquish.
//
// The buffers' addresses and sizes come from the TPM's own registers; they
// are checked against the mapped window before any byte is touched, so a
// wrong or hostile value is an Error, never an access outside the mapping.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/hwtpm/mmio_transport.h"

namespace vtpm::hwtpm {

using CrbOptions = MmioOptions;

class CrbTransport final : public MmioTransport {
 public:
  // Checks that a CRB answers at the address (TPM_LOC_STATE valid).
  static Result<std::unique_ptr<CrbTransport>> create(std::shared_ptr<MmioRegion> region, CrbOptions options = {});

  CrbTransport(std::shared_ptr<MmioRegion> region, CrbOptions options, std::uint32_t did_vid)
      : MmioTransport("CRB", std::move(region), options, did_vid) {}

 private:
  struct Buffer {
    std::size_t offset;  // within the window
    std::size_t size;
  };

  Status acquire_locality() override;
  void release_locality() override;
  Result<std::vector<std::uint8_t>> run_command(std::span<const std::uint8_t> command) override;
  Status end_transaction() override { return go_idle(); }

  Status wait_request_bit_clear(std::uint32_t bit, const char* name);
  Result<Buffer> buffer(std::size_t size_reg, std::size_t address_low_reg, std::size_t address_high_reg,
                        const char* name);
  Status wait_for_start_clear();
  Status check_not_fatal();
  Status go_idle();
};

}  // namespace vtpm::hwtpm
