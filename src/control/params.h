// Typed access to a request's params object, with errors that name the
// parameter. Unknown parameters are rejected so typos surface.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>

#include "proto/control_message.h"
#include "proto/uuid.h"

namespace vtpm::control {

Status only_params(const Json& params, std::initializer_list<const char*> allowed);
Result<Uuid> uuid_param(const Json& params, const char* name = "uuid");
Result<std::optional<std::string>> string_param(const Json& params, const char* name);
Result<std::optional<bool>> bool_param(const Json& params, const char* name);
Result<std::optional<std::int64_t>> int_param(const Json& params, const char* name, std::int64_t min, std::int64_t max);

}  // namespace vtpm::control
