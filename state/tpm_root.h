// The hardware root of trust: a TPM 2.0 reached through a tpm2-tss TCTI
// (the kernel's /dev/tpmrm0, the TIS/CRB MMIO drivers, or a swtpm socket).
//
// The master key is sealed as a keyed-hash data object under the owner
// hierarchy's storage key (the standard ECC P-256 SRK template as a
// transient primary, or a configured persistent handle), with an
// authorization policy over a PCR selection (default sha256:0,2,4,7). With
// an operator policy-signing key the policy is
// PolicyOR(PolicyPCR(now), PolicyAuthorize(operator key)), so the key
// also unseals under PCR values the operator signed in advance (the TPM
// 2.0 form of Xen vtpmmgr's approved configurations). Seal and unseal go
// through salted sessions with parameter encryption: the key never
// crosses the bus in clear. Rollback detection uses an NV counter index,
// advanced per epoch, not per write (it is slow and wears out).
//
// Every call is serialised (ESAPI contexts are not thread-safe) and
// blocking: start-up, then threadpool threads, never the event loop.
// Transient failures (busy, retry, a channel that dropped) are retried
// with back-off over a fresh connection.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "backends/hwtpm/tcti_handle.h"
#include "state/esys_session.h"
#include "state/root_of_trust.h"
#include "state/tpm_policy.h"

namespace vtpm::state {

// In the owner range of the TCG handle registry, unused by other software
// we know of; configurable.
inline constexpr std::uint32_t kDefaultCounterIndex = 0x01000E7D;

struct TpmRootOptions {
  std::string channel;  // as configured, for messages ("swtpm:path=/run/tpm")
  std::function<Result<hwtpm::TctiHandle>()> connect;
  // The channel's own account of its last failure (the MMIO drivers name
  // the register and condition behind a bare TCTI I/O error); may be empty.
  std::function<std::string(TSS2_TCTI_CONTEXT*)> channel_error;
  std::string pcrs = std::string(kDefaultSealPcrs);
  std::uint32_t parent_handle = 0;  // persistent storage key; 0: the ECC SRK template
  std::uint32_t counter_index = kDefaultCounterIndex;
  std::chrono::seconds counter_interval{3600};
  std::string policy_key_file;    // operator's signing key (PEM); enables PolicyAuthorize
  std::string signed_policy_dir;  // operator-signed policies (vtpmctl sign-policy)
  int retries = 5;
  std::chrono::milliseconds first_backoff{100};
};

class TpmRootOfTrust final : public RootOfTrust {
 public:
  // Connects and checks the options; a TPM that cannot be reached fails here.
  static Result<std::unique_ptr<TpmRootOfTrust>> open(TpmRootOptions options);
  explicit TpmRootOfTrust(TpmRootOptions options) : options_(std::move(options)) {}

  std::string kind() const override { return "tpm"; }
  std::string describe() const override;
  bool hardware_protected() const override { return true; }
  Result<Bytes> seal(const SecretKey& secret) override;
  Result<SecretKey> unseal(std::span<const std::uint8_t> sealed) override;
  Result<std::uint64_t> read_counter() override;
  Result<std::uint64_t> increment_counter() override;
  std::chrono::seconds counter_interval() const override { return options_.counter_interval; }
  Result<Bytes> reseal(const SecretKey& secret, const SealPolicy& policy) override;
  std::string policy_description() const override;

 private:
  struct Sealed;  // the root-specific part of master.key, see tpm_root.cc

  template <typename T>
  Result<T> with_tpm(const std::string& what, const std::function<Result<T>()>& op);
  Status connect();
  Result<TpmHandle> storage_parent();
  Result<TpmHandle> salted_session(ESYS_TR salt_key, TPM2_SE type, TPMA_SESSION attributes);
  Result<Bytes> pcr_branch(const TPML_PCR_SELECTION& pcrs, const std::vector<std::string>& predicted);
  // The operator's policy key loaded into the TPM (public part only), and
  // its name, which PolicyAuthorize binds.
  struct PolicyKey {
    TpmHandle handle;
    TPM2B_NAME name;
  };
  Result<PolicyKey> load_policy_key();
  Result<Bytes> seal_under(const SecretKey& secret, const TPML_PCR_SELECTION& pcrs,
                           const std::vector<std::string>& predicted, bool authorized);
  Result<SecretKey> unseal_with_pcrs(const Sealed& sealed, ESYS_TR parent, ESYS_TR object);
  // Tries each operator-signed policy; `tried` collects why each failed.
  Result<SecretKey> unseal_with_signed_policy(const Sealed& sealed, ESYS_TR parent, ESYS_TR object, std::string& tried);
  Result<TpmHandle> counter_index();
  Result<std::uint64_t> read_counter_value(ESYS_TR index);

  TpmRootOptions options_;
  mutable std::mutex mutex_;
  hwtpm::TctiHandle tcti_;  // declared before esys_: ESAPI is finalised first
  EsysContext esys_;
  // Status reads the policy text from the loop thread, so it has its own
  // lock: mutex_ is held across TPM I/O (retries last seconds).
  mutable std::mutex policy_mutex_;
  std::string policy_;  // current sealing policy, for status (under policy_mutex_)
  void set_policy_description(std::string text);
};

}  // namespace vtpm::state
