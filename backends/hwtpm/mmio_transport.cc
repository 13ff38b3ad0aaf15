#include "backends/hwtpm/mmio_transport.h"

#include <cstdio>
#include <functional>
#include <utility>

#include "proto/tpm_packet.h"

namespace vtpm::hwtpm {
namespace {

// Holds the locality for one transaction; gives it back on every exit path.
class LocalityLease {
 public:
  explicit LocalityLease(std::function<void()> release) : release_(std::move(release)) {}
  LocalityLease(const LocalityLease&) = delete;
  LocalityLease& operator=(const LocalityLease&) = delete;
  ~LocalityLease() { release_(); }

 private:
  std::function<void()> release_;
};

}  // namespace

std::string mmio_hex(std::uint64_t value, int width) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%0*llx", width, static_cast<unsigned long long>(value));
  return buf;
}

std::string mmio_ms(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

MmioTransport::MmioTransport(const char* interface, std::shared_ptr<MmioRegion> region, MmioOptions options,
                             std::uint32_t did_vid)
    : region_(std::move(region)), options_(options), interface_(interface), did_vid_(did_vid) {}

Status MmioTransport::check_window(const char* interface, const MmioRegion& region, std::uint8_t locality) {
  const std::string name(interface);
  if (locality > 4) {
    return make_error(ErrorCode::kInvalidArgument,
                      name + " locality " + std::to_string(locality) + " does not exist (0..4)");
  }
  if (!region.contains(0, kWindowSize)) {
    return make_error(ErrorCode::kInvalidArgument, name + " needs a " + mmio_hex(kWindowSize) +
                                                       "-byte window (5 localities); " + region.describe() + " maps " +
                                                       mmio_hex(region.size()));
  }
  return Status::success();
}

std::string MmioTransport::describe() const {
  char ids[32];
  std::snprintf(ids, sizeof ids, "%04x:%04x", did_vid_ & 0xFFFF, did_vid_ >> 16);
  return std::string(interface_) + " " + mmio_hex(region_->physical_base(), 8) + " locality " +
         std::to_string(options_.locality) + " (vendor:device " + ids + ")";
}

Error MmioTransport::failure(ErrorCode code, const std::string& what) const {
  return make_error(code, std::string(interface_) + " locality " + std::to_string(options_.locality) + ": " + what);
}

Status MmioTransport::set_locality(std::uint8_t locality) {
  if (locality > 4) return failure(ErrorCode::kInvalidArgument, "cannot move to locality " + std::to_string(locality) + " (0..4)");
  std::lock_guard lock(transact_mutex_);
  options_.locality = locality;
  return Status::success();
}

Result<std::vector<std::uint8_t>> MmioTransport::transact(std::span<const std::uint8_t> command) {
  std::lock_guard lock(transact_mutex_);
  // A cancel is consumed by the transaction it reaches. One that arrives
  // before this transaction starts (a caller racing its own worker) still
  // counts: the command never reaches the TPM.
  CancelConsumer consume(cancel_requested_);
  if (cancel_requested_) return failure(ErrorCode::kCancelled, "cancelled before the command was sent");
  auto header = tpm::parse_header(command);
  if (!header.ok()) return failure(ErrorCode::kInvalidArgument, "command refused: " + header.error().message);
  if (header->size != command.size()) {
    return failure(ErrorCode::kInvalidArgument, "command refused: header size " + std::to_string(header->size) +
                                                    " but " + std::to_string(command.size()) + " bytes given");
  }
  if (Status s = acquire_locality(); !s.ok()) return s.error();
  const LocalityLease lease([this] { release_locality(); });
  auto response = run_command(command);
  const Status idle = end_transaction();
  if (response.ok() && !idle.ok()) return idle.error();
  return response;
}

}  // namespace vtpm::hwtpm
