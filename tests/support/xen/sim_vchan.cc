#include "tests/support/xen/sim_vchan.h"

#include <atomic>
#include <cstring>

namespace vtpm::xen::sim {

using namespace vchan_layout;

namespace {

int page_order(std::size_t size) {
  int order = kPageShift;
  while (order <= kMaxRingShift && size > (std::size_t{1} << order)) ++order;
  return order;
}

std::size_t pages_of(int order) { return order >= kPageShift ? std::size_t{1} << (order - kPageShift) : 0; }

}  // namespace

std::pair<int, int> vchan_orders(std::size_t read_min, std::size_t write_min) {
  constexpr std::size_t kSmall = std::size_t{1} << kSmallRingShift, kLarge = std::size_t{1} << kLargeRingShift;
  int read = page_order(read_min), write = page_order(write_min);
  if (read_min <= kSmall && write_min <= kLarge) return {kSmallRingShift, kLargeRingShift};
  if (read_min <= kLarge && write_min <= kSmall) return {kLargeRingShift, kSmallRingShift};
  if (read_min <= kLarge) read = kLargeRingShift;
  else if (write_min <= kLarge) write = kLargeRingShift;
  return {read, write};
}

SimVchanServer::SimVchanServer(Hypervisor& hv, DomId self, const VchanServerParams& params)
    : hv_(hv), self_(self), xs_path_(params.xs_path) {}

Result<std::unique_ptr<VchanServer>> SimVchanServer::init(Hypervisor& hv, DomId self, const VchanServerParams& params) {
  std::unique_ptr<SimVchanServer> server(new SimVchanServer(hv, self, params));
  if (Status s = server->setup(params); !s) return s.error();
  return std::unique_ptr<VchanServer>(std::move(server));
}

Status SimVchanServer::setup(const VchanServerParams& params) {
  const auto [read_order, write_order] = vchan_orders(params.read_min, params.write_min);
  if (read_order > kMaxRingShift || write_order > kMaxRingShift) {
    return make_error(ErrorCode::kInvalidArgument, "vchan ring larger than 2^20 bytes");
  }
  // Event channel first, as the library does: a port only `client` may bind.
  events_ = hv_.open_events(self_);
  auto port = events_->alloc_unbound(params.client);
  if (!port) return port.error();
  port_ = *port;

  header_ = std::make_shared<GuestPage>();
  refs_.push_back(hv_.grant_access(self_, params.client, header_));
  std::uint8_t* h = header_->page().data();
  const auto right = static_cast<std::uint16_t>(write_order);
  std::memcpy(h + kRightOrder, &right, 2);
  const auto left = static_cast<std::uint16_t>(read_order);
  std::memcpy(h + kLeftOrder, &left, 2);
  h[kCliLive] = 2;
  h[kSrvLive] = 1;
  h[kCliNotify] = kNotifyWrite;

  // Ring pages: left's grants first, then right's, listed in the header.
  const auto place = [&](int order, std::unique_ptr<PageRun>& run) -> Result<std::uint8_t*> {
    if (order == kSmallRingShift) return h + kSmallRingOffset;
    if (order == kLargeRingShift) return h + kLargeRingOffset;
    std::vector<int> fds;
    for (std::size_t i = 0; i < pages_of(order); ++i) {
      auto page = std::make_shared<GuestPage>();
      const GrantRef ref = hv_.grant_access(self_, params.client, page);
      const std::size_t slot = refs_.size() - 1;
      if (kGrants + (slot + 1) * sizeof(GrantRef) > tpmif::kPageSize) {
        return make_error(ErrorCode::kInvalidArgument, "vchan grant list does not fit the header page");
      }
      std::memcpy(h + kGrants + slot * sizeof(GrantRef), &ref, sizeof ref);
      refs_.push_back(ref);
      fds.push_back(page->fd());
      ring_pages_.push_back(std::move(page));
    }
    auto mapped = PageRun::map(fds, true);
    if (!mapped) return mapped.error();
    run = std::move(*mapped);
    return run->data();
  };
  auto read_buffer = place(read_order, left_);
  if (!read_buffer) return read_buffer.error();
  auto write_buffer = place(write_order, right_);
  if (!write_buffer) return write_buffer.error();
  io_ = std::make_unique<VchanIo>(h, true, VchanIo::Ring{kLeftCons, kLeftProd, *read_buffer, read_order},
                                  VchanIo::Ring{kRightCons, kRightProd, *write_buffer, write_order},
                                  [this] { return events_->notify(port_); });

  store_ = hv_.open_store(self_);
  const std::vector<Permission> perms = {Permission{self_, Permission::kNone}, Permission{params.client, Permission::kRead}};
  const std::string ring_ref = xs_path_ + "/ring-ref", event_channel = xs_path_ + "/event-channel";
  if (Status s = store_->write_all({{ring_ref, std::to_string(refs_.front())}, {event_channel, std::to_string(port_)}}); !s) {
    return s;
  }
  for (const auto& path : {ring_ref, event_channel}) {
    if (Status s = store_->set_permissions(path, perms); !s) return s;
  }
  return Status::success();
}

SimVchanServer::~SimVchanServer() {
  if (header_) {
    std::atomic_ref<std::uint8_t>(header_->page()[kSrvLive]).store(0, std::memory_order_seq_cst);
    if (port_ != 0) (void)events_->notify(port_);  // fails harmlessly when no client is bound
  }
  io_.reset();
  left_.reset();
  right_.reset();
  for (GrantRef ref : refs_) hv_.end_access_deferred(self_, ref);
  if (store_) (void)store_->remove(xs_path_);
  events_.reset();  // closes the port
}

Status SimVchanServer::wait() {
  for (;;) {
    auto port = events_->pending();
    if (!port) return port.error();
    if (!*port) return Status::success();
    if (Status s = events_->unmask(**port); !s) return s;
  }
}

VchanState SimVchanServer::state() const {
  switch (io_->peer_live()) {
    case 1: return VchanState::kConnected;
    case 2: return VchanState::kWaiting;
    default: return VchanState::kClosed;
  }
}

}  // namespace vtpm::xen::sim
