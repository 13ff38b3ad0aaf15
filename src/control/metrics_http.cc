#include "src/control/metrics_http.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace vtpm::control {
namespace {

constexpr std::size_t kMaxRequestHead = 8 * 1024;
constexpr std::uint64_t kIdleTimeoutMs = 10000;
constexpr std::size_t kMaxConnections = 32;

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
  }
  return "Error";
}

std::string response(int status, std::string_view content_type, const std::string& body, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  out += "Content-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (status == 405) out += "Allow: GET, HEAD\r\n";
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

// A write that owns its bytes; when it is done the connection (if still
// open: the handle's data is cleared when it closes) is dropped.
struct ResponseWrite {
  uv_write_t request{};
  std::string bytes;
  std::function<void()> finished;
};

}  // namespace

HttpAnswer route_http_request(std::string_view head) {
  HttpAnswer a;
  const auto eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return a;  // 400
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!version.starts_with("HTTP/")) return a;
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    a.status = 505;
    return a;
  }
  if (method != "GET" && method != "HEAD") {
    a.status = 405;
    return a;
  }
  a.head_only = method == "HEAD";
  const auto query = target.find('?');
  const std::string_view path = target.substr(0, query);
  if (path != "/metrics") {
    a.status = 404;
    return a;
  }
  if (query != std::string_view::npos) {
    const std::string_view q = target.substr(query + 1);
    a.per_instance = q == "instances=1" || q == "instances=true";
  }
  a.status = 200;
  return a;
}

class MetricsHttp::Connection {
 public:
  explicit Connection(MetricsHttp& server) : server_(server) {}

  bool accept(uv_stream_t* listener) {
    uv_tcp_init(server_.loop_, tcp_.get());
    tcp_.mark_live();
    tcp_.get()->data = this;
    if (uv_accept(listener, tcp_.stream()) != 0) return false;
    uv_timer_init(server_.loop_, idle_.get());
    idle_.mark_live();
    idle_.get()->data = this;
    uv_timer_start(
        idle_.get(),
        [](uv_timer_t* t) {
          if (auto* self = static_cast<Connection*>(t->data)) self->server_.drop(self);
        },
        kIdleTimeoutMs, 0);
    uv_read_start(
        tcp_.stream(),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* self = static_cast<Connection*>(h->data);
          *buf = uv_buf_init(self->scratch_, sizeof self->scratch_);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          if (auto* self = static_cast<Connection*>(s->data)) self->on_read(n, buf);
        });
    return true;
  }

 private:
  void on_read(ssize_t n, const uv_buf_t* buf) {
    if (n < 0) return server_.drop(this);
    if (answered_) return;  // one request per connection; the rest is ignored
    head_.append(buf->base, static_cast<std::size_t>(n));
    const auto end = head_.find("\r\n\r\n");
    const bool complete = end != std::string::npos && end + 4 <= kMaxRequestHead;
    if (!complete && head_.size() <= kMaxRequestHead) return;
    uv_read_stop(tcp_.stream());
    answered_ = true;
    if (!complete) return answer(431, "text/plain; charset=utf-8", "request head too large\n", false);
    const HttpAnswer a = route_http_request(head_);
    if (a.status == 200) {
      return answer(200, "text/plain; version=0.0.4; charset=utf-8", server_.render_(a.per_instance), a.head_only);
    }
    answer(a.status, "text/plain; charset=utf-8",
           a.status == 404 ? "not found; the metrics are at /metrics\n" : std::string(reason(a.status)) + "\n",
           a.head_only);
  }

  void answer(int status, std::string_view type, const std::string& body, bool head_only) {
    auto write = std::make_unique<ResponseWrite>();
    write->bytes = response(status, type, body, head_only);
    uv_buf_t b = uv_buf_init(write->bytes.data(), static_cast<unsigned>(write->bytes.size()));
    const int rc = uv_write(&write->request, tcp_.stream(), &b, 1, [](uv_write_t* req, int) {
      std::unique_ptr<ResponseWrite> reclaim(reinterpret_cast<ResponseWrite*>(req));
      // Cleared when the connection closed before the write finished.
      if (auto* self = static_cast<Connection*>(req->handle->data)) self->server_.drop(self);
    });
    if (rc != 0) return server_.drop(this);
    write.release();  // freed by the callback
  }

  MetricsHttp& server_;
  UvHandle<uv_tcp_t> tcp_;
  UvHandle<uv_timer_t> idle_;
  std::string head_;
  bool answered_ = false;
  char scratch_[4096];
};

MetricsHttp::MetricsHttp(uv_loop_t* loop, const Logger& log, Render render)
    : loop_(loop), log_(log), render_(std::move(render)) {}

MetricsHttp::~MetricsHttp() { close(); }

Status MetricsHttp::listen(const vtpm::LoopbackEndpoint& endpoint) {
  sockaddr_storage address{};
  const int parsed = endpoint.ipv6
                         ? uv_ip6_addr(endpoint.host.c_str(), endpoint.port, reinterpret_cast<sockaddr_in6*>(&address))
                         : uv_ip4_addr(endpoint.host.c_str(), endpoint.port, reinterpret_cast<sockaddr_in*>(&address));
  if (parsed != 0) return make_error(ErrorCode::kInvalidArgument, std::string("metrics listener: ") + uv_strerror(parsed));
  uv_tcp_init(loop_, listener_.get());
  listener_.mark_live();
  listener_.get()->data = this;
  const std::string where = (endpoint.ipv6 ? "[" + endpoint.host + "]" : endpoint.host) + ":" + std::to_string(endpoint.port);
  int rc = uv_tcp_bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), 0);
  if (rc == 0) {
    rc = uv_listen(listener_.stream(), 64, [](uv_stream_t* s, int status) {
      if (status == 0 && s->data != nullptr) static_cast<MetricsHttp*>(s->data)->on_connection();
    });
  }
  if (rc != 0) {
    listener_.close();
    return make_error(ErrorCode::kIo, "metrics listener on " + where + ": " + uv_strerror(rc));
  }
  log_.info("metrics: http://" + where + "/metrics");
  return Status::success();
}

void MetricsHttp::on_connection() {
  auto connection = std::make_unique<Connection>(*this);
  Connection* raw = connection.get();
  if (!connection->accept(listener_.stream())) return;
  if (connections_.size() >= kMaxConnections) return;  // closed as `connection` goes
  connections_.emplace(raw, std::move(connection));
}

void MetricsHttp::drop(Connection* connection) { connections_.erase(connection); }

void MetricsHttp::close() {
  listener_.close();
  connections_.clear();
}

}  // namespace vtpm::control
