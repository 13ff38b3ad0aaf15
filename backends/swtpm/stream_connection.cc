#include "backends/swtpm/stream_connection.h"

namespace vtpm::swtpm {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
// A peer that sends this much without completing a request is dropped.
constexpr std::size_t kMaxBuffered = 1024 * 1024;
constexpr std::size_t kMaxWriteBacklog = 4 * 1024 * 1024;

}  // namespace

int StreamConnection::init_pipe(uv_loop_t* loop, bool ipc) {
  const int rc = uv_pipe_init(loop, reinterpret_cast<uv_pipe_t*>(handle_.get()), ipc ? 1 : 0);
  if (rc == 0) {
    handle_.mark_live();
    handle_.get()->handle.data = this;
  }
  return rc;
}

int StreamConnection::init_tcp(uv_loop_t* loop) {
  const int rc = uv_tcp_init(loop, reinterpret_cast<uv_tcp_t*>(handle_.get()));
  if (rc == 0) {
    handle_.mark_live();
    handle_.get()->handle.data = this;
    uv_tcp_nodelay(reinterpret_cast<uv_tcp_t*>(handle_.get()), 1);
  }
  return rc;
}

void StreamConnection::start() {
  uv_read_start(
      stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* self = static_cast<StreamConnection*>(h->data);
        self->buffer_.resize(self->filled_ + kReadChunk);
        *buf = uv_buf_init(reinterpret_cast<char*>(self->buffer_.data() + self->filled_), kReadChunk);
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t*) { static_cast<StreamConnection*>(s->data)->on_read(nread); });
}

void StreamConnection::on_read(ssize_t nread) {
  auto guard = shared_from_this();  // on_data() may close and release us
  if (nread < 0) {
    buffer_.resize(filled_);
    return close();
  }
  filled_ += static_cast<std::size_t>(nread);
  buffer_.resize(filled_);
  if (filled_ > kMaxBuffered) return close();
  if (!held_) on_data();
  filled_ = buffer_.size();
}

void StreamConnection::resume() {
  held_ = false;
  if (!closed_ && !buffer_.empty()) {
    auto guard = shared_from_this();
    on_data();
    filled_ = buffer_.size();
  }
}

void StreamConnection::send(std::vector<std::uint8_t> bytes) {
  if (closed_) return;
  if (uv_stream_get_write_queue_size(stream()) > kMaxWriteBacklog) return close();
  if (write_owned(stream(), std::move(bytes)) != 0) close();
}

void StreamConnection::close() {
  if (closed_) return;
  closed_ = true;
  handle_.close();
  if (closed_callback_) {
    auto callback = std::move(closed_callback_);
    callback(*this);
  }
}

}  // namespace vtpm::swtpm
