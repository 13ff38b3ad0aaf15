#include "backends/hwtpm/crb_transport.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "backends/hwtpm/mmio_try.h"
#include "proto/tpm_packet.h"

namespace vtpm::hwtpm {

namespace {

// Register offsets within a locality's page (all 32-bit) and their bits.
constexpr std::size_t kLocState = 0x00;
constexpr std::size_t kLocCtrl = 0x08;
constexpr std::size_t kLocSts = 0x0C;
constexpr std::size_t kInterfaceId = 0x30;
constexpr std::size_t kCtrlReq = 0x40;
constexpr std::size_t kCtrlSts = 0x44;
constexpr std::size_t kCtrlCancel = 0x48;
constexpr std::size_t kCtrlStart = 0x4C;
constexpr std::size_t kCmdSize = 0x58;
constexpr std::size_t kCmdAddrLow = 0x5C;
constexpr std::size_t kCmdAddrHigh = 0x60;
constexpr std::size_t kRspSize = 0x64;
constexpr std::size_t kRspAddrLow = 0x68;
constexpr std::size_t kRspAddrHigh = 0x6C;

constexpr std::uint32_t kLocStateValid = 0x80;     // tpmRegValidSts
constexpr std::uint32_t kLocStateAssigned = 0x02;  // locAssigned
constexpr int kLocStateActiveShift = 2;            // activeLocality, bits 4:2
constexpr std::uint32_t kLocCtrlRequest = 0x01;
constexpr std::uint32_t kLocCtrlRelinquish = 0x02;
constexpr std::uint32_t kLocStsGranted = 0x01;
constexpr std::uint32_t kReqCmdReady = 0x01;
constexpr std::uint32_t kReqGoIdle = 0x02;
constexpr std::uint32_t kStsFatal = 0x01;           // tpmSts
constexpr std::uint32_t kStart = 0x01;
constexpr std::uint32_t kCancel = 0x01;

constexpr std::uint32_t kInterfaceTypeFifo = 0x0;   // TPM_INTF_ID bits 3:0
constexpr std::uint32_t kInterfaceTypeTis13 = 0xF;

}  // namespace

Result<std::unique_ptr<CrbTransport>> CrbTransport::create(std::shared_ptr<MmioRegion> region, CrbOptions options) {
  HWTPM_CHECK(check_window("CRB", *region, options.locality));
  const std::size_t page = options.locality * kLocalityStride;
  HWTPM_TRY(state, region->read32(page + kLocState));
  if (state == 0xFFFFFFFFu || !(state & kLocStateValid)) {
    return make_error(ErrorCode::kUnavailable, "no CRB answers at " + region->describe() + ": TPM_LOC_STATE reads " +
                                                   mmio_hex(state, 8) + " (wrong address, or the TPM is disabled)");
  }
  HWTPM_TRY(interface_id, region->read32(page + kInterfaceId));
  const std::uint32_t type = interface_id & 0xF;
  if (type == kInterfaceTypeFifo || type == kInterfaceTypeTis13) {
    return make_error(ErrorCode::kInvalidArgument, "the TPM at " + region->describe() +
                                                       " uses the FIFO (TIS) interface (TPM_INTF_ID " +
                                                       mmio_hex(interface_id, 8) + "): use tis:ADDRESS instead of crb:");
  }
  HWTPM_TRY(did_vid, region->read32(page + kInterfaceId + 4));  // TPM_CRB_INTF_ID bits 63:32
  return std::make_unique<CrbTransport>(std::move(region), options, did_vid);
}

Status CrbTransport::acquire_locality() {
  const std::uint32_t mine = options_.locality;
  auto held = [&](std::uint32_t state) {
    return (state & kLocStateValid) && (state & kLocStateAssigned) && ((state >> kLocStateActiveShift) & 7) == mine;
  };
  HWTPM_TRY(state, region_->read32(reg(kLocState)));
  if (held(state)) {
    HWTPM_TRY(sts, region_->read32(reg(kLocSts)));
    if (sts & kLocStsGranted) return Status::success();
  }
  HWTPM_CHECK(region_->write32(reg(kLocCtrl), kLocCtrlRequest));
  HWTPM_TRY(granted, poll_until(options_.timeouts.a, options_.timeouts.poll_interval, [&]() -> Result<bool> {
    HWTPM_TRY(sts, region_->read32(reg(kLocSts)));
    HWTPM_TRY(now, region_->read32(reg(kLocState)));
    state = now;
    return (sts & kLocStsGranted) && held(now);
  }));
  if (!granted) {
    (void)region_->write32(reg(kLocCtrl), kLocCtrlRelinquish);  // withdraw the request
    return failure(ErrorCode::kUnavailable, "locality never granted in TPM_LOC_STS (timeout " +
                                                mmio_ms(options_.timeouts.a) + ", TPM_LOC_STATE=" + mmio_hex(state, 8) +
                                                "); another locality holds the TPM?");
  }
  return Status::success();
}

void CrbTransport::release_locality() { (void)region_->write32(reg(kLocCtrl), kLocCtrlRelinquish); }

Status CrbTransport::check_not_fatal() {
  HWTPM_TRY(sts, region_->read32(reg(kCtrlSts)));
  if (sts & kStsFatal) {
    return failure(ErrorCode::kTpmFailure, "tpmSts set in TPM_CRB_CTRL_STS (" + mmio_hex(sts, 8) +
                                               "): the TPM is in a fatal error state");
  }
  return Status::success();
}

Status CrbTransport::wait_request_bit_clear(std::uint32_t bit, const char* name) {
  std::uint32_t req = 0;
  HWTPM_TRY(cleared, poll_until(options_.timeouts.c, options_.timeouts.poll_interval, [&]() -> Result<bool> {
    HWTPM_TRY(now, region_->read32(reg(kCtrlReq)));
    req = now;
    return (now & bit) == 0;
  }));
  if (!cleared) {
    return failure(ErrorCode::kUnavailable, std::string(name) + " never cleared in TPM_CRB_CTRL_REQ (timeout " +
                                                mmio_ms(options_.timeouts.c) + ", CTRL_REQ=" + mmio_hex(req, 8) + ")");
  }
  return Status::success();
}

Status CrbTransport::go_idle() {
  HWTPM_CHECK(region_->write32(reg(kCtrlReq), kReqGoIdle));
  return wait_request_bit_clear(kReqGoIdle, "goIdle");
}

Result<CrbTransport::Buffer> CrbTransport::buffer(std::size_t size_reg, std::size_t address_low_reg,
                                                  std::size_t address_high_reg, const char* name) {
  HWTPM_TRY(size, region_->read32(reg(size_reg)));
  HWTPM_TRY(low, region_->read32(reg(address_low_reg)));
  HWTPM_TRY(high, region_->read32(reg(address_high_reg)));
  const std::uint64_t address = (std::uint64_t{high} << 32) | low;
  const std::uint64_t base = region_->physical_base();
  const std::uint64_t offset = address - base;  // wraps to huge if address < base
  if (address < base || offset > region_->size() || !region_->contains(static_cast<std::size_t>(offset), size)) {
    return failure(ErrorCode::kTpmFailure, std::string(name) + " buffer [" + mmio_hex(address, 8) + ", +" + mmio_hex(size) +
                                               ") lies outside the mapped window [" + mmio_hex(base, 8) + ", +" +
                                               mmio_hex(region_->size()) + ")");
  }
  if (size < tpm::kHeaderSize) {
    return failure(ErrorCode::kTpmFailure, std::string(name) + " buffer of " + std::to_string(size) +
                                               " bytes cannot hold a TPM header");
  }
  return Buffer{static_cast<std::size_t>(offset), size};
}

Status CrbTransport::wait_for_start_clear() {
  const auto& t = options_.timeouts;
  auto deadline = std::chrono::steady_clock::now() + t.command;
  bool cancel_sent = false;
  for (;;) {
    const bool last = std::chrono::steady_clock::now() >= deadline;
    HWTPM_TRY(start, region_->read32(reg(kCtrlStart)));
    if (start == 0xFFFFFFFFu) {
      // Not a value START can hold: the locality was seized or the TPM went away.
      return failure(ErrorCode::kUnavailable, "TPM_CRB_CTRL_START reads all ones: the locality was taken away "
                                              "(seized) or the TPM stopped answering");
    }
    if (!(start & kStart)) break;
    if (cancel_requested_ && !cancel_sent) {
      // The TPM answers a cancel by finishing (TPM_RC_CANCELED, or the
      // result if it completed first) and clearing START.
      HWTPM_CHECK(region_->write32(reg(kCtrlCancel), kCancel));
      cancel_sent = true;
      deadline = std::chrono::steady_clock::now() + t.b;
    } else if (last) {
      if (!cancel_sent) (void)region_->write32(reg(kCtrlCancel), kCancel);  // abort before going idle
      (void)region_->write32(reg(kCtrlCancel), 0);
      if (cancel_sent) {
        return failure(ErrorCode::kCancelled,
                       "cancelled; START in TPM_CRB_CTRL_START not cleared within " + mmio_ms(t.b) + " of CTRL_CANCEL");
      }
      return failure(ErrorCode::kUnavailable, "no response: START in TPM_CRB_CTRL_START not cleared within " +
                                                  mmio_ms(t.command) + "; command cancelled");
    }
    std::this_thread::sleep_for(t.poll_interval);
  }
  // CTRL_CANCEL stays asserted until software clears it; clear it before the next command.
  if (cancel_sent) HWTPM_CHECK(region_->write32(reg(kCtrlCancel), 0));
  return Status::success();
}

Result<std::vector<std::uint8_t>> CrbTransport::run_command(std::span<const std::uint8_t> command) {
  HWTPM_CHECK(check_not_fatal());
  HWTPM_CHECK(region_->write32(reg(kCtrlReq), kReqCmdReady));
  HWTPM_CHECK(wait_request_bit_clear(kReqCmdReady, "cmdReady"));
  HWTPM_TRY(cmd_buffer, buffer(kCmdSize, kCmdAddrLow, kCmdAddrHigh, "command"));
  HWTPM_TRY(rsp_buffer, buffer(kRspSize, kRspAddrLow, kRspAddrHigh, "response"));
  if (command.size() > cmd_buffer.size) {
    return failure(ErrorCode::kTooLarge, "command of " + std::to_string(command.size()) +
                                             " bytes does not fit the " + std::to_string(cmd_buffer.size) +
                                             "-byte command buffer");
  }
  for (std::size_t i = 0; i < command.size(); ++i) {
    HWTPM_CHECK(region_->write8(cmd_buffer.offset + i, command[i]));
  }
  HWTPM_CHECK(region_->write32(reg(kCtrlStart), kStart));
  HWTPM_CHECK(wait_for_start_clear());
  HWTPM_CHECK(check_not_fatal());

  std::vector<std::uint8_t> response;
  response.reserve(tpm::kHeaderSize);
  for (std::size_t i = 0; i < tpm::kHeaderSize; ++i) {
    HWTPM_TRY(byte, region_->read8(rsp_buffer.offset + i));
    response.push_back(byte);
  }
  const std::uint32_t size = tpm::read_u32(response, 2);
  const std::size_t limit = std::min(rsp_buffer.size, options_.max_response);
  if (size < tpm::kHeaderSize || size > limit) {
    return failure(ErrorCode::kTpmFailure, "response header claims " + std::to_string(size) +
                                               " bytes but the response buffer holds " +
                                               std::to_string(rsp_buffer.size) + " (limit " + std::to_string(limit) +
                                               ")");
  }
  for (std::size_t i = tpm::kHeaderSize; i < size; ++i) {
    HWTPM_TRY(byte, region_->read8(rsp_buffer.offset + i));
    response.push_back(byte);
  }
  return response;
}

}  // namespace vtpm::hwtpm
