#include "src/core/config.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace vtpm {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A JSON config file in a fresh mkdtemp directory; both removed on exit.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    std::string templ = "/tmp/vtpmd-config-XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    dir_ = templ;
    path_ = dir_ + "/vtpmd.json";
    std::ofstream(path_) << text;
  }
  ~ConfigFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

Result<CommandLine> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "vtpmd");
  return parse_command_line(args);
}

Config parse_ok(std::vector<std::string> args) {
  auto cl = parse(std::move(args));
  REQUIRE_MESSAGE(cl.ok(), cl.error().message);
  return cl->config;
}

Error parse_error(std::vector<std::string> args) {
  auto cl = parse(std::move(args));
  REQUIRE_FALSE(cl.ok());
  CHECK_FALSE(cl.error().message.empty());
  return cl.error();
}

}  // namespace

// --- parse_log_level --------------------------------------------------------

TEST_CASE("config: parse_log_level accepts the four levels and 'warning'") {
  CHECK(*parse_log_level("error") == LogLevel::kError);
  CHECK(*parse_log_level("warn") == LogLevel::kWarn);
  CHECK(*parse_log_level("warning") == LogLevel::kWarn);
  CHECK(*parse_log_level("info") == LogLevel::kInfo);
  CHECK(*parse_log_level("debug") == LogLevel::kDebug);
}

TEST_CASE("config: parse_log_level rejects anything else and names it") {
  for (const std::string text : {"", "INFO", "trace", "debug ", "3"}) {
    CAPTURE(text);
    auto level = parse_log_level(text);
    REQUIRE_FALSE(level.ok());
    CHECK(level.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(level.error().message, std::string("'") + text + "'"));
  }
}

// --- parse_command_line -----------------------------------------------------

TEST_CASE("config: no arguments gives the built-in defaults") {
  auto cl = parse({});
  REQUIRE(cl.ok());
  CHECK_FALSE(cl->help);
  CHECK_FALSE(cl->version);
  const Config& c = cl->config;
  CHECK(c.state_dir == "/var/lib/vtpmd");
  CHECK(c.control_socket == "/run/vtpmd/control.sock");
  CHECK(c.log_level == LogLevel::kInfo);
  CHECK(c.root_of_trust == "auto");
  CHECK(c.root_key_file.empty());
  CHECK(c.engine_worker.empty());
  CHECK(c.tpm12_workers_max == 64);
  CHECK(c.tpm12_slice_ms == 500);
  CHECK(c.default_max_command_size == 4096);
}

TEST_CASE("config: an empty argv is accepted") {
  auto cl = parse_command_line({});
  REQUIRE(cl.ok());
  CHECK(cl->config.state_dir == "/var/lib/vtpmd");
}

TEST_CASE("config: --help, -h and --version are recognised") {
  CHECK(parse({"--help"})->help);
  CHECK(parse({"-h"})->help);
  CHECK(parse({"--version"})->version);
}

TEST_CASE("config: every flag sets its setting") {
  const Config c = parse_ok({"--state-dir", "/s", "--control-socket", "/c.sock", "--log-level", "debug",
                             "--root-of-trust", "file", "--root-key-file", "/k", "--engine-worker", "/w", "--tpm12-workers-max", "0",
                             "--tpm12-slice-ms", "60000", "--default-max-command-size", "65536"});
  CHECK(c.state_dir == "/s");
  CHECK(c.control_socket == "/c.sock");
  CHECK(c.log_level == LogLevel::kDebug);
  CHECK(c.engine_worker == "/w");
  CHECK(c.root_key_file == "/k");
  CHECK(c.tpm12_workers_max == 0);
  CHECK(c.tpm12_slice_ms == 60000);
  CHECK(c.default_max_command_size == 65536);
}

TEST_CASE("config: --flag=value form works, including values containing '='") {
  const Config c = parse_ok({"--state-dir=/a=b", "--tpm12-slice-ms=7", "--log-level=error"});
  CHECK(c.state_dir == "/a=b");
  CHECK(c.tpm12_slice_ms == 7);
  CHECK(c.log_level == LogLevel::kError);
}

TEST_CASE("config: --flag= sets an empty value") {
  CHECK(parse_ok({"--engine-worker="}).engine_worker.empty());
  auto bad = parse_error({"--tpm12-slice-ms="});
  CHECK(contains(bad.message, "--tpm12-slice-ms"));
}

TEST_CASE("config: the last occurrence of a flag wins") {
  CHECK(parse_ok({"--state-dir", "/one", "--state-dir=/two"}).state_dir == "/two");
}

TEST_CASE("config: the config file sets values") {
  ConfigFile file(R"({"state_dir":"/from/file","tpm12_slice_ms":250,"log_level":"warn"})");
  const Config c = parse_ok({"--config", file.path()});
  CHECK(c.state_dir == "/from/file");
  CHECK(c.tpm12_slice_ms == 250);
  CHECK(c.log_level == LogLevel::kWarn);
  CHECK(c.control_socket == "/run/vtpmd/control.sock");
}

TEST_CASE("config: flags override the config file when given after --config") {
  ConfigFile file(R"({"state_dir":"/from/file","tpm12_workers_max":3})");
  const Config c = parse_ok({"--config", file.path(), "--state-dir", "/from/flag"});
  CHECK(c.state_dir == "/from/flag");
  CHECK(c.tpm12_workers_max == 3);
}

TEST_CASE("config: flags override the config file even when --config comes last") {
  ConfigFile file(R"({"state_dir":"/from/file","tpm12_workers_max":3,"log_level":"error"})");
  const Config c = parse_ok({"--state-dir", "/from/flag", "--log-level=debug", "--config=" + file.path()});
  CHECK(c.state_dir == "/from/flag");
  CHECK(c.log_level == LogLevel::kDebug);
  CHECK(c.tpm12_workers_max == 3);
}

TEST_CASE("config: a missing config file is an I/O error naming the path") {
  const Error e = parse_error({"--config", "/nonexistent/vtpmd-unit.json"});
  CHECK(e.code == ErrorCode::kIo);
  CHECK(contains(e.message, "/nonexistent/vtpmd-unit.json"));
}

TEST_CASE("config: a bad config file is rejected with its path") {
  ConfigFile file(R"({"state_dir":"/x","bogus_key":1})");
  const Error e = parse_error({"--config", file.path()});
  CHECK(contains(e.message, file.path()));
  CHECK(contains(e.message, "bogus_key"));
}

TEST_CASE("config: an unknown flag is rejected and named") {
  const Error e = parse_error({"--state-dri", "/x"});
  CHECK(e.code == ErrorCode::kInvalidArgument);
  CHECK(contains(e.message, "unknown"));
  CHECK(contains(e.message, "state-dri"));
}

TEST_CASE("config: an unknown flag is rejected in --flag=value form and without a value") {
  CHECK(contains(parse_error({"--bogus=1"}).message, "bogus"));
  CHECK(contains(parse_error({"--bogus"}).message, "bogus"));
  CHECK(contains(parse_error({"--state-dir", "/x", "--bogus", "1"}).message, "bogus"));
}

TEST_CASE("config: a flag without a value is rejected") {
  const Error e = parse_error({"--state-dir"});
  CHECK(contains(e.message, "--state-dir needs a value"));
}

TEST_CASE("config: a positional argument is rejected") {
  const Error e = parse_error({"run"});
  CHECK(contains(e.message, "unexpected argument 'run'"));
  CHECK(contains(parse_error({"-v"}).message, "'-v'"));
}

TEST_CASE("config: bad numbers are rejected with the setting and the value") {
  for (const std::string value : {"abc", "12abc", "", "1.5", "0x10", "-1", "99999999999999999999999"}) {
    CAPTURE(value);
    const Error e = parse_error({"--tpm12-slice-ms", value});
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "--tpm12-slice-ms"));
    CHECK(contains(e.message, std::string("got '") + value + "'"));
  }
}

TEST_CASE("config: negative numbers are rejected, whatever their magnitude") {
  // strtoul negates negative input modulo 2^64, so this text reads as 1.
  for (const std::string value : {"-1", "-4096", "-18446744073709551615"}) {
    CAPTURE(value);
    auto cl = parse({"--tpm12-workers-max", value});
    CHECK_FALSE(cl.ok());
  }
}

TEST_CASE("config: out-of-range numbers are rejected with the range") {
  CHECK(contains(parse_error({"--tpm12-workers-max", "4097"}).message, "0..4096"));
  CHECK(contains(parse_error({"--tpm12-slice-ms", "60001"}).message, "0..60000"));
  CHECK(contains(parse_error({"--default-max-command-size", "1023"}).message, "1024..65536"));
  CHECK(contains(parse_error({"--default-max-command-size", "65537"}).message, "1024..65536"));
  CHECK(contains(parse_error({"--default-max-command-size", "4294967296"}).message, "1024..65536"));
}

TEST_CASE("config: range limits themselves are accepted") {
  CHECK(parse_ok({"--tpm12-workers-max", "4096"}).tpm12_workers_max == 4096);
  CHECK(parse_ok({"--tpm12-slice-ms", "0"}).tpm12_slice_ms == 0);
  CHECK(parse_ok({"--default-max-command-size", "1024"}).default_max_command_size == 1024);
}

TEST_CASE("config: a bad log level is rejected and named") {
  const Error e = parse_error({"--log-level", "loud"});
  CHECK(contains(e.message, "--log-level"));
  CHECK(contains(e.message, "'loud'"));
}

TEST_CASE("config: an unknown root of trust is rejected with the accepted forms") {
  const Error e = parse_error({"--root-of-trust", "none"});
  CHECK(contains(e.message, "'none'"));
  CHECK(contains(e.message, "device:/dev/tpmrm0"));
  CHECK(contains(parse_error({"--root-of-trust", "file:relative"}).message, "'file:relative'"));
}

TEST_CASE("config: TPM root settings") {
  const Config c = parse_ok({"--root-of-trust", "swtpm:path=/run/tpm", "--tpm-pcrs", "sha256:0,7",
                             "--tpm-parent", "0x81000001", "--tpm-counter-index", "0x01C10000",
                             "--tpm-counter-interval", "60", "--tpm-policy-key", "/etc/vtpmd/op.pem",
                             "--tpm-signed-policies", "/etc/vtpmd/policies"});
  CHECK(c.root_of_trust == "swtpm:path=/run/tpm");
  CHECK(c.tpm_pcrs == "sha256:0,7");
  CHECK(c.tpm_parent == 0x81000001u);
  CHECK(c.tpm_counter_index == 0x01C10000u);
  CHECK(c.tpm_counter_interval_s == 60u);
  CHECK(c.tpm_policy_key == "/etc/vtpmd/op.pem");
  CHECK(parse_ok({"--root-of-trust", "tis:0xFED40000,locality=2"}).root_of_trust == "tis:0xFED40000,locality=2");
  CHECK(parse_ok({"--root-of-trust", "file:/k"}).root_of_trust == "file:/k");
  CHECK(contains(parse_error({"--tpm-parent", "0x01000001"}).message, "0x81000000..0x81ffffff"));
  CHECK(contains(parse_error({"--tpm-counter-index", "123"}).message, "hex with 0x"));
  CHECK(contains(parse_error({"--tpm-counter-interval", "0"}).message, "tpm-counter-interval"));
  CHECK(contains(parse_error({"--tpm-pcrs", "0,2"}).message, "sha256:0,2,4,7"));
  CHECK(contains(parse_error({"--tpm-policy-key", "op.pem"}).message, "absolute path"));
}

TEST_CASE("config: warm pool settings") {
  const Config defaults = parse_ok({});
  CHECK(defaults.warm_pool == 0u);
  CHECK(defaults.warm_pool_ek == "rsa");
  CHECK(defaults.warm_pool_pcr_banks.empty());
  const Config c = parse_ok({"--warm-pool", "4", "--warm-pool-ek", "rsa,ecc", "--warm-pool-pcr-banks", "sha1,sha256"});
  CHECK(c.warm_pool == 4u);
  CHECK(c.warm_pool_ek == "rsa,ecc");
  CHECK(c.warm_pool_pcr_banks == "sha1,sha256");
  CHECK(contains(parse_error({"--warm-pool-ek", "dsa"}).message, "unknown 'dsa' (known: rsa, ecc)"));
  CHECK(contains(parse_error({"--warm-pool-ek", ""}).message, "at least one"));
  CHECK(contains(parse_error({"--warm-pool-ek", "rsa,rsa"}).message, "'rsa' given twice"));
  CHECK(contains(parse_error({"--warm-pool-pcr-banks", "sha256,md5"}).message, "unknown 'md5'"));
  CHECK(contains(parse_error({"--warm-pool-pcr-banks", "sha256,"}).message, "unknown ''"));
  CHECK(contains(parse_error({"--warm-pool", "1001"}).message, "0..1000"));
}

TEST_CASE("config: a relative root key file is rejected") {
  const Error e = parse_error({"--root-key-file", "root.key"});
  CHECK(contains(e.message, "absolute path"));
}

// --- apply_config_json ------------------------------------------------------

TEST_CASE("config: hardening settings: core dumps off, seccomp enforced, a state size limit, by default") {
  const Config d = parse_ok({});
  CHECK_FALSE(d.allow_core_dumps);
  CHECK(d.seccomp == SeccompMode::kEnforce);
  CHECK(d.default_max_state_size == 1024 * 1024);
  const Config c = parse_ok({"--allow-core-dumps", "--seccomp", "log", "--default-max-state-size", "65536"});
  CHECK(c.allow_core_dumps);
  CHECK(c.seccomp == SeccompMode::kLog);
  CHECK(c.default_max_state_size == 65536);
  CHECK_FALSE(parse_ok({"--allow-core-dumps=off"}).allow_core_dumps);
  CHECK(parse_ok({"--seccomp=off"}).seccomp == SeccompMode::kOff);
  Config j;
  REQUIRE(apply_config_json(R"({"allow_core_dumps": true, "seccomp": "enforce"})", "t.json", j).ok());
  CHECK(j.allow_core_dumps);
  CHECK(contains(parse_error({"--seccomp", "strict"}).message, "off, log or enforce"));
  CHECK(contains(parse_error({"--default-max-state-size", "100"}).message, "4096"));
}

TEST_CASE("config: apply_config_json accepts both key spellings") {
  Config c;
  REQUIRE(apply_config_json(R"({"state-dir":"/a","control_socket":"/b"})", "t.json", c).ok());
  CHECK(c.state_dir == "/a");
  CHECK(c.control_socket == "/b");
}

TEST_CASE("config: apply_config_json accepts numbers as strings") {
  Config c;
  REQUIRE(apply_config_json(R"({"tpm12_workers_max":"12"})", "t.json", c).ok());
  CHECK(c.tpm12_workers_max == 12);
}

TEST_CASE("config: apply_config_json of an empty object changes nothing") {
  Config c;
  REQUIRE(apply_config_json("{}", "t.json", c).ok());
  CHECK(c.state_dir == Config().state_dir);
}

TEST_CASE("config: apply_config_json rejects values of the wrong type, naming the key") {
  for (const std::string text : {R"({"tpm12_slice_ms":true})", R"({"tpm12_slice_ms":-5})", R"({"tpm12_slice_ms":1.5})",
                           R"({"tpm12_slice_ms":null})", R"({"tpm12_slice_ms":[1]})", R"({"tpm12_slice_ms":{}})"}) {
    CAPTURE(text);
    Config c;
    const Status s = apply_config_json(text, "t.json", c);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(s.error().message, "t.json"));
    CHECK(contains(s.error().message, "'tpm12_slice_ms'"));
    CHECK(c.tpm12_slice_ms == 500);
  }
}

TEST_CASE("config: apply_config_json rejects a too-large JSON number") {
  Config c;
  const Status s = apply_config_json(R"({"tpm12_slice_ms":18446744073709551615})", "t.json", c);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "0..60000"));
}

TEST_CASE("config: apply_config_json rejects an unknown key, naming it") {
  Config c;
  const Status s = apply_config_json(R"({"statedir":"/x"})", "t.json", c);
  REQUIRE_FALSE(s.ok());
  CHECK(contains(s.error().message, "unknown setting 'statedir'"));
  CHECK(contains(s.error().message, "t.json"));
}

TEST_CASE("config: apply_config_json does not allow nesting --config") {
  Config c;
  CHECK_FALSE(apply_config_json(R"({"config":"/other.json"})", "t.json", c).ok());
}

TEST_CASE("config: apply_config_json rejects text that is not a JSON object") {
  for (const std::string text : {"", "[]", "\"state_dir\"", "{", "{} {}", "state_dir=/x"}) {
    CAPTURE(text);
    Config c;
    const Status s = apply_config_json(text, "t.json", c);
    REQUIRE_FALSE(s.ok());
    CHECK(contains(s.error().message, "t.json: not a JSON object"));
  }
}

TEST_CASE("config: usage_text mentions every flag") {
  const std::string usage = usage_text();
  for (const std::string flag : {"--config", "--state-dir", "--control-socket", "--log-level", "--root-of-trust",
                           "--engine-worker", "--tpm12-workers-max", "--tpm12-slice-ms", "--default-max-command-size",
                           "--version", "--help"}) {
    CHECK_MESSAGE(contains(usage, flag), flag);
  }
}

TEST_CASE("observability settings: log format and rate, metrics listener, --check-config") {
  const Config c = parse_ok({"--log-format", "json", "--log-rate-limit", "0", "--log-burst=5", "--metrics-listen",
                             "[::1]:9400"});
  CHECK(c.log_format == LogFormat::kJson);
  CHECK(c.log_rate_limit == 0);
  CHECK(c.log_burst == 5);
  CHECK(c.metrics_listen == "[::1]:9400");
  const Config defaults = parse_ok({});
  CHECK(defaults.log_format == LogFormat::kHuman);
  CHECK(defaults.log_rate_limit == 10);
  CHECK(defaults.metrics_listen.empty());
  CHECK(contains(parse_error({"--metrics-listen", "0.0.0.0:9400"}).message, "loopback"));
  CHECK(contains(parse_error({"--log-format", "xml"}).message, "human or json"));
  parse_error({"--log-burst", "0"});
  auto checked = parse({"--check-config"});
  REQUIRE(checked);
  CHECK(checked->check_config);
  Config from_json;
  REQUIRE(apply_config_json(R"({"log_format": "json", "metrics_listen": "127.0.0.1:9100"})", "test", from_json));
  CHECK(from_json.log_format == LogFormat::kJson);
  CHECK(from_json.metrics_listen == "127.0.0.1:9100");
}

}  // namespace vtpm
