// The root of trust seals the master key at rest and keeps a monotonic
// counter that binds the manifest's freshness. Implementations: the file
// root (state/file_root.h, the embedded default, NOT hardware-protected)
// and, from the hardware-TPM work, a TPM-backed root.
//
// Thread affinity: seal/unseal on the loop thread at start-up; the counter
// calls may run on a threadpool thread, but never two at a time (the state
// store serialises its commits).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/crypto.h"

namespace vtpm::state {

class RootOfTrust {
 public:
  virtual ~RootOfTrust() = default;
  virtual std::string kind() const = 0;        // "file", "tpm"; recorded with the sealed master key
  virtual std::string describe() const = 0;    // for logs and `vtpmctl status`
  virtual bool hardware_protected() const = 0;
  virtual Result<Bytes> seal(const SecretKey& secret) = 0;
  virtual Result<SecretKey> unseal(std::span<const std::uint8_t> sealed) = 0;
  virtual Result<std::uint64_t> read_counter() = 0;
  // Returns the new value.
  virtual Result<std::uint64_t> increment_counter() = 0;
};

}  // namespace vtpm::state
