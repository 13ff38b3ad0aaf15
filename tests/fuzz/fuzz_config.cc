// Fuzz target: daemon configuration (src/core/config.h): the --config JSON file and the command
// line.
// Input: u8 mode (bit 0 clear: the rest is a JSON config file for apply_config_json; set: the rest
// is argv[1..], split at NUL bytes, for parse_command_line). Command lines that name --config are
// skipped: that flag reads a file, whose contents are what the JSON mode fuzzes.
// Invariants: an accepted configuration is inside every documented range (usage_text()); it
// survives being written back out (as JSON, or as --name=value flags) and read again unchanged.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/core/config.h"
#include "src/core/loopback_endpoint.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;

namespace {

const char* level_text(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  __builtin_trap();
}

const char* seccomp_text(SeccompMode mode) {
  switch (mode) {
    case SeccompMode::kOff: return "off";
    case SeccompMode::kLog: return "log";
    case SeccompMode::kEnforce: return "enforce";
  }
  __builtin_trap();
}

std::string handle_text(std::uint32_t handle) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", handle);
  return buf;
}

void check_ranges(const Config& c) {
  FUZZ_CHECK(c.default_max_state_size >= 4096 && c.default_max_state_size <= 16 * 1024 * 1024);
  (void)seccomp_text(c.seccomp);
  FUZZ_CHECK(c.tpm12_workers_max <= 4096);
  FUZZ_CHECK(c.tpm12_slice_ms <= 60000);
  FUZZ_CHECK(c.tpm12_linger_ms <= 1000);
  FUZZ_CHECK(c.default_max_command_size >= 1024 && c.default_max_command_size <= 65536);
  bool known_root = c.root_of_trust == "auto" || c.root_of_trust == "file" || c.root_of_trust.starts_with("file:/");
  for (const char* prefix : {"device:/", "swtpm:", "mssim:", "tis:", "crb:"}) {
    known_root = known_root || c.root_of_trust.starts_with(prefix);
  }
  FUZZ_CHECK(known_root);
  FUZZ_CHECK(c.tpm_pcrs.find(':') != std::string::npos);
  FUZZ_CHECK(c.tpm_parent == 0 || (c.tpm_parent >= 0x81000000u && c.tpm_parent <= 0x81FFFFFFu));
  FUZZ_CHECK(c.tpm_counter_index >= 0x01000000u && c.tpm_counter_index <= 0x01FFFFFFu);
  FUZZ_CHECK(c.tpm_counter_interval_s >= 1 && c.tpm_counter_interval_s <= 30u * 24 * 3600);
  FUZZ_CHECK(c.tpm_policy_key.empty() || c.tpm_policy_key[0] == '/');
  FUZZ_CHECK(c.tpm_signed_policies.empty() || c.tpm_signed_policies[0] == '/');
  FUZZ_CHECK(c.root_key_file.empty() || c.root_key_file[0] == '/');
  FUZZ_CHECK(c.warm_pool <= 1000);
  FUZZ_CHECK(!c.warm_pool_ek.empty());
  (void)level_text(c.log_level);
  FUZZ_CHECK(c.log_burst >= 1);
  FUZZ_CHECK(c.metrics_listen.empty() || parse_loopback_endpoint(c.metrics_listen).ok());
}

bool same(const Config& a, const Config& b) {
  return a.state_dir == b.state_dir && a.control_socket == b.control_socket && a.log_level == b.log_level &&
         a.root_of_trust == b.root_of_trust && a.root_key_file == b.root_key_file &&
         a.engine_worker == b.engine_worker && a.tpm12_workers_max == b.tpm12_workers_max &&
         a.tpm12_slice_ms == b.tpm12_slice_ms && a.tpm12_linger_ms == b.tpm12_linger_ms &&
         a.tpm12_selftest_key_cache == b.tpm12_selftest_key_cache &&
         a.default_max_command_size == b.default_max_command_size &&
         a.default_max_state_size == b.default_max_state_size && a.allow_core_dumps == b.allow_core_dumps &&
         a.seccomp == b.seccomp && a.tpm_pcrs == b.tpm_pcrs && a.tpm_parent == b.tpm_parent &&
         a.tpm_counter_index == b.tpm_counter_index && a.tpm_counter_interval_s == b.tpm_counter_interval_s &&
         a.tpm_policy_key == b.tpm_policy_key && a.tpm_signed_policies == b.tpm_signed_policies &&
         a.warm_pool == b.warm_pool && a.warm_pool_ek == b.warm_pool_ek && a.warm_pool_pcr_banks == b.warm_pool_pcr_banks &&
         a.log_format == b.log_format && a.log_rate_limit == b.log_rate_limit && a.log_burst == b.log_burst &&
         a.metrics_listen == b.metrics_listen;
}

// The settings this target knows, as name/value text pairs.
std::vector<std::pair<std::string, std::string>> settings(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out = {
      {"state_dir", c.state_dir},
      {"control_socket", c.control_socket},
      {"log_level", level_text(c.log_level)},
      {"root_of_trust", c.root_of_trust},
      {"engine_worker", c.engine_worker},
      {"tpm12_workers_max", std::to_string(c.tpm12_workers_max)},
      {"tpm12_slice_ms", std::to_string(c.tpm12_slice_ms)},
      {"tpm12_linger_ms", std::to_string(c.tpm12_linger_ms)},
      {"tpm12_selftest_key_cache", c.tpm12_selftest_key_cache ? "on" : "off"},
      {"default_max_command_size", std::to_string(c.default_max_command_size)},
      {"default_max_state_size", std::to_string(c.default_max_state_size)},
      {"allow_core_dumps", c.allow_core_dumps ? "on" : "off"},
      {"seccomp", seccomp_text(c.seccomp)},
      {"log_format", c.log_format == LogFormat::kJson ? "json" : "human"},
      {"log_rate_limit", std::to_string(c.log_rate_limit)},
      {"log_burst", std::to_string(c.log_burst)}};
  if (!c.metrics_listen.empty()) out.emplace_back("metrics_listen", c.metrics_listen);
  if (!c.root_key_file.empty()) out.emplace_back("root_key_file", c.root_key_file);
  out.emplace_back("tpm_pcrs", c.tpm_pcrs);
  out.emplace_back("tpm_counter_index", handle_text(c.tpm_counter_index));
  out.emplace_back("tpm_counter_interval", std::to_string(c.tpm_counter_interval_s));
  if (c.tpm_parent != 0) out.emplace_back("tpm_parent", handle_text(c.tpm_parent));
  if (!c.tpm_policy_key.empty()) out.emplace_back("tpm_policy_key", c.tpm_policy_key);
  if (!c.tpm_signed_policies.empty()) out.emplace_back("tpm_signed_policies", c.tpm_signed_policies);
  out.emplace_back("warm_pool", std::to_string(c.warm_pool));
  out.emplace_back("warm_pool_ek", c.warm_pool_ek);
  if (!c.warm_pool_pcr_banks.empty()) out.emplace_back("warm_pool_pcr_banks", c.warm_pool_pcr_banks);
  return out;
}

void json_round_trip(const Config& c) {
  nlohmann::json doc = nlohmann::json::object();
  for (const auto& [name, value] : settings(c)) doc[name] = value;
  Config again;
  FUZZ_CHECK(apply_config_json(doc.dump(), "round trip", again).ok());
  FUZZ_CHECK(same(again, c));
}

void flags_round_trip(const Config& c) {
  std::vector<std::string> args = {"vtpmd"};
  for (auto [name, value] : settings(c)) {
    for (char& ch : name) ch = ch == '_' ? '-' : ch;
    args.push_back("--" + name + "=" + value);
  }
  auto again = parse_command_line(args);
  FUZZ_CHECK(again.ok() && same(again->config, c));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t mode = in.u8();
  const std::string text = fuzz::as_string(in.rest());

  if ((mode & 1) == 0) {
    Config config;
    if (Status s = apply_config_json(text, "fuzz.json", config); !s) {
      FUZZ_CHECK(!s.error().message.empty());
      return 0;
    }
    check_ranges(config);
    json_round_trip(config);   // strings from JSON are valid UTF-8, NUL included
    flags_round_trip(config);  // argv strings here are std::strings: a NUL survives too
    return 0;
  }

  std::vector<std::string> args = {"vtpmd"};
  std::size_t start = 0;
  while (start <= text.size() && !text.empty()) {
    const std::size_t nul = text.find('\0', start);
    args.push_back(text.substr(start, nul == std::string::npos ? std::string::npos : nul - start));
    if (nul == std::string::npos) break;
    start = nul + 1;
  }
  for (const auto& arg : args) {
    if (arg == "--config" || arg.starts_with("--config=")) return 0;
  }
  auto parsed = parse_command_line(args);
  if (!parsed) {
    FUZZ_CHECK(!parsed.error().message.empty());
    return 0;
  }
  check_ranges(parsed->config);
  flags_round_trip(parsed->config);  // command-line values hold no NUL
  return 0;
}
