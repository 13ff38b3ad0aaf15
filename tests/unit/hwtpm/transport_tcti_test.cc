// The TCTI over the MMIO drivers: real ESAPI on top, register models and
// swtpm below; then the TCTI contract call by call.
#include "backends/hwtpm/transport_tcti.h"

#include <doctest/doctest.h>
#include <tss2/tss2_esys.h>

#include <cstring>
#include <memory>
#include <thread>

#include "backends/hwtpm/crb_transport.h"
#include "backends/hwtpm/tis_transport.h"
#include "tests/support/hwtpm/crb_model.h"
#include "tests/unit/hwtpm/hwtpm_fixture.h"

namespace vtpm::testing {
namespace {

using hwtpm::TctiHandle;

struct EsysDeleter {
  void operator()(ESYS_CONTEXT* c) const { Esys_Finalize(&c); }
};
using EsysContext = std::unique_ptr<ESYS_CONTEXT, EsysDeleter>;
struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

EsysContext esys_on(const TctiHandle& tcti) {
  ESYS_CONTEXT* raw = nullptr;
  REQUIRE(Esys_Initialize(&raw, tcti.get(), nullptr) == TSS2_RC_SUCCESS);
  return EsysContext(raw);
}

TctiHandle tis_tcti(const std::shared_ptr<TisModel>& model, std::uint8_t locality = 2) {
  auto tis = hwtpm::TisTransport::create(model, hwtpm::TisOptions{locality, test_timeouts()});
  REQUIRE(tis.ok());
  return hwtpm::make_transport_tcti(std::move(tis.value()));
}

TctiHandle crb_tcti(const std::shared_ptr<CrbModel>& model) {
  auto crb = hwtpm::CrbTransport::create(model, hwtpm::CrbOptions{2, test_timeouts()});
  REQUIRE(crb.ok());
  return hwtpm::make_transport_tcti(std::move(crb.value()));
}

void esys_round_trip(const TctiHandle& tcti) {
  auto esys = esys_on(tcti);
  TPM2B_DIGEST* random_raw = nullptr;
  REQUIRE(Esys_GetRandom(esys.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 16, &random_raw) == TSS2_RC_SUCCESS);
  EsysPtr<TPM2B_DIGEST> random(random_raw);
  CHECK(random->size == 16);

  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  selection.pcrSelections[0].pcrSelect[2] = 0x01;  // PCR 16
  auto read_pcr16 = [&] {
    UINT32 counter = 0;
    TPML_PCR_SELECTION* out_raw = nullptr;
    TPML_DIGEST* values_raw = nullptr;
    REQUIRE(Esys_PCR_Read(esys.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection, &counter, &out_raw,
                          &values_raw) == TSS2_RC_SUCCESS);
    EsysPtr<TPML_PCR_SELECTION> out(out_raw);
    EsysPtr<TPML_DIGEST> values(values_raw);
    REQUIRE(values->count == 1);
    REQUIRE(values->digests[0].size == 32);
    std::array<std::uint8_t, 32> v{};
    std::memcpy(v.data(), values->digests[0].buffer, 32);
    return v;
  };
  const auto before = read_pcr16();
  TPML_DIGEST_VALUES digests{};
  digests.count = 1;
  digests.digests[0].hashAlg = TPM2_ALG_SHA256;
  std::memset(digests.digests[0].digest.sha256, 0xC3, 32);
  REQUIRE(Esys_PCR_Extend(esys.get(), ESYS_TR_PCR16, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests) ==
          TSS2_RC_SUCCESS);
  std::array<std::uint8_t, 32> digest{};
  digest.fill(0xC3);
  CHECK(read_pcr16() == extended(before, digest));
}

TEST_CASE("TCTI over TIS: ESAPI GetRandom, PCR_Extend and PCR_Read reach swtpm through the register model") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  esys_round_trip(tcti);
  CHECK(model->executed() == 4);
  CHECK(model->violations().empty());
  CHECK_FALSE(model->active_locality().has_value());
}

TEST_CASE("TCTI over CRB: ESAPI GetRandom, PCR_Extend and PCR_Read reach swtpm through the register model") {
  Swtpm swtpm;
  auto model = std::make_shared<CrbModel>(swtpm.executor());
  auto tcti = crb_tcti(model);
  esys_round_trip(tcti);
  CHECK(model->executed() == 4);
  CHECK(model->violations().empty());
  CHECK_FALSE(model->active_locality().has_value());
}

TEST_CASE("TCTI contract: size query, short buffer, sequence errors, bad input, poll handles, sticky") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  TSS2_TCTI_CONTEXT* c = tcti.get();
  CHECK(TSS2_TCTI_MAGIC(c) == hwtpm::kTransportTctiMagic);
  CHECK(TSS2_TCTI_VERSION(c) == 2);

  std::uint8_t buffer[4096];
  size_t size = sizeof buffer;
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, TSS2_TCTI_TIMEOUT_BLOCK) == TSS2_TCTI_RC_BAD_SEQUENCE);
  CHECK(Tss2_Tcti_Cancel(c) == TSS2_TCTI_RC_BAD_SEQUENCE);

  Bytes bad = tpm2_get_random(8);
  bad[5] = 99;  // header size disagrees with the length
  CHECK(Tss2_Tcti_Transmit(c, bad.size(), bad.data()) == TSS2_TCTI_RC_BAD_VALUE);
  CHECK(hwtpm::transport_tcti_last_error(c) == "command header size 99 but 12 bytes given");
  CHECK(Tss2_Tcti_Transmit(c, 0, nullptr) == TSS2_TCTI_RC_BAD_REFERENCE);

  const Bytes command = tpm2_get_random(8);
  REQUIRE(Tss2_Tcti_Transmit(c, command.size(), command.data()) == TSS2_RC_SUCCESS);
  CHECK(Tss2_Tcti_Transmit(c, command.size(), command.data()) == TSS2_TCTI_RC_BAD_SEQUENCE);
  CHECK(Tss2_Tcti_SetLocality(c, 1) == TSS2_TCTI_RC_BAD_SEQUENCE);
  CHECK(Tss2_Tcti_Receive(c, nullptr, buffer, 0) == TSS2_TCTI_RC_BAD_REFERENCE);
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, -2) == TSS2_TCTI_RC_BAD_VALUE);
  size = 0;
  REQUIRE(Tss2_Tcti_Receive(c, &size, nullptr, TSS2_TCTI_TIMEOUT_BLOCK) == TSS2_RC_SUCCESS);
  CHECK(size == 20);  // the size query
  size = 19;
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, 0) == TSS2_TCTI_RC_INSUFFICIENT_BUFFER);
  CHECK(size == 20);
  size = sizeof buffer;
  REQUIRE(Tss2_Tcti_Receive(c, &size, buffer, 0) == TSS2_RC_SUCCESS);
  CHECK(size == 20);
  CHECK(rc_of(Bytes(buffer, buffer + size)) == 0);
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, 0) == TSS2_TCTI_RC_BAD_SEQUENCE);  // already taken

  size_t handles = 0;
  CHECK(Tss2_Tcti_GetPollHandles(c, nullptr, &handles) == TSS2_TCTI_RC_NOT_IMPLEMENTED);
  TPM2_HANDLE handle = 0x80000000;
  CHECK(Tss2_Tcti_MakeSticky(c, &handle, 1) == TSS2_TCTI_RC_NOT_IMPLEMENTED);
  CHECK(model->violations().empty());
}

TEST_CASE("TCTI contract: receive with a timeout returns TRY_AGAIN while the TPM works; cancel ends it") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  TSS2_TCTI_CONTEXT* c = tcti.get();
  TisFaults hang;
  hang.hang_execution = true;
  model->set_faults(hang);
  const Bytes command = tpm2_get_random(8);
  REQUIRE(Tss2_Tcti_Transmit(c, command.size(), command.data()) == TSS2_RC_SUCCESS);
  std::uint8_t buffer[4096];
  size_t size = sizeof buffer;
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, 0) == TSS2_TCTI_RC_TRY_AGAIN);
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, 50) == TSS2_TCTI_RC_TRY_AGAIN);
  REQUIRE(Tss2_Tcti_Cancel(c) == TSS2_RC_SUCCESS);
  size = sizeof buffer;
  REQUIRE(Tss2_Tcti_Receive(c, &size, buffer, 1000) == TSS2_RC_SUCCESS);
  CHECK(rc_of(Bytes(buffer, buffer + size)) == tpm::kTpm2RcCanceled);
  model->set_faults({});
  REQUIRE(Tss2_Tcti_Transmit(c, command.size(), command.data()) == TSS2_RC_SUCCESS);
  size = sizeof buffer;
  REQUIRE(Tss2_Tcti_Receive(c, &size, buffer, TSS2_TCTI_TIMEOUT_BLOCK) == TSS2_RC_SUCCESS);
  CHECK(rc_of(Bytes(buffer, buffer + size)) == 0);
}

TEST_CASE("TCTI: a driver failure is TSS2_TCTI_RC_IO_ERROR with the driver's message kept; a new ESAPI context recovers") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  TisFaults never_grant;
  never_grant.never_grant = true;
  model->set_faults(never_grant);
  auto esys = esys_on(tcti);
  TPM2B_DIGEST* random = nullptr;
  const TSS2_RC rc = Esys_GetRandom(esys.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &random);
  CHECK(rc == TSS2_TCTI_RC_IO_ERROR);
  CHECK(random == nullptr);
  CHECK(hwtpm::transport_tcti_last_error(tcti.get()).find("TIS locality 2: activeLocality never granted") == 0);
  // ESAPI gives up on a context after a TCTI error; the TCTI itself is
  // ready for the next command, so a fresh ESAPI context works.
  model->set_faults({});
  CHECK(Esys_GetRandom(esys.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &random) == TSS2_ESYS_RC_BAD_SEQUENCE);
  esys.reset();
  auto fresh = esys_on(tcti);
  REQUIRE(Esys_GetRandom(fresh.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &random) == TSS2_RC_SUCCESS);
  EsysPtr<TPM2B_DIGEST> owned(random);
  CHECK(owned->size == 8);
}

TEST_CASE("TCTI: setLocality moves the driver; an impossible locality is BAD_VALUE") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  TSS2_TCTI_CONTEXT* c = tcti.get();
  CHECK(Tss2_Tcti_SetLocality(c, 9) == TSS2_TCTI_RC_BAD_VALUE);
  CHECK(hwtpm::transport_tcti_last_error(c).find("cannot move to locality 9") != std::string::npos);
  REQUIRE(Tss2_Tcti_SetLocality(c, 4) == TSS2_RC_SUCCESS);
  // Nobody is granted the TPM: the failure names the locality asked for.
  TisFaults never_grant;
  never_grant.never_grant = true;
  model->set_faults(never_grant);
  const Bytes command = tpm2_get_random(8);
  REQUIRE(Tss2_Tcti_Transmit(c, command.size(), command.data()) == TSS2_RC_SUCCESS);
  std::uint8_t buffer[64];
  size_t size = sizeof buffer;
  CHECK(Tss2_Tcti_Receive(c, &size, buffer, TSS2_TCTI_TIMEOUT_BLOCK) == TSS2_TCTI_RC_IO_ERROR);
  CHECK(hwtpm::transport_tcti_last_error(c).find("TIS locality 4:") == 0);
}

TEST_CASE("TCTI: Tss2_Tcti_Finalize while a command hangs cancels it and returns; the handle then frees") {
  Swtpm swtpm;
  auto model = std::make_shared<TisModel>(swtpm.executor());
  auto tcti = tis_tcti(model);
  TisFaults hang;
  hang.hang_execution = true;
  model->set_faults(hang);
  const Bytes command = tpm2_get_random(8);
  REQUIRE(Tss2_Tcti_Transmit(tcti.get(), command.size(), command.data()) == TSS2_RC_SUCCESS);
  for (int i = 0; i < 1000 && model->state() != TisModel::State::kExecution; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(model->state() == TisModel::State::kExecution);
  const auto took = timed([&] { Tss2_Tcti_Finalize(tcti.get()); });
  CHECK(took < 1000ms);
  CHECK(model->cancelled() == 1);
  CHECK(Tss2_Tcti_Transmit(tcti.get(), command.size(), command.data()) == TSS2_TCTI_RC_BAD_CONTEXT);
}

}  // namespace
}  // namespace vtpm::testing
