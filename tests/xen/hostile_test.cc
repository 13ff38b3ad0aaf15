// Hostile frontends: each attack touches only the attacker's device; a
// well-behaved neighbour keeps being served the whole time.
#include <doctest/doctest.h>

#include <cstring>

#include "tests/unit/support/temp_dir.h"
#include "tests/xen/guest.h"

namespace vtpm::xen::sim {
namespace {

using testing::TempDir;
namespace cmd = vtpm::testing;

void set_length(tpmif::Page page, std::uint32_t length) { std::memcpy(page.data(), &length, sizeof length); }

struct Scene {
  TempDir dir;
  Harness h{dir.path(), {}};
  Toolstack ts{h.hv()};
  Uuid good_id = h.add_instance(TpmVersion::k12);
  Uuid bad_id = h.add_instance(TpmVersion::k12);
  Guest good{h, ts, 5, good_id.to_string()};
  Guest bad{h, ts, 6, bad_id.to_string()};

  void neighbour_fine() {
    const Reply r = good.transmit(cmd::tpm12_get_random(16));
    CHECK(!r.error);
    CHECK(r.rc() == 0);
    CHECK(good.backend_state() == 4);
  }
  void poke() { REQUIRE(bad.front().events().notify(bad.front().port()).ok()); }
  bool finished() {
    return h.run_until([&] { return tpmif::load_state(bad.front().page()) == 2; }, 10s);
  }
};

}  // namespace

TEST_CASE("hostile: lengths past the page or below a header get an error response, nothing read outside") {
  Scene s;
  REQUIRE(s.good.boot());
  REQUIRE(s.bad.boot());
  auto page = s.bad.front().page();
  for (std::uint32_t length : {4089u, 5000u, 0xFFFFFFFFu, 9u, 0u}) {
    CAPTURE(length);
    set_length(page, length);
    tpmif::store_state(page, tpmif::PageState::kSubmit);
    s.poke();
    REQUIRE(s.finished());
    const auto response = tpmif::read_response(page);
    REQUIRE(response.size() == 10);
    CHECK(tpm::read_u32(response, 6) == tpm::kTpm12BadParamSize);
  }
  // Extra pages move the data offset: 255 of them leave 3068 bytes.
  page[7] = 255;
  set_length(page, 3069);
  tpmif::store_state(page, tpmif::PageState::kSubmit);
  s.poke();
  REQUIRE(s.finished());
  CHECK(tpm::read_u32(tpmif::read_response(page), 6) == tpm::kTpm12BadParamSize);
  // The same device still works once the guest behaves.
  page[7] = 0;
  CHECK(s.bad.transmit(cmd::tpm12_get_random(8)).rc() == 0);
  s.neighbour_fine();
}

TEST_CASE("hostile: state flipping and an event storm during processing") {
  Scene s;
  REQUIRE(s.good.boot());
  REQUIRE(s.bad.boot());
  auto page = s.bad.front().page();
  REQUIRE(tpmif::put_request(page, cmd::tpm12_extend(3, 0x33), 0).ok());
  s.poke();
  // While the command runs, the guest rewrites everything it can.
  for (int i = 0; i < 2000; ++i) {
    tpmif::store_state(page, static_cast<tpmif::PageState>(i % 4));
    set_length(page, static_cast<std::uint32_t>(i * 7919));
    page[100] = static_cast<std::uint8_t>(i);
    s.poke();
    if (i % 100 == 0) s.h.run_for(std::chrono::milliseconds(1));
  }
  tpmif::store_state(page, tpmif::PageState::kSubmit);
  s.h.run_for(std::chrono::milliseconds(200));
  s.neighbour_fine();
  // Pure storm on an idle device: the backend merges the notifications.
  tpmif::store_state(page, tpmif::PageState::kIdle);
  for (int i = 0; i < 100000; ++i) s.poke();
  s.neighbour_fine();
  CHECK(s.bad.transmit(cmd::tpm12_get_random(8)).rc() == 0);
}

TEST_CASE("hostile: bogus grant refs, ports and xenstore garbage keep the device in InitWait with an error") {
  Scene s;
  REQUIRE(s.good.boot());
  REQUIRE(s.bad.wait_backend(2));
  auto& store = s.bad.front().store();
  const std::string fe = s.ts.frontend_dir(6, 0);
  struct Case {
    std::string ring, port, v2, state;
  };
  // An unbound port of the bad guest's own, so only the grant is wrong.
  auto port = s.bad.front().events().alloc_unbound(0);
  for (const Case& c : {Case{"99999", std::to_string(*port), "1", "3"}, Case{"abc", "1", "1", "3"},
                        Case{"8", "-1", "1", "4"}, Case{"", "", "", "3"}, Case{"8 ", "1\n", "1", "3"},
                        Case{"18446744073709551617", "1", "1", "3"}, Case{"8", "1", "0", "3"}}) {
    CAPTURE(c.ring);
    CAPTURE(c.port);
    REQUIRE(store.write_all({{fe + "/ring-ref", c.ring}, {fe + "/event-channel", c.port}, {fe + "/feature-protocol-v2", c.v2}}).ok());
    REQUIRE(store.write(fe + "/state", c.state).ok());
    REQUIRE(s.h.run_until([&] { return !s.ts.backend_key(6, 0, "error").empty(); }, 5s));
    CHECK(s.bad.backend_state() == 2);
    CHECK(s.h.hv().live_mappings() == 1);  // the neighbour's only
    (void)s.h.hv().open_store(0)->remove(s.ts.backend_dir(6, 0) + "/error");
    REQUIRE(store.write(fe + "/state", "1").ok());
    s.h.run_for(std::chrono::milliseconds(20));
  }
  // Garbage states, an oversized value, keys the backend never reads.
  for (const char* st : {"banana", "7", "-3", "", "4294967300"}) {
    REQUIRE(store.write(fe + "/state", st).ok());
    s.h.run_for(std::chrono::milliseconds(20));
  }
  CHECK(!store.write(fe + "/junk", std::string(5000, 'x')).ok());
  REQUIRE(store.write(fe + "/junk", std::string(4000, 'x')).ok());
  // A guest cannot touch the backend's nodes.
  CHECK(!store.write(s.ts.backend_dir(6, 0) + "/uuid", s.good_id.to_string()).ok());
  CHECK(!store.write(s.ts.backend_dir(6, 0) + "/state", "4").ok());
  s.neighbour_fine();
  // After all that, a proper driver still connects.
  REQUIRE(store.write(fe + "/state", "1").ok());
  s.h.run_for(std::chrono::milliseconds(20));
  s.bad.new_kernel();
  REQUIRE(s.bad.boot());
  CHECK(s.bad.transmit(cmd::tpm12_get_random(8)).rc() == 0);
}

TEST_CASE("hostile: a frontend that never connects, and one that grants its page to someone else") {
  Scene s;
  REQUIRE(s.good.boot());
  REQUIRE(s.bad.wait_backend(2));
  s.h.run_for(std::chrono::milliseconds(300));
  CHECK(s.bad.backend_state() == 2);  // waits, costs nothing
  auto& store = s.bad.front().store();
  const std::string fe = s.ts.frontend_dir(6, 0);
  auto page = std::make_shared<GuestPage>();
  const GrantRef ref = s.h.hv().grant_access(6, 7, page);  // to domain 7, not the backend
  auto port = s.bad.front().events().alloc_unbound(0);
  REQUIRE(store.write_all({{fe + "/ring-ref", std::to_string(ref)}, {fe + "/event-channel", std::to_string(*port)},
                           {fe + "/feature-protocol-v2", "1"}}).ok());
  REQUIRE(store.write(fe + "/state", "3").ok());
  REQUIRE(s.h.run_until([&] { return !s.ts.backend_key(6, 0, "error").empty(); }, 5s));
  CHECK(s.ts.backend_key(6, 0, "error").find("ring-ref") != std::string::npos);
  CHECK(s.bad.backend_state() == 2);
  s.neighbour_fine();
}

}  // namespace vtpm::xen::sim
