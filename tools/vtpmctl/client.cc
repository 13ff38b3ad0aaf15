#include "tools/vtpmctl/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "tools/vtpmctl/unique_fd.h"

namespace vtpm::ctl {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRequestId = 1;  // one request per connection

// Remaining time for poll(), in milliseconds; -1 when there is no deadline.
class Deadline {
 public:
  explicit Deadline(std::optional<std::chrono::milliseconds> timeout) : timeout_(timeout) {
    if (timeout) end_ = Clock::now() + *timeout;
  }
  int poll_ms() const {
    if (!end_) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*end_ - Clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
  }
  std::string timeout_text() const {
    if (!timeout_) return "forever";
    const auto ms = timeout_->count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
  }

 private:
  std::optional<std::chrono::milliseconds> timeout_;
  std::optional<Clock::time_point> end_;
};

Error failure(const std::string& path, std::string_view what, int err) {
  return make_error(ErrorCode::kIo, path + ": " + std::string(what) + ": " + std::strerror(err));
}

Error failure(const std::string& path, std::string_view what) {
  return make_error(ErrorCode::kIo, path + ": " + std::string(what));
}

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return failure(path, "cannot connect", ENAMETOOLONG);
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return failure(path, "cannot create socket", errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return failure(path, "cannot connect", errno);
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) return failure(path, "fcntl", errno);
  return fd;
}

// Waits until fd is ready for `events`. Fails on timeout or poll error.
Status wait_for(int fd, short events, const Deadline& deadline, const std::string& path) {
  for (;;) {
    pollfd pfd{fd, events, 0};
    const int n = ::poll(&pfd, 1, deadline.poll_ms());
    if (n > 0) return Status::success();
    if (n == 0) return failure(path, "timed out after " + deadline.timeout_text() + " waiting for the daemon");
    if (errno != EINTR) return failure(path, "poll", errno);
  }
}

Status send_all(int fd, std::string_view data, const Deadline& deadline, const std::string& path) {
  while (!data.empty()) {
    if (Status ready = wait_for(fd, POLLOUT, deadline, path); !ready) return ready;
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return failure(path, "connection lost", errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Status::success();
}

// Ours: the matching id, or an error with a null id (the daemon could not
// read our request, e.g. an oversized line).
bool is_our_response(const control::Response& response) {
  return response.id == control::Json(kRequestId) || (!response.ok && response.id.is_null());
}

// The next response of ours among the complete lines already buffered.
Result<std::optional<control::Response>> take_buffered(control::LineSplitter& lines, const std::string& path,
                                                       const ProgressSink& on_progress) {
  for (;;) {
    auto line = lines.next();
    if (!line) return failure(path, "malformed response: " + line.error().message);
    if (!line->has_value()) return std::optional<control::Response>();
    auto response = control::parse_response(**line);
    if (!response) return failure(path, "malformed response: " + response.error().message);
    if (!is_our_response(*response)) continue;
    if (response->is_progress) {
      if (on_progress) on_progress(response->result);
      continue;
    }
    return std::optional<control::Response>(std::move(*response));
  }
}

Result<control::Response> read_response(int fd, const Deadline& deadline, const std::string& path,
                                        const ProgressSink& on_progress = {}) {
  control::LineSplitter lines;
  std::array<char, 64 * 1024> buffer{};
  for (;;) {
    auto found = take_buffered(lines, path, on_progress);
    if (!found) return found.error();
    if (found->has_value()) return std::move(**found);
    if (Status ready = wait_for(fd, POLLIN, deadline, path); !ready) return ready.error();
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n == 0) return failure(path, "connection lost: the daemon closed the connection before answering");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return failure(path, "connection lost", errno);
    }
    lines.append(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
}

}  // namespace

Result<control::Response> call(const ClientOptions& options, std::string_view method, const control::Json& params,
                               const ProgressSink& on_progress) {
  const Deadline deadline(options.timeout);
  auto fd = connect_unix(options.socket_path);
  if (!fd) return fd.error();
  const std::string request = control::encode_request(kRequestId, method, params, static_cast<bool>(on_progress));
  if (Status sent = send_all(fd->get(), request, deadline, options.socket_path); !sent) {
    // The daemon may have refused the request (e.g. too_large) and closed
    // the connection mid-write: its answer is more useful than EPIPE.
    auto answer = read_response(fd->get(), Deadline(std::chrono::milliseconds(100)), options.socket_path);
    if (answer) return answer;
    return sent.error();
  }
  return read_response(fd->get(), deadline, options.socket_path, on_progress);
}

}  // namespace vtpm::ctl
