// TpmTransport over the TIS FIFO interface (TCG PC Client Platform TPM
// Profile, FIFO): request a locality, commandReady, send the command in
// bursts of at most burstCount bytes checking Expect, tpmGo, wait for
// dataAvail, read the response in bursts, back to idle, relinquish.
//
// Each transaction takes the locality and gives it back, so a TPM shared with
// dom0's firmware or another locality is held only while a command runs.
// Every failure is an Error naming the register and condition; the driver
// never retries and never waits longer than its timeouts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/hwtpm/mmio_transport.h"

namespace vtpm::hwtpm {

using TisOptions = MmioOptions;

class TisTransport final : public MmioTransport {
 public:
  // Checks that a TPM answers (TPM_DID_VID) and that its interface is a FIFO.
  static Result<std::unique_ptr<TisTransport>> create(std::shared_ptr<MmioRegion> region, TisOptions options = {});

  TisTransport(std::shared_ptr<MmioRegion> region, TisOptions options, std::uint32_t did_vid)
      : MmioTransport("TIS", std::move(region), options, did_vid) {}

 private:
  Status acquire_locality() override;
  void release_locality() override;
  Result<std::vector<std::uint8_t>> run_command(std::span<const std::uint8_t> command) override;
  Status end_transaction() override;

  Status send(std::span<const std::uint8_t> command);
  Status wait_for_response();
  Status receive(std::vector<std::uint8_t>& response, std::size_t total);

  Result<std::uint8_t> status();
  Result<std::uint8_t> wait_status_valid(const std::string& after);
  Result<std::size_t> wait_burst_count(const std::string& during);
  Error lost() const;
};

}  // namespace vtpm::hwtpm
