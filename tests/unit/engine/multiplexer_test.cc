// The multiplexer against the real libtpms: scheduling order, isolation
// across swaps, TPM 1.2 residency, cancellation, power-on and quarantine.
#include <doctest/doctest.h>

#include <vector>

#include "src/engine/multiplexer.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::engine {
namespace {

using namespace vtpm::testing;

Uuid make_id(std::uint8_t n) { return test_uuid(0x10, n); }

class Harness {
 public:
  explicit Harness(MultiplexerOptions options = {}) : mux_(LibtpmsAdapter::instance(), options) {}
  ~Harness() {
    // Leave libtpms unloaded for the next test case.
    for (const auto& id : attached_) submit(id, JobKind::kDetach);
    drain();
  }

  JobId submit(const Uuid& id, JobKind kind, Bytes command = {}, std::uint8_t locality = 0) {
    Job job;
    job.id = next_++;
    job.instance = id;
    job.kind = kind;
    job.command = std::move(command);
    job.locality = locality;
    job.params.auto_startup = true;  // for kPowerOn: the instance's auto-startup may run
    mux_.enqueue(std::move(job), Clock::now());
    return next_ - 1;
  }

  Completion attach(const Uuid& id, TpmVersion version, StateBlobs blobs = {}, bool auto_startup = true) {
    Job job;
    job.id = next_++;
    job.instance = id;
    job.kind = JobKind::kAttach;
    job.params = InstanceParams{version, 4096, auto_startup};
    job.blobs = std::move(blobs);
    mux_.enqueue(std::move(job), Clock::now());
    attached_.push_back(id);
    return run_one();
  }

  Completion run_one() {
    REQUIRE(mux_.has_work());
    return mux_.run_next();
  }

  std::vector<Completion> drain() {
    std::vector<Completion> out;
    while (mux_.has_work()) out.push_back(mux_.run_next());
    return out;
  }

  Bytes exec(const Uuid& id, Bytes command, std::uint8_t locality = 0) {
    submit(id, JobKind::kExecute, std::move(command), locality);
    Completion c = run_one();
    REQUIRE_MESSAGE(c.ok, c.message);
    return c.response;
  }

  void forget(const Uuid& id) { std::erase(attached_, id); }
  Multiplexer& mux() { return mux_; }

 private:
  Multiplexer mux_;
  JobId next_ = 1;
  std::vector<Uuid> attached_;
};

Bytes pcr16(Harness& h, const Uuid& id) { return tail(h.exec(id, tpm2_pcr_read(16)), 32); }

}  // namespace

TEST_CASE("a flood of commands to one instance delays another by at most one command") {
  Harness h(MultiplexerOptions{std::chrono::microseconds(0)});
  const Uuid flooder = make_id(1);
  const Uuid victim = make_id(2);
  REQUIRE(h.attach(flooder, TpmVersion::k20).ok);
  REQUIRE(h.attach(victim, TpmVersion::k20).ok);
  for (int i = 0; i < 200; ++i) h.submit(flooder, JobKind::kExecute, tpm2_get_random(8));
  const JobId victim_job = h.submit(victim, JobKind::kExecute, tpm2_get_random(8));
  auto done = h.drain();
  REQUIRE(done.size() == 201);
  std::size_t position = 0;
  while (done[position].id != victim_job) ++position;
  CHECK(position <= 1);
  for (const auto& c : done) CHECK(c.ok);
}

TEST_CASE("instances with work are served round-robin, one command per turn") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2), c = make_id(3);
  for (const auto& id : {a, b, c}) REQUIRE(h.attach(id, TpmVersion::k20).ok);
  for (int i = 0; i < 3; ++i) {
    for (const auto& id : {a, b, c}) h.submit(id, JobKind::kExecute, tpm2_get_random(4));
  }
  auto done = h.drain();
  REQUIRE(done.size() == 9);
  for (std::size_t i = 0; i < done.size(); ++i) CHECK(done[i].instance == std::vector<Uuid>{a, b, c}[i % 3]);
}

TEST_CASE("PCR extends in one instance never show in another across swaps") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  REQUIRE(h.attach(b, TpmVersion::k20).ok);
  const Bytes zero = pcr16(h, b);
  for (int i = 0; i < 20; ++i) {
    h.exec(a, tpm2_pcr_extend(16, static_cast<std::uint8_t>(i)));
    CHECK(pcr16(h, b) == zero);
  }
  CHECK(pcr16(h, a) != zero);
}

TEST_CASE("a transient object survives being swapped out and back") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  REQUIRE(h.attach(b, TpmVersion::k20).ok);
  const Bytes created = h.exec(a, tpm2_create_primary_ecc());
  REQUIRE(tpm::response_code(created) == 0);
  const std::uint32_t handle = tpm::read_u32(created, 10);
  CHECK((handle >> 24) == 0x80);
  h.exec(b, tpm2_get_random(8));  // forces a swap
  h.exec(b, tpm2_create_primary_ecc());
  CHECK(tpm::response_code(h.exec(a, tpm2_flush_context(handle))) == 0);
  // Flushed now: a second flush of the same handle fails in the TPM.
  CHECK(tpm::response_code(h.exec(a, tpm2_flush_context(handle))) != 0);
}

TEST_CASE("commands for the loaded instance run without a swap") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  REQUIRE(h.attach(b, TpmVersion::k20).ok);
  h.submit(a, JobKind::kExecute, tpm2_get_random(4));
  Completion first = h.run_one();
  CHECK(first.swapped);  // b was loaded last
  // Restoring makes libtpms write its permanent state back unchanged; that
  // write is suppressed, so a swap alone never asks for a save.
  CHECK_FALSE(first.permanent.has_value());
  h.submit(a, JobKind::kExecute, tpm2_get_random(4));
  CHECK_FALSE(h.run_one().swapped);
}

TEST_CASE("switching between a TPM 1.2 and a TPM 2.0 instance keeps both working") {
  Harness h;
  const Uuid old_tpm = make_id(1), new_tpm = make_id(2);
  REQUIRE(h.attach(old_tpm, TpmVersion::k12).ok);
  REQUIRE(h.attach(new_tpm, TpmVersion::k20).ok);
  const Bytes r12 = h.exec(old_tpm, tpm12_extend(10, 0xab));
  CHECK(tpm::response_code(r12) == 0);
  const Bytes r20 = h.exec(new_tpm, tpm2_get_random(16));
  CHECK(tpm::response_code(r20) == 0);
  const Bytes pcr = h.exec(old_tpm, tpm12_pcr_read(10));
  CHECK(tail(pcr, 20) == tail(r12, 20));
}

TEST_CASE("a loaded TPM 1.2 instance keeps the engine for its slice while it has work") {
  Harness h(MultiplexerOptions{std::chrono::seconds(30)});
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k12).ok);
  REQUIRE(h.attach(b, TpmVersion::k12).ok);  // b is loaded now
  for (int i = 0; i < 5; ++i) {
    h.submit(a, JobKind::kExecute, tpm12_get_random(8));
    h.submit(b, JobKind::kExecute, tpm12_get_random(8));
  }
  auto done = h.drain();
  REQUIRE(done.size() == 10);
  // b runs all five before a gets its turn: one swap instead of ten.
  for (std::size_t i = 0; i < 5; ++i) CHECK(done[i].instance == b);
  std::size_t swaps = 0;
  for (const auto& c : done) swaps += c.swapped ? 1 : 0;
  CHECK(swaps == 1);
}

TEST_CASE("cancel drops an instance's queued jobs and leaves others alone") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  REQUIRE(h.attach(b, TpmVersion::k20).ok);
  for (int i = 0; i < 5; ++i) h.submit(a, JobKind::kExecute, tpm2_get_random(4));
  h.submit(b, JobKind::kExecute, tpm2_get_random(4));
  auto cancelled = h.mux().cancel_queued(a);
  CHECK(cancelled.size() == 5);
  for (const auto& c : cancelled) CHECK(c.error == ErrorCode::kCancelled);
  auto rest = h.drain();
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].instance == b);
}

TEST_CASE("power-on resets PCRs and keeps NV") {
  Harness h;
  const Uuid a = make_id(1);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  const Bytes zero = pcr16(h, a);
  h.exec(a, tpm2_pcr_extend(16, 7));
  h.submit(a, JobKind::kExecute, tpm2_nv_define(0x01500001));
  Completion defined = h.run_one();
  CHECK(tpm::response_code(defined.response) == 0);
  CHECK(defined.permanent.has_value());  // NV changed: the state must be saved
  h.submit(a, JobKind::kPowerOn);
  REQUIRE(h.run_one().ok);
  CHECK(pcr16(h, a) == zero);
  // The index survived: defining it again fails with TPM_RC_NV_DEFINED.
  CHECK(tpm::response_code(h.exec(a, tpm2_nv_define(0x01500001))) == 0x14c);
}

TEST_CASE("commands that change nothing persistent report no permanent state") {
  Harness h;
  const Uuid a = make_id(1);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  h.submit(a, JobKind::kExecute, tpm2_get_random(8));
  CHECK_FALSE(h.run_one().permanent.has_value());
}

TEST_CASE("locality reaches libtpms per command") {
  Harness h;
  const Uuid a = make_id(1);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  // PC Client: PCR 20 may be extended from localities 2-4, not from 0.
  CHECK(tpm::response_code(h.exec(a, tpm2_pcr_extend(20, 1), 0)) != 0);
  CHECK(tpm::response_code(h.exec(a, tpm2_pcr_extend(20, 1), 2)) == 0);
}

TEST_CASE("snapshot and restore resume an instance with its PCRs") {
  Harness h;
  const Uuid a = make_id(1), copy = make_id(9);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  h.exec(a, tpm2_pcr_extend(16, 3));
  const Bytes value = pcr16(h, a);
  h.submit(a, JobKind::kSnapshot);
  Completion snap = h.run_one();
  REQUIRE(snap.ok);
  StateBlobs blobs{*snap.permanent, *snap.volatile_state, {}};
  REQUIRE(h.attach(copy, TpmVersion::k20, blobs, false).ok);
  CHECK(pcr16(h, copy) == value);
}

TEST_CASE("an instance whose state cannot be loaded is quarantined; others keep working") {
  Harness h;
  const Uuid bad = make_id(1), good = make_id(2);
  REQUIRE(h.attach(good, TpmVersion::k20).ok);
  StateBlobs garbage{Bytes(500, 0x5a), {}, {}};
  REQUIRE(h.attach(bad, TpmVersion::k20, garbage, false).ok);  // loaded lazily
  h.submit(bad, JobKind::kExecute, tpm2_get_random(4));
  Completion failed = h.run_one();
  CHECK_FALSE(failed.ok);
  h.submit(bad, JobKind::kExecute, tpm2_get_random(4));
  CHECK(h.run_one().error == ErrorCode::kCorrupt);
  CHECK(tpm::response_code(h.exec(good, tpm2_get_random(4))) == 0);
}

TEST_CASE("jobs for an instance that is not hosted fail with not_found") {
  Harness h;
  h.submit(make_id(42), JobKind::kExecute, tpm2_get_random(4));
  CHECK(h.run_one().error == ErrorCode::kNotFound);
}

}  // namespace vtpm::engine

namespace vtpm::engine {

TEST_CASE("the H-CRTM hash sequence sets the established bit; only locality 3-4 reset it") {
  Harness h;
  const Uuid a = make_id(1), b = make_id(2);
  REQUIRE(h.attach(a, TpmVersion::k20).ok);
  REQUIRE(h.attach(b, TpmVersion::k20).ok);
  auto signal = [&](const Uuid& id, JobKind kind, std::uint8_t locality, Bytes data = {}) {
    h.submit(id, kind, std::move(data), locality);
    Completion c = h.run_one();
    REQUIRE(c.ok);
    REQUIRE(c.response.size() >= 4);
    return c;
  };
  auto established = [&](const Uuid& id) { return signal(id, JobKind::kEstablishedGet, 0).response.at(4) != 0; };
  CHECK_FALSE(established(a));
  CHECK(tpm::read_u32(signal(a, JobKind::kHashStart, 4).response, 0) == 0);
  CHECK(tpm::read_u32(signal(a, JobKind::kHashData, 4, Bytes{'c', 'r', 't', 'm'}).response, 0) == 0);
  Completion end = signal(a, JobKind::kHashEnd, 4);
  CHECK(tpm::read_u32(end.response, 0) == 0);
  CHECK(established(a));
  CHECK_FALSE(established(b));  // per instance, across swaps
  CHECK(tpm::read_u32(signal(a, JobKind::kEstablishedReset, 0).response, 0) != 0);
  CHECK(established(a));
  CHECK(tpm::read_u32(signal(a, JobKind::kEstablishedReset, 3).response, 0) == 0);
  CHECK_FALSE(established(a));
}

}  // namespace vtpm::engine
