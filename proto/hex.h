// Hex text <-> bytes, for the control protocol and vtpmctl.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vtpm {

using Bytes = std::vector<std::uint8_t>;

std::string to_hex(std::span<const std::uint8_t> bytes);
// Accepts upper/lower case; ignores ASCII whitespace between byte pairs so
// a pasted "80 01 00 00 ..." works. Rejects odd digit counts and other text.
Result<Bytes> from_hex(std::string_view text);

}  // namespace vtpm
