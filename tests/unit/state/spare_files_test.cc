// Spare blob files on their own, and as the state store uses them.
#include "state/spare_files.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "tests/unit/support/temp_dir.h"

namespace vtpm::state {
namespace {

namespace fs = std::filesystem;
using vtpm::testing::TempDir;

std::set<std::string> spare_names(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("spare.")) names.insert(name);
  }
  return names;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("spare_files: refill makes the target number of allocated, zero-filled files") {
  TempDir dir;
  SpareFiles spares(dir.path());
  CHECK(spares.wanted());
  REQUIRE(spares.refill().ok());
  CHECK(spares.ready() == SpareFiles::kTarget);
  CHECK_FALSE(spares.wanted());
  const auto names = spare_names(dir.path());
  REQUIRE(names.size() == SpareFiles::kTarget);
  for (const auto& name : names) {
    struct stat st {};
    REQUIRE(::stat((dir.path() + "/" + name).c_str(), &st) == 0);
    CHECK(st.st_size == static_cast<off_t>(SpareFiles::kFileSize));
    CHECK(st.st_blocks * 512 >= static_cast<blkcnt_t>(SpareFiles::kFileSize));  // blocks exist, not a hole
    CHECK((st.st_mode & 0777) == 0600);
  }
  REQUIRE(spares.refill().ok());  // at the target: nothing more
  CHECK(spare_names(dir.path()).size() == SpareFiles::kTarget);
}

TEST_CASE("spare_files: take renames a spare into place, never over an existing file") {
  TempDir dir;
  SpareFiles spares(dir.path());
  REQUIRE(spares.refill().ok());
  const std::string blob = dir.path() + "/x.b.vtpm";
  REQUIRE(spares.take(blob));
  CHECK(fs::file_size(blob) == SpareFiles::kFileSize);
  CHECK(spares.ready() == SpareFiles::kTarget - 1);
  CHECK(spare_names(dir.path()).size() == SpareFiles::kTarget - 1);

  const std::string existing = dir.path() + "/y.b.vtpm";
  write_text(existing, "committed state");
  CHECK_FALSE(spares.take(existing));
  CHECK(read_text(existing) == "committed state");

  SpareFiles none(dir.path() + "/nowhere");
  CHECK_FALSE(none.take(dir.path() + "/z.b.vtpm"));
  CHECK_FALSE(fs::exists(dir.path() + "/z.b.vtpm"));
}

TEST_CASE("spare_files: start-up adopts regular spare files only, and new numbers follow them") {
  TempDir dir;
  write_text(dir.path() + "/spare.7", "old");
  write_text(dir.path() + "/elsewhere", "someone's file");
  REQUIRE(::symlink((dir.path() + "/elsewhere").c_str(), (dir.path() + "/spare.9").c_str()) == 0);
  ::mkdir((dir.path() + "/spare.11").c_str(), 0700);
  SpareFiles spares(dir.path());
  CHECK(spares.adopt("spare.7"));
  CHECK(spares.adopt("spare.9"));   // a spare's name, but a link: not used
  CHECK(spares.adopt("spare.11"));  // a directory: not used
  CHECK_FALSE(spares.adopt("spare.x"));
  CHECK_FALSE(spares.adopt("spare."));
  CHECK_FALSE(spares.adopt("manifest.a"));
  CHECK(spares.ready() == 1);

  REQUIRE(spares.take(dir.path() + "/a.b.vtpm"));
  CHECK(read_text(dir.path() + "/a.b.vtpm") == "old");
  CHECK_FALSE(spares.take(dir.path() + "/b.b.vtpm"));  // the link is never taken
  CHECK(read_text(dir.path() + "/elsewhere") == "someone's file");
  REQUIRE(spares.refill().ok());
  CHECK(fs::exists(dir.path() + "/spare.12"));  // after the highest number seen
  CHECK(fs::is_symlink(dir.path() + "/spare.9"));
}

TEST_CASE("spare_files: a shredded file is recycled below the target and unlinked at it") {
  TempDir dir;
  SpareFiles spares(dir.path());
  const std::string first = dir.path() + "/gone.a.vtpm";
  write_text(first, std::string(100, '\0'));
  REQUIRE(spares.recycle(first).ok());
  CHECK_FALSE(fs::exists(first));
  CHECK(spares.ready() == 1);
  REQUIRE(spares.refill().ok());
  const std::string second = dir.path() + "/gone.b.vtpm";
  write_text(second, std::string(100, '\0'));
  REQUIRE(spares.recycle(second).ok());
  CHECK_FALSE(fs::exists(second));
  CHECK(spares.ready() == SpareFiles::kTarget);
  CHECK(spare_names(dir.path()).size() == SpareFiles::kTarget);
}

}  // namespace vtpm::state
