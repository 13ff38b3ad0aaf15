// The state store's use of a slow counter (a hardware NV counter): one
// increment per epoch, not per commit; failed increments never fail a
// commit and are caught up; the rollback window is one epoch. The counter
// here is the real file root's, behind a fault-injecting decorator that
// plays a TPM which loses answers.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "state/file_root.h"
#include "state/sealed_blob.h"
#include "state/state_store.h"

#include "tests/unit/support/temp_dir.h"

namespace vtpm::state {
namespace {

namespace fs = std::filesystem;

using vtpm::testing::TempDir;

enum class Fault { kNone, kFailBefore, kFailAfter, kFailReads };

// Advances per epoch (interval), and fails as told: before touching the
// counter, or after (the increment happened but the answer was lost).
class EpochRoot final : public RootOfTrust {
 public:
  EpochRoot(std::unique_ptr<FileRootOfTrust> inner, std::chrono::seconds interval)
      : inner_(std::move(inner)), interval_(interval) {}
  std::string kind() const override { return inner_->kind(); }
  std::string describe() const override { return "epoch test root"; }
  bool hardware_protected() const override { return false; }
  Result<Bytes> seal(const SecretKey& s) override { return inner_->seal(s); }
  Result<SecretKey> unseal(std::span<const std::uint8_t> b) override { return inner_->unseal(b); }
  Result<std::uint64_t> read_counter() override {
    if (fault == Fault::kFailReads) return make_error(ErrorCode::kUnavailable, "TPM gone");
    return inner_->read_counter();
  }
  Result<std::uint64_t> increment_counter() override {
    ++increments;
    if (fault == Fault::kFailBefore || fault == Fault::kFailReads) {
      return make_error(ErrorCode::kUnavailable, "TPM timed out");
    }
    auto v = inner_->increment_counter();
    if (fault == Fault::kFailAfter) return make_error(ErrorCode::kUnavailable, "TPM answer lost");
    return v;
  }
  std::chrono::seconds counter_interval() const override { return interval_; }

  Fault fault = Fault::kNone;
  int increments = 0;

 private:
  std::unique_ptr<FileRootOfTrust> inner_;
  std::chrono::seconds interval_;
};

Uuid the_uuid() {
  Uuid::Bytes b{};
  b[0] = 0x44;
  b[6] = 0x40;
  b[8] = 0x80;
  return Uuid(b);
}

class Daemon {
 public:
  Daemon(const std::string& dir, std::chrono::seconds interval = std::chrono::seconds(3600)) : dir_(dir) {
    auto file_root = FileRootOfTrust::open(dir + "/root.key", drbg_);
    REQUIRE(file_root.ok());
    root = std::make_unique<EpochRoot>(std::move(*file_root), interval);
    store = std::make_unique<StateStore>(dir, *root);
  }
  OpenedState open() {
    auto opened = store->open(drbg_);
    REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.error().message));
    manifest_ = opened->manifest;
    return std::move(*opened);
  }
  void save(std::uint8_t fill) {
    const Uuid id = the_uuid();
    ManifestEntry entry;
    if (auto it = manifest_.entries.find(id); it != manifest_.entries.end()) {
      entry = it->second;
      ++entry.generation;
    } else {
      entry.generation = 1;
      entry.key_epoch = store->master().epoch;
      REQUIRE(drbg_.fill(entry.key_salt).ok());
    }
    InstanceRecord r;
    r.uuid = id;
    r.blobs.permanent = Bytes(64, fill);
    SealedHeader h;
    h.tpm = r.version;
    h.uuid = id;
    h.generation = entry.generation;
    h.key_epoch = entry.key_epoch;
    h.nonce = drbg_.new_nonce().value();
    auto written = store->write_blob(id, entry.generation, seal_blob(store->instance_key(id, entry), h, encode_record(r)));
    REQUIRE(written.ok());
    entry.blob_digest = written->digest;
    manifest_.entries[id] = entry;
    REQUIRE(store->commit(manifest_, written->created).ok());
    store->advance_epoch();  // as the persister does, after the waiters
  }

  std::unique_ptr<EpochRoot> root;
  std::unique_ptr<StateStore> store;

 private:
  std::string dir_;
  Drbg drbg_;
  Manifest manifest_;
};

std::uint8_t permanent_fill(const OpenedState& s) {
  REQUIRE(s.records.size() == 1);
  return s.records[0].blobs.permanent.at(0);
}

void copy_dir(const std::string& from, const std::string& to) {
  fs::remove_all(to);
  fs::copy(from, to, fs::copy_options::recursive);
}

}  // namespace

TEST_CASE("epoch counter: one increment per start, none per commit") {
  TempDir dir;
  Daemon d(dir.path());
  d.open();
  CHECK(d.root->increments == 1);
  const auto at_start = d.store->counter();
  for (std::uint8_t i = 1; i <= 20; ++i) d.save(i);
  CHECK(d.root->increments == 1);
  CHECK(d.store->counter() == at_start);
  CHECK(d.store->sequence() == 21);
  d.store->request_new_epoch();
  d.save(21);
  CHECK(d.root->increments == 2);
  CHECK(d.store->counter() == at_start + 1);

  Daemon again(dir.path());
  const OpenedState s = again.open();
  CHECK(s.quarantined.empty());
  CHECK(permanent_fill(s) == 21);
}

TEST_CASE("epoch counter: the interval starts a new epoch at the next commit") {
  TempDir dir;
  Daemon d(dir.path(), std::chrono::seconds(1));
  d.open();
  const auto at_start = d.store->counter();
  d.save(1);
  CHECK(d.store->counter() == at_start);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  d.save(2);
  CHECK(d.store->counter() == at_start + 1);
}

TEST_CASE("epoch counter: a lost increment answer fails no commit and is caught up without a false rollback") {
  TempDir dir;
  Daemon d(dir.path());
  d.open();
  d.root->fault = Fault::kFailAfter;
  d.store->request_new_epoch();
  d.save(1);  // the counter moved, the daemon does not know it
  CHECK_FALSE(d.store->counter_status().problem.empty());
  CHECK(d.store->counter_status().failures == 1);
  d.save(2);  // within the back-off: no new attempt, still durable
  d.root->fault = Fault::kNone;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const int before = d.root->increments;
  d.save(3);  // re-reads, finds the increment happened, does not increment again
  CHECK(d.root->increments == before);
  CHECK(d.store->counter_status().problem.empty());

  Daemon again(dir.path());
  const OpenedState s = again.open();
  CHECK(s.quarantined.empty());
  CHECK(permanent_fill(s) == 3);
}

TEST_CASE("epoch counter: a TPM gone at a new epoch; the daemon stops; the next start completes the increment") {
  TempDir dir;
  {
    Daemon d(dir.path());
    d.open();
    d.root->fault = Fault::kFailBefore;
    d.store->request_new_epoch();
    d.save(7);
    d.save(8);
    CHECK_FALSE(d.store->counter_status().problem.empty());
  }
  Daemon again(dir.path());
  const OpenedState s = again.open();
  CHECK(s.quarantined.empty());
  CHECK(permanent_fill(s) == 8);
  bool completed = false;
  for (const auto& n : s.notes) completed = completed || n.find("interrupted counter increment") != std::string::npos;
  CHECK(completed);
}

TEST_CASE("epoch counter: a start-up that cannot advance the counter fails") {
  TempDir dir;
  { Daemon(dir.path()).open(); }
  Daemon d(dir.path());
  d.root->fault = Fault::kFailBefore;
  Drbg drbg;
  auto opened = d.store->open(drbg);
  REQUIRE_FALSE(opened.ok());
  CHECK(opened.error().message.find("TPM timed out") != std::string::npos);
}

TEST_CASE("epoch counter: the rollback window is one epoch") {
  TempDir dir;
  const std::string copy = dir.path() + "-copy";
  {
    Daemon d(dir.path());
    d.open();
    d.save(1);
    copy_dir(dir.path(), copy);  // a copy taken within the epoch
    d.save(2);
  }
  {
    // Restored over the live directory before any new epoch: the window.
    copy_dir(copy, dir.path() + "-within");
    fs::remove(dir.path() + "-within/root.key.counter");
    fs::copy_file(dir.path() + "/root.key.counter", dir.path() + "-within/root.key.counter");
    Daemon within(dir.path() + "-within");
    const OpenedState s = within.open();
    CHECK(s.quarantined.empty());
    CHECK(permanent_fill(s) == 1);  // undetected by design
    fs::remove_all(dir.path() + "-within");
  }
  {
    Daemon d(dir.path());  // this start is a new epoch
    d.open();
    d.save(3);
  }
  // The same copy restored now is older than the counter: every instance quarantined.
  fs::remove(copy + "/root.key.counter");
  fs::copy_file(dir.path() + "/root.key.counter", copy + "/root.key.counter");
  Daemon rolled_back(copy);
  const OpenedState s = rolled_back.open();
  REQUIRE(s.quarantined.size() == 1);
  CHECK(s.quarantined[0].second.find("rolled back") != std::string::npos);
  fs::remove_all(copy);
}

}  // namespace vtpm::state
