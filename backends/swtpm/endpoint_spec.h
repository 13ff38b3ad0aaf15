// Where one instance's swtpm-compatible channels listen. Any combination:
// a Unix control socket (the one QEMU uses), a Unix and/or TCP data socket,
// a TCP control port. swtpm's conventions fill them in from one value:
// PATH -> data PATH + control PATH.ctrl; PORT -> data PORT + control PORT+1.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/result.h"

namespace vtpm::swtpm {

struct EndpointSpec {
  std::string ctrl_path;
  std::string data_path;
  std::uint16_t ctrl_port = 0;
  std::uint16_t data_port = 0;
  std::string bind = "127.0.0.1";  // TCP is loopback unless asked otherwise
  unsigned mode = 0600;            // Unix socket permissions

  bool empty() const { return ctrl_path.empty() && data_path.empty() && ctrl_port == 0 && data_port == 0; }
  std::vector<std::string> describe() const;
  nlohmann::json to_json() const;
  // From control-API params: ctrl, data, ctrl_port, data_port, bind, mode,
  // and the swtpm shorthands swtpm_path and swtpm_port.
  static Result<EndpointSpec> from_json(const nlohmann::json& params);
  // Whether a control-API parameter name belongs to an endpoint spec.
  static bool is_parameter(std::string_view name);
};

}  // namespace vtpm::swtpm
