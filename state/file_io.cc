#include "state/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace vtpm::state {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Error io_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}

Result<Bytes> read_whole_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("open", path);
  Bytes out;
  std::uint8_t chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("read", path);
    if (n == 0) break;
    out.insert(out.end(), chunk, chunk + n);
  }
  return out;
}

Status write_all(int fd, std::span<const std::uint8_t> bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("write", path);
    done += static_cast<std::size_t>(n);
  }
  return Status::success();
}

Status sync_directory(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return io_error("open", dir);
  if (::fsync(fd.get()) != 0) return io_error("fsync", dir);
  return Status::success();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Status replace_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string temp = path + ".tmp";
  {
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd.valid()) return io_error("create", temp);
    if (Status s = write_all(fd.get(), bytes, temp); !s) return s;
    if (::fdatasync(fd.get()) != 0) return io_error("fdatasync", temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) return io_error("rename", temp);
  return Status::success();
}

namespace {

Status pwrite_all(int fd, std::span<const std::uint8_t> bytes, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("write", path);
    done += static_cast<std::size_t>(n);
  }
  return Status::success();
}

// The file length for `content` bytes when `current` is too short or far
// too long: an eighth of headroom, whole pages.
std::uint64_t padded_length(std::uint64_t content) {
  constexpr std::uint64_t kPage = 4096;
  return (content + content / 8 + kPage - 1) / kPage * kPage;
}

}  // namespace

Result<bool> write_in_place(const std::string& path, std::span<const std::uint8_t> bytes, const StepHook& step) {
  bool created = true;
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid() && errno == EEXIST) {
    created = false;
    fd = Fd(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  }
  if (!fd.valid()) return io_error("open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("fstat", path);
  // Keep the file's length where we can: a length change makes fdatasync
  // commit a journal transaction, twice the cost of a plain overwrite on
  // ext4 (docs/performance.md). A far too long file is cut once.
  std::uint64_t length = static_cast<std::uint64_t>(st.st_size);
  const std::uint64_t wanted = padded_length(bytes.size());
  const bool cut = length > 4 * wanted && length > 64 * 1024;
  if (length < bytes.size() || cut) length = wanted;
  if (Status s = pwrite_all(fd.get(), bytes, 0, path); !s) return s.error();
  static constexpr std::array<std::uint8_t, 16 * 1024> kZeros{};
  for (std::uint64_t at = bytes.size(); at < length;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kZeros.size(), length - at));
    if (Status s = pwrite_all(fd.get(), std::span(kZeros).first(n), at, path); !s) return s.error();
    at += n;
  }
  if (cut && ::ftruncate(fd.get(), static_cast<off_t>(length)) != 0) return io_error("truncate", path);
  if (step) step("written");
  if (::fdatasync(fd.get()) != 0) return io_error("fdatasync", path);
  if (step) step("synced");
  return created;
}

}  // namespace vtpm::state
