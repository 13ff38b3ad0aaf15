#include "src/control/server.h"

#include "src/core/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vtpm::control {
namespace {

// Requests a client may have in flight before we stop reading from it.
constexpr std::size_t kMaxInFlight = 256;
// Unread responses a client may accumulate before it is disconnected.
constexpr std::size_t kMaxWriteBacklog = 16 * 1024 * 1024;

}  // namespace

class Server::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, std::uint64_t id) : server_(server), id_(id) {}

  Status accept(uv_stream_t* listener) {
    uv_pipe_init(server_.loop_, pipe_.get(), 0);
    pipe_.mark_live();
    pipe_.get()->data = this;
    if (int rc = uv_accept(listener, pipe_.stream()); rc != 0) {
      return make_error(ErrorCode::kIo, std::string("accept: ") + uv_strerror(rc));
    }
    uv_os_fd_t fd = -1;
    ucred peer{};
    socklen_t len = sizeof peer;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(pipe_.get()), &fd) != 0 ||
        ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
      return make_error(ErrorCode::kIo, std::string("cannot read the peer's credentials: ") + std::strerror(errno));
    }
    peer_ = peer;
    access_ = server_.policy_.classify(peer.uid, peer.gid);
    return Status::success();
  }

  Access access() const { return access_; }
  std::string peer_text() const {
    return "uid " + std::to_string(peer_.uid) + " gid " + std::to_string(peer_.gid) + " pid " +
           std::to_string(peer_.pid);
  }

  // A refused peer gets one error line, then the connection closes.
  void refuse() {
    send(encode_error(nullptr, make_error(ErrorCode::kPermissionDenied,
                                          peer_text() + " may not use this control socket")));
  }

  void start_reading() {
    uv_read_start(
        pipe_.stream(),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          // libuv calls read right after alloc, so one server-wide scratch
          // buffer serves every connection; bytes are copied out at once.
          auto& scratch = static_cast<Connection*>(h->data)->server_.read_scratch_;
          *buf = uv_buf_init(scratch.data(), static_cast<unsigned>(scratch.size()));
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          static_cast<Connection*>(s->data)->on_read(nread, buf);
        });
    reading_ = true;
  }

  void close() {
    closed_ = true;
    pipe_.close();
  }

 private:
  void on_read(ssize_t nread, const uv_buf_t* buf) {
    // drop() may release the server's reference while we are still here.
    auto guard = shared_from_this();
    if (nread < 0) return server_.drop(this);  // EOF or error: the client is gone
    splitter_.append(std::string_view(buf->base, static_cast<std::size_t>(nread)));
    for (;;) {
      auto line = splitter_.next();
      if (!line) {
        send(encode_error(nullptr, line.error()));
        server_.log_.warn("control connection " + std::to_string(id_) + ": " + line.error().message + "; closing");
        return server_.drop(this);
      }
      if (!*line) break;
      if ((*line)->empty()) continue;
      handle_line(**line);
      if (closed_) return;
    }
    if (in_flight_ >= kMaxInFlight && reading_) {
      uv_read_stop(pipe_.stream());
      reading_ = false;
    }
  }

  void handle_line(const std::string& line) {
    Json id;
    auto request = parse_request(line, &id);
    if (!request) return send(encode_error(id, request.error()));
    if (access_ != Access::kAdmin && !is_read_only_method(request->method)) {
      return send(encode_error(id, make_error(ErrorCode::kPermissionDenied,
                                              "'" + request->method + "' needs admin access; " + peer_text() +
                                                  " has " + access_name(access_))));
    }
    ++in_flight_;
    std::weak_ptr<Connection> weak = shared_from_this();
    Handlers::Progress progress;
    if (request->progress) {
      progress = [weak, id = request->id](const Json& state) {
        if (auto self = weak.lock(); self && !self->closed_) self->send(encode_progress(id, state));
      };
    }
    server_.handlers_.dispatch(
        request->method, request->params,
        [weak, id = request->id](Result<Json> result) {
          auto self = weak.lock();
          if (!self || self->closed_) return;  // the client left; drop the answer
          --self->in_flight_;
          self->send(result ? encode_result(id, *result) : encode_error(id, result.error()));
          if (!self->reading_ && self->in_flight_ < kMaxInFlight / 2 && !self->closed_) self->start_reading();
        },
        std::move(progress));
  }

  void send(const std::string& line) {
    if (closed_) return;
    if (uv_stream_get_write_queue_size(pipe_.stream()) > kMaxWriteBacklog) {
      server_.log_.warn("control connection " + std::to_string(id_) + " does not read its responses; closing");
      return server_.drop(this);
    }
    if (write_owned(pipe_.stream(), std::vector<std::uint8_t>(line.begin(), line.end())) != 0) server_.drop(this);
  }

  Server& server_;
  std::uint64_t id_;
  UvHandle<uv_pipe_t> pipe_;
  LineSplitter splitter_;
  ucred peer_{};
  Access access_ = Access::kNone;
  std::size_t in_flight_ = 0;
  bool reading_ = false;
  bool closed_ = false;
};

Server::Server(uv_loop_t* loop, const Logger& log, Handlers& handlers, AccessPolicy policy)
    : loop_(loop), log_(log), handlers_(handlers), policy_(std::move(policy)) {}

Server::~Server() { close(); }

Status Server::listen(const std::string& path) {
  uv_pipe_init(loop_, listener_.get(), 0);
  listener_.mark_live();
  listener_.get()->data = this;
  const bool open_to_others = policy_.admits_others();
  Status s = listen_unix(
      listener_.get(), path, open_to_others ? 0666 : 0600,
      [](uv_stream_t* server, int status) {
        if (status == 0) static_cast<Server*>(server->data)->on_connection();
      },
      open_to_others ? 0755 : 0700);
  if (!s) {
    // Keep the wording operators (and tests) know for a second daemon.
    if (s.error().message.starts_with("another process")) {
      return make_error(ErrorCode::kAlreadyExists, "another vtpmd is listening on " + path);
    }
    return s;
  }
  path_ = path;
  return Status::success();
}

void Server::on_connection() {
  auto connection = std::make_shared<Connection>(*this, next_connection_id_++);
  if (Status s = connection->accept(listener_.stream()); !s) {
    log_.warn("control: " + s.error().message);
    connection->close();
    return;
  }
  connections_.emplace(connection.get(), connection);
  if (connection->access() == Access::kNone) {
    log_.warn("control: refused " + connection->peer_text() + " (not in control_admins or control_readers)");
    connection->refuse();
    drop(connection.get());
    return;
  }
  connection->start_reading();
}

void Server::drop(Connection* connection) {
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  // Keep the object alive until this call returns: we may be inside its
  // own read callback.
  auto keep = it->second;
  connections_.erase(it);
  keep->close();
}

void Server::close() {
  if (listener_.live()) {
    listener_.close();
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  for (auto& [raw, connection] : connections_) connection->close();
  connections_.clear();
}

}  // namespace vtpm::control
