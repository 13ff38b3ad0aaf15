#include "src/core/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vtpm {
namespace {

// Non-blocking: this runs on the loop (attach at runtime), and a listener
// with a full backlog must not stall it; EAGAIN means someone listens.
bool someone_listens(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN;
  ::close(fd);
  return live;
}

Status make_parent_directory(const std::string& path, unsigned dir_mode) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Status::success();
  const std::string dir = path.substr(0, slash);
  if (::mkdir(dir.c_str(), static_cast<mode_t>(dir_mode)) != 0 && errno != EEXIST) {
    return make_error(ErrorCode::kIo, "cannot create " + dir + ": " + std::strerror(errno));
  }
  return Status::success();
}

}  // namespace

Status listen_unix(uv_pipe_t* pipe, const std::string& path, unsigned mode, uv_connection_cb on_connection,
                   unsigned dir_mode) {
  if (Status s = bind_unix(pipe, path, mode, dir_mode); !s) return s;
  return start_listening(pipe, path, on_connection);
}

Status bind_unix(uv_pipe_t* pipe, const std::string& path, unsigned mode, unsigned dir_mode) {
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
    return make_error(ErrorCode::kInvalidArgument, "socket path empty or too long: '" + path + "'");
  }
  if (Status s = make_parent_directory(path, dir_mode); !s) return s;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return make_error(ErrorCode::kAlreadyExists, path + " exists and is not a socket");
    if (someone_listens(path)) return make_error(ErrorCode::kAlreadyExists, "another process is listening on " + path);
    ::unlink(path.c_str());  // stale, from a process that died
  }
  // The socket is born with its final mode: no window in which others could
  // connect. umask is process-wide, but only the loop thread creates files.
  const mode_t old_mask = ::umask(static_cast<mode_t>(~mode & 0777));
  const int bound = uv_pipe_bind(pipe, path.c_str());
  ::umask(old_mask);
  if (bound != 0) return make_error(ErrorCode::kIo, "cannot bind " + path + ": " + uv_strerror(bound));
  return Status::success();
}

Status start_listening(uv_pipe_t* pipe, const std::string& path, uv_connection_cb on_connection) {
  const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(pipe), 128, on_connection);
  if (rc != 0) {
    ::unlink(path.c_str());
    return make_error(ErrorCode::kIo, "cannot listen on " + path + ": " + uv_strerror(rc));
  }
  return Status::success();
}

}  // namespace vtpm
