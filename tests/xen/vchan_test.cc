// The vchan channel through the simulated platform: dom0's vtpmd serves
// libxenvchan servers, clients in other domains (the libxenvchan client
// model) send raw TPM packets, vtpmd's real engine answers.
#include <doctest/doctest.h>

#include "proto/tpm_packet.h"
#include "tests/support/tpm_commands.h"
#include "tests/support/xen/harness.h"
#include "tests/support/xen/vchan_client_model.h"
#include "tests/unit/support/temp_dir.h"

namespace vtpm::xen::sim {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;
namespace cmd = vtpm::testing;

std::uint32_t rc_of(const std::vector<std::uint8_t>& r) { return r.size() >= 10 ? tpm::read_u32(r, 6) : 0xFFFFFFFFu; }

std::unique_ptr<VchanClient> connect(Harness& h, DomId client, const Uuid& id) {
  auto c = VchanClient::connect(h.hv(), client, 0, h.vchan().default_path(id));
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  return std::move(*c);
}

std::vector<std::uint8_t> transact(Harness& h, VchanClient& c, const std::vector<std::uint8_t>& command) {
  c.send(command);
  REQUIRE(h.run_until([&] { return c.pump(); }, 20s));
  return *c.take_response();
}

bool in_state(Harness& h, const Uuid& id, VchanState state) {
  return h.run_until([&] { return h.vchan().status_of(id) && h.vchan().status_of(id)->state == state; }, 5s);
}

// Startup, GetRandom, PCR_Extend and PCR_Read over the channel; the PCR
// matches what the host reads through Service.
void exercise(Harness& h, VchanClient& c, const Uuid& id, TpmVersion version) {
  if (version == TpmVersion::k20) {
    CHECK(rc_of(transact(h, c, cmd::tpm2_startup_clear())) == 0);
    const auto rnd = transact(h, c, cmd::tpm2_get_random(32));
    CHECK(rc_of(rnd) == 0);
    CHECK(rnd.size() == 12 + 32);
    CHECK(rc_of(transact(h, c, cmd::tpm2_pcr_extend(16, 0x5A))) == 0);
    const auto pcr = transact(h, c, cmd::tpm2_pcr_read(16));
    CHECK(rc_of(pcr) == 0);
    CHECK(cmd::tail(pcr, 32) == cmd::tail(h.exec(id, cmd::tpm2_pcr_read(16)), 32));
    CHECK(cmd::tail(pcr, 32) != std::vector<std::uint8_t>(32, 0));
  } else {
    CHECK(rc_of(transact(h, c, cmd::tpm12_startup_clear())) == 0);
    const auto rnd = transact(h, c, cmd::tpm12_get_random(32));
    CHECK(rc_of(rnd) == 0);
    CHECK(rnd.size() == 14 + 32);
    CHECK(rc_of(transact(h, c, cmd::tpm12_extend(10, 0x5A))) == 0);
    const auto pcr = transact(h, c, cmd::tpm12_pcr_read(10));
    CHECK(rc_of(pcr) == 0);
    CHECK(cmd::tail(pcr, 20) == cmd::tail(h.exec(id, cmd::tpm12_pcr_read(10)), 20));
    CHECK(cmd::tail(pcr, 20) != std::vector<std::uint8_t>(20, 0));
  }
}

}  // namespace

TEST_CASE("vchan: a TPM 2.0 and a TPM 1.2 instance answer on separate vchans, published for their client only") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid a = h.add_instance(TpmVersion::k20, std::nullopt, false);
  const Uuid b = h.add_instance(TpmVersion::k12, std::nullopt, false);
  REQUIRE(h.vchan().set(a, 7));
  REQUIRE(h.vchan().set(b, 8));
  CHECK(h.vchan().status_of(a)->state == VchanState::kWaiting);
  // What libxenvchan_server_init publishes: owned by dom0, readable by the client alone.
  const auto* ring_ref = h.hv().node(h.vchan().default_path(a) + "/ring-ref");
  REQUIRE(ring_ref != nullptr);
  REQUIRE(ring_ref->perms.size() == 2);
  CHECK(ring_ref->perms[0].domid == 0);
  CHECK(ring_ref->perms[0].access == Permission::kNone);
  CHECK(ring_ref->perms[1].domid == 7);
  CHECK(ring_ref->perms[1].access == Permission::kRead);

  auto ca = connect(h, 7, a);
  auto cb = connect(h, 8, b);
  exercise(h, *ca, a, TpmVersion::k20);
  exercise(h, *cb, b, TpmVersion::k12);
  const auto status = h.vchan().status_of(a);
  CHECK(status->state == VchanState::kConnected);
  CHECK(status->spec.client == 7);
  CHECK(status->connections == 1);
  CHECK(status->commands == 4);
  CHECK(status->refused == 0);
}

TEST_CASE("vchan: small rings wrap, and a response larger than the ring goes out as the client reads") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid a = h.add_instance(TpmVersion::k20);
  const Uuid b = h.add_instance(TpmVersion::k12);
  for (const Uuid& id : {a, b}) {
    VchanSpec spec;
    spec.client = 7;
    spec.xs_path = h.vchan().default_path(id);
    spec.read_min = 1024;  // in the header page: left 1024, right 2048 bytes
    spec.write_min = 1024;
    REQUIRE(h.vchan().set_spec(id, spec));
  }
  auto c = connect(h, 7, a);
  // 150 pipelined GetRandoms: 1800 bytes of commands through a 1024-byte
  // ring, 150 * 44 bytes of answers through a 2048-byte one.
  std::vector<std::uint8_t> batch;
  for (int i = 0; i < 150; ++i) {
    const auto one = cmd::tpm2_get_random(32);
    batch.insert(batch.end(), one.begin(), one.end());
  }
  c->send(batch);
  std::size_t answered = 0;
  REQUIRE(h.run_until([&] {
    c->pump();
    while (auto r = c->take_response()) {
      CHECK(rc_of(*r) == 0);
      CHECK(r->size() == 12 + 32);
      ++answered;
    }
    return answered == 150;
  }, 30s));
  CHECK(c->partial_writes() > 0);
  std::uint32_t right_prod = 0;
  std::memcpy(&right_prod, c->header() + vchan_layout::kRightProd, 4);
  CHECK(right_prod == 150 * 44);  // the indices ran around the ring three times

  // A TPM 1.2 GetRandom answer of 3014 bytes through the 2048-byte ring.
  auto c12 = connect(h, 7, b);
  const auto big = transact(h, *c12, cmd::tpm12_get_random(3000));
  CHECK(rc_of(big) == 0);
  CHECK(big.size() == 14 + 3000);
}

TEST_CASE("vchan: a client that closes leaves the TPM as it was for the next one") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid id = h.add_instance(TpmVersion::k20);
  REQUIRE(h.vchan().set(id, 7));
  auto first = connect(h, 7, id);
  CHECK(rc_of(transact(h, *first, cmd::tpm2_pcr_extend(16, 0x33))) == 0);
  const auto before = cmd::tail(transact(h, *first, cmd::tpm2_pcr_read(16)), 32);
  const std::string old_ref = h.hv().node(h.vchan().default_path(id) + "/ring-ref")->value;
  first.reset();  // libxenvchan_close
  REQUIRE(in_state(h, id, VchanState::kWaiting));
  // A fresh server at the same path: new pages; the old ones are unshared.
  CHECK(h.hv().node(h.vchan().default_path(id) + "/ring-ref")->value != old_ref);
  CHECK(h.hv().grants_of(0) == 3);  // the header and one page per ring, of the new server only
  auto second = connect(h, 7, id);
  CHECK(cmd::tail(transact(h, *second, cmd::tpm2_pcr_read(16)), 32) == before);
  CHECK(h.vchan().status_of(id)->connections == 2);
}

TEST_CASE("vchan: another domain can neither read the nodes, map the pages nor bind the port") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid id = h.add_instance(TpmVersion::k20);
  REQUIRE(h.vchan().set(id, 7));
  const std::string path = h.vchan().default_path(id);
  auto intruder = VchanClient::connect(h.hv(), 9, 0, path);
  REQUIRE(!intruder.ok());
  CHECK(intruder.error().code == ErrorCode::kPermissionDenied);
  // Even knowing the numbers (read as dom0 here), the grant and the port are domain 7's.
  const auto ref = static_cast<GrantRef>(std::stoul(h.hv().node(path + "/ring-ref")->value));
  const auto port = static_cast<Port>(std::stoul(h.hv().node(path + "/event-channel")->value));
  CHECK(!h.hv().map_grants(9, 0, {ref}, true).ok());
  auto events = h.hv().open_events(9);
  CHECK(!events->bind_interdomain(0, port).ok());
  h.run_for(50ms);
  CHECK(h.vchan().status_of(id)->state == VchanState::kWaiting);
  // The domain it is for still connects.
  auto c = connect(h, 7, id);
  CHECK(rc_of(transact(h, *c, cmd::tpm2_get_random(8))) == 0);
  // Unknown instance, or the daemon's own domain as the client: refused.
  CHECK(!h.vchan().set(Uuid::parse("6a0c8c9e-1d1b-4b6e-9a53-0d3f1d8f0a11").value(), 7));
  CHECK(!h.vchan().set(id, 0));
  CHECK(h.vchan().status_of(id)->spec.client == 7);
}

TEST_CASE("vchan: hostile clients lose their own connection and nothing else") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid victim = h.add_instance(TpmVersion::k20);
  const Uuid other = h.add_instance(TpmVersion::k20);
  REQUIRE(h.vchan().set(victim, 7));
  REQUIRE(h.vchan().set(other, 8));
  auto bystander = connect(h, 8, other);
  CHECK(rc_of(transact(h, *bystander, cmd::tpm2_pcr_extend(16, 0x44))) == 0);
  const auto bystander_pcr = cmd::tail(transact(h, *bystander, cmd::tpm2_pcr_read(16)), 32);

  const auto refused_after = [&](std::vector<std::uint8_t> bytes, std::uint64_t refused) {
    auto c = connect(h, 7, victim);
    c->send(std::move(bytes));
    // The server answers with an error if it can, then goes: srv_live 0.
    REQUIRE(h.run_until([&] { c->pump(); return !c->server_open(); }, 5s));
    c->pump();
    const auto r = c->take_response();  // data written before the close stays readable
    REQUIRE(r.has_value());
    CHECK(rc_of(*r) == tpm::kTpm2RcCommandSize);
    REQUIRE(in_state(h, victim, VchanState::kWaiting));
    CHECK(h.vchan().status_of(victim)->refused == refused);
  };
  SUBCASE("framing") {
    // A size below the header's 10 bytes.
    refused_after({0x80, 0x01, 0, 0, 0, 5, 0, 0, 1, 0x7B}, 1);
    // A size above the instance's max command size (4096).
    refused_after({0x80, 0x01, 0, 1, 0, 0, 0, 0, 1, 0x7B}, 2);
    // Garbage.
    std::vector<std::uint8_t> garbage(600);
    for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<std::uint8_t>(i * 37 + 11);
    refused_after(garbage, 3);
  }
  SUBCASE("event storm") {
    auto c = connect(h, 7, victim);
    for (int i = 0; i < 20000; ++i) (void)c->notify();
    h.run_for(20ms);
    CHECK(rc_of(transact(h, *c, cmd::tpm2_get_random(8))) == 0);
    CHECK(h.vchan().status_of(victim)->refused == 0);
  }
  SUBCASE("closing with a command in flight") {
    auto c = connect(h, 7, victim);
    c->send(cmd::tpm2_pcr_extend(16, 0x99));
    c->pump();
    c.reset();
    REQUIRE(in_state(h, victim, VchanState::kWaiting));
    auto next = connect(h, 7, victim);
    // Only its own answer arrives (the dropped one does not leak into the new ring).
    const auto r = transact(h, *next, cmd::tpm2_get_random(16));
    CHECK(rc_of(r) == 0);
    CHECK(r.size() == 12 + 16);
    h.run_for(50ms);
    next->pump();
    CHECK(!next->take_response().has_value());
  }
  // The other channel carried on, state and all.
  CHECK(h.vchan().status_of(other)->state == VchanState::kConnected);
  CHECK(cmd::tail(transact(h, *bystander, cmd::tpm2_pcr_read(16)), 32) == bystander_pcr);
  CHECK(h.vchan().status_of(other)->refused == 0);
}

TEST_CASE("vchan: the setting is saved with the instance and a restart serves it again") {
  TempDir dir;
  Harness h(dir.path(), {});
  const Uuid on = h.add_instance(TpmVersion::k20);
  const Uuid off = h.add_instance(TpmVersion::k20);
  REQUIRE(h.vchan().set(on, 7));
  REQUIRE(h.vchan().set(off, 8));
  REQUIRE(h.vchan().set(off, std::nullopt));
  CHECK(!h.vchan().status_of(off));
  CHECK(h.hv().node(h.vchan().default_path(off) + "/ring-ref") == nullptr);  // the server's nodes went with it
  {
    auto c = connect(h, 7, on);
    CHECK(rc_of(transact(h, *c, cmd::tpm2_pcr_extend(16, 0x21))) == 0);
  }
  const auto pcr = cmd::tail(h.exec(on, cmd::tpm2_pcr_read(16)), 32);
  h.restart();
  REQUIRE(h.vchan().status_of(on));
  CHECK(h.vchan().status_of(on)->spec.client == 7);
  CHECK(h.vchan().status_of(on)->state == VchanState::kWaiting);
  CHECK(!h.vchan().status_of(off));
  auto c = connect(h, 7, on);
  CHECK(cmd::tail(transact(h, *c, cmd::tpm2_pcr_read(16)), 32) == pcr);
}

}  // namespace vtpm::xen::sim
