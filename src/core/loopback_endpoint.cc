#include "src/core/loopback_endpoint.h"

#include <arpa/inet.h>

#include <charconv>

namespace vtpm {

Result<LoopbackEndpoint> parse_loopback_endpoint(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument,
                      "metrics listen address '" + text + "': " + why +
                          " (expected 127.0.0.1:PORT or [::1]:PORT; the endpoint is for loopback only)");
  };
  LoopbackEndpoint e;
  std::string port;
  if (text.starts_with("[")) {
    const auto close = text.find("]:");
    if (close == std::string::npos) return bad("no ]:PORT");
    e.host = text.substr(1, close - 1);
    e.ipv6 = true;
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return bad("no :PORT");
    e.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return bad("port must be 1..65535");
  }
  e.port = static_cast<std::uint16_t>(value);
  if (e.ipv6) {
    in6_addr a{};
    if (inet_pton(AF_INET6, e.host.c_str(), &a) != 1) return bad("not an IPv6 address");
    if (!IN6_IS_ADDR_LOOPBACK(&a)) return bad("not a loopback address");
  } else {
    in_addr a{};
    if (inet_pton(AF_INET, e.host.c_str(), &a) != 1) return bad("not an IPv4 address");
    if ((ntohl(a.s_addr) >> 24) != 127) return bad("not a loopback address");
  }
  return e;
}

}  // namespace vtpm
