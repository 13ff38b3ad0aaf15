#include "tests/support/hwtpm/crb_model.h"

#include <algorithm>
#include <cstdio>

namespace vtpm::testing {

namespace {

// The model's own reading of the PTP CRB register map.
constexpr std::size_t kPage = 0x1000;
constexpr std::size_t kRegLocState = 0x00;
constexpr std::size_t kRegLocCtrl = 0x08;
constexpr std::size_t kRegLocSts = 0x0C;
constexpr std::size_t kRegIntfId = 0x30;
constexpr std::size_t kRegCtrlReq = 0x40;
constexpr std::size_t kRegCtrlSts = 0x44;
constexpr std::size_t kRegCtrlCancel = 0x48;
constexpr std::size_t kRegCtrlStart = 0x4C;
constexpr std::size_t kRegCmdSize = 0x58;
constexpr std::size_t kRegCmdLow = 0x5C;
constexpr std::size_t kRegCmdHigh = 0x60;
constexpr std::size_t kRegRspSize = 0x64;
constexpr std::size_t kRegRspLow = 0x68;
constexpr std::size_t kRegRspHigh = 0x6C;

const char* name(CrbModel::State s) {
  switch (s) {
    case CrbModel::State::kIdle: return "idle";
    case CrbModel::State::kReady: return "ready";
    case CrbModel::State::kExecution: return "execution";
    case CrbModel::State::kCompletion: return "completion";
  }
  return "?";
}

}  // namespace

CrbModel::CrbModel(Executor execute) : execute_(std::move(execute)) {}

void CrbModel::set_faults(const CrbFaults& faults) {
  std::lock_guard lock(mutex_);
  faults_ = faults;
  if (!faults.never_grant && !active_) grant_next();
}
std::optional<int> CrbModel::active_locality() {
  std::lock_guard lock(mutex_);
  return active_;
}
std::set<int> CrbModel::pending_requests() {
  std::lock_guard lock(mutex_);
  return pending_;
}
CrbModel::State CrbModel::state() {
  std::lock_guard lock(mutex_);
  return state_;
}
std::vector<std::string> CrbModel::violations() {
  std::lock_guard lock(mutex_);
  return violations_;
}
int CrbModel::executed() {
  std::lock_guard lock(mutex_);
  return executed_;
}
int CrbModel::cancelled() {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void CrbModel::violation(std::string what) {
  violations_.push_back(std::move(what) + " (state " + name(state_) + ")");
}

std::uint8_t CrbModel::load8(std::size_t offset) {
  std::lock_guard lock(mutex_);
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg >= kBufferOffset) {
    if (active_ != locality) return 0xFF;
    if (state_ == State::kExecution) violation("buffer read while the command executes");
    return buffers_[locality][reg - kBufferOffset];
  }
  // Control registers are 32-bit; a byte read takes its lane.
  return static_cast<std::uint8_t>(read_register(locality, reg & ~std::size_t{3}) >> (8 * (reg & 3)));
}

std::uint32_t CrbModel::load32(std::size_t offset) {
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg >= kBufferOffset) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{load8(offset + i)} << (8 * i);
    return v;
  }
  std::lock_guard lock(mutex_);
  return read_register(locality, reg);
}

void CrbModel::store8(std::size_t offset, std::uint8_t value) {
  std::lock_guard lock(mutex_);
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg >= kBufferOffset) {
    if (active_ != locality) return violation("buffer write from inactive locality " + std::to_string(locality));
    if (state_ != State::kReady) return violation("buffer write before cmdReady completed");
    buffers_[locality][reg - kBufferOffset] = value;
    return;
  }
  violation("byte write to control register " + std::to_string(reg));
}

void CrbModel::store32(std::size_t offset, std::uint32_t value) {
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg >= kBufferOffset) {
    for (int i = 0; i < 4; ++i) store8(offset + i, static_cast<std::uint8_t>(value >> (8 * i)));
    return;
  }
  std::lock_guard lock(mutex_);
  write_register(locality, reg, value);
}

std::uint32_t CrbModel::read_register(int locality, std::size_t reg) {
  const std::uint64_t buffer = physical_base() + static_cast<std::uint64_t>(locality) * kPage + kBufferOffset;
  switch (reg) {
    case kRegLocState: {
      std::uint32_t v = 0x80 | 0x01;  // tpmRegValidSts, tpmEstablished
      if (active_) v |= 0x02 | (static_cast<std::uint32_t>(*active_) << 2);
      return v;
    }
    case kRegLocSts: return (active_ == locality ? 0x01u : 0u) | (seized_.count(locality) ? 0x02u : 0u);
    case kRegIntfId: return 0x1;  // InterfaceType 1: CRB
    case kRegIntfId + 4: return 0x001B1014;  // INTF_ID bits 63:32: DID, VID
    default: break;
  }
  if (active_ != locality) return 0xFFFFFFFFu;  // the control area belongs to the active locality
  switch (reg) {
    case kRegCtrlReq:
      // A request bit reads 1 until the TPM has acted on it (two reads later).
      if (request_ && !(faults_.never_ready && (request_ & 0x01)) && ++request_reads_ >= 2) {
        state_ = (request_ & 0x02) ? State::kIdle : State::kReady;
        request_ = 0;
      }
      return request_;
    case kRegCtrlSts: return (faults_.fatal ? 0x01u : 0u) | (state_ == State::kIdle ? 0x02u : 0u);
    case kRegCtrlCancel: return cancel_ ? 1u : 0u;
    case kRegCtrlStart:
      step_execution();
      return start_ ? 1u : 0u;
    case kRegCmdSize: return kBufferSize;
    case kRegCmdLow: return static_cast<std::uint32_t>(faults_.command_buffer_address.value_or(buffer));
    case kRegCmdHigh: return static_cast<std::uint32_t>(faults_.command_buffer_address.value_or(buffer) >> 32);
    case kRegRspSize: return faults_.response_buffer_size.value_or(kBufferSize);
    case kRegRspLow: return static_cast<std::uint32_t>(buffer);
    case kRegRspHigh: return static_cast<std::uint32_t>(buffer >> 32);
    default: return 0;
  }
}

void CrbModel::write_register(int locality, std::size_t reg, std::uint32_t value) {
  if (reg == kRegLocCtrl) return write_loc_ctrl(locality, value);
  if (active_ != locality) {
    char what[96];
    std::snprintf(what, sizeof what, "write 0x%x to register 0x%02zx of locality %d, which is not active", value, reg,
                  locality);
    return violation(what);
  }
  switch (reg) {
    case kRegCtrlReq:
      if (value & 0x03) {
        if (state_ == State::kExecution) violation("cmdReady/goIdle while the command executes");
        request_ = value & 0x03;
        request_reads_ = 0;
      }
      return;
    case kRegCtrlCancel:
      cancel_ = (value & 1) != 0;
      if (cancel_ && state_ == State::kExecution) {
        static constexpr std::uint8_t kCanceled[] = {0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0x09, 0x09};
        std::copy(std::begin(kCanceled), std::end(kCanceled), buffers_[locality].begin());
        ++cancelled_;
        state_ = State::kCompletion;
        start_ = false;
      }
      return;
    case kRegCtrlStart:
      if (!(value & 1)) return;
      if (state_ != State::kReady) return violation("START without cmdReady");
      if (cancel_) return violation("START while CTRL_CANCEL is still set");
      state_ = State::kExecution;
      start_ = true;
      execution_reads_ = 0;
      return;
    default: return;
  }
}

void CrbModel::step_execution() {
  if (state_ != State::kExecution || faults_.hang_execution || ++execution_reads_ < 2) return;
  auto& buffer = buffers_[*active_];
  std::uint32_t size = (std::uint32_t{buffer[2]} << 24) | (std::uint32_t{buffer[3]} << 16) |
                       (std::uint32_t{buffer[4]} << 8) | buffer[5];
  size = std::clamp<std::uint32_t>(size, 10, kBufferSize);
  auto response = execute_(std::span<const std::uint8_t>(buffer.data(), size));
  ++executed_;
  if (faults_.response_size_field && response.size() >= 6) {
    const std::uint32_t v = *faults_.response_size_field;
    for (int i = 0; i < 4; ++i) response[2 + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  }
  std::copy_n(response.begin(), std::min(response.size(), buffer.size()), buffer.begin());
  state_ = State::kCompletion;
  start_ = false;
}

void CrbModel::write_loc_ctrl(int locality, std::uint32_t value) {
  if ((value & 0x04) && active_ && locality > *active_) {  // seize
    seized_.insert(*active_);
    active_ = locality;
    pending_.erase(locality);
    state_ = State::kIdle;
  }
  if (value & 0x01) {  // requestAccess
    if (active_ != locality) {
      if (!active_ && !faults_.never_grant) {
        active_ = locality;
        seized_.erase(locality);
      } else {
        pending_.insert(locality);
      }
    }
  }
  if (value & 0x02) {  // relinquish (or withdraw a request)
    if (active_ == locality) {
      active_.reset();
      state_ = State::kIdle;
      start_ = false;
      request_ = 0;
      grant_next();
    } else {
      pending_.erase(locality);
    }
  }
}

void CrbModel::grant_next() {
  if (faults_.never_grant || pending_.empty()) return;
  active_ = *pending_.rbegin();
  pending_.erase(*active_);
}

}  // namespace vtpm::testing
