#include "tests/support/hwtpm/swtpm_child.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "proto/tpm_packet.h"

extern char** environ;

namespace vtpm::testing {

namespace {

Error io(const std::string& what) { return make_error(ErrorCode::kIo, what + ": " + std::strerror(errno)); }

Status write_all(int fd, std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io("write to swtpm");
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return Status::success();
}

Status read_exact(int fd, std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    const ssize_t got = ::read(fd, out, n);
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) return make_error(ErrorCode::kIo, "swtpm closed the data socket");
    if (got < 0) return io("read from swtpm");
    out += got;
    n -= static_cast<std::size_t>(got);
  }
  return Status::success();
}

}  // namespace

Result<std::unique_ptr<SwtpmChild>> SwtpmChild::start() {
  std::string templ = (std::filesystem::temp_directory_path() / "vtpm-hwtpm-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) return io("mkdtemp");
  const std::string dir = templ;
  const std::string data = dir + "/data.sock";
  const std::string server = "type=unixio,path=" + data;
  const std::string ctrl = "type=unixio,path=" + dir + "/ctrl.sock";
  const std::string state = "dir=" + dir;
  std::vector<std::string> args = {"swtpm",  "socket",     "--tpm2",  "--server", server,         "--ctrl",
                                   ctrl,     "--flags",    "not-need-init,startup-clear",      "--tpmstate",
                                   state};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // swtpm chats on stderr ("Data client disconnected"); keep it in its directory.
  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  const std::string log = dir + "/swtpm.log";
  ::posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  ::posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "swtpm", &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::filesystem::remove_all(dir);
    return make_error(ErrorCode::kIo, std::string("cannot start swtpm: ") + std::strerror(rc));
  }
  // The child owns the directory from here; the object cleans both up.
  auto child = std::make_unique<SwtpmChild>(dir, pid, -1);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, data.c_str(), sizeof addr.sun_path - 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return io("socket");
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      child->data_fd_ = fd;
      return child;
    }
    ::close(fd);
    if (std::chrono::steady_clock::now() > deadline) return io("swtpm data socket " + data + " never accepted");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

SwtpmChild::~SwtpmChild() {
  if (data_fd_ >= 0) ::close(data_fd_);
  ::kill(pid_, SIGTERM);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

Result<std::vector<std::uint8_t>> SwtpmChild::execute(std::span<const std::uint8_t> command) {
  if (auto s = write_all(data_fd_, command); !s) return s.error();
  std::vector<std::uint8_t> response(tpm::kHeaderSize);
  if (auto s = read_exact(data_fd_, response.data(), response.size()); !s) return s.error();
  const std::uint32_t size = tpm::read_u32(response, 2);
  if (size < tpm::kHeaderSize || size > tpm::kAbsoluteMaxCommand) {
    return make_error(ErrorCode::kCorrupt, "swtpm response size " + std::to_string(size));
  }
  response.resize(size);
  if (auto s = read_exact(data_fd_, response.data() + tpm::kHeaderSize, size - tpm::kHeaderSize); !s) {
    return s.error();
  }
  return response;
}

}  // namespace vtpm::testing
