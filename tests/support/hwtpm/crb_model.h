// A register-level model of a TPM 2.0 CRB interface (TCG PC Client Platform
// TPM Profile), written independently of the driver, executing commands on
// a real TPM (swtpm). Five locality pages, each with its control area and a
// 0xF80-byte data buffer at 0x80 reported through CMD/RSP_ADDR; one active
// locality (request/relinquish/seize, LOC_STATE/LOC_STS); cmdReady/goIdle
// transitions; START/CANCEL; tpmSts. Records protocol violations by the
// driver, and has fault knobs like TisModel.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backends/hwtpm/mmio_region.h"
#include "tests/support/hwtpm/tis_model.h"  // Executor

namespace vtpm::testing {

struct CrbFaults {
  bool never_grant = false;
  bool never_ready = false;      // cmdReady never clears in CTRL_REQ
  bool hang_execution = false;   // START never clears (until cancelled)
  bool fatal = false;            // tpmSts (fatal error) set in CTRL_STS
  std::optional<std::uint32_t> response_size_field;
  std::optional<std::uint64_t> command_buffer_address;  // report another CMD_ADDR
  std::optional<std::uint32_t> response_buffer_size;    // report another RSP_SIZE
};

class CrbModel final : public hwtpm::MmioRegion {
 public:
  enum class State { kIdle, kReady, kExecution, kCompletion };
  static constexpr std::size_t kBufferOffset = 0x80;
  static constexpr std::size_t kBufferSize = 0x1000 - kBufferOffset;

  explicit CrbModel(Executor execute);

  std::uint64_t physical_base() const override { return 0xFED40000; }
  std::size_t size() const override { return 0x5000; }
  std::string describe() const override { return "CRB model"; }

  void set_faults(const CrbFaults& faults);
  std::optional<int> active_locality();
  std::set<int> pending_requests();
  State state();
  std::vector<std::string> violations();
  int executed();
  int cancelled();

 protected:
  std::uint8_t load8(std::size_t offset) override;
  std::uint32_t load32(std::size_t offset) override;
  void store8(std::size_t offset, std::uint8_t value) override;
  void store32(std::size_t offset, std::uint32_t value) override;

 private:
  std::uint32_t read_register(int locality, std::size_t reg);
  void write_register(int locality, std::size_t reg, std::uint32_t value);
  void write_loc_ctrl(int locality, std::uint32_t value);
  void grant_next();
  void step_execution();
  void violation(std::string what);

  Executor execute_;
  std::mutex mutex_;
  CrbFaults faults_;
  std::optional<int> active_;
  std::set<int> pending_;
  std::set<int> seized_;
  State state_ = State::kIdle;
  std::uint32_t request_ = 0;   // CTRL_REQ bits still being acted on
  int request_reads_ = 0;
  bool start_ = false;
  bool cancel_ = false;
  int execution_reads_ = 0;
  std::array<std::array<std::uint8_t, kBufferSize>, 5> buffers_{};
  std::vector<std::string> violations_;
  int executed_ = 0;
  int cancelled_ = 0;
};

}  // namespace vtpm::testing
