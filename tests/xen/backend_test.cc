// The tpmif backend through the simulated platform, driven by the
// xen-tpmfront model, with vtpmd's real engine behind it.
#include <doctest/doctest.h>

#include "tests/unit/support/temp_dir.h"
#include "tests/xen/guest.h"

namespace vtpm::xen::sim {
namespace {

using testing::TempDir;
namespace cmd = vtpm::testing;

std::vector<std::uint8_t> pcr_value(const Reply& r) { return cmd::tail(r.response, 20); }

}  // namespace

TEST_CASE("xen: full handshake, boot queries, traffic and the binding") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  const Uuid id = h.add_instance(TpmVersion::k12);
  Guest g(h, ts, 5, id.to_string());
  // libxl's 10 s: the backend reaches InitWait with protocol v2.
  REQUIRE(g.wait_backend(2));
  CHECK(ts.backend_key(5, 0, "feature-protocol-v2") == "1");
  g.front().probe();
  REQUIRE(h.run_until([&] { return g.front().connected() && g.front().timeouts_known() && !g.front().busy(); }, 30s));
  CHECK(g.backend_state() == 4);
  // The timeouts and durations the guest learned are what the TPM reports (µs, non-zero).
  CHECK(g.front().timeouts_us()[0] > 0);
  CHECK(g.front().durations_us()[0] > 0);
  // Durations leave room for a durable commit before the answer (vtpmd
  // answers an NV change only once it is on disk): at least a second.
  CHECK(g.front().durations_us()[0] >= 1000000);
  CHECK(g.front().timeouts_us()[2] >= 750000);
  auto binding = h.backend().binding_of(id);
  REQUIRE(binding.has_value());
  CHECK(binding->domid == 5);
  CHECK(binding->devid == 0);
  CHECK(binding->connected);
  CHECK(binding->state == tpmif::XenbusState::kConnected);

  const Reply startup = g.transmit(cmd::tpm12_startup_clear());
  CHECK(!startup.error);
  // vtpmd already started the TPM (xen-tpmfront never sends Startup): a second one is refused as on hardware.
  CHECK((startup.rc() == 0 || startup.rc() == tpm::kTpm12InvalidPostinit));
  const Reply ext = g.transmit(cmd::tpm12_extend(10, 0x11));
  CHECK(!ext.error);
  CHECK(ext.rc() == 0);
  const Reply rnd = g.transmit(cmd::tpm12_get_random(32));
  CHECK(rnd.rc() == 0);
  CHECK(rnd.response.size() == 14 + 32);
  // The host sees the same PCR through Service.
  const Reply read = g.transmit(cmd::tpm12_pcr_read(10));
  CHECK(pcr_value(read) == cmd::tail(h.exec(id, cmd::tpm12_pcr_read(10)), 20));
  // TPM_CAP_PROP_INPUT_BUFFER would tell the guest 4088: a packet of 4089 cannot be sent.
  CHECK(g.transmit(std::vector<std::uint8_t>(tpmif::kMaxPacket + 1, 0)).error == FrontError::kInval);
}

TEST_CASE("xen: identity policy: unknown UUIDs, auto-create as TPM 1.2, TPM 2.0 opt-in, one frontend per instance") {
  TempDir dir;
  SUBCASE("unknown UUID without auto-create is refused with an error node") {
    Harness h(dir.path(), {});
    Toolstack ts(h.hv());
    Guest g(h, ts, 7, "6f0c3a52-3c1d-4b8e-9d55-0a1b2c3d4e5f");
    REQUIRE(h.run_until([&] { return !ts.backend_key(7, 0, "error").empty(); }, 5s));
    CHECK(ts.backend_key(7, 0, "error").find("unknown instance") != std::string::npos);
    CHECK(g.backend_state() == 1);
    CHECK(h.service().registry().size() == 0);
  }
  SUBCASE("auto-create makes a TPM 1.2 instance with the page's buffer size") {
    Harness h(dir.path(), {XenOptions{true, false}});
    Toolstack ts(h.hv());
    Guest g(h, ts, 7, "6f0c3a52-3c1d-4b8e-9d55-0a1b2c3d4e5f");
    REQUIRE(g.boot());
    auto id = Uuid::parse("6f0c3a52-3c1d-4b8e-9d55-0a1b2c3d4e5f");
    auto inst = h.service().show(*id);
    REQUIRE(inst.ok());
    CHECK((*inst)->version == TpmVersion::k12);
    CHECK((*inst)->max_command_size == tpmif::kMaxPacket);
    CHECK(g.transmit(cmd::tpm12_get_random(8)).rc() == 0);
  }
  SUBCASE("a bad uuid key is refused") {
    Harness h(dir.path(), {XenOptions{true, false}});
    Toolstack ts(h.hv());
    Guest g(h, ts, 7, "not-a-uuid");
    REQUIRE(h.run_until([&] { return !ts.backend_key(7, 0, "error").empty(); }, 5s));
    CHECK(h.service().registry().size() == 0);
  }
  SUBCASE("TPM 2.0 needs the opt-in") {
    {
      Harness h(dir.path(), {});
      Toolstack ts(h.hv());
      const Uuid id = h.add_instance(TpmVersion::k20);
      Guest g(h, ts, 8, id.to_string());
      REQUIRE(h.run_until([&] { return !ts.backend_key(8, 0, "error").empty(); }, 5s));
      CHECK(ts.backend_key(8, 0, "error").find("TPM 2.0") != std::string::npos);
    }
    {
      Harness h(dir.path(), {XenOptions{false, true}});
      Toolstack ts(h.hv());
      const Uuid id = h.service().registry().all().begin()->first;
      Guest g(h, ts, 8, id.to_string());
      REQUIRE(g.wait_backend(2));
      CHECK(ts.backend_key(8, 0, "error").empty());
    }
  }
  SUBCASE("a second device on a bound instance is refused; the first keeps working") {
    Harness h(dir.path(), {});
    Toolstack ts(h.hv());
    const Uuid id = h.add_instance(TpmVersion::k12);
    Guest a(h, ts, 5, id.to_string());
    REQUIRE(a.boot());
    Guest b(h, ts, 6, id.to_string());
    REQUIRE(h.run_until([&] { return !ts.backend_key(6, 0, "error").empty(); }, 5s));
    CHECK(ts.backend_key(6, 0, "error").find("already bound to domain 5") != std::string::npos);
    CHECK(a.transmit(cmd::tpm12_get_random(8)).rc() == 0);
    CHECK(h.backend().binding_of(id)->domid == 5);
    // Once the first device is gone the waiting one gets the instance.
    ts.request_remove(5, 0);
    REQUIRE(a.wait_backend(6));
    REQUIRE(b.wait_backend(2));
    REQUIRE(b.boot());
    CHECK(h.backend().binding_of(id)->domid == 6);
    CHECK(b.transmit(cmd::tpm12_get_random(8)).rc() == 0);
  }
}

TEST_CASE("xen: pv-grub hand-off keeps the instance and its PCRs; a reboot resets them") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  const Uuid id = h.add_instance(TpmVersion::k12);
  Guest g(h, ts, 5, id.to_string());
  REQUIRE(g.boot());
  // pv-grub measures kernel and command line, then hands over.
  REQUIRE(g.transmit(cmd::tpm12_extend(4, 0x44)).rc() == 0);
  REQUIRE(g.transmit(cmd::tpm12_extend(5, 0x55)).rc() == 0);
  const auto pcr4 = pcr_value(g.transmit(cmd::tpm12_pcr_read(4)));
  const auto pcr5 = pcr_value(g.transmit(cmd::tpm12_pcr_read(5)));
  CHECK(pcr4 != std::vector<std::uint8_t>(20, 0));
  g.front().close();
  REQUIRE(g.wait_backend(2));  // back to InitWait for the next kernel
  CHECK(h.hv().live_mappings() == 0);
  g.front().reopen_later();
  g.new_kernel();
  REQUIRE(g.boot());
  CHECK(pcr_value(g.transmit(cmd::tpm12_pcr_read(4))) == pcr4);
  CHECK(pcr_value(g.transmit(cmd::tpm12_pcr_read(5))) == pcr5);
  CHECK(h.backend().binding_of(id)->connected);

  // Reboot: libxl tears the device down and creates it again for the new domain.
  ts.request_remove(5, 0);
  REQUIRE(g.wait_backend(6));
  CHECK(h.hv().live_mappings() == 0);
  CHECK(!h.backend().binding_of(id).has_value());
  ts.destroy_device(5, 0);
  REQUIRE(h.run_until([&] { return h.backend().devices() == 0; }, 5s));
  Guest rebooted(h, ts, 9, id.to_string());
  REQUIRE(rebooted.boot());
  CHECK(pcr_value(rebooted.transmit(cmd::tpm12_pcr_read(4))) == std::vector<std::uint8_t>(20, 0));
  CHECK(h.backend().binding_of(id)->domid == 9);
}

TEST_CASE("xen: device removal and a frontend that vanishes") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  const Uuid a_id = h.add_instance(TpmVersion::k12);
  const Uuid b_id = h.add_instance(TpmVersion::k12);
  Guest a(h, ts, 5, a_id.to_string());
  Guest b(h, ts, 6, b_id.to_string());
  REQUIRE(a.boot());
  REQUIRE(b.boot());
  ts.request_remove(5, 0);
  REQUIRE(a.wait_backend(6));
  ts.destroy_device(5, 0);
  REQUIRE(h.run_until([&] { return h.backend().devices() == 1; }, 5s));
  // Domain 6 is destroyed without a clean removal: its frontend dir goes first.
  REQUIRE(h.hv().open_store(0)->remove("/local/domain/6").ok());
  REQUIRE(b.wait_backend(6));
  CHECK(h.hv().live_mappings() == 0);
  CHECK(!h.backend().binding_of(b_id).has_value());
}

TEST_CASE("xen: an instance removed under its guest closes the device with an error, others unaffected") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  const Uuid a_id = h.add_instance(TpmVersion::k12);
  const Uuid b_id = h.add_instance(TpmVersion::k12);
  Guest a(h, ts, 5, a_id.to_string());
  Guest b(h, ts, 6, b_id.to_string());
  REQUIRE(a.boot());
  REQUIRE(b.boot());
  bool removed = false;
  h.service().remove(a_id, true, [&](Status s) { removed = s.ok(); });
  REQUIRE(h.run_until([&] { return removed; }, 10s));
  REQUIRE(a.wait_backend(5));  // Closing, as after xenbus_dev_fatal
  CHECK(ts.backend_key(5, 0, "error").find("was removed") != std::string::npos);
  CHECK(!h.backend().binding_of(a_id).has_value());
  CHECK(h.hv().live_mappings() == 1);
  CHECK(b.transmit(cmd::tpm12_get_random(8)).rc() == 0);
}

TEST_CASE("xen: cancel when idle, and a guest that gives up on a running command") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  const Uuid id = h.add_instance(TpmVersion::k12);
  Guest g(h, ts, 5, id.to_string());
  REQUIRE(g.boot());
  // CANCEL with nothing running: the backend answers IDLE at once.
  tpmif::store_state(g.front().page(), tpmif::PageState::kCancel);
  REQUIRE(g.front().events().notify(g.front().port()).ok());
  REQUIRE(h.run_until([&] { return tpmif::load_state(g.front().page()) == 0; }, 5s));
  // A SUBMIT whose wait is cut short (a signal): the guest cancels; the
  // backend still completes with FINISH, and the next command works.
  REQUIRE(tpmif::put_request(g.front().page(), cmd::tpm12_get_random(16), 0).ok());
  REQUIRE(g.front().events().notify(g.front().port()).ok());
  tpmif::store_state(g.front().page(), tpmif::PageState::kCancel);
  REQUIRE(g.front().events().notify(g.front().port()).ok());
  REQUIRE(h.run_until([&] {
    const auto s = tpmif::load_state(g.front().page());
    return s == 0 || s == 2;
  }, 10s));
  const Reply next = g.transmit(cmd::tpm12_get_random(8));
  CHECK(!next.error);
  CHECK(next.rc() == 0);
}

TEST_CASE("xen: vtpmd restarts under connected guests; they keep their TPM") {
  TempDir dir;
  Harness h(dir.path(), {});
  Toolstack ts(h.hv());
  std::vector<std::unique_ptr<Guest>> guests;
  std::vector<Uuid> ids;
  for (DomId d = 5; d < 9; ++d) {
    ids.push_back(h.add_instance(TpmVersion::k12));
    guests.push_back(std::make_unique<Guest>(h, ts, d, ids.back().to_string()));
    REQUIRE(guests.back()->boot());
    REQUIRE(guests.back()->transmit(cmd::tpm12_extend(8, static_cast<std::uint8_t>(d))).rc() == 0);
  }
  std::vector<std::vector<std::uint8_t>> before;
  for (auto& g : guests) before.push_back(pcr_value(g->transmit(cmd::tpm12_pcr_read(8))));
  // Guest 0 has an extend on its page, in flight, when vtpmd stops; guest 1
  // one that vtpmd is already running.
  std::optional<Reply> in_flight[2];
  for (int i = 0; i < 2; ++i) {
    guests[i]->front().transmit(cmd::tpm12_extend(9, 0x99), [&in_flight, i](std::optional<FrontError> e, std::vector<std::uint8_t> r) {
      in_flight[i] = Reply{e, std::move(r)};
    });
  }
  h.run_until([&] { return h.service().outstanding(ids[1]) > 0 || in_flight[1].has_value(); }, 5s);
  h.restart();
  // The new vtpmd finds the devices Connected and maps them again without
  // the guests doing anything.
  REQUIRE(h.run_until([&] { return h.backend().connected() == guests.size(); }, 30s));
  for (std::size_t i = 0; i < guests.size(); ++i) {
    CHECK(guests[i]->front().connected());
    const Reply r = guests[i]->transmit(cmd::tpm12_pcr_read(8));
    CHECK(!r.error);
    CHECK(pcr_value(r) == before[i]);
  }
  // Each in-flight extend ran exactly once: PCR 9 is one extend away from zero.
  REQUIRE(h.run_until([&] { return in_flight[0].has_value() && in_flight[1].has_value(); }, 30s));
  const Uuid reference = h.add_instance(TpmVersion::k12);
  REQUIRE(tpm::read_u32(h.exec(reference, cmd::tpm12_extend(9, 0x99)), 6) == 0);
  const auto once = cmd::tail(h.exec(reference, cmd::tpm12_pcr_read(9)), 20);
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(!in_flight[i]->error);
    CHECK(in_flight[i]->rc() == 0);
    CHECK(pcr_value(guests[i]->transmit(cmd::tpm12_pcr_read(9))) == once);
  }
}

}  // namespace vtpm::xen::sim
