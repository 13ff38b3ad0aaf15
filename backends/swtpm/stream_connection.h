// One accepted stream (Unix or TCP) with an input buffer and owned writes.
// Subclasses parse buffer() in on_data(). Lifetime: owned by a shared_ptr
// in the backend; asynchronous callbacks hold weak_ptrs, so a connection
// that closes while its TPM command runs simply drops the answer.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

#include "src/core/read_buffer.h"
#include "src/core/uv_handle.h"

namespace vtpm::swtpm {

class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  using Closed = std::function<void(StreamConnection&)>;

  StreamConnection() = default;
  virtual ~StreamConnection() = default;
  StreamConnection(const StreamConnection&) = delete;
  StreamConnection& operator=(const StreamConnection&) = delete;

  // Initialises the handle as a pipe (ipc: may receive fds) or TCP socket.
  int init_pipe(uv_loop_t* loop, bool ipc);
  int init_tcp(uv_loop_t* loop);
  uv_stream_t* stream() const { return handle_.stream(); }
  void on_closed(Closed closed) { closed_callback_ = std::move(closed); }

  void start();
  void send(std::vector<std::uint8_t> bytes);
  void close();
  bool closed() const { return closed_; }

 protected:
  virtual void on_data() = 0;
  ReadBuffer& buffer() { return buffer_; }
  // Stop parsing until resume(): one request at a time.
  void hold() { held_ = true; }
  void resume();

 private:
  void on_read(ssize_t nread);

  UvHandle<uv_any_handle> handle_;
  ReadBuffer buffer_;
  std::size_t filled_ = 0;  // bytes of buffer_ holding data (the rest is read space)
  Closed closed_callback_;
  bool closed_ = false;
  bool held_ = false;
};

}  // namespace vtpm::swtpm
