#include "state/spare_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <utility>
#include <cstdio>

#include "state/file_io.h"

namespace vtpm::state {

bool SpareFiles::adopt(const std::string& name) {
  constexpr std::string_view kPrefix = "spare.";
  if (!name.starts_with(kPrefix)) return false;
  const std::string_view digits = std::string_view(name).substr(kPrefix.size());
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) return false;
  const std::lock_guard lock(mutex_);
  next_ = std::max(next_, n + 1);  // the name is taken either way
  struct stat st {};
  // Only a regular file: a symbolic link renamed into a blob's place
  // would redirect the blob write.
  if (::lstat(path_of(n).c_str(), &st) == 0 && S_ISREG(st.st_mode)) ready_.push_back(n);
  return true;
}

bool SpareFiles::take(const std::string& path) {
  for (;;) {
    std::uint64_t n = 0;
    {
      const std::lock_guard lock(mutex_);
      if (ready_.empty()) return false;
      n = ready_.back();
      ready_.pop_back();
    }
    // RENAME_NOREPLACE: never over an existing file (the caller checked,
    // this makes it certain).
    if (::renameat2(AT_FDCWD, path_of(n).c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) return true;
    if (errno == EEXIST) return false;
    // Gone from under us (removed by hand): try the next one.
  }
}

Status SpareFiles::recycle(const std::string& path) {
  std::uint64_t n = 0;
  {
    const std::lock_guard lock(mutex_);
    if (ready_.size() >= kTarget) n = UINT64_MAX;
    else n = next_++;
  }
  if (n != UINT64_MAX && ::rename(path.c_str(), path_of(n).c_str()) == 0) {
    const std::lock_guard lock(mutex_);
    ready_.push_back(n);
    return Status::success();
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io_error("unlink", path);
  return Status::success();
}

Status SpareFiles::refill() {
  std::vector<std::uint64_t> numbers;
  {
    const std::lock_guard lock(mutex_);
    for (std::size_t have = ready_.size(); have < kTarget; ++have) numbers.push_back(next_++);
  }
  if (numbers.empty()) return Status::success();
  static const Bytes zeros(kFileSize, 0);
  // All written first, then synced: the first fdatasync commits the
  // journal transaction that allocated every file's blocks.
  std::vector<std::pair<std::uint64_t, Fd>> written;
  Status result = Status::success();
  for (std::uint64_t n : numbers) {
    const std::string path = path_of(n);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      result = io_error("create", path);
      break;
    }
    if (Status s = write_all(fd.get(), zeros, path); !s) {
      ::unlink(path.c_str());
      result = s;
      break;
    }
    written.emplace_back(n, std::move(fd));
  }
  std::vector<std::uint64_t> made;
  for (auto& [n, fd] : written) {
    if (::fdatasync(fd.get()) != 0) {
      if (result) result = io_error("fdatasync", path_of(n));
      ::unlink(path_of(n).c_str());
      continue;
    }
    made.push_back(n);
  }
  if (!made.empty()) {
    if (Status s = sync_directory(directory_); !s && result) result = s;
    const std::lock_guard lock(mutex_);
    ready_.insert(ready_.end(), made.begin(), made.end());
  }
  return result;
}

bool SpareFiles::wanted() const {
  const std::lock_guard lock(mutex_);
  return ready_.size() <= kLowWater;
}

std::size_t SpareFiles::ready() const {
  const std::lock_guard lock(mutex_);
  return ready_.size();
}

}  // namespace vtpm::state
