// A real swtpm (TPM 2.0, started) as a child process of the test, driven by
// raw command/response bytes over its Unix data socket. The TIS and CRB
// models execute the commands they receive here.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"

namespace vtpm::testing {

class SwtpmChild {
 public:
  // Spawns `swtpm socket` in a fresh temporary state directory and connects.
  static Result<std::unique_ptr<SwtpmChild>> start();
  ~SwtpmChild();  // closes the socket, stops the child (by its pid), removes the directory
  SwtpmChild(const SwtpmChild&) = delete;
  SwtpmChild& operator=(const SwtpmChild&) = delete;

  Result<std::vector<std::uint8_t>> execute(std::span<const std::uint8_t> command);

  SwtpmChild(std::string dir, pid_t pid, int data_fd) : dir_(std::move(dir)), pid_(pid), data_fd_(data_fd) {}

 private:
  std::string dir_;
  pid_t pid_;
  int data_fd_;
};

}  // namespace vtpm::testing
