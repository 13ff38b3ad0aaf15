// The TIS FIFO driver against a register-level TIS model backed by swtpm.
#include "backends/hwtpm/tis_transport.h"

#include <doctest/doctest.h>

#include <future>
#include <thread>

#include "tests/support/hwtpm/crb_model.h"
#include "tests/unit/hwtpm/hwtpm_fixture.h"

namespace vtpm::testing {
namespace {

using hwtpm::TisOptions;
using hwtpm::TisTransport;

struct TisRig {
  explicit TisRig(std::uint16_t burst = 32, std::uint8_t locality = 2)
      : model(std::make_shared<TisModel>(swtpm.executor(), burst)) {
    auto created = TisTransport::create(model, TisOptions{locality, test_timeouts()});
    REQUIRE_MESSAGE(created.ok(), (created.ok() ? "" : created.error().message));
    tis = std::move(created.value());
  }
  Bytes ok(const Bytes& command) {
    auto response = tis->transact(command);
    REQUIRE_MESSAGE(response.ok(), (response.ok() ? "" : response.error().message));
    CHECK(rc_of(*response) == 0);
    return response.value();
  }
  std::string fails(const Bytes& command) {
    auto response = tis->transact(command);
    REQUIRE_FALSE(response.ok());
    return response.error().message;
  }
  // After any transaction: locality given back, TPM idle, no protocol violation.
  void check_clean() {
    CHECK_FALSE(model->active_locality().has_value());
    CHECK(model->pending_requests().empty());
    CHECK(model->state() == TisModel::State::kIdle);
    const auto violations = model->violations();
    for (const auto& v : violations) FAIL_CHECK(v);
  }
  Swtpm swtpm;
  std::shared_ptr<TisModel> model;
  std::unique_ptr<TisTransport> tis;
};

TEST_CASE("TIS: GetRandom, PCR_Extend/PCR_Read, GetCapability and a multi-burst Hash round-trip to swtpm") {
  for (std::uint16_t burst : {1, 7, 32, 64}) {
    CAPTURE(burst);
    TisRig rig(burst);
    const Bytes random = rig.ok(tpm2_get_random(16));
    CHECK(random.size() == 10 + 2 + 16);

    const auto before = last_32(rig.ok(tpm2_pcr_read(16)));
    rig.ok(tpm2_pcr_extend(16, 0xAB));
    const auto after = last_32(rig.ok(tpm2_pcr_read(16)));
    std::array<std::uint8_t, 32> digest{};
    digest.fill(0xAB);
    CHECK(after == extended(before, digest));

    const Bytes capability = rig.ok(tpm2_get_capability_manufacturer());
    CHECK(capability.size() == 10 + 1 + 4 + 4 + 8);  // moreData, capability, count, one property

    Bytes data(1000);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7);
    const Bytes hash = rig.ok(tpm2_hash(data));
    // outHash (TPM2B) follows the header; the validation ticket follows it.
    REQUIRE(hash.size() >= 10 + 2 + 32);
    CHECK(std::equal(hash.begin() + 12, hash.begin() + 44, sha256(data).begin()));
    CHECK(rig.model->executed() == 6);
    rig.check_clean();
  }
}

TEST_CASE("TIS: describe names the address, locality and the TPM's ids") {
  TisRig rig;
  CHECK(rig.tis->describe() == "TIS 0xfed40000 locality 2 (vendor:device 1014:001a)");
}

TEST_CASE("TIS: a malformed command is refused before the TPM is touched") {
  TisRig rig;
  Bytes command = tpm2_get_random(8);
  command.push_back(0);  // one byte more than the header says
  CHECK(rig.fails(command).find("header size 12 but 13 bytes given") != std::string::npos);
  CHECK(rig.fails(Bytes{0x80, 0x01, 0x00}).find("command refused") != std::string::npos);
  CHECK(rig.model->executed() == 0);
  rig.check_clean();
}

TEST_CASE("TIS: each fault gives a clear error within its timeout, and the next command succeeds") {
  struct Case {
    const char* name;
    TisFaults faults;
    const char* message;
    std::chrono::milliseconds bound;
  };
  TisFaults never_grant;
  never_grant.never_grant = true;
  TisFaults never_ready;
  never_ready.never_ready = true;
  TisFaults stuck;
  stuck.stuck_burst_count = true;
  TisFaults no_valid;
  no_valid.missing_sts_valid = true;
  TisFaults huge;
  huge.response_size_field = 0xFFFFFFF0u;
  TisFaults tiny;
  tiny.response_size_field = 4;
  TisFaults longer;
  longer.response_size_field = 40;  // GetRandom(8) answers 20 bytes
  TisFaults junk;
  junk.extra_response_bytes = 3;
  const Case cases[] = {
      {"locality never granted", never_grant,
       "TIS locality 2: activeLocality never granted in TPM_ACCESS (timeout 150 ms", 1000ms},
      {"never ready", never_ready, "TIS locality 2: commandReady never set in TPM_STS (timeout 300 ms", 1000ms},
      {"stuck burstCount", stuck, "TIS locality 2: burstCount in TPM_STS stayed 0 after 0 of 12 command bytes (timeout 150 ms)",
       1000ms},
      {"missing stsValid", no_valid, "TIS locality 2: stsValid never set after 11 of 12 command bytes (timeout 150 ms", 1000ms},
      {"garbage length", huge, "TIS locality 2: response header claims 4294967280 bytes (valid: 10..4096)", 1000ms},
      {"length below a header", tiny, "response header claims 4 bytes", 1000ms},
      {"length beyond the data", longer, "TIS locality 2: dataAvail cleared after 20 of 40 response bytes", 1000ms},
      {"data beyond the length", junk, "TIS locality 2: dataAvail still set after all 20 response bytes", 1000ms},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    TisRig rig(11);  // bursts of 11: the 12-byte GetRandom takes one burst plus the last byte
    rig.model->set_faults(c.faults);
    std::string message;
    const auto took = timed([&] { message = rig.fails(tpm2_get_random(8)); });
    CHECK_MESSAGE(message.find(c.message) != std::string::npos, message);
    CHECK(took < c.bound);
    // Recovery: the driver left the TPM idle and the locality free.
    rig.model->set_faults({});
    CHECK_FALSE(rig.model->active_locality().has_value());
    CHECK(rig.model->pending_requests().empty());
    rig.ok(tpm2_get_random(8));
    rig.check_clean();
  }
}

TEST_CASE("TIS: a response that never completes times out, is aborted, and the TPM serves the next command") {
  auto timeouts = test_timeouts();
  timeouts.command = 300ms;
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tis = TisTransport::create(model, TisOptions{2, timeouts});
  REQUIRE(tis.ok());
  TisFaults hang;
  hang.hang_execution = true;
  model->set_faults(hang);
  Result<Bytes> response = Error{};
  const auto took = timed([&] { response = (*tis)->transact(tpm2_get_random(8)); });
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().code == ErrorCode::kUnavailable);
  CHECK(response.error().message.find("no response: dataAvail not set within 300 ms of tpmGo") != std::string::npos);
  CHECK(took >= 300ms);
  CHECK(took < 1500ms);
  CHECK(model->aborted() == 1);
  model->set_faults({});
  auto next = (*tis)->transact(tpm2_get_random(8));
  REQUIRE(next.ok());
  CHECK(rc_of(*next) == 0);
  CHECK_FALSE(model->active_locality().has_value());
}

TEST_CASE("TIS: cancel from another thread ends a hung command with TPM_RC_CANCELED") {
  TisRig rig;
  TisFaults hang;
  hang.hang_execution = true;
  rig.model->set_faults(hang);
  auto pending = std::async(std::launch::async, [&] { return rig.tis->transact(tpm2_get_random(8)); });
  CHECK(pending.wait_for(100ms) == std::future_status::timeout);  // it really hangs
  rig.tis->cancel();
  REQUIRE(pending.wait_for(1s) == std::future_status::ready);
  auto response = pending.get();
  REQUIRE(response.ok());
  CHECK(rc_of(*response) == tpm::kTpm2RcCanceled);
  CHECK(rig.model->cancelled() == 1);
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));
  rig.check_clean();
}

TEST_CASE("TIS: a cancel before the command stops it before the TPM sees it, and is consumed") {
  TisRig rig;
  rig.tis->cancel();
  auto response = rig.tis->transact(tpm2_get_random(8));
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().code == ErrorCode::kCancelled);
  CHECK(response.error().message == "TIS locality 2: cancelled before the command was sent");
  CHECK(rig.model->executed() == 0);
  rig.ok(tpm2_get_random(8));  // the cancel does not linger
  CHECK(rig.model->cancelled() == 0);
  rig.check_clean();
}

TEST_CASE("TIS: while another locality holds the TPM the driver is refused, touches nothing, and withdraws") {
  TisRig rig;
  // dom0 (locality 0) takes the TPM and keeps it.
  REQUIRE(rig.model->write8(0x0000, 0x02).ok());
  REQUIRE(rig.model->active_locality() == 0);
  const std::string message = rig.fails(tpm2_get_random(8));
  CHECK_MESSAGE(message.find("TIS locality 2: activeLocality never granted") != std::string::npos, message);
  CHECK(message.find("another locality holds the TPM") != std::string::npos);
  CHECK(rig.model->violations().empty());        // no register of locality 2 written without the locality
  CHECK(rig.model->pending_requests().empty());  // the request was withdrawn, not left to be granted later
  CHECK(rig.model->executed() == 0);
  // dom0 lets go; vtpmd's next command goes through.
  REQUIRE(rig.model->write8(0x0000, 0x20).ok());
  rig.ok(tpm2_get_random(8));
  rig.check_clean();
}

TEST_CASE("TIS: a higher locality seizing the TPM mid-command is an error, not all-ones data") {
  TisRig rig;
  TisFaults hang;
  hang.hang_execution = true;
  rig.model->set_faults(hang);
  auto pending = std::async(std::launch::async, [&] { return rig.tis->transact(tpm2_get_random(8)); });
  for (int i = 0; i < 1000 && rig.model->state() != TisModel::State::kExecution; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(rig.model->state() == TisModel::State::kExecution);
  REQUIRE(rig.model->write8(0x4000, 0x08).ok());  // locality 4 seizes
  REQUIRE(rig.model->active_locality() == 4);
  REQUIRE(pending.wait_for(1s) == std::future_status::ready);
  auto response = pending.get();
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().message ==
        "TIS locality 2: TPM_STS reads all ones: the locality was taken away (seized) or the TPM stopped answering");
  CHECK((*rig.model->read8(0x2000) & 0x10) != 0);  // beenSeized, as the driver's locality sees it
  // Locality 4 gives the TPM back; the driver's next command goes through.
  REQUIRE(rig.model->write8(0x4000, 0x20).ok());
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));
  CHECK_FALSE(rig.model->active_locality().has_value());
}

TEST_CASE("TIS: two drivers at different localities take turns, each releasing after its command") {
  TisRig rig;
  auto dom0 = TisTransport::create(rig.model, TisOptions{0, test_timeouts()});
  REQUIRE(dom0.ok());
  for (int i = 0; i < 3; ++i) {
    rig.ok(tpm2_get_random(4));
    auto r = (*dom0)->transact(tpm2_get_random(4));
    REQUIRE(r.ok());
    CHECK(rc_of(*r) == 0);
  }
  rig.check_clean();
}

TEST_CASE("TIS: set_locality moves later commands; impossible localities are refused") {
  TisRig rig;
  CHECK(rig.tis->set_locality(5).error().code == ErrorCode::kInvalidArgument);
  REQUIRE(rig.tis->set_locality(3).ok());
  TisFaults never_grant;
  never_grant.never_grant = true;
  rig.model->set_faults(never_grant);
  CHECK(rig.fails(tpm2_get_random(8)).find("TIS locality 3:") == 0);
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));
  CHECK(rig.tis->describe().find("locality 3") != std::string::npos);
}

TEST_CASE("TIS: create refuses a bad locality and a TPM whose interface is CRB") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  CHECK(TisTransport::create(model, TisOptions{5, test_timeouts()}).error().message.find("locality 5 does not exist") !=
        std::string::npos);
  auto crb = std::make_shared<CrbModel>(swtpm.executor());
  const auto on_crb = TisTransport::create(crb, TisOptions{2, test_timeouts()});
  REQUIRE_FALSE(on_crb.ok());
  CHECK(on_crb.error().message.find("uses the CRB interface") != std::string::npos);
  CHECK(on_crb.error().message.find("use crb:ADDRESS") != std::string::npos);
}

TEST_CASE("MmioRegion: accesses outside the window or misaligned are errors, not reads beyond it") {
  Swtpm swtpm;
  TisModel model(swtpm.executor());
  auto read = model.read8(0x5000);
  REQUIRE_FALSE(read.ok());
  CHECK(read.error().message == "8-bit read at offset 0x5000 is outside the 0x5000-byte window of TIS model");
  CHECK_FALSE(model.read32(0x4FFE).ok());
  CHECK(model.read32(0x4FFE).error().message.find("outside") != std::string::npos);
  CHECK(model.read32(0x19).error().message.find("not 4-byte aligned") != std::string::npos);
  CHECK_FALSE(model.write8(SIZE_MAX, 1).ok());
  CHECK_FALSE(model.write32(SIZE_MAX - 1, 1).ok());
  CHECK(model.read8(0x4FFF).ok());
  CHECK(model.violations().empty());
}

}  // namespace
}  // namespace vtpm::testing
