#include "backends/swtpm/endpoint_spec.h"

namespace vtpm::swtpm {
namespace {

Error invalid(const std::string& m) { return make_error(ErrorCode::kInvalidArgument, m); }

Result<std::uint16_t> port_value(const nlohmann::json& v, const char* name) {
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > 65535) {
    return invalid(std::string("parameter '") + name + "' must be a port number 1..65535");
  }
  return static_cast<std::uint16_t>(v.get<std::uint64_t>());
}

Result<std::string> path_value(const nlohmann::json& v, const char* name) {
  if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>()[0] != '/') {
    return invalid(std::string("parameter '") + name + "' must be an absolute path");
  }
  return v.get<std::string>();
}

}  // namespace

bool EndpointSpec::is_parameter(std::string_view name) {
  static constexpr std::string_view kNames[] = {"swtpm_path", "swtpm_port", "ctrl", "data",
                                                "ctrl_port",  "data_port",  "bind", "mode"};
  for (std::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

std::vector<std::string> EndpointSpec::describe() const {
  std::vector<std::string> out;
  if (!ctrl_path.empty()) out.push_back("swtpm-ctrl:unix:" + ctrl_path);
  if (ctrl_port != 0) out.push_back("swtpm-ctrl:tcp:" + bind + ":" + std::to_string(ctrl_port));
  if (!data_path.empty()) out.push_back("swtpm-data:unix:" + data_path);
  if (data_port != 0) out.push_back("swtpm-data:tcp:" + bind + ":" + std::to_string(data_port));
  return out;
}

nlohmann::json EndpointSpec::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (!ctrl_path.empty()) j["ctrl"] = ctrl_path;
  if (!data_path.empty()) j["data"] = data_path;
  if (ctrl_port != 0) j["ctrl_port"] = ctrl_port;
  if (data_port != 0) j["data_port"] = data_port;
  if (ctrl_port != 0 || data_port != 0) j["bind"] = bind;
  j["mode"] = mode;
  return j;
}

Result<EndpointSpec> EndpointSpec::from_json(const nlohmann::json& p) {
  EndpointSpec spec;
  for (const auto& [key, value] : p.items()) {
    if (key == "uuid") continue;
    if (key == "swtpm_path") {
      auto path = path_value(value, "swtpm_path");
      if (!path) return path.error();
      spec.data_path = *path;
      spec.ctrl_path = *path + ".ctrl";
    } else if (key == "swtpm_port") {
      auto port = port_value(value, "swtpm_port");
      if (!port) return port.error();
      if (*port == 65535) return invalid("parameter 'swtpm_port' leaves no room for the control port (port+1)");
      spec.data_port = *port;
      spec.ctrl_port = static_cast<std::uint16_t>(*port + 1);
    } else if (key == "ctrl" || key == "data") {
      auto path = path_value(value, key.c_str());
      if (!path) return path.error();
      (key == "ctrl" ? spec.ctrl_path : spec.data_path) = *path;
    } else if (key == "ctrl_port" || key == "data_port") {
      auto port = port_value(value, key.c_str());
      if (!port) return port.error();
      (key == "ctrl_port" ? spec.ctrl_port : spec.data_port) = *port;
    } else if (key == "bind") {
      if (!value.is_string()) return invalid("parameter 'bind' must be an IP address string");
      spec.bind = value.get<std::string>();
    } else if (key == "mode") {
      if (!value.is_number_unsigned() || value.get<std::uint64_t>() > 0777) return invalid("parameter 'mode' must be 0..0777");
      spec.mode = static_cast<unsigned>(value.get<std::uint64_t>());
    } else {
      return invalid("unknown parameter '" + key + "'");
    }
  }
  if (spec.empty()) return invalid("no endpoint given (swtpm_path, swtpm_port, ctrl, data, ctrl_port or data_port)");
  return spec;
}

}  // namespace vtpm::swtpm
