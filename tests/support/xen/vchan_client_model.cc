#include "tests/support/xen/vchan_client_model.h"

#include <atomic>
#include <cstring>

#include "proto/tpmif.h"

namespace vtpm::xen::sim {

using namespace vchan_layout;

namespace {

std::uint16_t u16_at(const std::uint8_t* p) {
  std::uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

Result<std::unique_ptr<VchanClient>> VchanClient::connect(Hypervisor& hv, DomId self, DomId server,
                                                          const std::string& xs_path) {
  auto store = hv.open_store(self);
  auto ref_text = store->read(xs_path + "/ring-ref");
  if (!ref_text) return ref_text.error();
  auto port_text = store->read(xs_path + "/event-channel");
  if (!port_text) return port_text.error();
  const auto ring_ref = tpmif::parse_uint(*ref_text, 0xFFFFFFFEu);
  const auto remote_port = tpmif::parse_uint(*port_text, 0xFFFFFFFEu);
  if (!ring_ref || *ring_ref == 0 || !remote_port || *remote_port == 0) {
    return make_error(ErrorCode::kInvalidArgument, "vchan nodes under " + xs_path + " are not numbers");
  }
  std::unique_ptr<VchanClient> c(new VchanClient());
  c->events_ = hv.open_events(self);
  auto port = c->events_->bind_interdomain(server, *remote_port);
  if (!port) return port.error();
  c->port_ = *port;
  if (Status s = c->events_->unmask(c->port_); !s) return s.error();

  auto header = hv.map_grants(self, server, {*ring_ref}, true);
  if (!header) return header.error();
  c->header_ = std::move(*header);
  std::uint8_t* h = c->header_->data();
  // The client writes left and reads right.
  const int write_order = u16_at(h + kLeftOrder), read_order = u16_at(h + kRightOrder);
  for (int order : {write_order, read_order}) {
    if (order < kSmallRingShift || order > kMaxRingShift) {
      return make_error(ErrorCode::kInvalidArgument, "vchan ring order " + std::to_string(order) + " out of range");
    }
  }
  if (write_order == read_order && write_order < kPageShift) {
    return make_error(ErrorCode::kInvalidArgument, "vchan rings overlap in the header page");
  }
  std::size_t next_grant = 0;
  const auto place = [&](int order, std::unique_ptr<PageRun>& run, bool writable) -> Result<std::uint8_t*> {
    if (order == kSmallRingShift) return h + kSmallRingOffset;
    if (order == kLargeRingShift) return h + kLargeRingOffset;
    std::vector<GrantRef> refs;
    for (std::size_t i = 0; i < (std::size_t{1} << (order - kPageShift)); ++i, ++next_grant) {
      if (kGrants + (next_grant + 1) * sizeof(GrantRef) > tpmif::kPageSize) {
        return make_error(ErrorCode::kInvalidArgument, "vchan grant list runs past the header page");
      }
      GrantRef ref;
      std::memcpy(&ref, h + kGrants + next_grant * sizeof ref, sizeof ref);
      refs.push_back(ref);
    }
    auto mapped = hv.map_grants(self, server, refs, writable);
    if (!mapped) return mapped.error();
    run = std::move(*mapped);
    return run->data();
  };
  auto write_buffer = place(write_order, c->write_ring_, true);
  if (!write_buffer) return write_buffer.error();
  auto read_buffer = place(read_order, c->read_ring_, false);
  if (!read_buffer) return read_buffer.error();
  Port bound = c->port_;
  SimEvents* events = c->events_.get();
  c->io_ = std::make_unique<VchanIo>(h, false, VchanIo::Ring{kRightCons, kRightProd, *read_buffer, read_order},
                                     VchanIo::Ring{kLeftCons, kLeftProd, *write_buffer, write_order},
                                     [events, bound] { return events->notify(bound); });
  std::atomic_ref<std::uint8_t>(h[kCliLive]).store(1, std::memory_order_seq_cst);
  std::atomic_ref<std::uint8_t>(h[kSrvNotify]).store(kNotifyWrite, std::memory_order_seq_cst);
  (void)c->events_->notify(c->port_);  // wake the server
  return c;
}

VchanClient::~VchanClient() {
  // libxenvchan_close, and the unmap notification on cli_live that the
  // kernel performs even when the client dies.
  if (header_) std::atomic_ref<std::uint8_t>(header_->data()[kCliLive]).store(0, std::memory_order_seq_cst);
  io_.reset();
  read_ring_.reset();
  write_ring_.reset();
  header_.reset();
  if (events_ && port_ != 0) (void)events_->notify(port_);
}

Status VchanClient::notify() { return events_->notify(port_); }

void VchanClient::send(std::vector<std::uint8_t> bytes) { outbox_.insert(outbox_.end(), bytes.begin(), bytes.end()); }

bool VchanClient::pump() {
  // Drain our event queue, as the client's wait() would.
  for (;;) {
    auto p = events_->pending();
    if (!p || !*p) break;
    (void)events_->unmask(**p);
  }
  while (!outbox_.empty() && !failed_) {
    std::vector<std::uint8_t> chunk(outbox_.begin(), outbox_.end());
    auto n = io_->write(chunk);
    if (!n) {
      failed_ = true;
      break;
    }
    if (*n == 0) break;
    if (*n < chunk.size()) ++partial_writes_;
    outbox_.erase(outbox_.begin(), outbox_.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  for (;;) {
    std::uint8_t buf[1024];
    auto n = io_->read(buf);
    if (!n) {
      failed_ = true;
      break;
    }
    if (*n == 0) break;
    inbox_.insert(inbox_.end(), buf, buf + *n);
  }
  return buffered_response_size().has_value();
}

std::optional<std::size_t> VchanClient::buffered_response_size() const {
  if (inbox_.size() < 10) return std::nullopt;
  const std::size_t size = (std::size_t{inbox_[2]} << 24) | (std::size_t{inbox_[3]} << 16) | (std::size_t{inbox_[4]} << 8) | inbox_[5];
  if (inbox_.size() < size) return std::nullopt;
  return size;
}

std::optional<std::vector<std::uint8_t>> VchanClient::take_response() {
  const auto size = buffered_response_size();
  if (!size) return std::nullopt;
  std::vector<std::uint8_t> out(inbox_.begin(), inbox_.begin() + static_cast<std::ptrdiff_t>(*size));
  inbox_.erase(inbox_.begin(), inbox_.begin() + static_cast<std::ptrdiff_t>(*size));
  return out;
}

}  // namespace vtpm::xen::sim
