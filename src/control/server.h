// The control socket: a Unix stream listener on the loop, newline-delimited
// JSON per connection. A misbehaving client (garbage, oversized lines, never
// reading its responses) costs only its own connection.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/control_message.h"
#include "src/control/access.h"
#include "src/control/handlers.h"
#include "src/core/log.h"
#include "src/core/uv_handle.h"

namespace vtpm::control {

class Server {
 public:
  Server(uv_loop_t* loop, const Logger& log, Handlers& handlers, AccessPolicy policy);
  ~Server();

  // Creates the socket (mode 0600, its directory 0700 when created here;
  // 0666 and 0755 when the policy admits others: SO_PEERCRED decides).
  // A live daemon on the path is an error; a stale socket is replaced.
  Status listen(const std::string& path);
  // Stops accepting and closes every connection; removes the socket file.
  void close();
  std::size_t connections() const { return connections_.size(); }

 private:
  class Connection;
  void on_connection();
  void drop(Connection* connection);

  uv_loop_t* loop_;
  const Logger& log_;
  Handlers& handlers_;
  AccessPolicy policy_;
  std::string path_;
  UvHandle<uv_pipe_t> listener_;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_;
  std::uint64_t next_connection_id_ = 1;
  std::vector<char> read_scratch_ = std::vector<char>(64 * 1024);
};

}  // namespace vtpm::control
