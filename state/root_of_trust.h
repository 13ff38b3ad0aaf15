// The root of trust seals the master key at rest and keeps a monotonic
// counter that binds the manifest's freshness. Implementations: the file
// root (state/file_root.h, the embedded default, NOT hardware-protected)
// and the TPM root (state/tpm_root.h, a hardware TPM 2.0).
//
// Thread affinity: open and unseal on the loop thread at start-up; the
// counter calls and reseal run on threadpool threads. An implementation
// that needs it (the TPM root) serialises its own calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/crypto.h"

namespace vtpm::state {

// What a reseal binds the master key to. Only the TPM root has policies;
// the format of the strings is documented with it (docs/hardware-tpm.md).
struct SealPolicy {
  std::string pcrs;                     // "sha256:0,2,4,7"; empty: keep the current selection
  std::vector<std::string> pcr_values;  // predicted values "sha256:7=HEX"; others: current values
  bool authorized = false;              // PolicyAuthorize with the configured operator key
};

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
  // How often the state store advances the counter. Zero: at every commit
  // (a cheap counter). A hardware NV counter is slow and wears out, so the
  // TPM root advances it per epoch: at start, at reseal, and after this
  // interval; a rollback within one epoch goes unnoticed (the window).
  virtual std::chrono::seconds counter_interval() const { return std::chrono::seconds(0); }
  // Seals `secret` under a new policy; the caller stores the result.
  virtual Result<Bytes> reseal(const SecretKey& secret, const SealPolicy& policy) {
    (void)secret;
    (void)policy;
    return make_error(ErrorCode::kUnsupported, "the " + kind() + " root of trust has no policy to reseal to");
  }
  // The current sealing policy, for `vtpmctl status` ("" when none).
  virtual std::string policy_description() const { return ""; }
};

}  // namespace vtpm::state
