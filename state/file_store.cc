#include "state/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace vtpm::state {
namespace {

constexpr const char* kSuffix = ".vtpm";

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Error io_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::kIo, what + " " + path + ": " + std::strerror(errno));
}

Status write_all(int fd, const std::vector<std::uint8_t>& bytes, const std::string& path) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("write", path);
    done += static_cast<std::size_t>(n);
  }
  return Status::success();
}

Result<std::vector<std::uint8_t>> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return io_error("open", path);
  std::vector<std::uint8_t> out;
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

}  // namespace

Status FileStore::prepare() const {
  if (::mkdir(directory_.c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir", directory_);
  struct stat st {};
  if (::stat(directory_.c_str(), &st) != 0) return io_error("stat", directory_);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorCode::kIo, directory_ + " is not a directory");
  return Status::success();
}

std::string FileStore::path_of(const Uuid& id) const { return directory_ + "/" + id.to_string() + kSuffix; }

Status FileStore::sync_directory() const {
  Fd dir(::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return io_error("open", directory_);
  if (::fsync(dir.get()) != 0) return io_error("fsync", directory_);
  return Status::success();
}

Status FileStore::save(const InstanceRecord& record) const {
  const std::string path = path_of(record.uuid);
  const std::string temp = path + ".tmp";
  {
    Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd.get() < 0) return io_error("create", temp);
    if (Status s = write_all(fd.get(), encode_record(record), temp); !s) return s;
    if (::fsync(fd.get()) != 0) return io_error("fsync", temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) return io_error("rename", temp);
  return sync_directory();
}

Status FileStore::remove(const Uuid& id) const {
  const std::string path = path_of(id);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io_error("unlink", path);
  return sync_directory();
}

LoadedRecords FileStore::load_all() const {
  LoadedRecords loaded;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory_.c_str()), ::closedir);
  if (!dir) {
    loaded.failures.push_back(directory_ + ": " + std::strerror(errno));
    return loaded;
  }
  while (dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (name.size() <= std::strlen(kSuffix) || !name.ends_with(kSuffix)) continue;
    const std::string path = directory_ + "/" + name;
    auto named = Uuid::parse(name.substr(0, name.size() - std::strlen(kSuffix)));
    auto reject = [&](const std::string& why) {
      loaded.failures.push_back(path + ": " + why);
      if (named) loaded.unreadable.emplace_back(*named, path + ": " + why);
    };
    auto bytes = read_file(path);
    if (!bytes) {
      reject(bytes.error().message);
      continue;
    }
    auto record = decode_record(*bytes);
    if (!record) {
      reject(record.error().message);
      continue;
    }
    if (name != record->uuid.to_string() + kSuffix) {
      reject("file name does not match the UUID inside (" + record->uuid.to_string() + ")");
      continue;
    }
    loaded.records.push_back(std::move(*record));
  }
  return loaded;
}

}  // namespace vtpm::state
