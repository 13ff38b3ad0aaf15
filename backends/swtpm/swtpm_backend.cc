#include "backends/swtpm/swtpm_backend.h"

#include <unistd.h>

#include "backends/swtpm/ctrl_connection.h"
#include "backends/swtpm/data_connection.h"
#include "src/core/unix_socket.h"

namespace vtpm::swtpm {

enum class ChannelKind { kCtrl, kData };

class SwtpmBackend::Listener {
 public:
  Listener(SwtpmBackend& backend, std::shared_ptr<Session> session, ChannelKind kind, bool unix_socket)
      : backend_(backend), session_(std::move(session)), kind_(kind), unix_(unix_socket) {}
  ~Listener() {
    handle_.close();
    if (unix_ && !path_.empty()) ::unlink(path_.c_str());
  }

  Status bind_unix(uv_loop_t* loop, const std::string& path, unsigned mode) {
    uv_pipe_init(loop, &handle_.get()->pipe, 0);
    handle_.mark_live();
    handle_.get()->handle.data = this;
    Status s = vtpm::bind_unix(&handle_.get()->pipe, path, mode);
    if (s) path_ = path;
    return s;
  }

  Status bind_tcp(uv_loop_t* loop, const std::string& bind, std::uint16_t port) {
    uv_tcp_init(loop, &handle_.get()->tcp);
    handle_.mark_live();
    handle_.get()->handle.data = this;
    where_ = bind + ":" + std::to_string(port);
    sockaddr_storage addr{};
    if (uv_ip4_addr(bind.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
        uv_ip6_addr(bind.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
      return make_error(ErrorCode::kInvalidArgument, "bad bind address '" + bind + "'");
    }
    // libuv defers a bind error (EADDRINUSE) to uv_listen.
    if (int rc = uv_tcp_bind(&handle_.get()->tcp, reinterpret_cast<sockaddr*>(&addr), 0); rc != 0) {
      return make_error(ErrorCode::kIo, "cannot bind " + where_ + ": " + uv_strerror(rc));
    }
    return Status::success();
  }

  Status listen() {
    auto on_connection = [](uv_stream_t* server, int status) {
      if (status == 0) static_cast<Listener*>(server->data)->backend_.accept(*static_cast<Listener*>(server->data));
    };
    if (unix_) return start_listening(&handle_.get()->pipe, path_, on_connection);
    if (int rc = uv_listen(handle_.stream(), 128, on_connection); rc != 0) {
      return make_error(ErrorCode::kIo, "cannot listen on " + where_ + ": " + uv_strerror(rc));
    }
    return Status::success();
  }

  uv_stream_t* stream() { return handle_.stream(); }
  const std::shared_ptr<Session>& session() const { return session_; }
  ChannelKind kind() const { return kind_; }
  bool is_unix() const { return unix_; }

 private:
  SwtpmBackend& backend_;
  std::shared_ptr<Session> session_;
  ChannelKind kind_;
  bool unix_;
  std::string path_;   // a Unix socket's
  std::string where_;  // a TCP socket's address:port
  UvHandle<uv_any_handle> handle_;
};

SwtpmBackend::SwtpmBackend(uv_loop_t* loop, const Logger& log, Service& service)
    : loop_(loop), log_(log), service_(service) {}

SwtpmBackend::~SwtpmBackend() { close_all(); }

Status SwtpmBackend::attach(const Uuid& id, const EndpointSpec& spec) {
  if (Status s = reserve(id, spec); !s) return s;
  return activate(id);
}

Status SwtpmBackend::reserve(const Uuid& id, const EndpointSpec& spec) {
  if (endpoints_.contains(id)) {
    return make_error(ErrorCode::kAlreadyExists, "instance " + id.to_string() + " already has endpoints; detach first");
  }
  Endpoints e;
  e.spec = spec;
  e.session = std::make_shared<Session>();
  e.session->id = id;
  auto bind = [&](ChannelKind kind, bool unix_socket, const std::string& path, std::uint16_t port) -> Status {
    auto listener = std::make_unique<Listener>(*this, e.session, kind, unix_socket);
    Status s = unix_socket ? listener->bind_unix(loop_, path, spec.mode) : listener->bind_tcp(loop_, spec.bind, port);
    if (s) e.listeners.push_back(std::move(listener));
    return s;
  };
  Status s;
  if (s && !spec.ctrl_path.empty()) s = bind(ChannelKind::kCtrl, true, spec.ctrl_path, 0);
  if (s && !spec.data_path.empty()) s = bind(ChannelKind::kData, true, spec.data_path, 0);
  if (s && spec.ctrl_port != 0) s = bind(ChannelKind::kCtrl, false, {}, spec.ctrl_port);
  if (s && spec.data_port != 0) s = bind(ChannelKind::kData, false, {}, spec.data_port);
  if (!s) return s;  // the sockets bound so far close with `e`
  endpoints_.emplace(id, std::move(e));
  return Status::success();
}

Status SwtpmBackend::activate(const Uuid& id) {
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return make_error(ErrorCode::kNotFound, "instance " + id.to_string() + " has no endpoints");
  auto instance = service_.show(id);
  Status s = instance ? Status::success() : Status(instance.error());
  if (s) {
    it->second.session->version = (*instance)->version;
    it->second.session->buffer_size = (*instance)->max_command_size;
  }
  for (auto& listener : it->second.listeners) {
    if (s) s = listener->listen();
  }
  if (!s) {
    endpoints_.erase(it);  // all or nothing
    return s;
  }
  for (const auto& d : it->second.spec.describe()) log_.info(id, "listening on " + d);
  return Status::success();
}

Status SwtpmBackend::detach(const Uuid& id) {
  auto it = endpoints_.find(id);
  if (it == endpoints_.end()) return make_error(ErrorCode::kNotFound, "instance " + id.to_string() + " has no endpoints");
  std::vector<std::shared_ptr<StreamConnection>> doomed;
  for (auto& [raw, entry] : connections_) {
    if (entry.second == id) doomed.push_back(entry.first);
  }
  for (auto& c : doomed) c->close();  // each close removes itself from connections_
  endpoints_.erase(it);
  log_.info(id, "endpoints closed");
  return Status::success();
}

const EndpointSpec* SwtpmBackend::spec_of(const Uuid& id) const {
  auto it = endpoints_.find(id);
  return it == endpoints_.end() ? nullptr : &it->second.spec;
}

void SwtpmBackend::close_all() {
  std::vector<Uuid> ids;
  for (const auto& [id, e] : endpoints_) ids.push_back(id);
  for (const auto& id : ids) (void)detach(id);
}

bool SwtpmBackend::track(const std::shared_ptr<StreamConnection>& connection, const Uuid& id) {
  std::size_t& count = per_instance_[id];
  const Instance* instance = service_.registry().find(id);
  const std::size_t limit = instance != nullptr ? service_.effective_limits(*instance).max_connections : 0;
  if (count >= limit) {
    log_.warn(id, "refused a guest-channel connection: " + std::to_string(count) + " open (limit " +
                      std::to_string(limit) + ", max_connections)");
    connection->close();
    return false;
  }
  ++count;
  connections_.emplace(connection.get(), std::make_pair(connection, id));
  connection->on_closed([this, id](StreamConnection& c) {
    connections_.erase(&c);
    if (auto it = per_instance_.find(id); it != per_instance_.end() && --it->second == 0) per_instance_.erase(it);
  });
  return true;
}

void SwtpmBackend::accept(Listener& listener) {
  std::shared_ptr<StreamConnection> connection;
  const auto& session = listener.session();
  if (listener.kind() == ChannelKind::kCtrl) {
    connection = std::make_shared<CtrlConnection>(service_, log_, session, [this, session](CtrlConnection& ctrl) {
      return adopt_datafd(ctrl.stream(), session);
    });
  } else {
    connection = std::make_shared<DataConnection>(service_, log_, session);
  }
  // Control connections on Unix sockets may carry the data channel's fd.
  const int rc = listener.is_unix() ? connection->init_pipe(loop_, listener.kind() == ChannelKind::kCtrl)
                                    : connection->init_tcp(loop_);
  if (rc != 0 || uv_accept(listener.stream(), connection->stream()) != 0) {
    connection->close();
    return;
  }
  if (track(connection, session->id)) connection->start();
}

std::shared_ptr<StreamConnection> SwtpmBackend::adopt_datafd(uv_stream_t* ctrl, const std::shared_ptr<Session>& session) {
  auto* pipe = reinterpret_cast<uv_pipe_t*>(ctrl);
  if (uv_pipe_pending_count(pipe) <= 0) return nullptr;
  auto data = std::make_shared<DataConnection>(service_, log_, session);
  const uv_handle_type type = uv_pipe_pending_type(pipe);
  const int rc = type == UV_TCP ? data->init_tcp(loop_) : data->init_pipe(loop_, false);
  if (rc != 0 || uv_accept(ctrl, data->stream()) != 0) {
    data->close();
    return nullptr;
  }
  if (!track(data, session->id)) return nullptr;
  data->start();
  return data;
}

}  // namespace vtpm::swtpm
