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

}  // namespace

Result<std::unique_ptr<TisTransport>> TisTransport::create(std::shared_ptr<MmioRegion> region, TisOptions options) {
  HWTPM_CHECK(check_window("TIS", *region, options.locality));
  HWTPM_TRY(interface_id, region->read32(options.locality * kLocalityStride + kInterfaceId));
  if ((interface_id & 0xF) == kInterfaceTypeCrb) {
    return make_error(ErrorCode::kInvalidArgument, "the TPM at " + region->describe() +
                                                       " uses the CRB interface (TPM_INTF_ID " + mmio_hex(interface_id, 8) +
                                                       "): use crb:ADDRESS instead of tis:");
  }
  HWTPM_TRY(did_vid, region->read32(options.locality * kLocalityStride + kDidVid));
  if (did_vid == 0xFFFFFFFFu || did_vid == 0) {
    return make_error(ErrorCode::kUnavailable, "no TPM answers at " + region->describe() + ": TPM_DID_VID reads " +
                                                   mmio_hex(did_vid, 8) + " (wrong address, or the TPM is disabled)");
  }
  return std::make_unique<TisTransport>(std::move(region), options, did_vid);
}

Status TisTransport::acquire_locality() {
  HWTPM_TRY(access, region_->read8(reg(kAccess)));
  if (access == 0xFF) {
    return failure(ErrorCode::kUnavailable, "TPM_ACCESS reads 0xff: no TIS register page at " + region_->describe());
  }
  constexpr std::uint8_t kHeld = kAccessValid | kAccessActive;
  if ((access & kHeld) == kHeld) return Status::success();
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
                                                mmio_ms(options_.timeouts.a) + ", TPM_ACCESS=" + mmio_hex(access) +
                                                "); another locality holds the TPM?");
  }
  return Status::success();
}

// Completion -> idle on success; on failure this aborts whatever the TPM
// still holds. Its own failure changes nothing: the next transaction's
// commandReady handshake finds out.
Status TisTransport::end_transaction() {
  (void)region_->write8(reg(kStatus), kStsCommandReady);
  return Status::success();
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
    return failure(ErrorCode::kUnavailable, "stsValid never set " + after + " (timeout " + mmio_ms(options_.timeouts.c) +
                                                ", TPM_STS=" + mmio_hex(sts) + ")");
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
                   "burstCount in TPM_STS stayed 0 " + during + " (timeout " + mmio_ms(options_.timeouts.d) + ")");
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
                                                  mmio_ms(options_.timeouts.b) + ", TPM_STS=" + mmio_hex(sts) + ")");
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
    return failure(ErrorCode::kCancelled, "cancelled; no response (dataAvail) within " + mmio_ms(t.b) +
                                              " of commandCancel (TPM_STS=" + mmio_hex(sts) + "); command aborted");
  }
  return failure(ErrorCode::kUnavailable, "no response: dataAvail not set within " + mmio_ms(t.command) +
                                              " of tpmGo (TPM_STS=" + mmio_hex(sts) + "); command aborted");
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
                                                 " (timeout " + mmio_ms(options_.timeouts.c) + ", TPM_STS=" + mmio_hex(sts) +
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
