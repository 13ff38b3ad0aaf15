#include "proto/engine_messages.h"

#include <string>

namespace vtpm::engine {
namespace {

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u32(std::uint32_t v) { tpm::append_u32(out_, v); }
  void u64(std::uint64_t v) {
    u32(static_cast<std::uint32_t>(v >> 32));
    u32(static_cast<std::uint32_t>(v));
  }
  void bytes(const Bytes& b) {
    u32(static_cast<std::uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void optional_bytes(const std::optional<Bytes>& b) {
    u8(b ? 1 : 0);
    if (b) bytes(*b);
  }
  void uuid(const Uuid& id) { out_.insert(out_.end(), id.bytes().begin(), id.bytes().end()); }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  bool failed() const { return failed_; }
  bool at_end() const { return pos_ == in_.size(); }
  std::uint8_t u8() { return need(1) ? in_[pos_++] : 0; }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    auto v = tpm::read_u32(in_, pos_);
    pos_ += 4;
    return v;
  }
  std::uint64_t u64() {
    std::uint64_t high = u32();
    return (high << 32) | u32();
  }
  Bytes bytes() {
    const std::uint32_t n = u32();
    if (!need(n)) return {};
    Bytes b(in_.begin() + static_cast<std::ptrdiff_t>(pos_), in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return b;
  }
  std::optional<Bytes> optional_bytes() {
    if (u8() == 0) return std::nullopt;
    return bytes();
  }
  Uuid uuid() {
    Uuid::Bytes b{};
    if (!need(b.size())) return Uuid();
    for (auto& x : b) x = in_[pos_++];
    return Uuid(b);
  }

 private:
  bool need(std::size_t n) {
    if (failed_ || in_.size() - pos_ < n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

constexpr std::uint8_t kJobTag = 'J';
constexpr std::uint8_t kCompletionTag = 'C';

bool valid_kind(std::uint8_t k) { return k >= 1 && k <= 11; }

}  // namespace

Bytes encode_job(const Job& job) {
  Writer w;
  w.u8(kJobTag);
  w.u64(job.id);
  w.uuid(job.instance);
  w.u8(static_cast<std::uint8_t>(job.kind));
  w.u8(job.locality);
  w.bytes(job.command);
  w.u8(job.params.version == TpmVersion::k12 ? 12 : 20);
  w.u32(job.params.max_command_size);
  w.u8(job.params.auto_startup ? 1 : 0);
  w.bytes(job.blobs.permanent);
  w.bytes(job.blobs.volatile_state);
  w.bytes(job.blobs.save_state);
  return w.take();
}

Result<Job> decode_job(std::span<const std::uint8_t> payload) {
  Reader r(payload);
  if (r.u8() != kJobTag) return make_error(ErrorCode::kCorrupt, "engine frame: not a job");
  Job job;
  job.id = r.u64();
  job.instance = r.uuid();
  const std::uint8_t kind = r.u8();
  job.locality = r.u8();
  job.command = r.bytes();
  const std::uint8_t version = r.u8();
  job.params.max_command_size = r.u32();
  job.params.auto_startup = r.u8() != 0;
  job.blobs.permanent = r.bytes();
  job.blobs.volatile_state = r.bytes();
  job.blobs.save_state = r.bytes();
  if (r.failed() || !r.at_end()) return make_error(ErrorCode::kCorrupt, "engine frame: job truncated or too long");
  if (!valid_kind(kind)) return make_error(ErrorCode::kCorrupt, "engine frame: unknown job kind");
  if (version != 12 && version != 20) return make_error(ErrorCode::kCorrupt, "engine frame: unknown TPM version");
  job.kind = static_cast<JobKind>(kind);
  job.params.version = version == 12 ? TpmVersion::k12 : TpmVersion::k20;
  return job;
}

Bytes encode_completion(const Completion& c) {
  Writer w;
  w.u8(kCompletionTag);
  w.u64(c.id);
  w.uuid(c.instance);
  w.u8(static_cast<std::uint8_t>(c.kind));
  w.u8(c.ok ? 1 : 0);
  w.u8(static_cast<std::uint8_t>(c.error));
  w.bytes(Bytes(c.message.begin(), c.message.end()));
  w.bytes(c.response);
  w.optional_bytes(c.permanent);
  w.optional_bytes(c.save_state);
  w.optional_bytes(c.volatile_state);
  w.u64(c.timing.queued_us);
  w.u64(c.timing.load_us);
  w.u64(c.timing.run_us);
  w.u8(c.swapped ? 1 : 0);
  return w.take();
}

Result<Completion> decode_completion(std::span<const std::uint8_t> payload) {
  Reader r(payload);
  if (r.u8() != kCompletionTag) return make_error(ErrorCode::kCorrupt, "engine frame: not a completion");
  Completion c;
  c.id = r.u64();
  c.instance = r.uuid();
  const std::uint8_t kind = r.u8();
  c.ok = r.u8() != 0;
  const std::uint8_t error = r.u8();
  auto message = r.bytes();
  c.message.assign(message.begin(), message.end());
  c.response = r.bytes();
  c.permanent = r.optional_bytes();
  c.save_state = r.optional_bytes();
  c.volatile_state = r.optional_bytes();
  c.timing.queued_us = r.u64();
  c.timing.load_us = r.u64();
  c.timing.run_us = r.u64();
  c.swapped = r.u8() != 0;
  if (r.failed() || !r.at_end()) return make_error(ErrorCode::kCorrupt, "engine frame: completion truncated or too long");
  if (!valid_kind(kind)) return make_error(ErrorCode::kCorrupt, "engine frame: unknown completion kind");
  if (error > static_cast<std::uint8_t>(ErrorCode::kInternal)) {
    return make_error(ErrorCode::kCorrupt, "engine frame: unknown error code");
  }
  c.kind = static_cast<JobKind>(kind);
  c.error = static_cast<ErrorCode>(error);
  return c;
}

Result<std::size_t> complete_frame_length(std::span<const std::uint8_t> stream) {
  if (stream.size() < 4) return std::size_t{0};
  const std::uint32_t n = tpm::read_u32(stream, 0);
  if (n == 0 || n > kMaxFrame) {
    return make_error(ErrorCode::kCorrupt, "engine frame length " + std::to_string(n) + " out of range");
  }
  return stream.size() - 4 >= n ? std::size_t{n} : std::size_t{0};
}

Bytes frame(const Bytes& payload) {
  Bytes out;
  out.reserve(payload.size() + 4);
  tpm::append_u32(out, static_cast<std::uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

}  // namespace vtpm::engine
