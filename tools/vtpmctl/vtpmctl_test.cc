// Unit tests of vtpmctl's argument parsing and output formatting (no I/O).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tools/vtpmctl/cli.h"
#include "tools/vtpmctl/format.h"
#include "tools/vtpmctl/table.h"

using vtpm::ctl::Invocation;
using vtpm::control::Json;

namespace {

constexpr const char* kUuid = "6F1C2B3A-1234-4abc-8def-0123456789ab";
constexpr const char* kUuidLower = "6f1c2b3a-1234-4abc-8def-0123456789ab";

vtpm::Result<Invocation> parse(std::vector<std::string_view> args, const char* env = nullptr,
                               std::string stdin_text = "") {
  std::istringstream in(stdin_text);
  return vtpm::ctl::parse_command_line(args, env, in);
}

}  // namespace

TEST_CASE("global options and socket precedence") {
  auto inv = parse({"list"});
  REQUIRE(inv);
  CHECK(inv->socket_path == "/run/vtpmd/control.sock");
  CHECK(inv->timeout == std::chrono::milliseconds(60000));
  CHECK(parse({"list"}, "/env.sock")->socket_path == "/env.sock");
  CHECK(parse({"--socket", "/flag.sock", "list"}, "/env.sock")->socket_path == "/flag.sock");
  CHECK(parse({"list", "--socket=/x.sock", "--json"})->json);
  CHECK(parse({"--timeout", "0.5", "list"})->timeout == std::chrono::milliseconds(500));
  CHECK_FALSE(parse({"--timeout", "0", "list"})->timeout.has_value());
  CHECK_FALSE(parse({"--timeout", "-1", "list"}));
  CHECK_FALSE(parse({"--timeout"}));
  CHECK(parse({"--help"})->action == Invocation::Action::kHelp);
  CHECK(parse({"help", "exec"})->action == Invocation::Action::kHelp);
  CHECK(parse({"--version"})->action == Invocation::Action::kVersion);
  CHECK_FALSE(parse({}));
  CHECK_FALSE(parse({"frobnicate"}));
}

TEST_CASE("add") {
  auto inv = parse({"add", "--uuid", kUuid, "--tpm=1.2", "--auto-startup", "--max-command-size", "8192"});
  REQUIRE(inv);
  CHECK(inv->method == "add");
  CHECK(inv->params == Json{{"uuid", kUuidLower}, {"tpm", "1.2"}, {"auto_startup", true}, {"max_command_size", 8192}});
  CHECK(parse({"add"})->params == Json::object());
  CHECK_FALSE(parse({"add", "--uuid", "nope"}));
  CHECK_FALSE(parse({"add", "--tpm", "3.0"}));
  CHECK_FALSE(parse({"add", "--max-command-size", "12k"}));
  CHECK_FALSE(parse({"add", "--auto-startup=yes"}));
  CHECK_FALSE(parse({"add", "extra"}));
  CHECK_FALSE(parse({"add", "--force"}));
}

TEST_CASE("uuid commands") {
  CHECK(parse({"remove", kUuid})->params == Json{{"uuid", kUuidLower}, {"force", false}});
  CHECK(parse({"remove", "--force", kUuid})->params["force"] == true);
  CHECK(parse({"show", kUuid})->params == Json{{"uuid", kUuidLower}});
  CHECK(parse({"cancel", kUuid})->method == "cancel");
  CHECK_FALSE(parse({"show"}));
  CHECK_FALSE(parse({"show", kUuid, kUuid}));
  CHECK_FALSE(parse({"show", "{6f1c2b3a-1234-4abc-8def-0123456789ab}"}));
  CHECK(parse({"power", kUuid, "reset"})->params["action"] == "reset");
  CHECK_FALSE(parse({"power", kUuid, "cycle"}));
  CHECK_FALSE(parse({"power", kUuid}));
}

TEST_CASE("--vchan on add and set") {
  CHECK(parse({"add", "--vchan", "7"})->params == Json{{"vchan", 7}});
  CHECK(parse({"set", kUuid, "--vchan", "7"})->params == Json{{"uuid", kUuidLower}, {"vchan", 7}});
  CHECK(parse({"set", kUuid, "--vchan=off"})->params == Json{{"uuid", kUuidLower}, {"vchan", "off"}});
  CHECK_FALSE(parse({"add", "--vchan", "off"}));  // nothing to turn off yet
  CHECK_FALSE(parse({"set", kUuid, "--vchan", "0"}));
  CHECK_FALSE(parse({"set", kUuid, "--vchan", "32752"}));
  CHECK_FALSE(parse({"set", kUuid, "--vchan", "dom7"}));
  Json served = {{"uuid", kUuidLower}, {"tpm", "2.0"}, {"vchan", {{"domid", 7}, {"state", "connected"}}}};
  CHECK(vtpm::ctl::format_instance_table({{"instances", {served}}}).find("vchan:dom7 connected") != std::string::npos);
  served["xen"] = {{"domid", 5}, {"devid", 0}, {"state", "Connected"}};
  CHECK(vtpm::ctl::format_instance_table({{"instances", {served}}}).find("dom5/0 Connected, vchan:dom7 connected") !=
        std::string::npos);
}

TEST_CASE("exec hex") {
  auto inv = parse({"exec", kUuid, "80 01", "00", "00000C", "00000144", "00", "00", "--locality", "3"});
  REQUIRE(inv);
  CHECK(inv->params["command"] == "80010000000c000001440000");
  CHECK(inv->params["locality"] == 3);
  auto piped = parse({"exec", kUuid, "-"}, nullptr, "80 01 00 00 00 0c\n00 00 01 44 00 00\n");
  REQUIRE(piped);
  CHECK(piped->params["command"] == "80010000000c000001440000");
  CHECK_FALSE(parse({"exec", kUuid}));
  CHECK_FALSE(parse({"exec", kUuid, "8"}));
  CHECK_FALSE(parse({"exec", kUuid, "zz"}));
  CHECK_FALSE(parse({"exec", kUuid, "-"}, nullptr, ""));
  CHECK_FALSE(parse({"exec", kUuid, "80", "-"}));
  CHECK_FALSE(parse({"exec", kUuid, "8001", "--locality", "5"}));
}

TEST_CASE("export and import read the key and bundle files") {
  char dir[] = "/tmp/vtpmctl-test-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string key = std::string(dir) + "/key", short_key = std::string(dir) + "/short",
                    bundle = std::string(dir) + "/bundle";
  std::ofstream(key) << std::string(32, 'k');
  std::ofstream(short_key) << "tooshort";
  std::ofstream(bundle) << "VTPMXPRT";
  auto exp = parse({"export", kUuid, "--transport-key", key, "--output", "/x/out"});
  REQUIRE(exp);
  CHECK(exp->method == "export");
  CHECK(exp->params["uuid"] == kUuidLower);
  std::string key_hex;
  for (int i = 0; i < 32; ++i) key_hex += "6b";  // 'k'
  CHECK(exp->params["transport_key"] == key_hex);
  CHECK_FALSE(exp->params.contains("output"));
  CHECK(exp->output_path == "/x/out");
  CHECK_FALSE(parse({"export", kUuid, "--transport-key", key}));              // no --output
  CHECK_FALSE(parse({"export", kUuid, "--output", "/x/out"}));                // no key
  CHECK_FALSE(parse({"export", kUuid, "--transport-key", short_key, "--output", "/o"}));
  CHECK_FALSE(parse({"export", kUuid, "--transport-key", "/nonexistent", "--output", "/o"}));
  auto imp = parse({"import", bundle, "--transport-key", key});
  REQUIRE(imp);
  CHECK(imp->params["bundle"] == "5654504d58505254");  // "VTPMXPRT"
  CHECK_FALSE(parse({"import", "/nonexistent", "--transport-key", key}));
  CHECK_FALSE(parse({"import", bundle}));
  std::filesystem::remove_all(dir);
}

TEST_CASE("table alignment") {
  vtpm::ctl::Table table({{"A"}, {"NUM", vtpm::ctl::Align::kRight}, {"LAST"}});
  table.add_row({"long-name", "7", "x"});
  table.add_row({"b", "1234"});
  CHECK(table.render() == "A           NUM  LAST\nlong-name     7  x\nb          1234\n");
}

TEST_CASE("human output") {
  const Json instance = {{"uuid", kUuidLower}, {"tpm", "2.0"}, {"state", "running"}, {"power", "on"},
                         {"engine", "engine-thread"}, {"channels", Json::array()},
                         {"counters", {{"commands", 3}, {"errors", 0}, {"last_command", nullptr}}}};
  const std::string details = vtpm::ctl::format_instance_details(instance);
  CHECK(details.rfind(std::string("uuid: ") + kUuidLower + "\n", 0) == 0);
  CHECK(details.find("counters.commands: 3\n") != std::string::npos);
  CHECK(details.find("counters.last_command: -\n") != std::string::npos);
  CHECK(details.find("channels: []\n") != std::string::npos);
  const std::string table = vtpm::ctl::format_instance_table({{"instances", {instance}}});
  CHECK(table.rfind("UUID", 0) == 0);
  CHECK(table.find("engine-thread") != std::string::npos);
  // A Xen tpmif binding shows in the list and, flattened, in show.
  Json bound = instance;
  bound["xen"] = {{"domid", 5}, {"devid", 0}, {"state", "Connected"}, {"connected", true}};
  CHECK(vtpm::ctl::format_instance_table({{"instances", {bound}}}).find("dom5/0 Connected") != std::string::npos);
  CHECK(vtpm::ctl::format_instance_details(bound).find("xen.domid: 5\n") != std::string::npos);
  CHECK(*vtpm::ctl::format_human("add", instance) == std::string(kUuidLower) + "\n");
  CHECK(*vtpm::ctl::format_human("exec", {{"response", "8001"}, {"rc", 0}}) == "8001\n");
  CHECK_FALSE(vtpm::ctl::format_human("exec", {{"rc", 0}}));
  CHECK(vtpm::ctl::format_duration(3723) == "1h 02m 03s");
  CHECK(vtpm::ctl::format_duration(59) == "59s");
  CHECK(vtpm::ctl::format_json({{"a", 1}}) == "{\n  \"a\": 1\n}\n");
}

TEST_CASE("status tolerates missing fields") {
  const std::string text = vtpm::ctl::format_status(Json::object());
  CHECK(text.find("daemon:      vtpmd - (pid -)") != std::string::npos);
  CHECK(text.find("AVG SWAP us") != std::string::npos);
  const Json shard = {{"name", "s0"}, {"pid", 12}, {"instances", 2}, {"jobs", 10}, {"swaps", 4},
                      {"swap_us_total", 1000}, {"outstanding", 0}};
  const std::string with_shard = vtpm::ctl::format_status({{"engine", {{"shards", {shard}}}}});
  CHECK(with_shard.find("250") != std::string::npos);
}

TEST_CASE("add provisioning options") {
  auto inv = parse({"add", "--pcr-banks", "sha1,sha384", "--ek=rsa,ecc", "--ek-cert", "--platform-cert"});
  REQUIRE(inv);
  CHECK(inv->params == Json{{"pcr_banks", {"sha1", "sha384"}},
                            {"ek", {"rsa", "ecc"}},
                            {"ek_certificates", true},
                            {"platform_certificate", true}});
  CHECK_FALSE(parse({"add", "--pcr-banks", "sha1,"}));
  CHECK_FALSE(parse({"add", "--ek"}));
  CHECK_FALSE(parse({"add", "--ek-cert=yes"}));
}

TEST_CASE("measure, eventlog, ca-cert, reset") {
  const std::string dir = std::filesystem::temp_directory_path() / ("vtpmctl-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/kernel";
  std::ofstream(file) << "abc";
  auto inv = parse({"measure", kUuid, "--pcr", "4", "--file", file});
  REQUIRE(inv);
  CHECK(inv->params["pcr"] == 4);
  CHECK(inv->params["event"] == file);
  CHECK(inv->params["digests"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(inv->params["digests"]["sha1"] == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(inv->params["digests"].size() == 4);
  std::filesystem::remove_all(dir);

  inv = parse({"measure", kUuid, "--pcr=5", "--data", "console=ttyS0", "--force", "--event-type", "0xd"});
  REQUIRE(inv);
  CHECK(inv->params == Json{{"uuid", kUuidLower}, {"pcr", 5}, {"data", "console=ttyS0"}, {"force", true},
                            {"event_type", 13}});
  inv = parse({"measure", kUuid, "--pcr", "5", "--digest", "sha256:AB01,sha1:cd"});
  REQUIRE(inv);
  CHECK(inv->params["digests"] == Json{{"sha256", "ab01"}, {"sha1", "cd"}});

  CHECK_FALSE(parse({"measure", kUuid, "--data", "x"}));                        // no --pcr
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "24", "--data", "x"}));
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4"}));                        // no source
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4", "--data", "x", "--digest", "sha1:00"}));
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4", "--file", "/nonexistent/file"}));
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4", "--digest", "sha256"}));
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4", "--digest", "sha256:xyz"}));
  CHECK_FALSE(parse({"measure", kUuid, "--pcr", "4", "--data", "x", "--event-type", "4294967296"}));

  inv = parse({"eventlog", kUuid, "--output", "/tmp/log.bin"});
  REQUIRE(inv);
  CHECK(inv->params == Json{{"uuid", kUuidLower}});
  CHECK(inv->output_path == "/tmp/log.bin");
  CHECK(parse({"ca-cert"})->method == "ca-cert");
  CHECK_FALSE(parse({"ca-cert", kUuid}));
  CHECK(parse({"reset", kUuid})->params == Json{{"uuid", kUuidLower}});
}

TEST_CASE("human output of the provisioning commands") {
  CHECK(vtpm::ctl::format_human("ca-cert", Json{{"pem", "PEM\n"}}).value() == "PEM\n");
  const auto measured = vtpm::ctl::format_human(
      "measure", Json{{"uuid", kUuidLower}, {"pcr", 4}, {"events", 1}, {"digests", {{"sha256", "ab"}}}});
  CHECK(measured.value() == std::string("PCR 4 of ") + kUuidLower + " extended (event 1):\n  sha256: ab\n");
}
