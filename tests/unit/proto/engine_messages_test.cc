#include "proto/engine_messages.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::engine {
namespace {

Uuid test_uuid() {
  return Uuid(Uuid::Bytes{0x6f, 0x1c, 0x2d, 0x3e, 0x4a, 0x5b, 0x4c, 0x6d, 0x8e, 0x7f, 0x01, 0x23, 0x45, 0x67, 0x89,
                          0xab});
}

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7);
  return b;
}

Job full_job() {
  Job job;
  job.id = 0x0123456789abcdefULL;
  job.instance = test_uuid();
  job.kind = JobKind::kAttach;
  job.locality = 3;
  job.command = pattern(12, 1);
  job.params.version = TpmVersion::k12;
  job.params.max_command_size = 65536;
  job.params.auto_startup = true;
  job.blobs.permanent = pattern(300, 2);
  job.blobs.volatile_state = pattern(40, 3);
  job.blobs.save_state = pattern(5, 4);
  return job;
}

Completion full_completion() {
  Completion c;
  c.id = 0xfedcba9876543210ULL;
  c.instance = test_uuid();
  c.kind = JobKind::kDetach;
  c.error = ErrorCode::kTpmFailure;
  c.ok = false;
  c.message = "libtpms said no";
  c.response = pattern(10, 5);
  c.permanent = pattern(100, 6);
  c.save_state = Bytes{};  // present but empty is distinct from absent
  c.volatile_state = pattern(33, 7);
  c.timing.queued_us = 1;
  c.timing.load_us = 0x1'0000'0000ULL;
  c.timing.run_us = 0xffffffffffffffffULL;
  c.swapped = true;
  return c;
}

void check_same(const Job& a, const Job& b) {
  CHECK(a.id == b.id);
  CHECK(a.instance == b.instance);
  CHECK(a.kind == b.kind);
  CHECK(a.locality == b.locality);
  CHECK(a.command == b.command);
  CHECK(a.params.version == b.params.version);
  CHECK(a.params.max_command_size == b.params.max_command_size);
  CHECK(a.params.auto_startup == b.params.auto_startup);
  CHECK(a.blobs.permanent == b.blobs.permanent);
  CHECK(a.blobs.volatile_state == b.blobs.volatile_state);
  CHECK(a.blobs.save_state == b.blobs.save_state);
}

void check_same(const Completion& a, const Completion& b) {
  CHECK(a.id == b.id);
  CHECK(a.instance == b.instance);
  CHECK(a.kind == b.kind);
  CHECK(a.error == b.error);
  CHECK(a.ok == b.ok);
  CHECK(a.message == b.message);
  CHECK(a.response == b.response);
  CHECK(a.permanent == b.permanent);
  CHECK(a.save_state == b.save_state);
  CHECK(a.volatile_state == b.volatile_state);
  CHECK(a.timing.queued_us == b.timing.queued_us);
  CHECK(a.timing.load_us == b.timing.load_us);
  CHECK(a.timing.run_us == b.timing.run_us);
  CHECK(a.swapped == b.swapped);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Offsets of the single-byte fields in an encoded job / completion:
// tag(1) id(8) uuid(16) kind(1) ...
constexpr std::size_t kKindOffset = 1 + 8 + 16;
constexpr std::size_t kJobLocalityOffset = kKindOffset + 1;

std::size_t job_version_offset(const Job& job) { return kJobLocalityOffset + 1 + 4 + job.command.size(); }

}  // namespace

TEST_CASE("engine_messages: a job with every field set round-trips") {
  const Job job = full_job();
  auto decoded = decode_job(encode_job(job));
  REQUIRE(decoded.ok());
  check_same(*decoded, job);
}

TEST_CASE("engine_messages: a default job round-trips") {
  const Job job;
  auto decoded = decode_job(encode_job(job));
  REQUIRE(decoded.ok());
  check_same(*decoded, job);
}

TEST_CASE("engine_messages: every job kind and both versions round-trip") {
  for (auto kind : {JobKind::kAttach, JobKind::kExecute, JobKind::kPowerOn, JobKind::kDetach, JobKind::kSnapshot,
                    JobKind::kCancel}) {
    for (auto version : {TpmVersion::k12, TpmVersion::k20}) {
      Job job = full_job();
      job.kind = kind;
      job.params.version = version;
      auto decoded = decode_job(encode_job(job));
      REQUIRE(decoded.ok());
      check_same(*decoded, job);
    }
  }
}

TEST_CASE("engine_messages: a completion with every field set round-trips") {
  const Completion c = full_completion();
  auto decoded = decode_completion(encode_completion(c));
  REQUIRE(decoded.ok());
  check_same(*decoded, c);
  CHECK(decoded->save_state.has_value());
  CHECK(decoded->save_state->empty());
}

TEST_CASE("engine_messages: a successful completion with absent blobs round-trips") {
  Completion c;
  c.id = 9;
  c.instance = test_uuid();
  c.kind = JobKind::kExecute;
  c.ok = true;
  c.error = ErrorCode::kInvalidArgument;  // first enumerator: value 0
  c.response = pattern(10, 9);
  auto decoded = decode_completion(encode_completion(c));
  REQUIRE(decoded.ok());
  check_same(*decoded, c);
  CHECK_FALSE(decoded->permanent.has_value());
  CHECK_FALSE(decoded->save_state.has_value());
  CHECK_FALSE(decoded->volatile_state.has_value());
}

TEST_CASE("engine_messages: every error code round-trips in a completion") {
  for (int code = 0; code <= static_cast<int>(ErrorCode::kInternal); ++code) {
    CAPTURE(code);
    Completion c = full_completion();
    c.error = static_cast<ErrorCode>(code);
    auto decoded = decode_completion(encode_completion(c));
    REQUIRE(decoded.ok());
    CHECK(decoded->error == c.error);
  }
}

TEST_CASE("engine_messages: every truncation of an encoded job fails cleanly") {
  const Bytes encoded = encode_job(full_job());
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    CAPTURE(n);
    auto decoded = decode_job(std::span(encoded).first(n));
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
    CHECK_FALSE(decoded.error().message.empty());
  }
}

TEST_CASE("engine_messages: every truncation of an encoded completion fails cleanly") {
  const Bytes encoded = encode_completion(full_completion());
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    CAPTURE(n);
    auto decoded = decode_completion(std::span(encoded).first(n));
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
    CHECK_FALSE(decoded.error().message.empty());
  }
}

TEST_CASE("engine_messages: trailing bytes after a job are rejected") {
  Bytes encoded = encode_job(full_job());
  encoded.push_back(0);
  auto decoded = decode_job(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "too long"));
}

TEST_CASE("engine_messages: trailing bytes after a completion are rejected") {
  Bytes encoded = encode_completion(full_completion());
  encoded.push_back(0);
  auto decoded = decode_completion(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "too long"));
}

TEST_CASE("engine_messages: a bad job kind byte is rejected") {
  for (std::uint8_t kind : {std::uint8_t{0}, std::uint8_t{12}, std::uint8_t{0xff}}) {
    CAPTURE(int(kind));
    Bytes encoded = encode_job(full_job());
    encoded[kKindOffset] = kind;
    auto decoded = decode_job(encoded);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
    CHECK(contains(decoded.error().message, "unknown job kind"));
  }
}

TEST_CASE("engine_messages: a bad TPM version byte is rejected") {
  const Job job = full_job();
  for (std::uint8_t version : {std::uint8_t{0}, std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{13}, std::uint8_t{21}}) {
    CAPTURE(int(version));
    Bytes encoded = encode_job(job);
    REQUIRE(encoded[job_version_offset(job)] == 12);
    encoded[job_version_offset(job)] = version;
    auto decoded = decode_job(encoded);
    REQUIRE_FALSE(decoded.ok());
    CHECK(contains(decoded.error().message, "unknown TPM version"));
  }
}

TEST_CASE("engine_messages: a bad completion kind byte is rejected") {
  Bytes encoded = encode_completion(full_completion());
  encoded[kKindOffset] = 0;
  auto decoded = decode_completion(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "unknown completion kind"));
}

TEST_CASE("engine_messages: an unknown error code byte in a completion is rejected") {
  Bytes encoded = encode_completion(full_completion());
  const std::size_t error_offset = kKindOffset + 2;  // kind, ok, error
  encoded[error_offset] = static_cast<std::uint8_t>(ErrorCode::kInternal) + 1;
  auto decoded = decode_completion(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "unknown error code"));
}

TEST_CASE("engine_messages: the message type byte is checked") {
  const Bytes job = encode_job(full_job());
  const Bytes completion = encode_completion(full_completion());
  auto as_completion = decode_completion(job);
  REQUIRE_FALSE(as_completion.ok());
  CHECK(contains(as_completion.error().message, "not a completion"));
  auto as_job = decode_job(completion);
  REQUIRE_FALSE(as_job.ok());
  CHECK(contains(as_job.error().message, "not a job"));
}

TEST_CASE("engine_messages: a blob length larger than the payload is rejected") {
  const Job job = full_job();
  Bytes encoded = encode_job(job);
  const std::size_t command_length_offset = kJobLocalityOffset + 1;
  for (std::uint8_t b : {std::uint8_t{0xff}, std::uint8_t{0x7f}}) {
    encoded[command_length_offset] = b;
    auto decoded = decode_job(encoded);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
  }
}

TEST_CASE("engine_messages: garbage payloads are rejected") {
  const Bytes inputs[] = {Bytes{}, Bytes{'J'}, Bytes{'C'}, Bytes(64, 0xff), Bytes(64, 0x00), pattern(200, 0x4a)};
  for (const Bytes& in : inputs) {
    CAPTURE(in.size());
    CHECK_FALSE(decode_job(in).ok());
    CHECK_FALSE(decode_completion(in).ok());
  }
}

TEST_CASE("engine_messages: frame prefixes the big-endian payload length") {
  const Bytes payload{'J', 1, 2};
  CHECK(frame(payload) == Bytes{0, 0, 0, 3, 'J', 1, 2});
}

TEST_CASE("engine_messages: complete_frame_length of a complete frame is its payload length") {
  const Bytes payload = encode_job(full_job());
  Bytes stream = frame(payload);
  auto n = complete_frame_length(stream);
  REQUIRE(n.ok());
  CHECK(*n == payload.size());
  stream.push_back(0);  // start of the next frame does not matter
  n = complete_frame_length(stream);
  REQUIRE(n.ok());
  CHECK(*n == payload.size());
}

TEST_CASE("engine_messages: complete_frame_length is 0 for every partial frame") {
  const Bytes stream = frame(encode_job(full_job()));
  for (std::size_t len = 0; len < stream.size(); ++len) {
    CAPTURE(len);
    auto n = complete_frame_length(std::span(stream).first(len));
    REQUIRE(n.ok());
    CHECK(*n == 0);
  }
}

TEST_CASE("engine_messages: complete_frame_length rejects a zero-length frame") {
  const Bytes stream{0, 0, 0, 0, 'J'};
  auto n = complete_frame_length(stream);
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().code == ErrorCode::kCorrupt);
  CHECK(contains(n.error().message, "length 0 out of range"));
}

TEST_CASE("engine_messages: complete_frame_length rejects an oversized frame before it arrives") {
  Bytes stream;
  tpm::append_u32(stream, static_cast<std::uint32_t>(kMaxFrame + 1));
  auto n = complete_frame_length(stream);
  REQUIRE_FALSE(n.ok());
  CHECK(contains(n.error().message, std::to_string(kMaxFrame + 1)));

  Bytes huge{0xff, 0xff, 0xff, 0xff};
  CHECK_FALSE(complete_frame_length(huge).ok());
}

TEST_CASE("engine_messages: complete_frame_length accepts exactly the maximum frame") {
  Bytes stream;
  tpm::append_u32(stream, static_cast<std::uint32_t>(kMaxFrame));
  auto partial = complete_frame_length(stream);
  REQUIRE(partial.ok());
  CHECK(*partial == 0);
  stream.resize(4 + kMaxFrame);
  auto complete = complete_frame_length(stream);
  REQUIRE(complete.ok());
  CHECK(*complete == kMaxFrame);
}

}  // namespace vtpm::engine
