// A blocking byte pipe to a TPM: one complete command in, one complete
// response out. The MMIO drivers (TIS, CRB) implement it; transport_tcti.h
// wraps any transport into a tpm2-tss TCTI so ESAPI can drive it. The kernel
// device and swtpm sockets use tpm2-tss's own TCTIs instead.
//
// Always called off the event loop (a transaction can take seconds).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"

namespace vtpm::hwtpm {

class TpmTransport {
 public:
  virtual ~TpmTransport() = default;
  virtual std::string describe() const = 0;
  virtual Result<std::vector<std::uint8_t>> transact(std::span<const std::uint8_t> command) = 0;
  // Asks the TPM to abort the command in flight; callable from another thread.
  virtual void cancel() {}
  // Moves later commands to another locality (TCTI setLocality). Only
  // channels with localities (TIS, CRB) support it.
  virtual Status set_locality(std::uint8_t /*locality*/) {
    return make_error(ErrorCode::kUnsupported, describe() + " has no localities");
  }
};

}  // namespace vtpm::hwtpm
