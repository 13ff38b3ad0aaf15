// The address of a loopback-only listener (the metrics endpoint).
#pragma once

#include <cstdint>
#include <string>

#include "proto/result.h"

namespace vtpm {

// "127.0.0.1:9400" or "[::1]:9400": a loopback address and a port; anything
// else is an error naming the rule.
struct LoopbackEndpoint {
  std::string host;  // as written, without brackets
  std::uint16_t port = 0;
  bool ipv6 = false;
};
Result<LoopbackEndpoint> parse_loopback_endpoint(const std::string& text);

}  // namespace vtpm
