// The Prometheus scrape endpoint: a minimal HTTP/1.1 server on the loop,
// on a loopback address only (--metrics-listen 127.0.0.1:PORT; off by
// default). GET (or HEAD) /metrics answers the exposition text
// (/metrics?instances=1 adds per-instance series); any other path is 404,
// any other method 405. One request per connection (Connection: close);
// a request head larger than 8 KiB is refused (431), a connection idle for
// 10 s is closed, and at most 32 are open at once. Nothing here blocks:
// the text is rendered on the loop and written asynchronously.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "proto/result.h"
#include "src/core/log.h"
#include "src/core/loopback_endpoint.h"
#include "src/core/uv_handle.h"

namespace vtpm::control {

// What an HTTP request head asks for: the response status line's code and
// whether the body is wanted. Pure; exposed for tests.
struct HttpAnswer {
  int status = 400;          // 200, 400, 404, 405, 431 or 505
  bool head_only = false;    // HEAD: headers without the body
  bool per_instance = false; // /metrics?instances=1
};
HttpAnswer route_http_request(std::string_view head);

class MetricsHttp {
 public:
  using Render = std::function<std::string(bool per_instance)>;
  MetricsHttp(uv_loop_t* loop, const Logger& log, Render render);
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;

  Status listen(const vtpm::LoopbackEndpoint& endpoint);
  void close();
  std::size_t connections() const { return connections_.size(); }

 private:
  class Connection;
  void on_connection();
  void drop(Connection* connection);

  uv_loop_t* loop_;
  const Logger& log_;
  Render render_;
  UvHandle<uv_tcp_t> listener_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
};

}  // namespace vtpm::control
