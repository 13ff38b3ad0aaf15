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

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "backends/hwtpm/mmio_region.h"
#include "backends/hwtpm/mmio_timeouts.h"
#include "backends/hwtpm/tpm_transport.h"

namespace vtpm::hwtpm {

struct TisOptions {
  // Locality 2 by default: dom0's own stack (firmware, a kernel driver
  // loaded later) uses 0, and must not collide with vtpmd.
  std::uint8_t locality = 2;
  MmioTimeouts timeouts;
  std::size_t max_response = 4096;
};

class TisTransport final : public TpmTransport {
 public:
  static constexpr std::size_t kLocalityStride = 0x1000;
  static constexpr std::size_t kWindowSize = 5 * kLocalityStride;  // localities 0..4

  // Checks that a TPM answers (TPM_DID_VID) and that its interface is a FIFO.
  static Result<std::unique_ptr<TisTransport>> create(std::shared_ptr<MmioRegion> region, TisOptions options = {});

  std::string describe() const override;
  Result<std::vector<std::uint8_t>> transact(std::span<const std::uint8_t> command) override;
  // Aborts the command in flight (within one poll interval), or the next
  // one if none is running yet: callers racing their own worker lose nothing.
  void cancel() override { cancel_requested_ = true; }
  Status set_locality(std::uint8_t locality) override;

  TisTransport(std::shared_ptr<MmioRegion> region, TisOptions options, std::uint32_t did_vid);

 private:
  class Lease;

  Result<Lease> acquire_locality();
  void release_locality();
  Result<std::vector<std::uint8_t>> run_command(std::span<const std::uint8_t> command);
  Status send(std::span<const std::uint8_t> command);
  Status wait_for_response();
  Status receive(std::vector<std::uint8_t>& response, std::size_t total);

  Result<std::uint8_t> status();
  Result<std::uint8_t> wait_status_valid(const std::string& after);
  Result<std::size_t> wait_burst_count(const std::string& during);

  std::size_t reg(std::size_t offset) const { return options_.locality * kLocalityStride + offset; }
  Error failure(ErrorCode code, const std::string& what) const;
  Error lost() const;

  std::shared_ptr<MmioRegion> region_;
  TisOptions options_;
  std::uint32_t did_vid_;
  std::mutex transact_mutex_;  // one command at a time
  std::atomic<bool> cancel_requested_{false};
};

}  // namespace vtpm::hwtpm
