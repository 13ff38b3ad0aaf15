// libxenvchan's server on the simulated platform, doing what the library
// does on Xen: one event channel handle with a port left unbound for the
// client domain; a header page and, for rings of order 12 and up, ring
// pages shared (granted) to the client domain only; ring-ref and
// event-channel written under xs_path, owned by us and readable by the
// client domain alone; srv_live cleared and the client notified when the
// server goes (the gntalloc unmap notification does that even on a crash);
// on close the pages are unshared (freed once the client unmaps them) and
// the xenstore nodes removed.
#pragma once

#include <memory>
#include <vector>

#include "backends/xen/vchan.h"
#include "tests/support/xen/sim_xen.h"
#include "tests/support/xen/vchan_ring.h"

namespace vtpm::xen::sim {

class SimVchanServer final : public VchanServer {
 public:
  static Result<std::unique_ptr<VchanServer>> init(Hypervisor& hv, DomId self, const VchanServerParams& params);
  ~SimVchanServer() override;
  SimVchanServer(const SimVchanServer&) = delete;
  SimVchanServer& operator=(const SimVchanServer&) = delete;

  int fd() const override { return events_->fd(); }
  Status wait() override;
  VchanState state() const override;
  std::size_t data_ready() override { return io_->data_ready(); }
  std::size_t buffer_space() override { return io_->buffer_space(); }
  Result<std::size_t> read(std::span<std::uint8_t> out) override { return io_->read(out); }
  Result<std::size_t> write(std::span<const std::uint8_t> in) override { return io_->write(in); }

 private:
  SimVchanServer(Hypervisor& hv, DomId self, const VchanServerParams& params);
  Status setup(const VchanServerParams& params);

  Hypervisor& hv_;
  DomId self_;
  std::string xs_path_;
  std::unique_ptr<SimEvents> events_;
  std::unique_ptr<SimStore> store_;
  Port port_ = 0;
  std::shared_ptr<GuestPage> header_;
  std::vector<std::shared_ptr<GuestPage>> ring_pages_;
  std::vector<GrantRef> refs_;  // header first
  std::unique_ptr<PageRun> left_, right_;
  std::unique_ptr<VchanIo> io_;
};

// The vchan servers of one domain (the daemon's).
class SimVchans final : public Vchans {
 public:
  SimVchans(Hypervisor& hv, DomId self) : hv_(hv), self_(self) {}
  Result<std::unique_ptr<VchanServer>> server_init(const VchanServerParams& params) override {
    return SimVchanServer::init(hv_, self_, params);
  }

 private:
  Hypervisor& hv_;
  DomId self_;
};

// Ring orders as libxenvchan_server_init picks them: at least a page, but
// in-page rings (1024 and 2048 bytes) when both sizes allow.
std::pair<int, int> vchan_orders(std::size_t read_min, std::size_t write_min);

}  // namespace vtpm::xen::sim
