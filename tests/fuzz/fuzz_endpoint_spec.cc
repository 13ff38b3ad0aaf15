// Fuzz target: the parameters of `attach` and `add` that describe an instance's guest endpoints
// (backends/swtpm/endpoint_spec.h), and the channel configuration vtpmd saves with an instance and
// re-reads at start-up, which is the same JSON.
// Input: JSON text (a control request's params object).
// Invariants: an accepted spec has only absolute paths, ports 1..65535 and a mode within 0777; it
// survives to_json() -> from_json() unchanged (what a restart does); describe() names each
// endpoint it has once; a refusal carries a message.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "backends/swtpm/endpoint_spec.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using swtpm::EndpointSpec;

namespace {

bool same(const EndpointSpec& a, const EndpointSpec& b) {
  return a.ctrl_path == b.ctrl_path && a.data_path == b.data_path && a.ctrl_port == b.ctrl_port &&
         a.data_port == b.data_port && a.mode == b.mode && (a.bind == b.bind || (a.ctrl_port == 0 && a.data_port == 0));
}

void check_accepted(const EndpointSpec& spec) {
  for (const std::string* path : {&spec.ctrl_path, &spec.data_path}) {
    FUZZ_CHECK(path->empty() || (*path)[0] == '/');
  }
  FUZZ_CHECK(spec.mode <= 0777);
  const std::size_t endpoints = (spec.ctrl_path.empty() ? 0 : 1) + (spec.data_path.empty() ? 0 : 1) +
                                (spec.ctrl_port == 0 ? 0 : 1) + (spec.data_port == 0 ? 0 : 1);
  FUZZ_CHECK(spec.describe().size() == endpoints);
  FUZZ_CHECK(spec.empty() == (endpoints == 0));
  // What vtpmd saves and re-reads at start-up.
  const nlohmann::json saved = nlohmann::json::parse(spec.to_json().dump());
  auto again = EndpointSpec::from_json(saved);
  FUZZ_CHECK(again.ok() && same(*again, spec));
  for (const auto& [key, value] : saved.items()) FUZZ_CHECK(EndpointSpec::is_parameter(key));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const nlohmann::json params = nlohmann::json::parse(data, data + size, nullptr, false);
  if (params.is_discarded()) return 0;
  auto spec = EndpointSpec::from_json(params);
  if (!spec) {
    FUZZ_CHECK(!spec.error().message.empty());
    return 0;
  }
  check_accepted(*spec);
  return 0;
}
