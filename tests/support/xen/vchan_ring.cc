#include "tests/support/xen/vchan_ring.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#if __has_include(<xen/io/libxenvchan.h>)
#include <cstddef>
extern "C" {
#include <xen/io/libxenvchan.h>
}
namespace {
namespace L = vtpm::xen::sim::vchan_layout;
static_assert(offsetof(vchan_interface, left) == L::kLeftCons && offsetof(vchan_interface, right) == L::kRightCons);
static_assert(offsetof(vchan_interface, left_order) == L::kLeftOrder && offsetof(vchan_interface, right_order) == L::kRightOrder);
static_assert(offsetof(vchan_interface, cli_live) == L::kCliLive && offsetof(vchan_interface, srv_live) == L::kSrvLive);
static_assert(offsetof(vchan_interface, cli_notify) == L::kCliNotify && offsetof(vchan_interface, srv_notify) == L::kSrvNotify);
static_assert(offsetof(vchan_interface, grants) == L::kGrants);
static_assert(VCHAN_NOTIFY_WRITE == L::kNotifyWrite && VCHAN_NOTIFY_READ == L::kNotifyRead);
}  // namespace
#endif

namespace vtpm::xen::sim {

using namespace vchan_layout;

std::uint32_t VchanIo::load(std::size_t offset) const {
  return std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(header_ + offset)).load(std::memory_order_acquire);
}

void VchanIo::store(std::size_t offset, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(*reinterpret_cast<std::uint32_t*>(header_ + offset)).store(value, std::memory_order_release);
}

std::uint8_t VchanIo::peer_live() const {
  return std::atomic_ref<std::uint8_t>(header_[server_ ? kCliLive : kSrvLive]).load(std::memory_order_acquire);
}

// A peer that moved an index beyond the ring's size gets "nothing": the
// ring locks up rather than reading outside it (libxenvchan does the same).
std::size_t VchanIo::raw_ready() const {
  const std::uint32_t ready = load(read_.prod_offset) - load(read_.cons_offset);
  return ready > (1u << read_.order) ? 0 : ready;
}

std::size_t VchanIo::raw_space() const {
  const std::uint32_t size = 1u << write_.order;
  const std::uint32_t space = size - (load(write_.prod_offset) - load(write_.cons_offset));
  return space > size ? 0 : space;
}

void VchanIo::request_notify(std::uint8_t bit) {
  // Our requests go in the peer's notify byte: the peer tells us.
  std::atomic_ref<std::uint8_t>(header_[server_ ? kCliNotify : kSrvNotify]).fetch_or(bit, std::memory_order_seq_cst);
}

Status VchanIo::send_notify(std::uint8_t bit) {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // indexes first
  const std::uint8_t before = std::atomic_ref<std::uint8_t>(header_[server_ ? kSrvNotify : kCliNotify])
                                  .fetch_and(static_cast<std::uint8_t>(~bit), std::memory_order_seq_cst);
  return (before & bit) ? notify_() : Status::success();
}

std::size_t VchanIo::data_ready() {
  request_notify(kNotifyWrite);
  return raw_ready();
}

std::size_t VchanIo::buffer_space() {
  request_notify(kNotifyRead);
  return raw_space();
}

Result<std::size_t> VchanIo::read(std::span<std::uint8_t> out) {
  std::size_t ready = raw_ready();
  if (ready < out.size()) {
    request_notify(kNotifyWrite);
    ready = raw_ready();  // the writer may have moved between the two looks
  }
  const std::size_t n = std::min(ready, out.size());
  if (n == 0) {
    if (peer_live() == 0) return make_error(ErrorCode::kIo, "vchan peer closed");
    return std::size_t{0};
  }
  const std::uint32_t size = 1u << read_.order;
  const std::uint32_t cons = load(read_.cons_offset);
  const std::size_t at = cons & (size - 1);
  const std::size_t first = std::min<std::size_t>(n, size - at);
  std::memcpy(out.data(), read_.buffer + at, first);
  std::memcpy(out.data() + first, read_.buffer, n - first);  // wrapped past the end
  store(read_.cons_offset, cons + static_cast<std::uint32_t>(n));
  if (Status s = send_notify(kNotifyRead); !s) return s.error();
  return n;
}

Result<std::size_t> VchanIo::write(std::span<const std::uint8_t> in) {
  if (peer_live() == 0) return make_error(ErrorCode::kIo, "vchan peer closed");
  std::size_t space = raw_space();
  if (space < in.size()) {
    request_notify(kNotifyRead);
    space = raw_space();
  }
  const std::size_t n = std::min(space, in.size());
  if (n == 0) return std::size_t{0};
  const std::uint32_t size = 1u << write_.order;
  const std::uint32_t prod = load(write_.prod_offset);
  const std::size_t at = prod & (size - 1);
  const std::size_t first = std::min<std::size_t>(n, size - at);
  std::memcpy(write_.buffer + at, in.data(), first);
  std::memcpy(write_.buffer, in.data() + first, n - first);
  store(write_.prod_offset, prod + static_cast<std::uint32_t>(n));
  if (Status s = send_notify(kNotifyWrite); !s) return s.error();
  return n;
}

}  // namespace vtpm::xen::sim
