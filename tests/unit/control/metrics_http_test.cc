#include "src/control/metrics_http.h"

#include <doctest/doctest.h>

namespace vtpm::control {
namespace {

TEST_CASE("loopback endpoints only") {
  auto v4 = parse_loopback_endpoint("127.0.0.1:9400");
  REQUIRE(v4);
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 9400);
  CHECK_FALSE(v4->ipv6);
  auto v6 = parse_loopback_endpoint("[::1]:80");
  REQUIRE(v6);
  CHECK(v6->ipv6);
  CHECK(v6->host == "::1");
  CHECK(parse_loopback_endpoint("127.1.2.3:1"));
  for (const char* bad : {"0.0.0.0:9400", "10.0.0.1:80", "[::]:80", "localhost:80", "127.0.0.1", "127.0.0.1:0",
                          "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x", "[::1]80", ":80", ""}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_loopback_endpoint(bad));
  }
  CHECK(parse_loopback_endpoint("0.0.0.0:1").error().message.find("not a loopback address") != std::string::npos);
}

TEST_CASE("HTTP request routing") {
  CHECK(route_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
  CHECK_FALSE(route_http_request("GET /metrics HTTP/1.0\r\n\r\n").per_instance);
  CHECK(route_http_request("GET /metrics?instances=1 HTTP/1.1\r\n\r\n").per_instance);
  const HttpAnswer head = route_http_request("HEAD /metrics HTTP/1.1\r\n\r\n");
  CHECK(head.status == 200);
  CHECK(head.head_only);
  CHECK(route_http_request("GET / HTTP/1.1\r\n\r\n").status == 404);
  CHECK(route_http_request("GET /metricsx HTTP/1.1\r\n\r\n").status == 404);
  CHECK(route_http_request("POST /metrics HTTP/1.1\r\n\r\n").status == 405);
  CHECK(route_http_request("DELETE /x HTTP/1.1\r\n\r\n").status == 405);
  CHECK(route_http_request("GET /metrics HTTP/2.0\r\n\r\n").status == 505);
  CHECK(route_http_request("GET /metrics\r\n\r\n").status == 400);
  CHECK(route_http_request("GET  /metrics HTTP/1.1\r\n\r\n").status == 400);
  CHECK(route_http_request("\r\n\r\n").status == 400);
  CHECK(route_http_request("GET /metrics FTP/1.1\r\n\r\n").status == 400);
}

}  // namespace
}  // namespace vtpm::control
