// The TPM root of trust against a real TPM (swtpm), reached the way a dom0
// without a TPM driver reaches one: through the TIS or CRB register models
// and our MMIO drivers. The executor between the model and swtpm records
// every byte on the "bus" and can make the TPM answer busy.
#include "state/tpm_root.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "backends/hwtpm/mmio_spec.h"
#include "backends/hwtpm/transport_tcti.h"
#include "tests/support/hwtpm/crb_model.h"
#include "tests/support/hwtpm/swtpm_child.h"
#include "tests/support/hwtpm/tis_model.h"
#include "tests/unit/hwtpm/hwtpm_fixture.h"

namespace vtpm::state {
namespace {

using vtpm::testing::Executor;

// What crossed the bus, both ways, and a knob for busy answers.
struct Bus {
  Bytes sent;
  Bytes received;
  std::atomic<int> busy_answers_left{0};
  std::uint32_t busy_code = TPM2_RC_RETRY;
  int commands = 0;

  bool saw(std::span<const std::uint8_t> needle) const {
    auto in = [&](const Bytes& hay) {
      return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
    };
    return in(sent) || in(received);
  }
};

Executor recording(vtpm::testing::SwtpmChild& tpm, Bus& bus) {
  return [&tpm, &bus](std::span<const std::uint8_t> command) {
    ++bus.commands;
    bus.sent.insert(bus.sent.end(), command.begin(), command.end());
    std::vector<std::uint8_t> response;
    if (bus.busy_answers_left > 0) {
      --bus.busy_answers_left;
      response = {0x80, 0x01, 0, 0, 0, 10, static_cast<std::uint8_t>(bus.busy_code >> 24),
                  static_cast<std::uint8_t>(bus.busy_code >> 16), static_cast<std::uint8_t>(bus.busy_code >> 8),
                  static_cast<std::uint8_t>(bus.busy_code)};
    } else {
      auto r = tpm.execute(command);
      REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
      response = std::move(r.value());
    }
    bus.received.insert(bus.received.end(), response.begin(), response.end());
    return response;
  };
}

// A TPM behind a TIS (or CRB) register model: each connect builds a fresh
// model and driver over the same swtpm, as a reconnect after a fault would.
struct ModelTpm {
  explicit ModelTpm(hwtpm::MmioInterface interface) : interface(interface) {
    auto started = vtpm::testing::SwtpmChild::start();
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
    child = std::move(started.value());
  }

  TpmRootOptions options() {
    TpmRootOptions o;
    o.channel = interface == hwtpm::MmioInterface::kTis ? "tis model" : "crb model";
    o.first_backoff = std::chrono::milliseconds(10);
    o.channel_error = [](TSS2_TCTI_CONTEXT* tcti) { return hwtpm::transport_tcti_last_error(tcti); };
    o.connect = [this]() -> Result<hwtpm::TctiHandle> {
      ++connects;
      std::shared_ptr<hwtpm::MmioRegion> region;
      if (interface == hwtpm::MmioInterface::kTis) {
        auto tis = std::make_shared<vtpm::testing::TisModel>(recording(*child, bus));
        tis->set_faults(tis_faults);
        region = tis;
      } else {
        region = std::make_shared<vtpm::testing::CrbModel>(recording(*child, bus));
      }
      hwtpm::MmioSpec spec;
      spec.interface = interface;
      spec.address = region->physical_base();
      auto transport = hwtpm::open_mmio_transport(spec, region, vtpm::testing::test_timeouts());
      if (!transport) return transport.error();
      return hwtpm::make_transport_tcti(std::move(*transport));
    };
    return o;
  }

  // Opening over a broken interface must fail, naming the register.
  std::unique_ptr<TpmRootOfTrust> open_failing_or_null() {
    auto root = TpmRootOfTrust::open(options());
    if (root) return std::move(*root);
    CHECK(root.error().code == ErrorCode::kUnavailable);
    CHECK_MESSAGE(root.error().message.find("burstCount") != std::string::npos, root.error().message);
    return nullptr;
  }

  std::unique_ptr<TpmRootOfTrust> open() {
    auto root = TpmRootOfTrust::open(options());
    REQUIRE_MESSAGE(root.ok(), (root.ok() ? "" : root.error().message));
    return std::move(*root);
  }

  hwtpm::MmioInterface interface;
  std::unique_ptr<vtpm::testing::SwtpmChild> child;
  Bus bus;
  int connects = 0;
  vtpm::testing::TisFaults tis_faults;  // for the models of later connects
};

SecretKey distinctive_key() {
  Bytes b(kKeySize);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(0xA5 ^ (i * 7));
  return SecretKey(b);
}

void seal_and_unseal(hwtpm::MmioInterface interface) {
  ModelTpm tpm(interface);
  const SecretKey key = distinctive_key();
  Bytes sealed;
  {
    auto root = tpm.open();
    auto s = root->seal(key);
    REQUIRE_MESSAGE(s.ok(), (s.ok() ? "" : s.error().message));
    sealed = *s;
  }
  auto root = tpm.open();  // a restart: new connection, same TPM
  auto unsealed = root->unseal(sealed);
  REQUIRE_MESSAGE(unsealed.ok(), (unsealed.ok() ? "" : unsealed.error().message));
  CHECK(std::equal(unsealed->bytes().begin(), unsealed->bytes().end(), key.bytes().begin()));

  // The wire check: the key never crossed the bus in clear, neither into
  // TPM2_Create nor out of TPM2_Unseal (both parameter-encrypted) ...
  CHECK_FALSE(tpm.bus.saw(key.bytes()));
  CHECK_FALSE(tpm.bus.saw(key.bytes().first(8)));
  CHECK_FALSE(tpm.bus.saw(key.bytes().last(8)));
  // ... while the recorder does see what is not secret: the sealed
  // object's private area (encrypted by the TPM) went back in TPM2_Load.
  const std::span<const std::uint8_t> pub_tail = std::span(sealed).last(64);
  CHECK(tpm.bus.saw(pub_tail));
  CHECK(tpm.bus.commands > 10);
}

}  // namespace

TEST_CASE("tpm root: seal and unseal through the TIS driver; the key never crosses the bus in clear") {
  seal_and_unseal(hwtpm::MmioInterface::kTis);
}

TEST_CASE("tpm root: seal and unseal through the CRB driver; the key never crosses the bus in clear") {
  seal_and_unseal(hwtpm::MmioInterface::kCrb);
}

TEST_CASE("tpm root: a changed PCR refuses the unseal with the reason") {
  ModelTpm tpm(hwtpm::MmioInterface::kTis);
  auto root = tpm.open();
  auto sealed = root->seal(distinctive_key());
  REQUIRE(sealed.ok());
  // Firmware measured something new into PCR 7.
  const auto extend = vtpm::testing::tpm2_pcr_extend(7, 0x77);
  REQUIRE(vtpm::testing::rc_of(tpm.child->execute(extend).value()) == 0);
  auto unsealed = root->unseal(*sealed);
  REQUIRE_FALSE(unsealed.ok());
  CHECK(unsealed.error().code == ErrorCode::kPermissionDenied);
  CHECK(unsealed.error().message.find("PCRs sha256:0,2,4,7 differ") != std::string::npos);
}

TEST_CASE("tpm root: busy answers (RETRY, YIELDED, TESTING, NV_RATE) are waited out") {
  ModelTpm tpm(hwtpm::MmioInterface::kTis);
  auto root = tpm.open();
  auto sealed = root->seal(distinctive_key());
  REQUIRE(sealed.ok());
  for (std::uint32_t code : {TPM2_RC_RETRY, TPM2_RC_YIELDED, TPM2_RC_TESTING, TPM2_RC_NV_RATE}) {
    CAPTURE(code);
    tpm.bus.busy_code = code;
    // ESAPI itself resubmits on RETRY, YIELDED and TESTING (5 times); the
    // root's own retry (a fresh connection each time) covers the rest.
    tpm.bus.busy_answers_left = code == TPM2_RC_NV_RATE ? 4 : 7;
    auto unsealed = root->unseal(*sealed);
    REQUIRE_MESSAGE(unsealed.ok(), (unsealed.ok() ? "" : unsealed.error().message));
    CHECK(tpm.bus.busy_answers_left == 0);
    tpm.bus.busy_answers_left = 3;
    auto counter = root->read_counter();
    REQUIRE_MESSAGE(counter.ok(), (counter.ok() ? "" : counter.error().message));
  }
}

TEST_CASE("tpm root: a TPM busy for good gives up with a clear error") {
  ModelTpm tpm(hwtpm::MmioInterface::kTis);
  auto root = tpm.open();
  tpm.bus.busy_answers_left = 1'000'000;
  auto counter = root->read_counter();
  REQUIRE_FALSE(counter.ok());
  CHECK(counter.error().code == ErrorCode::kUnavailable);
  CHECK(counter.error().message.find("gave up after 6 attempts") != std::string::npos);
  tpm.bus.busy_answers_left = 0;
  CHECK(root->read_counter().ok());  // and recovers when the TPM does
}

TEST_CASE("tpm root: a broken TIS interface is reported with the register and condition") {
  ModelTpm tpm(hwtpm::MmioInterface::kTis);
  auto root = tpm.open();
  auto sealed = root->seal(distinctive_key());
  REQUIRE(sealed.ok());
  tpm.tis_faults.stuck_burst_count = true;
  root = tpm.open_failing_or_null();
  CHECK(root == nullptr);
  tpm.tis_faults = {};
  root = tpm.open();
  CHECK(root->unseal(*sealed).ok());  // a repaired interface works again
}

TEST_CASE("tpm root: the NV counter is defined on first use, increments, and survives reconnects") {
  ModelTpm tpm(hwtpm::MmioInterface::kCrb);
  auto root = tpm.open();
  auto first = root->read_counter();
  REQUIRE_MESSAGE(first.ok(), (first.ok() ? "" : first.error().message));
  auto bumped = root->increment_counter();
  REQUIRE(bumped.ok());
  CHECK(*bumped == *first + 1);
  auto again = tpm.open();
  CHECK(again->read_counter().value() == *first + 1);
}

}  // namespace vtpm::state
