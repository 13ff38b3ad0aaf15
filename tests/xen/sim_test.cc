// The simulated platform's own semantics: what the backend relies on must
// behave as Xen's does, or the backend tests prove nothing.
#include <doctest/doctest.h>

#include "tests/support/xen/sim_xen.h"

namespace vtpm::xen::sim {

TEST_CASE("sim xenstore: permissions, inheritance and watches") {
  Hypervisor hv;
  auto dom0 = hv.open_store(0);
  auto guest = hv.open_store(5);
  auto other = hv.open_store(6);
  REQUIRE(dom0->write("/local/domain/5/device/vtpm/0", "").ok());
  REQUIRE(dom0->set_permissions("/local/domain/5/device/vtpm/0", {Permission{5, Permission::kNone}, Permission{0, Permission::kRead}}).ok());
  REQUIRE(dom0->write("/local/domain/0/backend/vtpm/5/0/uuid", "u").ok());
  REQUIRE(dom0->set_permissions("/local/domain/0/backend/vtpm/5/0/uuid", {Permission{0, Permission::kNone}, Permission{5, Permission::kRead}}).ok());

  // The guest owns its device dir: its new keys inherit owner + dom0 read.
  REQUIRE(guest->write("/local/domain/5/device/vtpm/0/ring-ref", "8").ok());
  CHECK(hv.node("/local/domain/5/device/vtpm/0/ring-ref")->perms[0].domid == 5);
  CHECK(dom0->read("/local/domain/5/device/vtpm/0/ring-ref").value() == "8");
  CHECK(other->read("/local/domain/5/device/vtpm/0/ring-ref").error().code == ErrorCode::kPermissionDenied);
  CHECK(other->write("/local/domain/5/device/vtpm/0/ring-ref", "9").error().code == ErrorCode::kPermissionDenied);
  // The guest reads but cannot write the backend's uuid.
  CHECK(guest->read("/local/domain/0/backend/vtpm/5/0/uuid").value() == "u");
  CHECK(guest->write("/local/domain/0/backend/vtpm/5/0/uuid", "evil").error().code == ErrorCode::kPermissionDenied);
  CHECK(guest->write("/local/domain/0/backend/vtpm/5/0/state", "4").error().code == ErrorCode::kPermissionDenied);
  CHECK(guest->read("/local/domain/5/device/vtpm/0/missing").error().code == ErrorCode::kNotFound);
  CHECK(!guest->write("/local/domain/5/device/vtpm/0/bad path", "x").ok());

  // Watches fire once when set, on changes at or below, and on removal of an ancestor.
  REQUIRE(dom0->watch("/local/domain/5/device/vtpm/0/state", "t").ok());
  auto first = dom0->take_events();
  REQUIRE(first.size() == 1);
  CHECK(first[0].path == "/local/domain/5/device/vtpm/0/state");
  REQUIRE(guest->write("/local/domain/5/device/vtpm/0/state", "3").ok());
  auto changed = dom0->take_events();
  REQUIRE(changed.size() == 1);
  CHECK(changed[0].token == "t");
  REQUIRE(dom0->remove("/local/domain/5").ok());
  auto removed = dom0->take_events();
  REQUIRE(removed.size() == 1);
  CHECK(removed[0].path == "/local/domain/5/device/vtpm/0/state");
  // A domain hears nothing about nodes it may not read.
  REQUIRE(other->watch("/local/domain/0/backend", "x").ok());
  (void)other->take_events();
  REQUIRE(dom0->write("/local/domain/0/backend/vtpm/5/0/secret", "s").ok());
  CHECK(other->take_events().empty());
}

TEST_CASE("sim event channels: bind is pending, masked notifications merge, unbind unbinds the peer") {
  Hypervisor hv;
  auto guest = hv.open_events(5);
  auto back = hv.open_events(0);
  auto port = guest->alloc_unbound(0);
  REQUIRE(port.ok());
  CHECK(!back->bind_interdomain(5, *port + 100).ok());
  auto wrong = hv.open_events(7);
  CHECK(!wrong->bind_interdomain(5, *port).ok());  // unbound for dom0 only
  auto local = back->bind_interdomain(5, *port);
  REQUIRE(local.ok());
  // Pending from the bind itself.
  auto p = back->pending();
  REQUIRE(p.ok());
  REQUIRE(p->has_value());
  CHECK(**p == *local);
  // Masked until unmask: three notifications merge into one delivery.
  REQUIRE(guest->notify(*port).ok());
  REQUIRE(guest->notify(*port).ok());
  REQUIRE(guest->notify(*port).ok());
  CHECK(!back->pending()->has_value());
  REQUIRE(back->unmask(*local).ok());
  CHECK(back->pending()->value() == *local);
  CHECK(!back->pending()->has_value());
  REQUIRE(back->unmask(*local).ok());
  CHECK(!back->pending()->has_value());
  // The guest hears the backend.
  REQUIRE(back->notify(*local).ok());
  CHECK(guest->pending()->value() == *port);
  // Unbinding one end leaves the other unbound, so a notify goes nowhere
  // (silently, as Xen's evtchn_send on an unbound port) and a new backend
  // may bind it again.
  REQUIRE(back->unbind(*local).ok());
  REQUIRE(guest->unmask(*port).ok());
  CHECK(guest->notify(*port).ok());
  CHECK(!back->pending()->has_value());
  auto again = back->bind_interdomain(5, *port);
  CHECK(again.ok());
}

TEST_CASE("sim grants: separate mappings of one page, refused refs, end of access while mapped") {
  Hypervisor hv;
  auto page = std::make_shared<GuestPage>();
  const GrantRef ref = hv.grant_access(5, 0, page);
  auto dom0 = hv.open_grants(0);
  auto dom7 = hv.open_grants(7);
  CHECK(!dom7->map(5, ref).ok());
  CHECK(!dom0->map(5, ref + 1).ok());
  CHECK(!dom0->map(9, ref).ok());
  auto m = dom0->map(5, ref);
  REQUIRE(m.ok());
  CHECK((*m)->page().data() != page->page().data());
  page->page()[100] = 0xAB;
  CHECK((*m)->page()[100] == 0xAB);
  (*m)->page()[200] = 0xCD;
  CHECK(page->page()[200] == 0xCD);
  CHECK(hv.live_mappings() == 1);
  CHECK(!hv.end_access(5, ref));
  m->reset();
  CHECK(hv.live_mappings() == 0);
  CHECK(hv.end_access(5, ref));
  CHECK(!dom0->map(5, ref).ok());
}

}  // namespace vtpm::xen::sim
