// A register-level model of a TPM 2.0 FIFO (TIS) interface, written from the
// TCG PC Client Platform TPM Profile independently of the driver (its own
// register constants), executing commands on a real TPM (swtpm). It keeps
// the locality rules (request/grant/relinquish/seize, pendingRequest, one
// active locality, other localities read 0xFF), the command states (idle,
// ready, reception, execution, completion), burstCount, Expect, stsValid,
// tpmGo, dataAvail, commandCancel and responseRetry, and records every
// protocol violation by the driver (e.g. a FIFO write beyond burstCount).
//
// Fault knobs make it misbehave like broken hardware.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "backends/hwtpm/mmio_region.h"

namespace vtpm::testing {

using Executor = std::function<std::vector<std::uint8_t>(std::span<const std::uint8_t>)>;

struct TisFaults {
  bool never_grant = false;           // locality requests stay pending forever
  bool never_ready = false;           // commandReady writes are ignored
  bool stuck_burst_count = false;     // burstCount reads 0 forever
  bool missing_sts_valid = false;     // stsValid drops after the first FIFO access and never returns
  bool hang_execution = false;        // a started command never completes (until cancelled)
  std::optional<std::uint32_t> response_size_field;  // overwrite the response header's size
  std::size_t extra_response_bytes = 0;              // append junk after the response
};

class TisModel final : public hwtpm::MmioRegion {
 public:
  enum class State { kIdle, kReady, kReception, kExecution, kCompletion };

  explicit TisModel(Executor execute, std::uint16_t burst_size = 32);

  std::uint64_t physical_base() const override { return 0xFED40000; }
  std::size_t size() const override { return 0x5000; }
  std::string describe() const override { return "TIS model"; }

  void set_faults(const TisFaults& faults);
  std::optional<int> active_locality();
  std::set<int> pending_requests();
  State state();
  std::vector<std::string> violations();
  int executed();   // commands that reached the TPM
  int cancelled();  // commands answered TPM_RC_CANCELED
  int aborted();    // commands dropped by commandReady

 protected:
  std::uint8_t load8(std::size_t offset) override;
  std::uint32_t load32(std::size_t offset) override;
  void store8(std::size_t offset, std::uint8_t value) override;
  void store32(std::size_t offset, std::uint32_t value) override;

 private:
  std::uint8_t read_locked(int locality, std::size_t reg);
  void write_locked(int locality, std::size_t reg, std::uint8_t value);
  std::uint8_t access(int locality) const;
  void write_access(int locality, std::uint8_t value);
  std::uint8_t status_bits();
  std::uint16_t burst_count() const;
  void write_status(std::uint8_t value);
  void fifo_write(std::uint8_t byte);
  std::uint8_t fifo_read();
  void grant_next();
  void complete(std::vector<std::uint8_t> response);
  bool command_complete() const;
  void violation(std::string what);

  Executor execute_;
  const std::uint16_t burst_size_;
  std::mutex mutex_;
  TisFaults faults_;
  std::optional<int> active_;
  std::set<int> pending_;
  std::set<int> seized_;
  State state_ = State::kIdle;
  std::vector<std::uint8_t> command_;
  std::vector<std::uint8_t> response_;
  std::size_t read_pos_ = 0;
  std::size_t budget_ = 0;          // bytes the driver may move since it last read burstCount
  int valid_after_reads_ = 0;       // stsValid reads 0 for this many more STS reads
  bool sts_valid_lost_ = false;     // missing_sts_valid has struck
  int execution_reads_ = 0;
  std::vector<std::string> violations_;
  int executed_ = 0;
  int cancelled_ = 0;
  int aborted_ = 0;
};

}  // namespace vtpm::testing
