// The state directory end to end, with the real file root of trust:
// what survives a reopen, and what each kind of damage turns into.
#include "state/state_store.h"

#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "state/file_io.h"
#include "state/file_root.h"
#include "state/sealed_blob.h"

#include "tests/unit/support/temp_dir.h"

namespace vtpm::state {
namespace {

namespace fs = std::filesystem;

using vtpm::testing::TempDir;

Uuid uuid_of(std::uint8_t last) {
  Uuid::Bytes b{};
  b[0] = 0x33;
  b[6] = 0x40;
  b[8] = 0x80;
  b[15] = last;
  return Uuid(b);
}

InstanceRecord record_for(const Uuid& id, std::uint8_t fill) {
  InstanceRecord r;
  r.uuid = id;
  r.created_unix = 1700000000;
  r.blobs.permanent = Bytes(128, fill);
  return r;
}

Bytes read_bytes(const std::string& path) { return read_whole_file(path).value(); }

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()),
                                                                 static_cast<std::streamsize>(bytes.size()));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One daemon's view of a state directory: a root of trust and a store,
// plus the persister's job (seal, write, commit) in miniature.
class Session {
 public:
  explicit Session(const std::string& dir, const std::string& key_file = "") : dir_(dir) {
    auto root = FileRootOfTrust::open(key_file.empty() ? dir + "/root.key" : key_file, drbg_);
    REQUIRE_MESSAGE(root.ok(), (root.ok() ? "" : root.error().message));
    root_ = std::move(*root);
    store_ = std::make_unique<StateStore>(dir, *root_);
  }
  Result<OpenedState> open() {
    auto opened = store_->open(drbg_);
    if (opened) manifest_ = opened->manifest;
    return opened;
  }
  OpenedState open_ok() {
    auto opened = open();
    REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.error().message));
    return std::move(*opened);
  }
  // Writes the blob of the next generation; commits unless told not to.
  void save(const InstanceRecord& r, bool commit = true) {
    ManifestEntry entry;
    if (auto it = manifest_.entries.find(r.uuid); it != manifest_.entries.end()) {
      entry = it->second;
      ++entry.generation;
    } else {
      entry.generation = 1;
      entry.key_epoch = store_->master().epoch;
      REQUIRE(drbg_.fill(entry.key_salt).ok());
    }
    SealedHeader h;
    h.tpm = r.version;
    h.uuid = r.uuid;
    h.generation = entry.generation;
    h.key_epoch = entry.key_epoch;
    h.nonce = drbg_.new_nonce().value();
    auto written = store_->write_blob(r.uuid, entry.generation,
                                      seal_blob(store_->instance_key(r.uuid, entry), h, encode_record(r)));
    REQUIRE(written.ok());
    entry.blob_digest = written->digest;
    if (!commit) return;
    manifest_.entries[r.uuid] = entry;
    REQUIRE(store_->commit(manifest_, written->created).ok());
    store_->advance_epoch();
  }
  // A new instance's first generation carried in the manifest (the
  // persister's inline write): no slot file.
  // `advance`: false stops before the counter increment (a crash right after the manifest write).
  void save_inline(const InstanceRecord& r, bool advance = true) {
    ManifestEntry entry;
    entry.generation = 1;
    entry.key_epoch = store_->master().epoch;
    REQUIRE(drbg_.fill(entry.key_salt).ok());
    SealedHeader h;
    h.tpm = r.version;
    h.uuid = r.uuid;
    h.generation = 1;
    h.key_epoch = entry.key_epoch;
    h.nonce = drbg_.new_nonce().value();
    auto blob = std::make_shared<const Bytes>(seal_blob(store_->instance_key(r.uuid, entry), h, encode_record(r)));
    entry.blob_digest = sha256(*blob);
    manifest_.entries[r.uuid] = entry;
    manifest_.inline_blobs[r.uuid] = blob;
    REQUIRE(store_->commit(manifest_, false).ok());
    if (advance) store_->advance_epoch();
  }
  // The persister's materialization: the inline blob to its slot file,
  // directory synced; `commit`: then a manifest without it.
  void materialize(const Uuid& id, bool commit = true) {
    const auto blob = manifest_.inline_blobs.at(id);
    auto written = store_->write_blob(id, manifest_.entries.at(id).generation, *blob);
    REQUIRE(written.ok());
    CHECK(written->digest == manifest_.entries.at(id).blob_digest);
    REQUIRE(store_->sync_blob_directory().ok());
    if (!commit) return;
    manifest_.inline_blobs.erase(id);
    REQUIRE(store_->commit(manifest_, false).ok());
    store_->advance_epoch();
  }
  void remove(const Uuid& id) {
    manifest_.entries.erase(id);
    manifest_.inline_blobs.erase(id);
    REQUIRE(store_->commit(manifest_, false).ok());
    store_->advance_epoch();
    REQUIRE(store_->shred(id).ok());
  }
  // The slot file of the committed generation.
  std::string blob(const Uuid& id) const { return store_->blob_path(id, manifest_.entries.at(id).generation); }
  bool any_file_of(const Uuid& id) const {
    return fs::exists(store_->blob_path(id, 0)) || fs::exists(store_->blob_path(id, 1));
  }
  bool any_manifest() const { return fs::exists(store_->manifest_path(0)) || fs::exists(store_->manifest_path(1)); }
  std::string current_manifest() const { return store_->manifest_path(store_->sequence()); }

 private:
  std::string dir_;
  Drbg drbg_;
  std::unique_ptr<FileRootOfTrust> root_;
  std::unique_ptr<StateStore> store_;
  Manifest manifest_;
};

std::string why_quarantined(const OpenedState& s, const Uuid& id) {
  for (const auto& [q, why] : s.quarantined) {
    if (q == id) return why;
  }
  return "";
}

bool has_record(const OpenedState& s, const Uuid& id) {
  for (const auto& r : s.records) {
    if (r.uuid == id) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("state_store: a fresh directory gets a key, a sealed master key and an empty manifest") {
  TempDir dir;
  Session session(dir.path());
  const OpenedState s = session.open_ok();
  CHECK(s.records.empty());
  CHECK(s.quarantined.empty());
  CHECK(session.any_manifest());
  for (const char* name : {"root.key", "root.key.counter", "master.key", "manifest.b"}) {  // counter 1: slot b
    CAPTURE(name);
    struct stat st {};
    REQUIRE(::stat((dir.path() + "/" + name).c_str(), &st) == 0);
    CHECK((st.st_mode & 077) == 0);
  }
}

TEST_CASE("state_store: records survive a reopen by a new process, generations keep counting") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    for (std::uint8_t i = 1; i <= 3; ++i) first.save(record_for(uuid_of(i), i));
    first.save(record_for(uuid_of(2), 0x22));  // generation 2 of instance 2
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.quarantined.empty());
  REQUIRE(s.records.size() == 3);
  for (const auto& r : s.records) {
    const std::uint8_t fill = r.uuid == uuid_of(2) ? 0x22 : r.uuid.bytes()[15];
    CHECK(r.blobs.permanent == Bytes(128, fill));
  }
  CHECK(s.manifest.entries.at(uuid_of(2)).generation == 2);
}

TEST_CASE("state_store: the plaintext of a record is nowhere in the directory") {
  TempDir dir;
  Session session(dir.path());
  session.open_ok();
  InstanceRecord r = record_for(uuid_of(1), 0);
  r.blobs.permanent = Bytes(64, 0);
  const std::string marker = "vtpmd-plaintext-marker";
  r.blobs.permanent.insert(r.blobs.permanent.end(), marker.begin(), marker.end());
  session.save(r);
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    const Bytes bytes = read_bytes(entry.path().string());
    CHECK_FALSE(contains(std::string(bytes.begin(), bytes.end()), marker));
  }
}

TEST_CASE("state_store: a tampered blob quarantines that instance only") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    for (std::uint8_t i = 1; i <= 3; ++i) first.save(record_for(uuid_of(i), i));
    Bytes b = read_bytes(first.blob(uuid_of(2)));
    b[kSealedHeaderSize + 20] ^= 0x01;  // inside the ciphertext
    write_bytes(first.blob(uuid_of(2)), b);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.size() == 2);
  CHECK(has_record(s, uuid_of(1)));
  CHECK(has_record(s, uuid_of(3)));
  CHECK(contains(why_quarantined(s, uuid_of(2)), "authentication failed"));
  CHECK(second.any_file_of(uuid_of(2)));  // evidence kept
}

TEST_CASE("state_store: a truncated blob is quarantined") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    fs::resize_file(first.blob(uuid_of(1)), 100);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "truncated: the file has 100 bytes"));
}

TEST_CASE("state_store: a blob file's zero tail is checked; bytes appended or cut from the blob are caught") {
  TempDir dir;
  std::size_t record_size = 0;
  {
    Session first(dir.path());
    first.open_ok();
    for (std::uint8_t i = 1; i <= 3; ++i) first.save(record_for(uuid_of(i), i));
    // The slot files keep the spare's length: the blob, then zeros.
    const Bytes b = read_bytes(first.blob(uuid_of(1)));
    REQUIRE(b.size() == SpareFiles::kFileSize);
    ByteReader r(std::span<const std::uint8_t>(b).subspan(kSealedHeaderSize - 4, 4));
    record_size = sealed_blob_size(r.u32());
    REQUIRE(record_size < b.size());
    CHECK(std::all_of(b.begin() + static_cast<std::ptrdiff_t>(record_size), b.end(), [](auto x) { return x == 0; }));
    Bytes tail = b;
    tail.back() = 0x5a;  // something written after the blob
    write_bytes(first.blob(uuid_of(1)), tail);
    Bytes cut = read_bytes(first.blob(uuid_of(2)));
    cut.resize(record_size - 1);  // the blob's last byte gone
    write_bytes(first.blob(uuid_of(2)), cut);
    Bytes shorter = read_bytes(first.blob(uuid_of(3)));
    shorter.resize(record_size);  // only zeros removed: the blob is whole
    write_bytes(first.blob(uuid_of(3)), shorter);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(contains(why_quarantined(s, uuid_of(1)), "non-zero bytes after the record"));
  CHECK(contains(why_quarantined(s, uuid_of(2)), "truncated"));
  CHECK(has_record(s, uuid_of(3)));
  CHECK(s.records.size() == 1);
}

TEST_CASE("state_store: an older generation put back is a rollback") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    const Bytes old = read_bytes(first.blob(uuid_of(1)));
    first.save(record_for(uuid_of(1), 2));
    first.save(record_for(uuid_of(1), 3));
    write_bytes(first.blob(uuid_of(1)), old);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "rollback: generation 1 is older than generation 3"));
}

TEST_CASE("state_store: another instance's blob under this UUID's name is rejected") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save(record_for(uuid_of(2), 2));
    fs::copy_file(first.blob(uuid_of(2)), first.blob(uuid_of(1)), fs::copy_options::overwrite_existing);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(has_record(s, uuid_of(2)));
  CHECK(contains(why_quarantined(s, uuid_of(1)), "belongs to instance " + uuid_of(2).to_string()));
}

TEST_CASE("state_store: an old copy of the directory put back (rollback) quarantines everything it lists") {
  TempDir dir;
  TempDir snapshot;
  auto copy_state = [](const std::string& from, const std::string& to) {
    for (const auto& e : fs::directory_iterator(from)) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with("root.key")) {  // the counter stays out of reach
        fs::copy_file(e.path(), to + "/" + name, fs::copy_options::overwrite_existing);
      }
    }
  };
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    copy_state(dir.path(), snapshot.path());
    first.save(record_for(uuid_of(1), 2));
    first.save(record_for(uuid_of(1), 3));
  }
  copy_state(snapshot.path(), dir.path());
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "rolled back"));
  // The quarantine itself is durable: the next start still refuses it.
  Session third(dir.path());
  const OpenedState again = third.open_ok();
  CHECK(again.records.empty());
  CHECK(contains(why_quarantined(again, uuid_of(1)), "quarantined at an earlier start"));
}

TEST_CASE("state_store: a tampered manifest quarantines every instance and is kept aside") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save(record_for(uuid_of(2), 2));
    const std::string current = first.current_manifest();
    Bytes m = read_bytes(current);
    m[40] ^= 0x80;  // inside the first entry
    write_bytes(current, m);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "MAC mismatch"));
  CHECK(contains(why_quarantined(s, uuid_of(2)), "MAC mismatch"));
  CHECK((fs::exists(dir.path() + "/manifest.a.rejected") || fs::exists(dir.path() + "/manifest.b.rejected")));
  CHECK(second.any_file_of(uuid_of(1)));
}

TEST_CASE("state_store: a deleted manifest quarantines every blob") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    fs::remove(dir.path() + "/manifest.a");
    fs::remove(dir.path() + "/manifest.b");
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "manifest is missing"));
}

TEST_CASE("state_store: a deleted blob is reported missing, not re-created") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    fs::remove(first.blob(uuid_of(1)));
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(contains(why_quarantined(s, uuid_of(1)), "state file is missing"));
}

TEST_CASE("state_store: a blob written but never committed is adopted when it is the next generation") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save(record_for(uuid_of(1), 2), /*commit=*/false);  // crash before the manifest
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  REQUIRE(s.records.size() == 1);
  CHECK(s.records[0].blobs.permanent == Bytes(128, 2));
  CHECK(s.manifest.entries.at(uuid_of(1)).generation == 2);
}

TEST_CASE("state_store: a blob of an uncommitted add is discarded; a removed instance stays removed") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save(record_for(uuid_of(2), 2), /*commit=*/false);  // add interrupted before its commit
    first.save(record_for(uuid_of(3), 3));
    first.remove(uuid_of(3));
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.quarantined.empty());
  REQUIRE(s.records.size() == 1);
  CHECK(s.records[0].uuid == uuid_of(1));
  CHECK_FALSE(second.any_file_of(uuid_of(2)));
  CHECK_FALSE(second.any_file_of(uuid_of(3)));
}

std::size_t count_spares(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().starts_with("spare.") ? 1 : 0;
  return n;
}

TEST_CASE("state_store: new slot files are spares renamed into place; removed ones become spares") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    CHECK(count_spares(dir.path()) == SpareFiles::kTarget);  // made at open
    first.save(record_for(uuid_of(1), 1));                   // generation 1: slot b, from a spare
    CHECK(count_spares(dir.path()) == SpareFiles::kTarget - 1);
    CHECK(fs::file_size(first.blob(uuid_of(1))) == SpareFiles::kFileSize);  // its length kept: no journal commit
    first.save(record_for(uuid_of(1), 0x11));  // generation 2: slot a, another spare
    first.save(record_for(uuid_of(1), 0x12));  // generation 3: slot b again, in place
    CHECK(count_spares(dir.path()) == SpareFiles::kTarget - 2);
    first.save(record_for(uuid_of(2), 2), /*commit=*/false);  // an add interrupted before its commit
    first.remove(uuid_of(1));  // both slot files shredded and recycled
    CHECK(count_spares(dir.path()) == SpareFiles::kTarget - 1);
    CHECK_FALSE(first.any_file_of(uuid_of(1)));
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.quarantined.empty());
  CHECK(s.records.empty());
  CHECK_FALSE(second.any_file_of(uuid_of(2)));  // discarded (and recycled), never adopted
  CHECK(count_spares(dir.path()) == SpareFiles::kTarget);
  second.save(record_for(uuid_of(3), 3));
  Session third(dir.path());
  const OpenedState t = third.open_ok();
  REQUIRE(t.records.size() == 1);
  CHECK(t.records[0].blobs.permanent == Bytes(128, 3));
}

TEST_CASE("state_store: a commit interrupted before the counter increment is completed at start") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    const Bytes counter = read_bytes(dir.path() + "/root.key.counter");
    first.save(record_for(uuid_of(1), 2));
    write_bytes(dir.path() + "/root.key.counter", counter);  // the increment never happened
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  REQUIRE(s.records.size() == 1);
  CHECK(s.records[0].blobs.permanent == Bytes(128, 2));
  bool noted = false;
  for (const auto& n : s.notes) noted = noted || contains(n, "completed an interrupted counter increment");
  CHECK(noted);
}

TEST_CASE("state_store: state without its master key refuses to open") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
  }
  fs::remove(dir.path() + "/master.key");
  Session second(dir.path());
  auto opened = second.open();
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "no master key file"));
  CHECK(second.any_file_of(uuid_of(1)));
}

TEST_CASE("state_store: another root key cannot unseal the master key") {
  TempDir dir;
  TempDir elsewhere;
  {
    Session first(dir.path());
    first.open_ok();
  }
  Session second(dir.path(), elsewhere.path() + "/other.key");
  auto opened = second.open();
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "cannot unseal the master key"));
}

TEST_CASE("file_root: a key file readable by others is refused") {
  TempDir dir;
  Drbg drbg;
  const std::string key = dir.path() + "/root.key";
  REQUIRE(FileRootOfTrust::open(key, drbg).ok());
  REQUIRE(::chmod(key.c_str(), 0644) == 0);
  auto again = FileRootOfTrust::open(key, drbg);
  REQUIRE_FALSE(again.ok());
  CHECK(contains(again.error().message, "chmod 600"));
}

TEST_CASE("file_root: the counter counts, persists, and a modified counter file is refused") {
  TempDir dir;
  Drbg drbg;
  const std::string key = dir.path() + "/root.key";
  {
    auto root = FileRootOfTrust::open(key, drbg);
    REQUIRE(root.ok());
    CHECK((*root)->read_counter().value() == 0);
    CHECK((*root)->increment_counter().value() == 1);
    CHECK((*root)->increment_counter().value() == 2);
  }
  auto root = FileRootOfTrust::open(key, drbg);
  CHECK((*root)->read_counter().value() == 2);
  Bytes c = read_bytes(key + ".counter");
  c[7] = 9;
  write_bytes(key + ".counter", c);
  auto read = (*root)->read_counter();
  REQUIRE_FALSE(read.ok());
  CHECK(contains(read.error().message, "fails its MAC"));
}

TEST_CASE("state_store: a new instance's first generation in the manifest loads without a slot file, and after it moved") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save_inline(record_for(uuid_of(2), 2));
    first.save_inline(record_for(uuid_of(3), 3));
    CHECK_FALSE(first.any_file_of(uuid_of(2)));
    first.materialize(uuid_of(3), /*commit=*/false);  // a crash before the manifest drops it
  }
  {
    Session second(dir.path());
    const OpenedState s = second.open_ok();
    CHECK(s.quarantined.empty());
    REQUIRE(s.records.size() == 3);
    for (const auto& r : s.records) CHECK(r.blobs.permanent.at(0) == r.uuid.bytes()[15]);
    CHECK(s.manifest.inline_blobs.size() == 2);  // still carried: nothing dropped them
    second.materialize(uuid_of(2));
    second.materialize(uuid_of(3));
  }
  Session third(dir.path());
  const OpenedState s = third.open_ok();
  CHECK(s.quarantined.empty());
  CHECK(s.records.size() == 3);
  CHECK(s.manifest.inline_blobs.empty());
  CHECK(third.any_file_of(uuid_of(2)));
}

TEST_CASE("state_store: an inline generation is superseded by a newer one written before a crash") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save_inline(record_for(uuid_of(1), 1));
    first.save(record_for(uuid_of(1), 0x21), /*commit=*/false);  // generation 2, slot file, no commit
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  REQUIRE(s.records.size() == 1);
  CHECK(s.records[0].blobs.permanent.at(0) == 0x21);
  CHECK(s.manifest.entries.at(uuid_of(1)).generation == 2);
  CHECK(s.manifest.inline_blobs.empty());
}

TEST_CASE("state_store: a torn inline blob makes its manifest unusable, like a torn MAC'd part; the other slot is used") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save_inline(record_for(uuid_of(2), 2), /*advance=*/false);  // the write the crash tore
    Bytes m = read_bytes(first.current_manifest());
    const auto at = static_cast<std::size_t>(32 + 96 * 2 + 32 + 4 + 16 + 4 + 100);  // inside the inline blob
    REQUIRE(at < m.size());
    m[at] ^= 0x01;
    write_bytes(first.current_manifest(), m);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  // The previous manifest (before the add that never finished) is current.
  CHECK(has_record(s, uuid_of(1)));
  CHECK_FALSE(s.manifest.entries.contains(uuid_of(2)));
  CHECK(s.quarantined.empty());
}

TEST_CASE("state_store: an inline blob changed after its commit is tampering: every instance is quarantined") {
  TempDir dir;
  {
    Session first(dir.path());
    first.open_ok();
    first.save(record_for(uuid_of(1), 1));
    first.save_inline(record_for(uuid_of(2), 2));
    Bytes m = read_bytes(first.current_manifest());
    m[32 + 96 * 2 + 32 + 4 + 16 + 4 + 100] ^= 0x01;
    write_bytes(first.current_manifest(), m);
  }
  Session second(dir.path());
  const OpenedState s = second.open_ok();
  CHECK(s.records.empty());
  CHECK(contains(why_quarantined(s, uuid_of(1)), "does not match its digest"));
  // Instance 2 lived only in the refused manifest, which is kept for inspection.
  CHECK_FALSE(has_record(s, uuid_of(2)));
  CHECK((fs::exists(dir.path() + "/manifest.a.rejected") || fs::exists(dir.path() + "/manifest.b.rejected")));
}

}  // namespace vtpm::state
