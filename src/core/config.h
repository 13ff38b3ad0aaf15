// Daemon configuration: built-in defaults, then a JSON file (--config), then
// command-line flags, each overriding the one before. Unknown keys and bad
// values are errors, so a typo never silently falls back to a default.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"
#include "src/core/log.h"

namespace vtpm {

// The system-call allow-list installed once vtpmd is running
// (src/daemon/sandbox.h): off, log (allowed, but the kernel logs every
// call outside the list) or enforce (such a call fails with EPERM).
enum class SeccompMode { kOff, kLog, kEnforce };

struct Config {
  std::string state_dir = "/var/lib/vtpmd";
  std::string control_socket = "/run/vtpmd/control.sock";
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kHuman;
  std::uint32_t log_rate_limit = 10;  // lines per second per instance; 0: unlimited
  std::uint32_t log_burst = 50;       // lines an instance may log at once before the rate applies
  // Prometheus endpoint (src/control/metrics_http.h): a loopback
  // address:port; empty: off.
  std::string metrics_listen;
  std::string user;  // drop root for this user after taking the directories (src/daemon/privileges.h)
  // What seals the master key: "auto" (the kind master.key was sealed by;
  // for a new state directory a TPM at /dev/tpmrm0 if there is one, else
  // the file root), "file", "file:PATH", or a TPM channel
  // (backends/hwtpm/channel.h: device:, swtpm:, mssim:, tis:, crb:).
  std::string root_of_trust = "auto";
  std::string root_key_file;  // file root's key; empty: <state_dir>/root.key
  // TPM root (state/tpm_root.h)
  std::string tpm_pcrs = "sha256:0,2,4,7";
  std::uint32_t tpm_parent = 0;                   // persistent storage key handle; 0: SRK template
  std::uint32_t tpm_counter_index = 0x01000E7D;   // NV counter for rollback detection
  std::uint32_t tpm_counter_interval_s = 3600;    // epoch length
  std::string tpm_policy_key;                     // operator's policy-signing key (PEM)
  std::string tpm_signed_policies;                // directory of operator-signed policies
  // Control socket access (src/control/access.h): comma-separated
  // uid:N, gid:N, user:NAME, group:NAME. root and vtpmd's own user are
  // always admins.
  std::string control_admins;
  std::string control_readers;
  // Hardening (docs/ARCHITECTURE.md, "Tenants and trust")
  bool allow_core_dumps = false;  // default: vtpmd and its workers are not dumpable
  SeccompMode seccomp = SeccompMode::kEnforce;
  // Engine
  std::string engine_worker;            // vtpmd-engine path; empty: next to vtpmd, then libexec
  std::uint32_t tpm12_workers_max = 64; // 0: TPM 1.2 instances share the engine thread
  std::uint32_t tpm12_slice_ms = 500;   // residency slice of a busy TPM 1.2 instance
  std::uint32_t tpm12_linger_ms = 5;    // wait for a busy TPM 1.2 guest's next command
  bool tpm12_selftest_key_cache = true;  // see src/engine/libtpms_selftest_key.cc
  std::uint32_t isolate_busy_ms = 250;   // see src/engine/engine.h; 0: never
  std::uint32_t isolated_workers_max = 8;
  // Defaults for new instances
  std::uint32_t default_max_command_size = 4096;
  std::uint32_t default_max_queued = 64;  // commands queued per instance before `busy`
  std::uint32_t default_max_rate = 0;     // commands per second per instance; 0: unlimited
  std::uint32_t default_max_state_size = 1024 * 1024;  // bytes of an instance's sealed record
  std::uint32_t max_connections = 16;     // guest-channel connections per instance
  // Warm pool (src/core/warm_pool.h): members kept manufactured with these
  // EK types and PCR banks (comma-separated names; banks empty: libtpms'
  // default allocation).
  std::uint32_t warm_pool = 0;
  std::string warm_pool_ek = "rsa";
  std::string warm_pool_pcr_banks;
  // Xen tpmif v2 backend (backends/xen, docs/xen.md)
  bool xen_backend = false;      // serve <self>/backend/vtpm
  bool xen_auto_create = false;  // unknown UUIDs get a new TPM 1.2 instance (else refused)
  bool xen_allow_tpm2 = false;   // a vtpm device may bind a TPM 2.0 instance
};

struct CommandLine {
  Config config;
  bool help = false;
  bool version = false;
  bool check_config = false;  // validate and summarise, start nothing (src/daemon/check_config.h)
};

// argv[0] is skipped. --config is applied before every other flag,
// wherever it appears.
Result<CommandLine> parse_command_line(const std::vector<std::string>& args);
Status apply_config_json(const std::string& text, const std::string& origin, Config& config);
// The names of a comma-separated list setting (warm_pool_ek, ...); "" has none.
std::vector<std::string> split_list(const std::string& text);
const char* usage_text();

}  // namespace vtpm
