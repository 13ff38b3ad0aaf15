#include "src/core/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "proto/tpm2_commands.h"
#include "src/core/loopback_endpoint.h"

namespace vtpm {
namespace {

using Json = nlohmann::json;

// An instance's sealed record: at least a page, at most what a sealed blob
// may carry (state/sealed_blob.h, kMaxSealedBody).
constexpr std::uint32_t kMinStateSizeLimit = 4096;
constexpr std::uint32_t kMaxStateSizeLimit = 16 * 1024 * 1024;

Error invalid(const std::string& message) { return make_error(ErrorCode::kInvalidArgument, message); }

Result<std::uint32_t> parse_uint(const std::string& text, const std::string& what, std::uint32_t min,
                                 std::uint32_t max) {
  // Digits only: std::stoul would accept signs and spaces, and wrap negatives.
  const bool digits = !text.empty() && text.size() <= 10 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
  const unsigned long long value = digits ? std::stoull(text) : 0;
  if (!digits || value < min || value > max) {
    return invalid(what + " must be an integer in " + std::to_string(min) + ".." + std::to_string(max) + ", got '" +
                   text + "'");
  }
  return static_cast<std::uint32_t>(value);
}

// A TPM handle: hex with 0x, in [min, max].
Result<std::uint32_t> parse_handle(const std::string& text, const std::string& what, std::uint32_t min,
                                   std::uint32_t max) {
  const bool hex = text.size() > 2 && text.size() <= 10 && text.starts_with("0x") &&
                   text.find_first_not_of("0123456789abcdefABCDEF", 2) == std::string::npos;
  const unsigned long long value = hex ? std::stoull(text.substr(2), nullptr, 16) : 0;
  if (!hex || value < min || value > max) {
    char range[40];
    std::snprintf(range, sizeof range, "0x%08x..0x%08x", min, max);
    return invalid(what + " must be a TPM handle in " + range + " (hex with 0x), got '" + text + "'");
  }
  return static_cast<std::uint32_t>(value);
}

// A comma-separated list of distinct names that `known` accepts, as given.
Result<std::string> parse_name_list(const std::string& text, const std::string& what, bool (*known)(std::string_view),
                                    const char* choices, bool allow_empty) {
  if (text.empty()) {
    if (allow_empty) return text;
    return invalid(what + " must name at least one of " + choices);
  }
  std::vector<std::string> seen;
  for (const std::string& name : split_list(text)) {
    if (!known(name)) return invalid(what + ": unknown '" + name + "' (known: " + choices + ")");
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) return invalid(what + ": '" + name + "' given twice");
    seen.push_back(name);
  }
  return text;
}

bool known_ek(std::string_view name) { return tpm2::ek_from_name(name).has_value(); }
bool known_bank(std::string_view name) { return tpm2::bank_from_name(name).has_value(); }

Status set_key(const std::string& key, const std::string& value, Config& c) {
  if (key == "state_dir" || key == "state-dir") {
    c.state_dir = value;
  } else if (key == "control_socket" || key == "control-socket") {
    c.control_socket = value;
  } else if (key == "log_level" || key == "log-level") {
    auto level = parse_log_level(value);
    if (!level) return level.error();
    c.log_level = *level;
  } else if (key == "log_format" || key == "log-format") {
    auto format = parse_log_format(value);
    if (!format) return format.error();
    c.log_format = *format;
  } else if (key == "log_rate_limit" || key == "log-rate-limit") {
    auto n = parse_uint(value, key, 0, 1000000);
    if (!n) return n.error();
    c.log_rate_limit = *n;
  } else if (key == "log_burst" || key == "log-burst") {
    auto n = parse_uint(value, key, 1, 1000000);
    if (!n) return n.error();
    c.log_burst = *n;
  } else if (key == "metrics_listen" || key == "metrics-listen") {
    if (!value.empty()) {
      if (auto endpoint = parse_loopback_endpoint(value); !endpoint) return endpoint.error();
    }
    c.metrics_listen = value;
  } else if (key == "root_of_trust" || key == "root-of-trust") {
    bool known = value == "auto" || value == "file" || (value.starts_with("file:/") && value.size() > 6);
    for (const char* prefix : {"device:/", "swtpm:", "mssim:", "tis:", "crb:"}) known = known || value.starts_with(prefix);
    if (!known) {
      return invalid("root of trust '" + value +
                     "': expected auto, file, file:/PATH, device:/dev/tpmrm0, swtpm:path=SOCKET, "
                     "swtpm:host=H,port=P, mssim:..., tis:ADDRESS[,locality=N] or crb:ADDRESS");
    }
    c.root_of_trust = value;
  } else if (key == "tpm_pcrs" || key == "tpm-pcrs") {
    if (value.find(':') == std::string::npos) return invalid(key + " must look like sha256:0,2,4,7, got '" + value + "'");
    c.tpm_pcrs = value;
  } else if (key == "tpm_parent" || key == "tpm-parent") {
    auto n = parse_handle(value, key, 0x81000000, 0x81FFFFFF);
    if (!n) return n.error();
    c.tpm_parent = *n;
  } else if (key == "tpm_counter_index" || key == "tpm-counter-index") {
    auto n = parse_handle(value, key, 0x01000000, 0x01FFFFFF);
    if (!n) return n.error();
    c.tpm_counter_index = *n;
  } else if (key == "tpm_counter_interval" || key == "tpm-counter-interval") {
    auto n = parse_uint(value, key, 1, 30 * 24 * 3600);
    if (!n) return n.error();
    c.tpm_counter_interval_s = *n;
  } else if (key == "tpm_policy_key" || key == "tpm-policy-key") {
    if (value.empty() || value[0] != '/') return invalid(key + " must be an absolute path, got '" + value + "'");
    c.tpm_policy_key = value;
  } else if (key == "tpm_signed_policies" || key == "tpm-signed-policies") {
    if (value.empty() || value[0] != '/') return invalid(key + " must be an absolute path, got '" + value + "'");
    c.tpm_signed_policies = value;
  } else if (key == "root_key_file" || key == "root-key-file") {
    if (value.empty() || value[0] != '/') return invalid(key + " must be an absolute path, got '" + value + "'");
    c.root_key_file = value;
  } else if (key == "user") {
    c.user = value;
  } else if (key == "control_admins" || key == "control-admins") {
    c.control_admins = value;
  } else if (key == "control_readers" || key == "control-readers") {
    c.control_readers = value;
  } else if (key == "engine_worker" || key == "engine-worker") {
    c.engine_worker = value;
  } else if (key == "tpm12_workers_max" || key == "tpm12-workers-max") {
    auto n = parse_uint(value, key, 0, 4096);
    if (!n) return n.error();
    c.tpm12_workers_max = *n;
  } else if (key == "tpm12_slice_ms" || key == "tpm12-slice-ms") {
    auto n = parse_uint(value, key, 0, 60000);
    if (!n) return n.error();
    c.tpm12_slice_ms = *n;
  } else if (key == "tpm12_linger_ms" || key == "tpm12-linger-ms") {
    auto n = parse_uint(value, key, 0, 1000);
    if (!n) return n.error();
    c.tpm12_linger_ms = *n;
  } else if (key == "tpm12_selftest_key_cache" || key == "tpm12-selftest-key-cache") {
    if (value != "on" && value != "off") return invalid(key + " must be \"on\" or \"off\", got '" + value + "'");
    c.tpm12_selftest_key_cache = value == "on";
  } else if (key == "isolate_busy_ms" || key == "isolate-busy-ms") {
    auto n = parse_uint(value, key, 0, 1000);
    if (!n) return n.error();
    c.isolate_busy_ms = *n;
  } else if (key == "isolated_workers_max" || key == "isolated-workers-max") {
    auto n = parse_uint(value, key, 0, 4096);
    if (!n) return n.error();
    c.isolated_workers_max = *n;
  } else if (key == "default_max_queued" || key == "default-max-queued") {
    auto n = parse_uint(value, key, 1, 1000000);
    if (!n) return n.error();
    c.default_max_queued = *n;
  } else if (key == "max_connections" || key == "max-connections") {
    auto n = parse_uint(value, key, 1, 65536);
    if (!n) return n.error();
    c.max_connections = *n;
  } else if (key == "default_max_rate" || key == "default-max-rate") {
    auto n = parse_uint(value, key, 0, 1000000);
    if (!n) return n.error();
    c.default_max_rate = *n;
  } else if (key == "default_max_state_size" || key == "default-max-state-size") {
    auto n = parse_uint(value, key, kMinStateSizeLimit, kMaxStateSizeLimit);
    if (!n) return n.error();
    c.default_max_state_size = *n;
  } else if (key == "allow_core_dumps" || key == "allow-core-dumps") {
    if (value != "on" && value != "off") return invalid(key + " must be \"on\" or \"off\", got '" + value + "'");
    c.allow_core_dumps = value == "on";
  } else if (key == "seccomp") {
    if (value == "off") {
      c.seccomp = SeccompMode::kOff;
    } else if (value == "log") {
      c.seccomp = SeccompMode::kLog;
    } else if (value == "enforce") {
      c.seccomp = SeccompMode::kEnforce;
    } else {
      return invalid("seccomp must be off, log or enforce, got '" + value + "'");
    }
  } else if (key == "warm_pool" || key == "warm-pool") {
    auto n = parse_uint(value, key, 0, 1000);
    if (!n) return n.error();
    c.warm_pool = *n;
  } else if (key == "warm_pool_ek" || key == "warm-pool-ek") {
    auto list = parse_name_list(value, key, known_ek, "rsa, ecc", false);
    if (!list) return list.error();
    c.warm_pool_ek = *list;
  } else if (key == "warm_pool_pcr_banks" || key == "warm-pool-pcr-banks") {
    auto list = parse_name_list(value, key, known_bank, "sha1, sha256, sha384, sha512", true);
    if (!list) return list.error();
    c.warm_pool_pcr_banks = *list;
  } else if (key == "xen_backend" || key == "xen-backend" || key == "xen_auto_create" || key == "xen-auto-create" ||
             key == "xen_allow_tpm2" || key == "xen-allow-tpm2") {
    if (value != "on" && value != "off") return invalid(key + " must be \"on\" or \"off\", got '" + value + "'");
    const bool on = value == "on";
    if (key.ends_with("backend")) c.xen_backend = on;
    else if (key.ends_with("create")) c.xen_auto_create = on;
    else c.xen_allow_tpm2 = on;
  } else if (key == "default_max_command_size" || key == "default-max-command-size") {
    auto n = parse_uint(value, key, 1024, 65536);
    if (!n) return n.error();
    c.default_max_command_size = *n;
  } else {
    return invalid("unknown setting '" + key + "'");
  }
  return Status::success();
}

Status load_config_file(const std::string& path, Config& config) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kIo, "cannot read config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  return apply_config_json(text.str(), path, config);
}

}  // namespace

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> names;
  if (text.empty()) return names;
  std::size_t start = 0;
  while (start <= text.size()) {  // "a," has an empty last name, which the caller refuses
    const std::size_t comma = std::min(text.find(',', start), text.size());
    names.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return names;
}

Status apply_config_json(const std::string& text, const std::string& origin, Config& config) {
  const Json doc = Json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return invalid(origin + ": not a JSON object");
  for (const auto& [key, value] : doc.items()) {
    std::string as_text;
    if (value.is_string()) {
      as_text = value.get<std::string>();
    } else if (value.is_boolean() && (key == "allow_core_dumps" || key.starts_with("xen_"))) {  // the switches
      as_text = value.get<bool>() ? "on" : "off";
    } else if (value.is_number_unsigned()) {
      as_text = std::to_string(value.get<std::uint64_t>());
    } else {
      return invalid(origin + ": setting '" + key + "' must be a string or a non-negative integer");
    }
    if (Status s = set_key(key, as_text, config); !s) return invalid(origin + ": " + s.error().message);
  }
  return Status::success();
}

Result<CommandLine> parse_command_line(const std::vector<std::string>& args) {
  CommandLine cl;
  std::vector<std::pair<std::string, std::string>> flags;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      cl.help = true;
      continue;
    }
    if (arg == "--version") {
      cl.version = true;
      continue;
    }
    if (arg == "--check-config") {
      cl.check_config = true;
      continue;
    }
    if (!arg.starts_with("--")) return invalid("unexpected argument '" + arg + "'");
    std::string name = arg.substr(2);
    std::string value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) name.resize(eq);
    if (name != "config") {
      Config probe;
      if (Status s = set_key(name, "", probe); !s && s.error().message.starts_with("unknown setting")) {
        return invalid("unknown flag --" + name);
      }
    }
    if (eq != std::string::npos) {
      value = arg.substr(2 + eq + 1);
    } else if (name == "allow-core-dumps") {
      value = "on";  // a switch: --allow-core-dumps, or --allow-core-dumps=off
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return invalid("flag --" + name + " needs a value");
    }
    flags.emplace_back(name, value);
  }
  for (const auto& [name, value] : flags) {
    if (name == "config") {
      if (Status s = load_config_file(value, cl.config); !s) return s.error();
    }
  }
  for (const auto& [name, value] : flags) {
    if (name == "config") continue;
    if (Status s = set_key(name, value, cl.config); !s) return invalid("--" + name + ": " + s.error().message);
  }
  return cl;
}

const char* usage_text() {
  return "usage: vtpmd [options]\n"
         "  --config FILE                 JSON file with any of the settings below (flags override it)\n"
         "  --state-dir DIR               instance state (default /var/lib/vtpmd)\n"
         "  --control-socket PATH         control API socket (default /run/vtpmd/control.sock)\n"
         "  --user NAME                   start as root, give the state and socket directories to NAME,\n"
         "                                then run as NAME (no_new_privs)\n"
         "  --control-admins LIST         who else may use every control method; LIST is comma-separated\n"
         "                                uid:N, gid:N, user:NAME, group:NAME (root and vtpmd's user always may)\n"
         "  --control-readers LIST        who may use hello/status/list/show/stats/metrics only\n"
         "  --log-level LEVEL             error, warn, info (default) or debug\n"
         "  --log-format human|json       human-readable lines (default) or one JSON object per line\n"
         "  --log-rate-limit N            log lines per second per instance; more are dropped and counted in a\n"
         "                                \"suppressed N\" line (default 10, 0 = no limit)\n"
         "  --log-burst N                 lines an instance may log at once before the limit applies (default 50)\n"
         "  --metrics-listen ADDR:PORT    serve Prometheus metrics over HTTP at /metrics on a loopback address\n"
         "                                (127.0.0.1:PORT or [::1]:PORT; default off)\n"
         "  --root-of-trust SPEC          what seals the master key (docs/hardware-tpm.md):\n"
         "                                auto (default: what master.key was sealed by; for new state a TPM at\n"
         "                                /dev/tpmrm0 if present, else file), file or file:/PATH (a key file,\n"
         "                                NOT hardware-protected), device:/dev/tpmrm0, swtpm:path=SOCKET,\n"
         "                                swtpm:host=H,port=P, mssim:host=H,port=P, tis:ADDR[,locality=N],\n"
         "                                crb:ADDR[,locality=N]\n"
         "  --root-key-file PATH          the file root's key (default STATE_DIR/root.key; its counter is\n"
         "                                PATH.counter). Keep it off the state directory's storage if you can\n"
         "  --tpm-pcrs SEL                PCRs the master key is sealed to (default sha256:0,2,4,7)\n"
         "  --tpm-parent 0x81......       a persistent storage key (default: the ECC SRK template, transient)\n"
         "  --tpm-counter-index 0x01......  NV counter for rollback detection (default 0x01000e7d)\n"
         "  --tpm-counter-interval S      seconds per counter epoch (default 3600)\n"
         "  --tpm-policy-key PEM          operator key: the master key also unseals under PCR values it signed\n"
         "  --tpm-signed-policies DIR     operator-signed policies (vtpmctl sign-policy)\n"
         "  --engine-worker PATH          vtpmd-engine executable (default: beside vtpmd)\n"
         "  --tpm12-workers-max N         worker processes for TPM 1.2 instances (default 64, 0 = none)\n"
         "  --tpm12-slice-ms N            how long a busy TPM 1.2 instance keeps a shared engine (default 500)\n"
         "  --tpm12-linger-ms N           how long a shared engine waits for a busy TPM 1.2 guest's next\n"
         "                                command before switching instance (default 5)\n"
         "  --tpm12-selftest-key-cache on|off\n"
         "                                reuse one real key for TPM 1.2's per-restore RSA self-test, making\n"
         "                                a TPM 1.2 swap ~9 ms instead of ~200 ms (default on)\n"
         "  --isolate-busy-ms N           a TPM 2.0 instance using the engine thread more than N ms per second\n"
         "                                moves to a worker process of its own (default 250, 0 = never)\n"
         "  --isolated-workers-max N      at most N instances isolated that way (default 8)\n"
         "  --default-max-command-size N  TPM buffer size of new instances (default 4096)\n"
         "  --default-max-queued N        commands an instance may have queued before `busy` (default 64)\n"
         "  --default-max-rate N          commands per second per instance; more wait (default 0 = no limit)\n"
         "  --max-connections N           guest-channel connections per instance; more are closed (default 16)\n"
         "  --default-max-state-size N    bytes an instance's sealed record may reach; a change beyond it is\n"
         "                                refused and the instance quarantined (default 1048576)\n"
         "  --warm-pool N                 keep N TPM 2.0 instances manufactured ahead (banks and EKs made), so an\n"
         "                                `add` with the same --ek/--pcr-banks skips key generation (default 0)\n"
         "  --warm-pool-ek LIST           the pool's EK types: rsa, ecc or rsa,ecc (default rsa)\n"
         "  --warm-pool-pcr-banks LIST    the pool's PCR banks (default: libtpms' allocation)\n"
         "  --allow-core-dumps            let vtpmd and its workers dump core, for debugging. Keys and decrypted\n"
         "                                state buffers stay out of cores, but every instance's TPM state (its\n"
         "                                seeds and keys, inside libtpms) would be in them. Default: not dumpable\n"
         "  --seccomp off|log|enforce     system-call allow-list once running: enforce (default) refuses any\n"
         "                                other call with EPERM, log only has the kernel log it\n"
         "  --xen-backend on|off          serve Xen xen-tpmfront guests (tpmif v2) from this domain (default off;\n"
         "                                needs vtpmd built with libxen-dev; docs/xen.md)\n"
         "  --xen-auto-create on|off      create a TPM 1.2 instance for a vtpm device whose uuid is unknown\n"
         "                                (default off: such devices are refused)\n"
         "  --xen-allow-tpm2 on|off       let a vtpm device bind a TPM 2.0 instance (stock xen-tpmfront speaks\n"
         "                                TPM 1.2 only; default off)\n"
         "  --check-config                validate the settings, the state directory and the root of trust,\n"
         "                                print a summary and exit (0: usable) without starting or changing anything\n"
         "  --version, --help\n";
}

}  // namespace vtpm
