// Small blocking file helpers for state/: an owned fd, whole-file read,
// crash-safe replace (temp, fsync, rename) and directory fsync.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <utility>

#include "proto/result.h"
#include "state/bytes.h"

namespace vtpm::state {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

Error io_error(const std::string& what, const std::string& path);  // uses errno
Result<Bytes> read_whole_file(const std::string& path);
Status write_all(int fd, std::span<const std::uint8_t> bytes, const std::string& path);
Status sync_directory(const std::string& dir);
bool file_exists(const std::string& path);

// Crash-safe replace: temp file, fdatasync, rename (the caller syncs the
// directory). Used for the master key file, written once.
Status replace_file(const std::string& path, std::span<const std::uint8_t> bytes);

// Reports the steps of a write, so that tests can crash the process
// between them (state/crash_points.h).
using StepHook = std::function<void(const char* step)>;

// Overwrites `path` in place (creating it, mode 0600, if missing) and
// fdatasyncs it, keeping the file's length: the bytes are followed by zeros
// to the end of the file (readers find the record's own end: bytes.h,
// record_in_file). A file too short, or more than four times too long,
// gets the bytes' length plus an eighth, in whole pages. Steps "written",
// "synced". Returns whether the file was created (its directory entry is
// not yet durable).
Result<bool> write_in_place(const std::string& path, std::span<const std::uint8_t> bytes, const StepHook& step = {});

}  // namespace vtpm::state
