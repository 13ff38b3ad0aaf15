// The CRB driver against a register-level CRB model backed by swtpm.
#include "backends/hwtpm/crb_transport.h"

#include <doctest/doctest.h>

#include <future>
#include <thread>

#include "tests/support/hwtpm/crb_model.h"
#include "tests/unit/hwtpm/hwtpm_fixture.h"

namespace vtpm::testing {
namespace {

using hwtpm::CrbOptions;
using hwtpm::CrbTransport;

struct CrbRig {
  explicit CrbRig(std::uint8_t locality = 2, hwtpm::MmioTimeouts timeouts = test_timeouts())
      : model(std::make_shared<CrbModel>(swtpm.executor())) {
    auto created = CrbTransport::create(model, CrbOptions{locality, timeouts});
    REQUIRE_MESSAGE(created.ok(), (created.ok() ? "" : created.error().message));
    crb = std::move(created.value());
  }
  Bytes ok(const Bytes& command) {
    auto response = crb->transact(command);
    REQUIRE_MESSAGE(response.ok(), (response.ok() ? "" : response.error().message));
    CHECK(rc_of(*response) == 0);
    return response.value();
  }
  std::string fails(const Bytes& command) {
    auto response = crb->transact(command);
    REQUIRE_FALSE(response.ok());
    return response.error().message;
  }
  void check_clean() {
    CHECK_FALSE(model->active_locality().has_value());
    CHECK(model->pending_requests().empty());
    CHECK(model->state() == CrbModel::State::kIdle);
    for (const auto& v : model->violations()) FAIL_CHECK(v);
  }
  Swtpm swtpm;
  std::shared_ptr<CrbModel> model;
  std::unique_ptr<CrbTransport> crb;
};

TEST_CASE("CRB: GetRandom, PCR_Extend/PCR_Read, GetCapability and Hash round-trip to swtpm") {
  CrbRig rig;
  CHECK(rig.ok(tpm2_get_random(32)).size() == 10 + 2 + 32);
  const auto before = last_32(rig.ok(tpm2_pcr_read(16)));
  rig.ok(tpm2_pcr_extend(16, 0x5A));
  std::array<std::uint8_t, 32> digest{};
  digest.fill(0x5A);
  CHECK(last_32(rig.ok(tpm2_pcr_read(16))) == extended(before, digest));
  CHECK(rig.ok(tpm2_get_capability_manufacturer()).size() == 10 + 1 + 4 + 4 + 8);
  Bytes data(1024, 0x33);
  const Bytes hash = rig.ok(tpm2_hash(data));
  CHECK(std::equal(hash.begin() + 12, hash.begin() + 44, sha256(data).begin()));
  CHECK(rig.model->executed() == 6);
  CHECK(rig.crb->describe() == "CRB 0xfed40000 locality 2 (vendor:device 1014:001b)");
  rig.check_clean();
}

TEST_CASE("CRB: each fault gives a clear error within its timeout, and the next command succeeds") {
  struct Case {
    const char* name;
    CrbFaults faults;
    const char* message;
  };
  CrbFaults never_grant;
  never_grant.never_grant = true;
  CrbFaults never_ready;
  never_ready.never_ready = true;
  CrbFaults fatal;
  fatal.fatal = true;
  CrbFaults longer;
  longer.response_size_field = 0x2000;
  CrbFaults tiny;
  tiny.response_size_field = 3;
  CrbFaults outside;
  outside.command_buffer_address = 0xFED40000ull + 0x4F00;  // starts inside, runs past the window
  CrbFaults below;
  below.command_buffer_address = 0x1000;
  CrbFaults rsp_too_big;
  rsp_too_big.response_buffer_size = 0x10000;
  const Case cases[] = {
      {"locality never granted", never_grant,
       "CRB locality 2: locality never granted in TPM_LOC_STS (timeout 150 ms"},
      {"never ready", never_ready, "CRB locality 2: cmdReady never cleared in TPM_CRB_CTRL_REQ (timeout 150 ms"},
      {"fatal", fatal, "CRB locality 2: tpmSts set in TPM_CRB_CTRL_STS (0x00000003): the TPM is in a fatal error state"},
      {"response longer than the buffer", longer,
       "CRB locality 2: response header claims 8192 bytes but the response buffer holds 3968 (limit 3968)"},
      {"length below a header", tiny, "response header claims 3 bytes"},
      {"command buffer past the window", outside,
       "CRB locality 2: command buffer [0xfed44f00, +0xf80) lies outside the mapped window [0xfed40000, +0x5000)"},
      {"command buffer below the window", below, "command buffer [0x00001000, +0xf80) lies outside"},
      {"response buffer past the window", rsp_too_big, "response buffer [0xfed42080, +0x10000) lies outside"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CrbRig rig;
    rig.model->set_faults(c.faults);
    std::string message;
    const auto took = timed([&] { message = rig.fails(tpm2_get_random(8)); });
    CHECK_MESSAGE(message.find(c.message) != std::string::npos, message);
    CHECK(took < 1000ms);
    for (const auto& v : rig.model->violations()) FAIL_CHECK(v);  // nothing touched outside the rules
    rig.model->set_faults({});
    rig.ok(tpm2_get_random(8));
    rig.check_clean();
  }
}

TEST_CASE("CRB: a command larger than the command buffer is refused before START") {
  CrbRig rig;
  Bytes data(1024, 1);
  Bytes huge = tpm2_hash(data);
  huge.insert(huge.end() - 6, 4000, 0);  // inflate past 0xF80 and fix the size field
  huge = finish(huge);
  const std::string message = rig.fails(huge);
  CHECK_MESSAGE(message.find("does not fit the 3968-byte command buffer") != std::string::npos, message);
  CHECK(rig.model->executed() == 0);
  rig.check_clean();
}

TEST_CASE("CRB: a command that never completes times out and is cancelled; the next one succeeds") {
  auto timeouts = test_timeouts();
  timeouts.command = 300ms;
  CrbRig rig(2, timeouts);
  CrbFaults hang;
  hang.hang_execution = true;
  rig.model->set_faults(hang);
  std::string message;
  const auto took = timed([&] { message = rig.fails(tpm2_get_random(8)); });
  CHECK_MESSAGE(message.find("no response: START in TPM_CRB_CTRL_START not cleared within 300 ms") !=
                    std::string::npos,
                message);
  CHECK(took >= 300ms);
  CHECK(took < 1500ms);
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));
  rig.check_clean();
}

TEST_CASE("CRB: cancel from another thread ends a hung command with TPM_RC_CANCELED and clears CTRL_CANCEL") {
  CrbRig rig;
  CrbFaults hang;
  hang.hang_execution = true;
  rig.model->set_faults(hang);
  auto pending = std::async(std::launch::async, [&] { return rig.crb->transact(tpm2_get_random(8)); });
  CHECK(pending.wait_for(100ms) == std::future_status::timeout);
  rig.crb->cancel();
  REQUIRE(pending.wait_for(1s) == std::future_status::ready);
  auto response = pending.get();
  REQUIRE(response.ok());
  CHECK(rc_of(*response) == tpm::kTpm2RcCanceled);
  CHECK(rig.model->cancelled() == 1);
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));  // the model refuses START while CTRL_CANCEL is still set
  rig.check_clean();
}

TEST_CASE("CRB: while another locality holds the TPM the driver is refused and withdraws its request") {
  CrbRig rig;
  REQUIRE(rig.model->write32(0x0008, 0x01).ok());  // locality 0 requests access and keeps it
  REQUIRE(rig.model->active_locality() == 0);
  const std::string message = rig.fails(tpm2_get_random(8));
  CHECK_MESSAGE(message.find("CRB locality 2: locality never granted") != std::string::npos, message);
  CHECK(rig.model->violations().empty());
  CHECK(rig.model->pending_requests().empty());
  REQUIRE(rig.model->write32(0x0008, 0x02).ok());  // locality 0 relinquishes
  rig.ok(tpm2_get_random(8));
  rig.check_clean();
}

TEST_CASE("CRB: a higher locality seizing the TPM mid-command is an error, not all-ones data") {
  CrbRig rig;
  CrbFaults hang;
  hang.hang_execution = true;
  rig.model->set_faults(hang);
  auto pending = std::async(std::launch::async, [&] { return rig.crb->transact(tpm2_get_random(8)); });
  for (int i = 0; i < 1000 && rig.model->state() != CrbModel::State::kExecution; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(rig.model->state() == CrbModel::State::kExecution);
  REQUIRE(rig.model->write32(0x4008, 0x04).ok());  // locality 4 seizes
  REQUIRE(pending.wait_for(1s) == std::future_status::ready);
  auto response = pending.get();
  REQUIRE_FALSE(response.ok());
  CHECK(response.error().message.find("CRB locality 2: TPM_CRB_CTRL_START reads all ones") == 0);
  CHECK((*rig.model->read32(0x200C) & 0x02) != 0);  // beenSeized in locality 2's LOC_STS
  REQUIRE(rig.model->write32(0x4008, 0x02).ok());   // locality 4 relinquishes
  rig.model->set_faults({});
  rig.ok(tpm2_get_random(8));
  CHECK_FALSE(rig.model->active_locality().has_value());
}

TEST_CASE("CRB: create refuses a bad locality and a TPM whose interface is FIFO") {
  Swtpm swtpm;
  auto model = std::make_shared<CrbModel>(swtpm.executor());
  CHECK(CrbTransport::create(model, CrbOptions{7, test_timeouts()}).error().message.find("locality 7") !=
        std::string::npos);
  auto tis = std::make_shared<TisModel>(swtpm.executor());
  const auto on_tis = CrbTransport::create(tis, CrbOptions{2, test_timeouts()});
  REQUIRE_FALSE(on_tis.ok());
  CHECK(on_tis.error().message.find("use tis:ADDRESS") != std::string::npos);
}

}  // namespace
}  // namespace vtpm::testing
