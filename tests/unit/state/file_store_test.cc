#include "state/file_store.h"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace vtpm::state {
namespace {

namespace fs = std::filesystem;

// A fresh mkdtemp directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = "/tmp/vtpmd-unit-XXXXXX";
    REQUIRE(::mkdtemp(templ.data()) != nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Uuid uuid_of(std::uint8_t last) {
  Uuid::Bytes b{};
  b[0] = 0x11;
  b[6] = 0x40;
  b[8] = 0x80;
  b[15] = last;
  return Uuid(b);
}

InstanceRecord record_for(const Uuid& id, std::uint8_t fill = 0xaa) {
  InstanceRecord r;
  r.uuid = id;
  r.created_unix = 1700000000 + fill;
  r.blobs.permanent = std::vector<std::uint8_t>(64, fill);
  r.blobs.save_state = {1, 2, 3};
  return r;
}

std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void write_file(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

bool any_contains(const std::vector<std::string>& lines, const std::string& needle) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& line) { return line.find(needle) != std::string::npos; });
}

}  // namespace

TEST_CASE("file_store: prepare creates the directory with mode 0700") {
  TempDir tmp;
  const std::string dir = tmp.path() + "/state";
  FileStore store(dir);
  REQUIRE(store.prepare().ok());
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0700);
}

TEST_CASE("file_store: prepare accepts an existing directory") {
  TempDir tmp;
  FileStore store(tmp.path());
  CHECK(store.prepare().ok());
  CHECK(store.prepare().ok());
}

TEST_CASE("file_store: prepare fails when the path is a file") {
  TempDir tmp;
  const std::string path = tmp.path() + "/plain";
  write_file(path, {1});
  const Status s = FileStore(path).prepare();
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kIo);
  CHECK(s.error().message.find(path) != std::string::npos);
}

TEST_CASE("file_store: path_of is <dir>/<uuid>.vtpm") {
  FileStore store("/some/dir");
  CHECK(store.path_of(uuid_of(1)) == "/some/dir/" + uuid_of(1).to_string() + ".vtpm");
}

TEST_CASE("file_store: save then load_all round-trips every record") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.prepare().ok());
  for (std::uint8_t i = 1; i <= 3; ++i) REQUIRE(store.save(record_for(uuid_of(i), i)).ok());

  LoadedRecords loaded = store.load_all();
  CHECK(loaded.failures.empty());
  REQUIRE(loaded.records.size() == 3);
  std::sort(loaded.records.begin(), loaded.records.end(),
            [](const InstanceRecord& a, const InstanceRecord& b) { return a.uuid < b.uuid; });
  for (std::uint8_t i = 1; i <= 3; ++i) {
    const InstanceRecord& r = loaded.records[i - 1];
    CHECK(r.uuid == uuid_of(i));
    CHECK(r.created_unix == 1700000000 + i);
    CHECK(r.blobs.permanent == std::vector<std::uint8_t>(64, i));
    CHECK(r.blobs.save_state == std::vector<std::uint8_t>{1, 2, 3});
  }
}

TEST_CASE("file_store: saved files are private to the owner") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(1))).ok());
  struct stat st {};
  REQUIRE(::stat(store.path_of(uuid_of(1)).c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);
}

TEST_CASE("file_store: overwriting keeps one file and leaves no .tmp behind") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(7), 0x01)).ok());
  REQUIRE(store.save(record_for(uuid_of(7), 0x02)).ok());

  CHECK(file_names(tmp.path()) == std::vector<std::string>{uuid_of(7).to_string() + ".vtpm"});
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.failures.empty());
  REQUIRE(loaded.records.size() == 1);
  CHECK(loaded.records[0].blobs.permanent == std::vector<std::uint8_t>(64, 0x02));
}

TEST_CASE("file_store: remove deletes the file and tolerates a missing one") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(1))).ok());
  REQUIRE(store.save(record_for(uuid_of(2))).ok());
  REQUIRE(store.remove(uuid_of(1)).ok());
  CHECK(file_names(tmp.path()) == std::vector<std::string>{uuid_of(2).to_string() + ".vtpm"});
  CHECK(store.remove(uuid_of(1)).ok());
  LoadedRecords loaded = store.load_all();
  REQUIRE(loaded.records.size() == 1);
  CHECK(loaded.records[0].uuid == uuid_of(2));
}

TEST_CASE("file_store: a corrupt file is reported and the others still load") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(1))).ok());
  REQUIRE(store.save(record_for(uuid_of(2))).ok());
  const std::string bad = store.path_of(uuid_of(2));
  std::vector<std::uint8_t> bytes = encode_record(record_for(uuid_of(2)));
  bytes[bytes.size() / 2] ^= 0x10;
  write_file(bad, bytes);

  LoadedRecords loaded = store.load_all();
  REQUIRE(loaded.records.size() == 1);
  CHECK(loaded.records[0].uuid == uuid_of(1));
  REQUIRE(loaded.failures.size() == 1);
  CHECK(loaded.failures[0].starts_with(bad + ": "));
  CHECK(any_contains(loaded.failures, "checksum mismatch"));
  CHECK(fs::exists(bad));  // left in place for an operator
}

TEST_CASE("file_store: unreadable files named by a UUID are listed with that UUID") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(1))).ok());
  write_file(store.path_of(uuid_of(2)), std::vector<std::uint8_t>(100, 'x'));
  write_file(tmp.path() + "/not-a-uuid.vtpm", std::vector<std::uint8_t>(100, 'x'));
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.records.size() == 1);
  CHECK(loaded.failures.size() == 2);
  REQUIRE(loaded.unreadable.size() == 1);
  CHECK(loaded.unreadable[0].first == uuid_of(2));
  CHECK(loaded.unreadable[0].second.starts_with(store.path_of(uuid_of(2)) + ": "));
}

TEST_CASE("file_store: an empty or garbage .vtpm file is reported") {
  TempDir tmp;
  FileStore store(tmp.path());
  write_file(tmp.path() + "/" + uuid_of(1).to_string() + ".vtpm", {});
  write_file(tmp.path() + "/" + uuid_of(2).to_string() + ".vtpm", std::vector<std::uint8_t>(100, 'x'));
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.records.empty());
  CHECK(loaded.failures.size() == 2);
  CHECK(any_contains(loaded.failures, "truncated"));
  CHECK(any_contains(loaded.failures, "bad magic"));
}

TEST_CASE("file_store: a file whose name does not match the UUID inside is reported") {
  TempDir tmp;
  FileStore store(tmp.path());
  const std::string wrong = tmp.path() + "/" + uuid_of(9).to_string() + ".vtpm";
  write_file(wrong, encode_record(record_for(uuid_of(1))));
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.records.empty());
  REQUIRE(loaded.failures.size() == 1);
  CHECK(loaded.failures[0].starts_with(wrong + ": "));
  CHECK(any_contains(loaded.failures, "does not match the UUID inside (" + uuid_of(1).to_string() + ")"));
}

TEST_CASE("file_store: an upper-case file name is not the canonical name") {
  TempDir tmp;
  FileStore store(tmp.path());
  std::string name = uuid_of(0xab).to_string();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  write_file(tmp.path() + "/" + name + ".vtpm", encode_record(record_for(uuid_of(0xab))));
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.records.empty());
  CHECK(loaded.failures.size() == 1);
}

TEST_CASE("file_store: files without the .vtpm suffix are ignored") {
  TempDir tmp;
  FileStore store(tmp.path());
  REQUIRE(store.save(record_for(uuid_of(1))).ok());
  const std::string base = tmp.path() + "/" + uuid_of(2).to_string();
  const auto garbage = std::vector<std::uint8_t>(10, 'g');
  write_file(base + ".vtpm.tmp", garbage);
  write_file(base + ".bak", garbage);
  write_file(base, garbage);
  write_file(tmp.path() + "/.vtpm", garbage);
  write_file(tmp.path() + "/README", garbage);
  LoadedRecords loaded = store.load_all();
  CHECK(loaded.failures.empty());
  REQUIRE(loaded.records.size() == 1);
  CHECK(loaded.records[0].uuid == uuid_of(1));
}

TEST_CASE("file_store: load_all of an empty directory is empty") {
  TempDir tmp;
  LoadedRecords loaded = FileStore(tmp.path()).load_all();
  CHECK(loaded.records.empty());
  CHECK(loaded.failures.empty());
}

TEST_CASE("file_store: load_all of a missing directory reports it") {
  TempDir tmp;
  const std::string missing = tmp.path() + "/nope";
  LoadedRecords loaded = FileStore(missing).load_all();
  CHECK(loaded.records.empty());
  REQUIRE(loaded.failures.size() == 1);
  CHECK(loaded.failures[0].starts_with(missing + ": "));
}

TEST_CASE("file_store: save into a missing directory fails with an I/O error") {
  TempDir tmp;
  const Status s = FileStore(tmp.path() + "/nope").save(record_for(uuid_of(1)));
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kIo);
  CHECK(s.error().message.find(".vtpm.tmp") != std::string::npos);
}

}  // namespace vtpm::state
