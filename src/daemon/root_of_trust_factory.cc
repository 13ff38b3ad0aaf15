#include "src/daemon/root_of_trust_factory.h"

#include <stdlib.h>
#include <unistd.h>

#include "backends/hwtpm/channel.h"
#include "backends/hwtpm/transport_tcti.h"
#include "state/file_root.h"
#include "state/key_hierarchy.h"
#include "state/tpm_root.h"

namespace vtpm {
namespace {

constexpr const char* kKernelTpm = "/dev/tpmrm0";

// "auto": keep what sealed the existing master key; for a new state
// directory prefer a TPM the kernel offers.
Result<std::string> resolve_auto(const Config& config) {
  auto kind = state::master_key_root_kind(config.state_dir + "/master.key");
  if (!kind) return kind.error();
  const bool kernel_tpm = ::access(kKernelTpm, F_OK) == 0;
  if (kind->empty()) return kernel_tpm ? std::string("device:") + kKernelTpm : std::string("file");
  if (*kind == "file") return std::string("file");
  if (*kind == "tpm") {
    if (kernel_tpm) return std::string("device:") + kKernelTpm;
    return make_error(ErrorCode::kUnavailable,
                      config.state_dir + "/master.key is sealed by a TPM, and " + kKernelTpm +
                          " does not exist: name the TPM's channel with --root-of-trust (device:, tis:, crb:, swtpm:)");
  }
  return make_error(ErrorCode::kCorrupt, config.state_dir + "/master.key names an unknown root of trust '" + *kind + "'");
}

}  // namespace

Result<std::string> resolve_root_of_trust(const Config& config) {
  if (config.root_of_trust == "auto") return resolve_auto(config);
  return config.root_of_trust;
}

Result<std::unique_ptr<state::RootOfTrust>> open_root_of_trust(const Config& config, state::Drbg& drbg) {
  auto resolved = resolve_root_of_trust(config);
  if (!resolved) return resolved.error();
  const std::string spec = *resolved;
  if (spec == "file" || spec.starts_with("file:")) {
    std::string key_file = spec == "file" ? config.root_key_file : spec.substr(5);
    if (key_file.empty()) key_file = config.state_dir + "/root.key";
    auto root = state::FileRootOfTrust::open(key_file, drbg);
    if (!root) return root.error();
    return std::unique_ptr<state::RootOfTrust>(std::move(*root));
  }
  // tpm2-tss logs every TPM error code to stderr, including the expected
  // ones (an NV index not defined yet); vtpmd reports what matters itself.
  // An operator's own TSS2_LOG setting wins.
  ::setenv("TSS2_LOG", "all+none", 0);
  state::TpmRootOptions options;
  options.channel = spec;
  options.connect = [spec] { return hwtpm::open_tpm_channel(spec); };
  options.channel_error = [](TSS2_TCTI_CONTEXT* tcti) { return hwtpm::transport_tcti_last_error(tcti); };
  options.pcrs = config.tpm_pcrs;
  options.parent_handle = config.tpm_parent;
  options.counter_index = config.tpm_counter_index;
  options.counter_interval = std::chrono::seconds(config.tpm_counter_interval_s);
  options.policy_key_file = config.tpm_policy_key;
  options.signed_policy_dir = config.tpm_signed_policies;
  auto root = state::TpmRootOfTrust::open(std::move(options));
  if (!root) return root.error();
  return std::unique_ptr<state::RootOfTrust>(std::move(*root));
}

}  // namespace vtpm
