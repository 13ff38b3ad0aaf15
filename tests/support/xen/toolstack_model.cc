#include "tests/support/xen/toolstack_model.h"

namespace vtpm::xen::sim {

std::string Toolstack::backend_dir(DomId domid, std::uint32_t devid) const {
  return "/local/domain/" + std::to_string(backend_) + "/backend/vtpm/" + std::to_string(domid) + "/" +
         std::to_string(devid);
}

std::string Toolstack::frontend_dir(DomId domid, std::uint32_t devid) const {
  return "/local/domain/" + std::to_string(domid) + "/device/vtpm/" + std::to_string(devid);
}

void Toolstack::add_vtpm(DomId domid, std::uint32_t devid, const std::string& uuid) {
  const std::string be = backend_dir(domid, devid);
  const std::string fe = frontend_dir(domid, devid);
  // The guest's home: owned by the guest (libxl creates /local/domain/<id>).
  const std::string home = "/local/domain/" + std::to_string(domid);
  if (!hv_.node(home)) {
    (void)store_->write(home, "");
    (void)store_->set_permissions(home, {Permission{domid, Permission::kNone}});
  }
  (void)store_->write(be, "");
  (void)store_->set_permissions(be, {Permission{backend_, Permission::kNone}, Permission{domid, Permission::kRead}});
  (void)store_->write_all({{be + "/frontend", fe},
                           {be + "/frontend-id", std::to_string(domid)},
                           {be + "/online", "1"},
                           {be + "/state", "1"},
                           {be + "/handle", std::to_string(devid)},
                           {be + "/uuid", uuid},
                           {be + "/resume", "False"}});
  (void)store_->write(fe, "");
  (void)store_->set_permissions(fe, {Permission{domid, Permission::kNone}, Permission{backend_, Permission::kRead}});
  (void)store_->write_all({{fe + "/backend", be},
                           {fe + "/backend-id", std::to_string(backend_)},
                           {fe + "/state", "1"},
                           {fe + "/handle", std::to_string(devid)}});
}

void Toolstack::request_remove(DomId domid, std::uint32_t devid) {
  const std::string be = backend_dir(domid, devid);
  (void)store_->write_all({{be + "/online", "0"}, {be + "/state", "5"}});
}

void Toolstack::destroy_device(DomId domid, std::uint32_t devid) {
  (void)store_->remove(frontend_dir(domid, devid));
  (void)store_->remove(backend_dir(domid, devid));
}

std::string Toolstack::backend_key(DomId domid, std::uint32_t devid, const std::string& key) const {
  auto v = store_->read(backend_dir(domid, devid) + "/" + key);
  return v ? *v : std::string();
}

int Toolstack::backend_state(DomId domid, std::uint32_t devid) const {
  auto v = tpmif::parse_uint(backend_key(domid, devid, "state"), 6);
  return v ? static_cast<int>(*v) : -1;
}

}  // namespace vtpm::xen::sim
