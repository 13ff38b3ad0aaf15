#include "src/control/params.h"

#include <limits>

namespace vtpm::control {
namespace {

Error invalid(const std::string& m) { return make_error(ErrorCode::kInvalidArgument, m); }

}  // namespace

Status only_params(const Json& params, std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : params.items()) {
    bool known = false;
    for (const char* name : allowed) known = known || key == name;
    if (!known) return invalid("unknown parameter '" + key + "'");
  }
  return Status::success();
}

Result<Uuid> uuid_param(const Json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return invalid(std::string("missing parameter '") + name + "'");
  if (!it->is_string()) return invalid(std::string("parameter '") + name + "' must be a string");
  return Uuid::parse(it->get<std::string>());
}

Result<std::optional<std::string>> string_param(const Json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return invalid(std::string("parameter '") + name + "' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<bool>> bool_param(const Json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return invalid(std::string("parameter '") + name + "' must be true or false");
  return std::optional<bool>(it->get<bool>());
}

Result<std::optional<std::int64_t>> int_param(const Json& params, const char* name, std::int64_t min,
                                              std::int64_t max) {
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return std::optional<std::int64_t>();
  if (!it->is_number_integer()) return invalid(std::string("parameter '") + name + "' must be an integer");
  // An unsigned value above INT64_MAX would wrap to a negative one.
  const bool too_big = it->is_number_unsigned() &&
                       it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  const auto v = it->get<std::int64_t>();
  if (too_big || v < min || v > max) {
    return invalid(std::string("parameter '") + name + "' must be in " + std::to_string(min) + ".." +
                   std::to_string(max));
  }
  return std::optional<std::int64_t>(v);
}

}  // namespace vtpm::control
