// The part of libxl (libxl_vtpm.c, libxl_device.c) that the vTPM backend
// sees: the xenstore nodes of `vtpm=["backend=0,uuid=..."]` with libxl's
// permissions, its device removal (online=0, Closing, wait for Closed,
// then both directories removed), and domain destruction.
#pragma once

#include <string>

#include "tests/support/xen/sim_xen.h"

namespace vtpm::xen::sim {

class Toolstack {
 public:
  explicit Toolstack(Hypervisor& hv, DomId backend = 0) : hv_(hv), backend_(backend), store_(hv.open_store(0)) {}

  std::string backend_dir(DomId domid, std::uint32_t devid) const;
  std::string frontend_dir(DomId domid, std::uint32_t devid) const;
  // libxl__device_vtpm_add: both directories, backend in Initialising.
  void add_vtpm(DomId domid, std::uint32_t devid, const std::string& uuid);
  // First half of libxl__initiate_device_generic_remove.
  void request_remove(DomId domid, std::uint32_t devid);
  // Second half: the directories go (after the backend reached Closed or
  // libxl's 10 s timeout).
  void destroy_device(DomId domid, std::uint32_t devid);
  // Reads a backend key (empty if absent).
  std::string backend_key(DomId domid, std::uint32_t devid, const std::string& key) const;
  int backend_state(DomId domid, std::uint32_t devid) const;
  SimStore& store() { return *store_; }

 private:
  Hypervisor& hv_;
  DomId backend_;
  std::unique_ptr<SimStore> store_;
};

}  // namespace vtpm::xen::sim
