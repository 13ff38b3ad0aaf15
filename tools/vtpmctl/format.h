// Turns the daemon's results into vtpmctl's output: pretty JSON for --json,
// otherwise tables and "key: value" lines. Pure: returns text, no I/O.
#pragma once

#include <string>
#include <string_view>

#include "proto/control_message.h"
#include "proto/result.h"

namespace vtpm::ctl {

// The result pretty-printed with a 2-space indent, newline-terminated.
std::string format_json(const control::Json& result);

// The human output of `method`'s result. Fails (malformed response) only
// when a field the output cannot do without is missing, e.g. exec's
// "response"; other missing fields print as "-".
Result<std::string> format_human(std::string_view method, const control::Json& result);

// The pieces, exposed for tests.
std::string scalar_text(const control::Json& value);  // strings unquoted, null "-"
std::string format_duration(long long seconds);        // "1h 02m 03s"
std::string format_instance_table(const control::Json& list_result);
std::string format_instance_details(const control::Json& instance);
std::string format_status(const control::Json& status);

}  // namespace vtpm::ctl
