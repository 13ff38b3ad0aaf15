#include "proto/tpm_packet.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace vtpm {
namespace {

using Packet = std::vector<std::uint8_t>;

// A command with `tag`, a size field of `size_field` (default: the real
// length) and `body_bytes` zero bytes after the 10-byte header.
Packet command(std::uint16_t tag, std::size_t body_bytes = 0, std::uint32_t code = 0x17b,
               std::int64_t size_field = -1) {
  Packet p;
  tpm::append_u16(p, tag);
  tpm::append_u32(p, size_field >= 0 ? static_cast<std::uint32_t>(size_field)
                                     : static_cast<std::uint32_t>(tpm::kHeaderSize + body_bytes));
  tpm::append_u32(p, code);
  p.resize(p.size() + body_bytes, 0);
  return p;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("tpm_packet: big-endian helpers write and read back") {
  Packet p;
  tpm::append_u16(p, 0x1234);
  tpm::append_u32(p, 0x89abcdef);
  CHECK(p == Packet{0x12, 0x34, 0x89, 0xab, 0xcd, 0xef});
  CHECK(tpm::read_u16(p, 0) == 0x1234);
  CHECK(tpm::read_u32(p, 2) == 0x89abcdef);
}

TEST_CASE("tpm_packet: parse_header decodes tag, size and code") {
  const Packet p = command(tpm::kTpm2StSessions, 4, 0x0000017e);
  auto h = tpm::parse_header(p);
  REQUIRE(h.ok());
  CHECK(h->tag == tpm::kTpm2StSessions);
  CHECK(h->size == 14);
  CHECK(h->code == 0x17e);
}

TEST_CASE("tpm_packet: parse_header rejects every length below 10") {
  const Packet full = command(tpm::kTpm2StNoSessions);
  for (std::size_t n = 0; n < tpm::kHeaderSize; ++n) {
    CAPTURE(n);
    auto h = tpm::parse_header(std::span(full).first(n));
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(h.error().message, "truncated"));
  }
}

TEST_CASE("tpm_packet: validate_command accepts a well-formed TPM 2.0 command") {
  for (std::uint16_t tag : {tpm::kTpm2StNoSessions, tpm::kTpm2StSessions}) {
    const Packet p = command(tag, 2, tpm::kTpm2CcStartup);
    auto h = tpm::validate_command(p, TpmVersion::k20, 4096);
    REQUIRE(h.ok());
    CHECK(h->tag == tag);
    CHECK(h->size == 12);
    CHECK(h->code == tpm::kTpm2CcStartup);
  }
}

TEST_CASE("tpm_packet: validate_command accepts a well-formed TPM 1.2 command") {
  for (std::uint16_t tag : {tpm::kTpm12TagRquCommand, tpm::kTpm12TagRquAuth1, tpm::kTpm12TagRquAuth2}) {
    CAPTURE(tag);
    const Packet p = command(tag, 2, tpm::kTpm12OrdStartup);
    auto h = tpm::validate_command(p, TpmVersion::k12, 4096);
    REQUIRE(h.ok());
    CHECK(h->tag == tag);
  }
}

TEST_CASE("tpm_packet: validate_command accepts a command exactly at the limit") {
  const Packet p = command(tpm::kTpm2StNoSessions, 4096 - tpm::kHeaderSize);
  CHECK(tpm::validate_command(p, TpmVersion::k20, 4096).ok());
}

TEST_CASE("tpm_packet: validate_command rejects a size field that disagrees with the length") {
  for (std::int64_t field : {0L, 9L, 10L, 13L, 0xffffffffL}) {
    CAPTURE(field);
    const Packet p = command(tpm::kTpm2StNoSessions, 2, 0x144, field);
    auto h = tpm::validate_command(p, TpmVersion::k20, 4096);
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(h.error().message, "size field says " + std::to_string(static_cast<std::uint32_t>(field))));
    CHECK(contains(h.error().message, "packet has 12"));
  }
}

TEST_CASE("tpm_packet: validate_command rejects fewer than 10 bytes") {
  const Packet full = command(tpm::kTpm2StNoSessions);
  for (std::size_t n = 0; n < tpm::kHeaderSize; ++n) {
    CAPTURE(n);
    auto h = tpm::validate_command(std::span(full).first(n), TpmVersion::k20, 4096);
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(h.error().message, "truncated"));
  }
}

TEST_CASE("tpm_packet: validate_command rejects a command over the limit as too large") {
  const Packet p = command(tpm::kTpm2StNoSessions, 4097 - tpm::kHeaderSize);
  auto h = tpm::validate_command(p, TpmVersion::k20, 4096);
  REQUIRE_FALSE(h.ok());
  CHECK(h.error().code == ErrorCode::kTooLarge);
  CHECK(contains(h.error().message, "4097"));
  CHECK(contains(h.error().message, "4096"));
}

TEST_CASE("tpm_packet: validate_command rejects a tag of the other TPM version") {
  auto h20 = tpm::validate_command(command(tpm::kTpm12TagRquCommand), TpmVersion::k20, 4096);
  REQUIRE_FALSE(h20.ok());
  CHECK(h20.error().code == ErrorCode::kInvalidArgument);
  CHECK(contains(h20.error().message, "belongs to TPM 1.2 but the instance is TPM 2.0"));

  auto h12 = tpm::validate_command(command(tpm::kTpm2StSessions), TpmVersion::k12, 4096);
  REQUIRE_FALSE(h12.ok());
  CHECK(contains(h12.error().message, "belongs to TPM 2.0 but the instance is TPM 1.2"));
}

TEST_CASE("tpm_packet: validate_command rejects unknown tags, including response tags") {
  for (std::uint16_t tag : {std::uint16_t{0}, std::uint16_t{0x8000}, std::uint16_t{0x8003}, tpm::kTpm12TagRspCommand,
                            std::uint16_t{0xffff}}) {
    CAPTURE(tag);
    for (TpmVersion v : {TpmVersion::k12, TpmVersion::k20}) {
      auto h = tpm::validate_command(command(tag), v, 4096);
      REQUIRE_FALSE(h.ok());
      CHECK(h.error().code == ErrorCode::kInvalidArgument);
      CHECK(contains(h.error().message, "unknown command tag " + std::to_string(tag)));
    }
  }
}

TEST_CASE("tpm_packet: version_of_command_tag maps every command tag") {
  CHECK(*tpm::version_of_command_tag(tpm::kTpm2StNoSessions) == TpmVersion::k20);
  CHECK(*tpm::version_of_command_tag(tpm::kTpm2StSessions) == TpmVersion::k20);
  CHECK(*tpm::version_of_command_tag(tpm::kTpm12TagRquCommand) == TpmVersion::k12);
  CHECK(*tpm::version_of_command_tag(tpm::kTpm12TagRquAuth1) == TpmVersion::k12);
  CHECK(*tpm::version_of_command_tag(tpm::kTpm12TagRquAuth2) == TpmVersion::k12);
  CHECK_FALSE(tpm::version_of_command_tag(tpm::kTpm12TagRspCommand).ok());
}

TEST_CASE("tpm_packet: error_response is byte-exact for TPM 2.0") {
  CHECK(tpm::error_response(TpmVersion::k20, tpm::kTpm2RcCommandSize) ==
        Packet{0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x42});
  CHECK(tpm::error_response(TpmVersion::k20, 0xdeadbeef) ==
        Packet{0x80, 0x01, 0x00, 0x00, 0x00, 0x0a, 0xde, 0xad, 0xbe, 0xef});
}

TEST_CASE("tpm_packet: error_response is byte-exact for TPM 1.2") {
  CHECK(tpm::error_response(TpmVersion::k12, tpm::kTpm12BadParamSize) ==
        Packet{0x00, 0xc4, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x19});
}

TEST_CASE("tpm_packet: response_code reads the code and is 0 for short packets") {
  CHECK(tpm::response_code(tpm::error_response(TpmVersion::k20, tpm::kTpm2RcRetry)) == tpm::kTpm2RcRetry);
  const Packet p = tpm::error_response(TpmVersion::k20, tpm::kTpm2RcRetry);
  CHECK(tpm::response_code(std::span(p).first(9)) == 0);
  CHECK(tpm::response_code(Packet{}) == 0);
}

TEST_CASE("tpm_packet: startup_clear_command is byte-exact for TPM 2.0") {
  const Packet p = tpm::startup_clear_command(TpmVersion::k20);
  CHECK(p == Packet{0x80, 0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x01, 0x44, 0x00, 0x00});
  CHECK(tpm::validate_command(p, TpmVersion::k20, 4096).ok());
}

TEST_CASE("tpm_packet: startup_clear_command is byte-exact for TPM 1.2") {
  const Packet p = tpm::startup_clear_command(TpmVersion::k12);
  CHECK(p == Packet{0x00, 0xc1, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x99, 0x00, 0x01});
  CHECK(tpm::validate_command(p, TpmVersion::k12, 4096).ok());
}

TEST_CASE("tpm_packet: tpm_version_name") {
  CHECK(std::string(tpm_version_name(TpmVersion::k12)) == "1.2");
  CHECK(std::string(tpm_version_name(TpmVersion::k20)) == "2.0");
}

}  // namespace vtpm

TEST_CASE("tpm_packet: every guest channel answers a refusal with the same TPM code") {
  using vtpm::ErrorCode;
  using vtpm::TpmVersion;
  using namespace vtpm::tpm;
  CHECK(failure_code(TpmVersion::k20, ErrorCode::kTooLarge) == kTpm2RcCommandSize);
  CHECK(failure_code(TpmVersion::k20, ErrorCode::kInvalidArgument) == kTpm2RcCommandSize);
  CHECK(failure_code(TpmVersion::k20, ErrorCode::kBusy) == kTpm2RcRetry);
  CHECK(failure_code(TpmVersion::k20, ErrorCode::kCancelled) == kTpm2RcCanceled);
  CHECK(failure_code(TpmVersion::k20, ErrorCode::kUnavailable) == kTpm2RcFailure);
  CHECK(failure_code(TpmVersion::k12, ErrorCode::kTooLarge) == kTpm12BadParamSize);
  CHECK(failure_code(TpmVersion::k12, ErrorCode::kBusy) == kTpm12Retry);
  CHECK(failure_code(TpmVersion::k12, ErrorCode::kCancelled) == kTpm12Fail);
  CHECK(failure_code(TpmVersion::k12, ErrorCode::kTpmFailure) == kTpm12Fail);
}
