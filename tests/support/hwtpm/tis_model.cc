#include "tests/support/hwtpm/tis_model.h"

#include <algorithm>
#include <cstdio>

namespace vtpm::testing {

namespace {

// The model's own reading of the PTP FIFO register map (deliberately not
// shared with the driver, so a wrong constant cannot hide on both sides).
constexpr std::size_t kPage = 0x1000;
constexpr std::size_t kRegAccess = 0x00;
constexpr std::size_t kRegSts = 0x18;
constexpr std::size_t kRegBurstLow = 0x19;
constexpr std::size_t kRegBurstHigh = 0x1A;
constexpr std::size_t kRegSts3 = 0x1B;
constexpr std::size_t kRegFifo = 0x24;      // 0x24..0x27 all reach the FIFO
constexpr std::size_t kRegIntfId = 0x30;
constexpr std::size_t kRegDidVid = 0xF00;
constexpr std::uint32_t kDidVid = 0x001A1014;  // a made-up device 0x001a of vendor 0x1014

std::vector<std::uint8_t> canceled_response() {
  return {0x80, 0x01, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x09, 0x09};
}

const char* name(TisModel::State s) {
  switch (s) {
    case TisModel::State::kIdle: return "idle";
    case TisModel::State::kReady: return "ready";
    case TisModel::State::kReception: return "reception";
    case TisModel::State::kExecution: return "execution";
    case TisModel::State::kCompletion: return "completion";
  }
  return "?";
}

bool is_fifo(std::size_t reg) { return reg >= kRegFifo && reg < kRegFifo + 4; }
bool is_sts(std::size_t reg) { return reg >= kRegSts && reg < kRegSts + 4; }

}  // namespace

TisModel::TisModel(Executor execute, std::uint16_t burst_size) : execute_(std::move(execute)), burst_size_(burst_size) {}

void TisModel::set_faults(const TisFaults& faults) {
  std::lock_guard lock(mutex_);
  faults_ = faults;
  if (!faults.missing_sts_valid) sts_valid_lost_ = false;
  if (!faults.never_grant && !active_) grant_next();
}

std::optional<int> TisModel::active_locality() {
  std::lock_guard lock(mutex_);
  return active_;
}
std::set<int> TisModel::pending_requests() {
  std::lock_guard lock(mutex_);
  return pending_;
}
TisModel::State TisModel::state() {
  std::lock_guard lock(mutex_);
  return state_;
}
std::vector<std::string> TisModel::violations() {
  std::lock_guard lock(mutex_);
  return violations_;
}
int TisModel::executed() {
  std::lock_guard lock(mutex_);
  return executed_;
}
int TisModel::cancelled() {
  std::lock_guard lock(mutex_);
  return cancelled_;
}
int TisModel::aborted() {
  std::lock_guard lock(mutex_);
  return aborted_;
}

void TisModel::violation(std::string what) {
  violations_.push_back(std::move(what) + " (state " + name(state_) + ")");
}

// ---- Registers -------------------------------------------------------------

std::uint8_t TisModel::load8(std::size_t offset) {
  std::lock_guard lock(mutex_);
  return read_locked(static_cast<int>(offset / kPage), offset % kPage);
}

std::uint32_t TisModel::load32(std::size_t offset) {
  std::lock_guard lock(mutex_);
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg == kRegSts) {
    if (active_ != locality) return 0xFFFFFFFFu;
    // One read of status and burstCount together, as drivers do.
    const std::uint8_t bits = status_bits();
    const std::uint16_t burst = burst_count();
    budget_ = burst;
    return bits | (std::uint32_t{burst} << 8);
  }
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{read_locked(locality, reg + i)} << (8 * i);
  return v;
}

void TisModel::store8(std::size_t offset, std::uint8_t value) {
  std::lock_guard lock(mutex_);
  write_locked(static_cast<int>(offset / kPage), offset % kPage, value);
}

void TisModel::store32(std::size_t offset, std::uint32_t value) {
  std::lock_guard lock(mutex_);
  const int locality = static_cast<int>(offset / kPage);
  const std::size_t reg = offset % kPage;
  if (reg == kRegSts) {
    // Byte lanes that carry a 1 act; zero bytes are no-ops.
    for (int i = 0; i < 4; ++i) {
      const auto byte = static_cast<std::uint8_t>(value >> (8 * i));
      if (byte != 0) write_locked(locality, reg + i, byte);
    }
    return;
  }
  if (is_fifo(reg)) {
    for (int i = 0; i < 4; ++i) write_locked(locality, reg, static_cast<std::uint8_t>(value >> (8 * i)));
    return;
  }
  write_locked(locality, reg, static_cast<std::uint8_t>(value));
}

std::uint8_t TisModel::read_locked(int locality, std::size_t reg) {
  if (reg == kRegAccess) return access(locality);
  if (reg >= kRegDidVid && reg < kRegDidVid + 4) return static_cast<std::uint8_t>(kDidVid >> (8 * (reg - kRegDidVid)));
  if (reg >= kRegIntfId && reg < kRegIntfId + 4) return 0;  // InterfaceType 0: FIFO for TPM 2.0
  if (!is_sts(reg) && !is_fifo(reg)) return 0;
  // Status and FIFO belong to the active locality; others read all ones.
  if (active_ != locality) return 0xFF;
  switch (reg) {
    case kRegSts: return status_bits();
    case kRegBurstLow: budget_ = burst_count(); return static_cast<std::uint8_t>(burst_count());
    case kRegBurstHigh: budget_ = burst_count(); return static_cast<std::uint8_t>(burst_count() >> 8);
    case kRegSts3: return 0;
    default: return fifo_read();
  }
}

void TisModel::write_locked(int locality, std::size_t reg, std::uint8_t value) {
  if (reg == kRegAccess) return write_access(locality, value);
  if (!is_sts(reg) && !is_fifo(reg)) return;  // interrupt registers etc.: unused here
  if (active_ != locality) {
    char what[96];
    std::snprintf(what, sizeof what, "write 0x%02x to register 0x%03zx of locality %d, which is not active", value,
                  reg, locality);
    violation(what);
    return;  // the TPM ignores it
  }
  if (reg == kRegSts) return write_status(value);
  if (reg == kRegSts3) {
    if ((value & 0x01) && state_ == State::kExecution) {  // commandCancel
      ++cancelled_;
      complete(canceled_response());
    }
    return;
  }
  if (is_fifo(reg)) return fifo_write(value);
  // burstCount bytes are read-only
}

// ---- Locality ----------------------------------------------------------------

std::uint8_t TisModel::access(int locality) const {
  std::uint8_t v = 0x80 | 0x01;  // tpmRegValidSts, tpmEstablishment (no HASH_START seen)
  if (active_ == locality) v |= 0x20;
  if (seized_.count(locality)) v |= 0x10;
  if (pending_.count(locality)) v |= 0x02;
  const bool other_pending = std::any_of(pending_.begin(), pending_.end(), [&](int l) { return l != locality; });
  if (other_pending) v |= 0x04;
  return v;
}

void TisModel::write_access(int locality, std::uint8_t value) {
  if (value & 0x10) seized_.erase(locality);  // beenSeized: write 1 to clear
  if (value & 0x08) {                         // Seize: only a higher locality takes over
    if (active_ && locality > *active_) {
      seized_.insert(*active_);
      active_ = locality;
      pending_.erase(locality);
      state_ = State::kIdle;
    }
  }
  if (value & 0x02) {  // requestUse
    if (active_ == locality) return;
    if (!active_ && !faults_.never_grant) {
      active_ = locality;
    } else {
      pending_.insert(locality);
    }
  }
  if (value & 0x20) {  // activeLocality: relinquish, or withdraw a pending request
    if (active_ == locality) {
      active_.reset();
      if (state_ != State::kIdle && state_ != State::kReady) ++aborted_;
      state_ = State::kIdle;
      command_.clear();
      response_.clear();
      grant_next();
    } else {
      pending_.erase(locality);
    }
  }
}

void TisModel::grant_next() {
  if (faults_.never_grant || pending_.empty()) return;
  active_ = *pending_.rbegin();  // the highest locality wins
  pending_.erase(*active_);
}

// ---- Status, FIFO, execution -------------------------------------------------------

bool TisModel::command_complete() const {
  if (command_.size() < 6) return false;
  const std::uint32_t size = (std::uint32_t{command_[2]} << 24) | (std::uint32_t{command_[3]} << 16) |
                             (std::uint32_t{command_[4]} << 8) | command_[5];
  return command_.size() >= size;
}

void TisModel::complete(std::vector<std::uint8_t> response) {
  response_ = std::move(response);
  read_pos_ = 0;
  state_ = State::kCompletion;
}

std::uint8_t TisModel::status_bits() {
  if (state_ == State::kExecution && !faults_.hang_execution && ++execution_reads_ >= 2) {
    // "Execution" takes two status polls, then the real TPM answers.
    auto response = execute_(command_);
    ++executed_;
    if (faults_.response_size_field && response.size() >= 6) {
      const std::uint32_t v = *faults_.response_size_field;
      for (int i = 0; i < 4; ++i) response[2 + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
    }
    response.insert(response.end(), faults_.extra_response_bytes, 0xEE);
    complete(std::move(response));
  }
  const bool valid = !sts_valid_lost_ && valid_after_reads_ == 0;
  if (valid_after_reads_ > 0) --valid_after_reads_;
  std::uint8_t v = 0;
  if (valid) v |= 0x80;
  if (state_ == State::kReady) v |= 0x40;
  // dataAvail and Expect mean something only while stsValid is set.
  if (valid && state_ == State::kCompletion && read_pos_ < response_.size()) v |= 0x10;
  if (valid && state_ == State::kReception && !command_complete()) v |= 0x08;
  return v;
}

std::uint16_t TisModel::burst_count() const {
  if (faults_.stuck_burst_count) return 0;
  if (state_ == State::kReady || state_ == State::kReception) return burst_size_;
  if (state_ == State::kCompletion) {
    return static_cast<std::uint16_t>(std::min<std::size_t>(burst_size_, response_.size() - read_pos_));
  }
  return 0;
}

void TisModel::write_status(std::uint8_t value) {
  if (value & 0x40) {  // commandReady
    if (faults_.never_ready) return;
    if (state_ == State::kReception || state_ == State::kExecution) ++aborted_;
    state_ = state_ == State::kCompletion ? State::kIdle : State::kReady;
    command_.clear();
    response_.clear();
    read_pos_ = 0;
    valid_after_reads_ = 0;
    return;
  }
  if (value & 0x20) {  // tpmGo
    if (state_ == State::kReception && command_complete()) {
      state_ = State::kExecution;
      execution_reads_ = 0;
    } else {
      violation("tpmGo before a complete command");
    }
  }
  if ((value & 0x02) && state_ == State::kCompletion) read_pos_ = 0;  // responseRetry
}

void TisModel::fifo_write(std::uint8_t byte) {
  if (state_ == State::kReady) {
    state_ = State::kReception;
    command_.clear();
  }
  if (state_ != State::kReception) return violation("FIFO write outside ready/reception");
  if (command_complete()) return violation("FIFO write after the last command byte (Expect was clear)");
  if (budget_ == 0) return violation("FIFO write beyond burstCount");  // dropped, as a full FIFO would
  --budget_;
  command_.push_back(byte);
  if (faults_.missing_sts_valid) {
    sts_valid_lost_ = true;
  } else {
    valid_after_reads_ = 1;  // the TPM takes one status read to digest the byte
  }
}

std::uint8_t TisModel::fifo_read() {
  if (state_ != State::kCompletion || read_pos_ >= response_.size()) {
    violation("FIFO read with no data available");
    return 0xFF;
  }
  if (budget_ == 0) violation("FIFO read beyond burstCount");
  if (budget_ > 0) --budget_;
  const std::uint8_t byte = response_[read_pos_++];
  if (faults_.missing_sts_valid) {
    sts_valid_lost_ = true;
  } else {
    valid_after_reads_ = 1;
  }
  return byte;
}

}  // namespace vtpm::testing
