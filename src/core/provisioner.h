// Provisioning and measured launch (docs/provisioning.md): sequences of TPM
// 2.0 commands that vtpmd sends to an instance itself, through
// Service::exec like any guest command (so they queue behind and ahead of
// guest traffic in order, run on the engine and never on the loop, and
// their NV changes are durable before the next step).
//
// - provision(): what a platform manufacturer does once, after `add`:
//   PCR bank allocation (then a TPM reset), EKs from the TCG templates made
//   persistent, EK and platform certificates from the local CA written
//   into their TCG NV indices, then Shutdown and a power cycle so that the
//   guest's firmware finds a TPM awaiting Startup, as after swtpm_setup.
//   A TPM 1.2 instance is enabled and activated and gets its RSA EK
//   (TPM_CreateEndorsementKeyPair) and, if asked, its EK certificate.
// - measure(): a toolstack measurement before the guest runs: PCR_Extend
//   in every active bank plus a TCG_PCR_EVENT2 in the instance's event log.
//
// Thread affinity: loop thread; callbacks run once, on the loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/hex.h"
#include "proto/tpm2_commands.h"
#include "src/core/instance.h"
#include "src/core/log.h"
#include "src/core/service.h"
#include "state/local_ca.h"

namespace vtpm {

class WarmPool;

// The provisioning summary of an instance whose `add` is still
// provisioning it; one found at start-up was interrupted by a crash.
inline constexpr std::string_view kProvisioningPending = R"({"pending":true})";

struct ProvisionOptions {
  std::vector<TPM2_ALG_ID> pcr_banks;  // empty: keep libtpms' allocation
  std::vector<tpm2::EkKind> endorsement_keys;
  bool ek_certificates = false;         // one per EK, in its TCG NV index
  bool platform_certificate = false;    // needs ek_certificates
  bool empty() const { return pcr_banks.empty() && endorsement_keys.empty(); }
  // Consistency of the options alone (before anything is created).
  Status validate(TpmVersion version) const;
};

struct MeasureRequest {
  std::uint32_t pcr = 0;
  // Either digests per bank (from a file hashed by the client, or given)...
  std::map<TPM2_ALG_ID, Bytes> digests;
  // ...or data that vtpmd hashes itself.
  std::optional<Bytes> data;
  Bytes event_data;  // the event's description in the log
  std::optional<std::uint32_t> event_type;  // default: eventlog::default_event_type(pcr)
  bool force = false;  // measure even though the guest has started
};

struct MeasureResult {
  std::uint32_t pcr = 0;
  std::vector<tpm2::PcrDigest> digests;  // what was extended, bank by bank
  std::size_t events = 0;                // events in the log now
};

class Provisioner {
 public:
  Provisioner(const Logger& log, Service& service, Registry& registry, state::LocalCa& ca)
      : log_(log), service_(service), registry_(registry), ca_(ca) {}

  // Provisions a freshly added TPM 2.0 instance; on success the instance's
  // provisioning summary (JSON text) is saved and returned.
  // Each step's description and the milliseconds since the start, as it completes.
  using StepListener = std::function<void(const std::string& step, std::int64_t elapsed_ms)>;

  // A matching warm-pool member's state is taken instead of manufacturing.
  // `listener` (may be empty) hears each step, for a client's progress line.
  void provision(const Uuid& id, ProvisionOptions options, std::function<void(Result<std::string>)> done,
                 StepListener listener = {});
  // Banks and EKs only, no certificates, TPM left started: a warm-pool member.
  void manufacture(const Uuid& id, ProvisionOptions options, std::function<void(Status)> done);
  void set_warm_pool(WarmPool* pool) { pool_ = pool; }
  // Start-up: removes the instances whose provisioning a crash interrupted
  // (their `add` was never answered).
  void discard_unfinished();
  void measure(const Uuid& id, MeasureRequest request, std::function<void(Result<MeasureResult>)> done);
  // The instance's event log (just the Spec ID header if nothing was measured).
  void event_log(const Uuid& id, std::function<void(Result<Bytes>)> done);

  const state::LocalCa& ca() const { return ca_; }

 private:
  const Logger& log_;
  Service& service_;
  Registry& registry_;
  state::LocalCa& ca_;
  WarmPool* pool_ = nullptr;
  void provision_tpm12(const Uuid& id, bool ek_certificate, std::function<void(Result<std::string>)> done,
                       StepListener listener);
  // Logs a provisioning step with the time since this call, and tells `listener`.
  std::function<void(const std::string&)> progress_logger(const Uuid& id, StepListener listener = {}) const;
  // Callbacks that outlive the provisioner (answered while the daemon
  // tears the service down) find this expired and touch nothing.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace vtpm
