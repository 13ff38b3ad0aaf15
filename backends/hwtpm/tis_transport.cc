#include "backends/hwtpm/tis_transport.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "backends/hwtpm/mmio_try.h"
#include "proto/tpm_packet.h"

namespace vtpm::hwtpm {

namespace {

// Register offsets within a locality's page, and their bits (PTP, FIFO interface).
constexpr std::size_t kAccess = 0x00;
constexpr std::size_t kStatus = 0x18;         // byte 0: status bits; bytes 1-2: burstCount; byte 3: STS3
constexpr std::size_t kStatusByte3 = 0x1B;
constexpr std::size_t kDataFifo = 0x24;
constexpr std::size_t kInterfaceId = 0x30;
constexpr std::size_t kDidVid = 0xF00;

constexpr std::uint8_t kAccessValid = 0x80;          // tpmRegValidSts
constexpr std::uint8_t kAccessActive = 0x20;         // activeLocality (read) / relinquish (write)
constexpr std::uint8_t kAccessRequestUse = 0x02;

constexpr std::uint8_t kStsValid = 0x80;
constexpr std::uint8_t kStsCommandReady = 0x40;
constexpr std::uint8_t kStsGo = 0x20;
constexpr std::uint8_t kStsDataAvail = 0x10;
constexpr std::uint8_t kStsExpect = 0x08;
constexpr std::uint8_t kSts3CommandCancel = 0x01;   // TPM_STS bit 24

constexpr std::uint32_t kInterfaceTypeCrb = 0x1;     // TPM_INTF_ID bits 3:0

std::string hex(std::uint64_t v, int width = 2) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%0*llx", width, static_cast<unsigned long long>(v));
  return buf;
}

std::string ms(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

}  // namespace

// Holds the locality for one transaction; gives it back on every exit path.
class TisTransport::Lease {
 public:
  explicit Lease(TisTransport* owner) : owner_(owner) {}
  Lease(Lease&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (owner_) owner_->release_locality();
  }

 private:
  TisTransport* owner_;
};

Result<std::unique_ptr<TisTransport>> TisTransport::create(std::shared_ptr<MmioRegion> region, TisOptions options) {
  if (options.locality > 4) {
    return make_error(ErrorCode::kInvalidArgument,
                      "TIS locality " + std::to_string(options.locality) + " does not exist (0..4)");
  }
  if (!region->contains(0, kWindowSize)) {
    return make_error(ErrorCode::kInvalidArgument, "TIS needs a " + hex(kWindowSize) + "-byte window (5 localities); " +
                                                       region->describe() + " maps " + hex(region->size()));
  }
  HWTPM_TRY(interface_id, region->read32(options.locality * kLocalityStride + kInterfaceId));
  if ((interface_id & 0xF) == kInterfaceTypeCrb) {
    return make_error(ErrorCode::kInvalidArgument, "the TPM at " + region->describe() +
                                                       " uses the CRB interface (TPM_INTF_ID " + hex(interface_id, 8) +
                                                       "): use crb:ADDRESS instead of tis:");
  }
  HWTPM_TRY(did_vid, region->read32(options.locality * kLocalityStride + kDidVid));
  if (did_vid == 0xFFFFFFFFu || did_vid == 0) {
    return make_error(ErrorCode::kUnavailable, "no TPM answers at " + region->describe() + ": TPM_DID_VID reads " +
                                                   hex(did_vid, 8) + " (wrong address, or the TPM is disabled)");
  }
  return std::make_unique<TisTransport>(std::move(region), options, did_vid);
}

TisTransport::TisTransport(std::shared_ptr<MmioRegion> region, TisOptions options, std::uint32_t did_vid)
    : region_(std::move(region)), options_(options), did_vid_(did_vid) {}

std::string TisTransport::describe() const {
  char ids[32];
  std::snprintf(ids, sizeof ids, "%04x:%04x", did_vid_ & 0xFFFF, did_vid_ >> 16);
  return "TIS " + hex(region_->physical_base(), 8) + " locality " + std::to_string(options_.locality) +
         " (vendor:device " + ids + ")";
}

Error TisTransport::failure(ErrorCode code, const std::string& what) const {
  return make_error(code, "TIS locality " + std::to_string(options_.locality) + ": " + what);
}

Status TisTransport::set_locality(std::uint8_t locality) {
  if (locality > 4) return failure(ErrorCode::kInvalidArgument, "cannot move to locality " + std::to_string(locality) + " (0..4)");
  std::lock_guard lock(transact_mutex_);
  options_.locality = locality;
  return Status::success();
}

Result<std::vector<std::uint8_t>> TisTransport::transact(std::span<const std::uint8_t> command) {
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
  HWTPM_TRY(lease, acquire_locality());
  auto response = run_command(command);
  // Completion -> idle on success; on failure this aborts whatever the TPM
  // still holds (a half-sent command, an unread response) so the next
  // transaction starts clean.
  (void)region_->write8(reg(kStatus), kStsCommandReady);
  return response;
}

Result<TisTransport::Lease> TisTransport::acquire_locality() {
  HWTPM_TRY(access, region_->read8(reg(kAccess)));
  if (access == 0xFF) {
    return failure(ErrorCode::kUnavailable, "TPM_ACCESS reads 0xff: no TIS register page at " + region_->describe());
  }
  constexpr std::uint8_t kHeld = kAccessValid | kAccessActive;
  if ((access & kHeld) == kHeld) return Lease(this);
  HWTPM_CHECK(region_->write8(reg(kAccess), kAccessRequestUse));
  HWTPM_TRY(granted, poll_until(options_.timeouts.a, options_.timeouts.poll_interval, [&]() -> Result<bool> {
    HWTPM_TRY(now, region_->read8(reg(kAccess)));
    access = now;
    return (now & kHeld) == kHeld;
  }));
  if (!granted) {
    // Withdraw the request so the TPM does not hand us the locality later.
    (void)region_->write8(reg(kAccess), kAccessActive);
    return failure(ErrorCode::kUnavailable, "activeLocality never granted in TPM_ACCESS (timeout " +
                                                ms(options_.timeouts.a) + ", TPM_ACCESS=" + hex(access) +
                                                "); another locality holds the TPM?");
  }
  return Lease(this);
}

void TisTransport::release_locality() { (void)region_->write8(reg(kAccess), kAccessActive); }

// A locality that is not active (taken by a higher one's seize) or a TPM
// that stopped answering reads all ones; taken at face value that would be
// stsValid|dataAvail|Expect and a burstCount of 0xffff. tpmGo is write-only
// and reads 0 on a live TPM, so its bit tells the two apart.
Error TisTransport::lost() const {
  return failure(ErrorCode::kUnavailable,
                 "TPM_STS reads all ones: the locality was taken away (seized) or the TPM stopped answering");
}

Result<std::uint8_t> TisTransport::status() {
  HWTPM_TRY(sts, region_->read8(reg(kStatus)));
  if (sts & kStsGo) return lost();
  return sts;
}

Result<std::uint8_t> TisTransport::wait_status_valid(const std::string& after) {
  std::uint8_t sts = 0;
  HWTPM_TRY(valid, poll_until(options_.timeouts.c, options_.timeouts.poll_interval, [&]() -> Result<bool> {
    HWTPM_TRY(now, status());
    sts = now;
    return (now & kStsValid) != 0;
  }));
  if (!valid) {
    return failure(ErrorCode::kUnavailable, "stsValid never set " + after + " (timeout " + ms(options_.timeouts.c) +
                                                ", TPM_STS=" + hex(sts) + ")");
  }
  return sts;
}

Result<std::size_t> TisTransport::wait_burst_count(const std::string& during) {
  std::size_t burst = 0;
  HWTPM_TRY(nonzero, poll_until(options_.timeouts.d, options_.timeouts.poll_interval, [&]() -> Result<bool> {
    HWTPM_TRY(sts, region_->read32(reg(kStatus)));
    if (sts & kStsGo) return lost();
    burst = (sts >> 8) & 0xFFFF;
    return burst != 0;
  }));
  if (!nonzero) {
    return failure(ErrorCode::kUnavailable,
                   "burstCount in TPM_STS stayed 0 " + during + " (timeout " + ms(options_.timeouts.d) + ")");
  }
  return burst;
}

Result<std::vector<std::uint8_t>> TisTransport::run_command(std::span<const std::uint8_t> command) {
  HWTPM_TRY(sts, status());
  if (!(sts & kStsCommandReady)) {
    HWTPM_CHECK(region_->write8(reg(kStatus), kStsCommandReady));
    HWTPM_TRY(ready, poll_until(options_.timeouts.b, options_.timeouts.poll_interval, [&]() -> Result<bool> {
      HWTPM_TRY(now, status());
      sts = now;
      return (now & kStsCommandReady) != 0;
    }));
    if (!ready) {
      return failure(ErrorCode::kUnavailable, "commandReady never set in TPM_STS (timeout " +
                                                  ms(options_.timeouts.b) + ", TPM_STS=" + hex(sts) + ")");
    }
  }
  HWTPM_CHECK(send(command));
  HWTPM_CHECK(wait_for_response());

  std::vector<std::uint8_t> response;
  HWTPM_CHECK(receive(response, tpm::kHeaderSize));
  const std::uint32_t size = tpm::read_u32(response, 2);
  if (size < tpm::kHeaderSize || size > options_.max_response) {
    return failure(ErrorCode::kTpmFailure, "response header claims " + std::to_string(size) +
                                               " bytes (valid: 10.." + std::to_string(options_.max_response) + ")");
  }
  HWTPM_CHECK(receive(response, size));
  HWTPM_TRY(after, wait_status_valid("after the last response byte"));
  if (after & kStsDataAvail) {
    return failure(ErrorCode::kTpmFailure, "dataAvail still set after all " + std::to_string(size) +
                                               " response bytes (the response is longer than its header)");
  }
  return response;
}

Status TisTransport::send(std::span<const std::uint8_t> command) {
  const std::size_t total = command.size();
  const std::string of_total = " of " + std::to_string(total);
  std::size_t sent = 0;
  // All but the last byte, in bursts the TPM has room for; Expect must stay
  // set, since the TPM has not seen the whole command yet.
  while (sent < total - 1) {
    if (cancel_requested_) return failure(ErrorCode::kCancelled, "cancelled while sending the command");
    HWTPM_TRY(burst, wait_burst_count("after " + std::to_string(sent) + of_total + " command bytes"));
    const std::size_t chunk = std::min(burst, total - 1 - sent);
    for (std::size_t i = 0; i < chunk; ++i) HWTPM_CHECK(region_->write8(reg(kDataFifo), command[sent + i]));
    sent += chunk;
    HWTPM_TRY(sts, wait_status_valid("after " + std::to_string(sent) + of_total + " command bytes"));
    if (!(sts & kStsExpect)) {
      return failure(ErrorCode::kTpmFailure, "Expect cleared after " + std::to_string(sent) + of_total +
                                                 " command bytes (the TPM read a shorter command size)");
    }
  }
  HWTPM_TRY(burst, wait_burst_count("before the last command byte"));
  (void)burst;
  HWTPM_CHECK(region_->write8(reg(kDataFifo), command[total - 1]));
  HWTPM_TRY(sts, wait_status_valid("after the last command byte"));
  if (sts & kStsExpect) {
    return failure(ErrorCode::kTpmFailure, "Expect still set after the last" + of_total +
                                               " command bytes (the TPM wants more than the header says)");
  }
  return region_->write8(reg(kStatus), kStsGo);
}

Status TisTransport::wait_for_response() {
  constexpr std::uint8_t kDone = kStsValid | kStsDataAvail;
  const auto& t = options_.timeouts;
  auto deadline = std::chrono::steady_clock::now() + t.command;
  bool cancel_sent = false;
  std::uint8_t sts = 0;
  for (;;) {
    const bool last = std::chrono::steady_clock::now() >= deadline;
    HWTPM_TRY(now, status());
    sts = now;
    if ((sts & kDone) == kDone) return Status::success();
    if (cancel_requested_ && !cancel_sent) {
      // The TPM answers a cancel with a response (TPM_RC_CANCELED, or the
      // result if it finished first) within TIMEOUT_B.
      HWTPM_CHECK(region_->write8(reg(kStatusByte3), kSts3CommandCancel));
      cancel_sent = true;
      deadline = std::chrono::steady_clock::now() + t.b;
    } else if (last) {
      break;
    }
    std::this_thread::sleep_for(t.poll_interval);
  }
  if (cancel_sent) {
    return failure(ErrorCode::kCancelled, "cancelled; no response (dataAvail) within " + ms(t.b) +
                                              " of commandCancel (TPM_STS=" + hex(sts) + "); command aborted");
  }
  return failure(ErrorCode::kUnavailable, "no response: dataAvail not set within " + ms(t.command) +
                                              " of tpmGo (TPM_STS=" + hex(sts) + "); command aborted");
}

Status TisTransport::receive(std::vector<std::uint8_t>& response, std::size_t total) {
  constexpr std::uint8_t kAvail = kStsValid | kStsDataAvail;
  const std::string of_total = " of " + std::to_string(total) + " response bytes";
  while (response.size() < total) {
    std::uint8_t sts = 0;
    HWTPM_TRY(avail, poll_until(options_.timeouts.c, options_.timeouts.poll_interval, [&]() -> Result<bool> {
      HWTPM_TRY(now, status());
      sts = now;
      return (now & kAvail) == kAvail;
    }));
    if (!avail) {
      return failure(ErrorCode::kTpmFailure, "dataAvail cleared after " + std::to_string(response.size()) + of_total +
                                                 " (timeout " + ms(options_.timeouts.c) + ", TPM_STS=" + hex(sts) +
                                                 "): the response is shorter than its header");
    }
    HWTPM_TRY(burst, wait_burst_count("after " + std::to_string(response.size()) + of_total));
    const std::size_t chunk = std::min(burst, total - response.size());
    for (std::size_t i = 0; i < chunk; ++i) {
      HWTPM_TRY(byte, region_->read8(reg(kDataFifo)));
      response.push_back(byte);
    }
  }
  return Status::success();
}

}  // namespace vtpm::hwtpm
