#include "tools/vtpmctl/cli.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <charconv>
#include <cmath>
#include <iterator>
#include <map>
#include <vector>

#include "proto/hex.h"
#include "proto/uuid.h"
#include "tools/vtpmctl/file_digest.h"

namespace vtpm::ctl {
namespace {

using Args = std::span<const std::string_view>;
using control::Json;

Error usage(std::string message) { return make_error(ErrorCode::kInvalidArgument, std::move(message)); }

std::string in_quotes(std::string_view text) { return "'" + std::string(text) + "'"; }

std::optional<long long> parse_integer(std::string_view text) {
  long long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Result<std::optional<std::chrono::milliseconds>> parse_timeout(std::string_view text) {
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds < 0 || seconds > 1e6) {
    return usage("--timeout: expected a number of seconds between 0 and 1000000, got " + in_quotes(text));
  }
  if (seconds == 0) return std::optional<std::chrono::milliseconds>();
  const auto ms = static_cast<long long>(std::ceil(seconds * 1000));
  return std::optional<std::chrono::milliseconds>(std::chrono::milliseconds(ms));
}

Result<std::string> parse_uuid(std::string_view text) {
  auto uuid = Uuid::parse(text);
  if (!uuid) return usage(uuid.error().message);
  return uuid->to_string();
}

// ---- flags ----------------------------------------------------------------

struct FlagSpec {
  std::string_view name;  // with the leading "--"
  bool takes_value;
};

struct SplitArgs {
  std::vector<std::string_view> positional;
  std::map<std::string, std::string, std::less<>> flags;  // switches map to ""
};

bool looks_like_flag(std::string_view arg) { return arg.size() > 1 && arg.front() == '-'; }

// Separates `args` into positional arguments and the flags in `allowed`
// ("--name value" or "--name=value"); anything else that looks like a flag
// is a usage error.
Result<SplitArgs> split_flags(std::string_view command, Args args, std::span<const FlagSpec> allowed) {
  SplitArgs out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (!looks_like_flag(arg)) {
      out.positional.push_back(arg);
      continue;
    }
    const std::string_view name = arg.substr(0, arg.find('='));
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& candidate : allowed) {
      if (candidate.name == name) spec = &candidate;
    }
    if (spec == nullptr) return usage("unknown option " + in_quotes(name) + " for '" + std::string(command) + "'");
    if (!spec->takes_value) {
      if (name.size() != arg.size()) return usage("option " + in_quotes(name) + " takes no value");
      out.flags[std::string(name)] = "";
    } else if (name.size() != arg.size()) {
      out.flags[std::string(name)] = std::string(arg.substr(name.size() + 1));
    } else if (i + 1 < args.size()) {
      out.flags[std::string(name)] = std::string(args[++i]);
    } else {
      return usage("option " + in_quotes(name) + " needs a value");
    }
  }
  return out;
}

Status expect_positional(std::string_view command, const SplitArgs& split, std::size_t count, std::string_view what) {
  if (split.positional.size() < count) return usage("'" + std::string(command) + "' needs " + std::string(what));
  if (split.positional.size() > count) {
    return usage("unexpected argument " + in_quotes(split.positional[count]) + " for '" + std::string(command) + "'");
  }
  return Status::success();
}

// ---- commands ---------------------------------------------------------------

Result<Json> parse_no_args(std::string_view command, Args args, std::istream&) {
  auto split = split_flags(command, args, {});
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 0, "no arguments"); !s) return s.error();
  return Json::object();
}

Result<Json> parse_uuid_only(std::string_view command, Args args, std::istream&) {
  auto split = split_flags(command, args, {});
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  return Json{{"uuid", *uuid}};
}

// Guest-channel endpoint options, shared by `add` and `attach`.
constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kEndpointFlags = {{
    {"--swtpm-path", "swtpm_path"}, {"--swtpm-port", "swtpm_port"}, {"--ctrl", "ctrl"}, {"--data", "data"},
    {"--ctrl-port", "ctrl_port"},   {"--data-port", "data_port"},   {"--bind", "bind"}}};

Status apply_endpoint_flags(const std::map<std::string, std::string, std::less<>>& flags, Json& params) {
  for (const auto& [flag, key] : kEndpointFlags) {
    auto it = flags.find(std::string(flag));
    if (it == flags.end()) continue;
    if (key.ends_with("port")) {
      const auto port = parse_integer(it->second);
      if (!port || *port < 1 || *port > 65535) return usage(std::string(flag) + ": expected a port 1..65535, got " + in_quotes(it->second));
      params[std::string(key)] = *port;
    } else {
      params[std::string(key)] = it->second;
    }
  }
  return Status::success();
}

Result<Json> parse_attach(std::string_view command, Args args, std::istream&) {
  std::vector<FlagSpec> allowed;
  for (const auto& [flag, key] : kEndpointFlags) allowed.push_back({flag, true});
  auto split = split_flags(command, args, allowed);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  Json params{{"uuid", *uuid}};
  if (Status s = apply_endpoint_flags(split->flags, params); !s) return s.error();
  if (params.size() == 1) return usage("attach: give --swtpm-path, --swtpm-port, --ctrl, --data, --ctrl-port or --data-port");
  return params;
}

// --max-queued N, --max-rate N, --max-state-size N, --max-connections N (0: the daemon's
// default), shared by add and set.
Status apply_limit_flags(const std::map<std::string, std::string, std::less<>>& flags, Json& params) {
  struct Limit {
    const char* flag;
    const char* key;
    std::int64_t max;
  };
  for (const auto& [flag, key, max] : {Limit{"--max-queued", "max_queued", 1000000}, Limit{"--max-rate", "max_rate", 1000000},
                                       Limit{"--max-state-size", "max_state_size", 16 * 1024 * 1024},
                                       Limit{"--max-connections", "max_connections", 65536}}) {
    auto it = flags.find(flag);
    if (it == flags.end()) continue;
    const auto n = parse_integer(it->second);
    if (!n || *n < 0 || *n > max) {
      return usage(std::string(flag) + ": expected 0.." + std::to_string(max) + ", got " + in_quotes(it->second));
    }
    params[key] = *n;
  }
  return Status::success();
}

// --vchan DOMID (set: or off): the instance's raw TPM channel over a Xen vchan.
Status apply_vchan_flag(const std::map<std::string, std::string, std::less<>>& flags, Json& params, bool off_allowed) {
  auto it = flags.find("--vchan");
  if (it == flags.end()) return Status::success();
  if (off_allowed && it->second == "off") {
    params["vchan"] = "off";
    return Status::success();
  }
  const auto domid = parse_integer(it->second);
  if (!domid || *domid < 1 || *domid > 0x7FEF) {
    return usage(std::string("--vchan: expected a domain id (1..32751)") + (off_allowed ? " or off" : "") + ", got " +
                 in_quotes(it->second));
  }
  params["vchan"] = *domid;
  return Status::success();
}

std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    out.emplace_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// --pcr-banks sha1,sha256  --ek rsa,ecc  --ek-cert  --platform-cert (the
// daemon checks the names; vtpmctl only splits the lists).
Status apply_provisioning_flags(const std::map<std::string, std::string, std::less<>>& flags, Json& params) {
  for (const auto& [flag, key] : {std::pair{"--pcr-banks", "pcr_banks"}, std::pair{"--ek", "ek"}}) {
    auto it = flags.find(flag);
    if (it == flags.end()) continue;
    const auto items = split_list(it->second);
    for (const auto& item : items) {
      if (item.empty()) return usage(std::string(flag) + ": empty name in " + in_quotes(it->second));
    }
    params[key] = items;
  }
  if (flags.contains("--ek-cert")) params["ek_certificates"] = true;
  if (flags.contains("--platform-cert")) params["platform_certificate"] = true;
  return Status::success();
}

Result<Json> parse_add(std::string_view command, Args args, std::istream&) {
  std::vector<FlagSpec> kFlags = {{"--uuid", true},         {"--tpm", true},       {"--auto-startup", false},
                                  {"--max-command-size", true}, {"--max-queued", true}, {"--max-rate", true},
                                  {"--pcr-banks", true},       {"--ek", true},        {"--ek-cert", false},
                                  {"--platform-cert", false},    {"--max-state-size", true},
                                  {"--max-connections", true}, {"--count", true},   {"--vchan", true}};
  for (const auto& [flag, key] : kEndpointFlags) kFlags.push_back({flag, true});
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 0, "no positional arguments"); !s) return s.error();
  Json params = Json::object();
  const auto& flags = split->flags;
  if (auto it = flags.find("--uuid"); it != flags.end()) {
    auto uuid = parse_uuid(it->second);
    if (!uuid) return uuid.error();
    params["uuid"] = *uuid;
  }
  if (auto it = flags.find("--tpm"); it != flags.end()) {
    if (it->second != "2.0" && it->second != "1.2") return usage("--tpm: expected 2.0 or 1.2, got " + in_quotes(it->second));
    params["tpm"] = it->second;
  }
  if (flags.contains("--auto-startup")) params["auto_startup"] = true;
  if (auto it = flags.find("--count"); it != flags.end()) {
    const auto count = parse_integer(it->second);
    if (!count || *count < 1 || *count > 10000) return usage("--count: expected 1..10000, got " + in_quotes(it->second));
    params["count"] = *count;
  }
  if (auto it = flags.find("--max-command-size"); it != flags.end()) {
    const auto size = parse_integer(it->second);
    if (!size || *size <= 0 || *size > (1LL << 31)) {
      return usage("--max-command-size: expected a positive number of bytes, got " + in_quotes(it->second));
    }
    params["max_command_size"] = *size;
  }
  if (Status s = apply_limit_flags(flags, params); !s) return s.error();
  if (Status s = apply_endpoint_flags(flags, params); !s) return s.error();
  if (Status s = apply_provisioning_flags(flags, params); !s) return s.error();
  if (Status s = apply_vchan_flag(flags, params, false); !s) return s.error();
  return params;
}

Result<Json> parse_set(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 5> kFlags = {{{"--max-queued", true},
                                                      {"--max-rate", true},
                                                      {"--max-state-size", true},
                                                      {"--max-connections", true},
                                                      {"--vchan", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  Json params{{"uuid", *uuid}};
  if (Status s = apply_limit_flags(split->flags, params); !s) return s.error();
  if (Status s = apply_vchan_flag(split->flags, params, true); !s) return s.error();
  if (params.size() == 1) {
    return usage("set: give --max-queued N, --max-rate N, --max-state-size N, --max-connections N (0: the "
                 "daemon's default) and/or --vchan DOMID|off");
  }
  return params;
}

Result<Json> parse_remove(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 1> kFlags = {{{"--force", false}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  return Json{{"uuid", *uuid}, {"force", split->flags.contains("--force")}};
}

Result<Json> parse_power(std::string_view command, Args args, std::istream&) {
  auto split = split_flags(command, args, {});
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 2, "a UUID and an action (on, off or reset)"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  const std::string_view action = split->positional[1];
  if (action != "on" && action != "off" && action != "reset") {
    return usage("power: expected on, off or reset, got " + in_quotes(action));
  }
  return Json{{"uuid", *uuid}, {"action", action}};
}

// The command hex from the arguments after the UUID (concatenated) or, for
// a single "-", from `in`; returned normalised (lower case, no spaces).
Result<std::string> read_command_hex(std::span<const std::string_view> pieces, std::istream& in) {
  std::string text;
  if (pieces.size() == 1 && pieces[0] == "-") {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } else {
    for (std::string_view piece : pieces) {
      if (piece == "-") return usage("exec: '-' (read hex from stdin) must be the only HEX argument");
      text += piece;
    }
  }
  auto bytes = from_hex(text);
  if (!bytes) return usage("exec: bad command " + bytes.error().message);
  if (bytes->empty()) return usage("exec: the TPM command is empty");
  return to_hex(*bytes);
}

Result<Json> parse_exec(std::string_view command, Args args, std::istream& in) {
  static constexpr std::array<FlagSpec, 1> kFlags = {{{"--locality", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (split->positional.size() < 2) return usage("'exec' needs a UUID and the command as HEX (or '-')");
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  auto hex = read_command_hex(std::span(split->positional).subspan(1), in);
  if (!hex) return hex.error();
  Json params{{"uuid", *uuid}, {"command", *hex}};
  if (auto it = split->flags.find("--locality"); it != split->flags.end()) {
    const auto locality = parse_integer(it->second);
    if (!locality || *locality < 0 || *locality > 4) return usage("--locality: expected 0..4, got " + in_quotes(it->second));
    params["locality"] = *locality;
  }
  return params;
}

// A whole (small) file: a transport key or an export bundle.
Result<std::vector<std::uint8_t>> read_small_file(std::string_view what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return usage(std::string(what) + ": cannot read " + in_quotes(path));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() > 8 * 1024 * 1024) return usage(std::string(what) + ": " + in_quotes(path) + " is too large");
  return bytes;
}

Result<std::string> transport_key_hex(const SplitArgs& split) {
  auto it = split.flags.find("--transport-key");
  if (it == split.flags.end()) return usage("--transport-key FILE is required (at least 16 bytes, e.g. head -c 32 /dev/urandom)");
  auto key = read_small_file("--transport-key", it->second);
  if (!key) return key.error();
  if (key->size() < 16) return usage("--transport-key: " + in_quotes(it->second) + " holds fewer than 16 bytes");
  return to_hex(*key);
}

Result<Json> parse_export(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 2> kFlags = {{{"--transport-key", true}, {"--output", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  auto key = transport_key_hex(*split);
  if (!key) return key.error();
  auto output = split->flags.find("--output");
  if (output == split->flags.end()) return usage("export: --output FILE is required");
  // "output" is vtpmctl's own; parse_command_line moves it out of the params.
  return Json{{"uuid", *uuid}, {"transport_key", *key}, {"output", output->second}};
}

Result<Json> parse_import(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 1> kFlags = {{{"--transport-key", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "the export FILE"); !s) return s.error();
  auto bundle = read_small_file("import", std::string(split->positional[0]));
  if (!bundle) return bundle.error();
  auto key = transport_key_hex(*split);
  if (!key) return key.error();
  return Json{{"bundle", to_hex(*bundle)}, {"transport_key", *key}};
}

// "a,b,c" → ["a","b","c"] (empty items dropped).
Json comma_list(std::string_view text) {
  Json out = Json::array();
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    if (!item.empty()) out.push_back(std::string(item));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

// PCR values are "BANK:N=HEX", so the list separator is ',' between items
// and never inside one.
Result<Json> parse_reseal(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 3> kFlags = {{{"--pcrs", true}, {"--pcr-values", true}, {"--authorized", false}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 0, "no arguments"); !s) return s.error();
  Json params = Json::object();
  if (auto it = split->flags.find("--pcrs"); it != split->flags.end()) params["pcrs"] = it->second;
  if (auto it = split->flags.find("--pcr-values"); it != split->flags.end()) params["pcr_values"] = comma_list(it->second);
  if (split->flags.contains("--authorized")) params["authorized"] = true;
  return params;
}

// Local, no daemon: the operator signs a PCR policy offline.
Result<Json> parse_sign_policy(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 4> kFlags = {
      {{"--key", true}, {"--pcrs", true}, {"--pcr-values", true}, {"--output", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 0, "no arguments"); !s) return s.error();
  for (const char* required : {"--key", "--pcr-values", "--output"}) {
    if (!split->flags.contains(required)) {
      return usage("sign-policy: " + std::string(required) + " is required");
    }
  }
  const auto pcrs = split->flags.find("--pcrs");
  return Json{{"key", split->flags.at("--key")},
              {"pcrs", pcrs == split->flags.end() ? std::string("sha256:0,2,4,7") : pcrs->second},
              {"pcr_values", comma_list(split->flags.at("--pcr-values"))},
              {"policy_file", split->flags.at("--output")}};
}

// measure U --pcr N (--file F | --digest ALG:HEX[,ALG:HEX...] | --data S) [--event TEXT] [--force]
Result<Json> parse_measure(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 7> kFlags = {{{"--pcr", true},
                                                      {"--event-type", true},
                                                      {"--file", true},
                                                      {"--digest", true},
                                                      {"--data", true},
                                                      {"--event", true},
                                                      {"--force", false}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  const auto& flags = split->flags;
  Json params{{"uuid", *uuid}};
  auto pcr_flag = flags.find("--pcr");
  if (pcr_flag == flags.end()) return usage("measure: --pcr N is required (e.g. 4 for a kernel, 5 for its command line)");
  const auto pcr = parse_integer(pcr_flag->second);
  if (!pcr || *pcr < 0 || *pcr > 23) return usage("--pcr: expected 0..23, got " + in_quotes(pcr_flag->second));
  params["pcr"] = *pcr;
  const int sources = static_cast<int>(flags.contains("--file")) + static_cast<int>(flags.contains("--digest")) +
                      static_cast<int>(flags.contains("--data"));
  if (sources != 1) return usage("measure: give exactly one of --file F, --digest ALG:HEX, --data S");
  if (auto it = flags.find("--file"); it != flags.end()) {
    auto digests = digest_file(it->second);
    if (!digests) return digests.error();
    params["digests"] = std::move(*digests);
    params["event"] = it->second;
  } else if (auto it = flags.find("--digest"); it != flags.end()) {
    Json digests = Json::object();
    for (const auto& item : split_list(it->second)) {
      const auto colon = item.find(':');
      if (colon == std::string::npos || colon == 0) return usage("--digest: expected ALG:HEX, got " + in_quotes(item));
      auto bytes = from_hex(item.substr(colon + 1));
      if (!bytes || bytes->empty()) return usage("--digest: bad hex in " + in_quotes(item));
      digests[item.substr(0, colon)] = to_hex(*bytes);
    }
    params["digests"] = std::move(digests);
  } else {
    params["data"] = flags.at("--data");
  }
  if (auto it = flags.find("--event"); it != flags.end()) params["event"] = it->second;
  if (auto it = flags.find("--event-type"); it != flags.end()) {
    // Decimal or 0x-prefixed hex, as the TCG tables list them.
    unsigned long long type = 0;
    const std::string& v = it->second;
    const bool hex = v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X');
    const char* begin = v.data() + (hex ? 2 : 0);
    const auto [end, ec] = std::from_chars(begin, v.data() + v.size(), type, hex ? 16 : 10);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || type > 0xffffffffULL) {
      return usage("--event-type: expected a 32-bit number (e.g. 0xd for EV_IPL), got " + in_quotes(v));
    }
    params["event_type"] = type;
  }
  if (flags.contains("--force")) params["force"] = true;
  return params;
}

// eventlog U [--output FILE]: the binary log goes to FILE or stdout.
Result<Json> parse_eventlog(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 1> kFlags = {{{"--output", true}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 1, "a UUID"); !s) return s.error();
  auto uuid = parse_uuid(split->positional[0]);
  if (!uuid) return uuid.error();
  Json params{{"uuid", *uuid}};
  if (auto it = split->flags.find("--output"); it != split->flags.end()) params["output"] = it->second;
  return params;
}

// stats [U]: the daemon's figures, or one instance's.
Result<Json> parse_stats(std::string_view command, Args args, std::istream&) {
  auto split = split_flags(command, args, {});
  if (!split) return split.error();
  if (split->positional.size() > 1) return usage(std::string(command) + ": expected at most one UUID");
  Json params = Json::object();
  if (!split->positional.empty()) {
    auto uuid = parse_uuid(split->positional[0]);
    if (!uuid) return uuid.error();
    params["uuid"] = *uuid;
  }
  return params;
}

// metrics [--instances]: the Prometheus text, per-instance series on request.
Result<Json> parse_metrics(std::string_view command, Args args, std::istream&) {
  static constexpr std::array<FlagSpec, 1> kFlags = {{{"--instances", false}}};
  auto split = split_flags(command, args, kFlags);
  if (!split) return split.error();
  if (Status s = expect_positional(command, *split, 0, "no arguments"); !s) return s.error();
  Json params = Json::object();
  if (split->flags.contains("--instances")) params["instances"] = true;
  return params;
}

using CommandParser = Result<Json> (*)(std::string_view, Args, std::istream&);

struct CommandSpec {
  std::string_view name;
  CommandParser parse;
};

constexpr std::array<CommandSpec, 22> kCommands = {{
    {"stats", parse_stats},
    {"metrics", parse_metrics},
    {"measure", parse_measure},
    {"eventlog", parse_eventlog},
    {"ca-cert", parse_no_args},
    {"reset", parse_uuid_only},
    {"set", parse_set},
    {"reseal", parse_reseal},
    {"sign-policy", parse_sign_policy},
    {"export", parse_export},
    {"import", parse_import},
    {"attach", parse_attach},
    {"detach", parse_uuid_only},
    {"add", parse_add},
    {"remove", parse_remove},
    {"list", parse_no_args},
    {"show", parse_uuid_only},
    {"status", parse_no_args},
    {"hello", parse_no_args},
    {"exec", parse_exec},
    {"power", parse_power},
    {"cancel", parse_uuid_only},
}};

// ---- global options -----------------------------------------------------------

// Applies the global options (anywhere on the line) to `inv`; returns the rest.
Result<std::vector<std::string_view>> take_globals(Args args, Invocation& inv) {
  std::vector<std::string_view> rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    const std::string_view name = arg.substr(0, arg.find('='));
    const bool inline_value = name.size() != arg.size();
    if (arg == "-h" || arg == "--help") {
      inv.action = Invocation::Action::kHelp;
    } else if (arg == "--version") {
      inv.action = Invocation::Action::kVersion;
    } else if (arg == "--json") {
      inv.json = true;
    } else if (name == "--socket" || name == "--timeout") {
      if (!inline_value && i + 1 >= args.size()) return usage("option " + in_quotes(name) + " needs a value");
      const std::string_view value = inline_value ? arg.substr(name.size() + 1) : args[++i];
      if (name == "--socket") {
        if (value.empty()) return usage("--socket: the path is empty");
        inv.socket_path = value;
      } else {
        auto timeout = parse_timeout(value);
        if (!timeout) return timeout.error();
        inv.timeout = *timeout;
      }
    } else {
      rest.push_back(arg);
    }
  }
  return rest;
}

}  // namespace

Result<Invocation> parse_command_line(Args args, const char* env_socket, std::istream& in) {
  Invocation inv;
  if (env_socket != nullptr && *env_socket != '\0') inv.socket_path = env_socket;
  auto rest = take_globals(args, inv);
  if (!rest) return rest.error();
  if (inv.action != Invocation::Action::kRun) return inv;
  if (rest->empty()) return usage("missing command");
  const std::string_view command = rest->front();
  if (command == "help") {
    inv.action = Invocation::Action::kHelp;
    return inv;
  }
  for (const CommandSpec& spec : kCommands) {
    if (spec.name != command) continue;
    auto params = spec.parse(command, std::span(*rest).subspan(1), in);
    if (!params) return params.error();
    inv.method = command;
    inv.params = std::move(*params);
    if (command == "sign-policy") inv.action = Invocation::Action::kSignPolicy;
    if (inv.params.contains("output")) {
      inv.output_path = inv.params["output"].get<std::string>();
      inv.params.erase("output");
    }
    return inv;
  }
  return usage("unknown command " + in_quotes(command));
}

}  // namespace vtpm::ctl
