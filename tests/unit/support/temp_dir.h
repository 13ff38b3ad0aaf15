// A fresh directory under /tmp for one test, removed with everything in it
// when the test ends. Shared by the unit tests that touch the disk.
#pragma once

#include <doctest/doctest.h>

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace vtpm::testing {

class TempDir {
 public:
  TempDir() {
    std::string templ = "/tmp/vtpmd-unit-XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace vtpm::testing
