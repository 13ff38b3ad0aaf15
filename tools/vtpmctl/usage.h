// vtpmctl's --help text.
#pragma once

#include <string_view>

namespace vtpm::ctl {

std::string_view usage_text();

}  // namespace vtpm::ctl
