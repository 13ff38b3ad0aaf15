// Fuzz target: TPM command validation (proto/tpm_packet.h), the check every command from a guest
// or the control API passes before it reaches libtpms.
// Input: u8 flags (bit 0: TPM 1.2 instance, bit 1: +64 KiB to the limit), u16 per-instance size
// limit, then the packet.
// Invariants: validate_command accepts exactly what an independent model of the rule accepts
// (10..limit bytes, size field = length, a command tag of the instance's version) and never a
// packet above the limit; the two versions never both accept one packet; the packets the daemon
// builds itself (Startup, error responses) parse back to what was asked.
#include <cstdint>

#include "proto/tpm_packet.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;

namespace {

bool tag_of(std::uint16_t tag, TpmVersion v) {
  if (v == TpmVersion::k20) return tag == tpm::kTpm2StNoSessions || tag == tpm::kTpm2StSessions;
  return tag == tpm::kTpm12TagRquCommand || tag == tpm::kTpm12TagRquAuth1 || tag == tpm::kTpm12TagRquAuth2;
}

// The rule of docs/ARCHITECTURE.md ("life of a command", step 3), written independently.
bool model_accepts(std::span<const std::uint8_t> p, TpmVersion v, std::size_t max) {
  if (p.size() > max || p.size() < tpm::kHeaderSize) return false;
  const std::uint32_t size =
      (std::uint32_t{p[2]} << 24) | (std::uint32_t{p[3]} << 16) | (std::uint32_t{p[4]} << 8) | p[5];
  return size == p.size() && tag_of(static_cast<std::uint16_t>((p[0] << 8) | p[1]), v);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t flags = in.u8();
  const TpmVersion version = (flags & 1) ? TpmVersion::k12 : TpmVersion::k20;
  const TpmVersion other = (flags & 1) ? TpmVersion::k20 : TpmVersion::k12;
  const std::size_t max = std::size_t{in.u16()} + ((flags & 2) ? 65536 : 0);
  const auto packet = in.rest();

  auto header = tpm::parse_header(packet);
  FUZZ_CHECK(header.ok() == (packet.size() >= tpm::kHeaderSize));
  if (header) {
    FUZZ_CHECK(header->tag == tpm::read_u16(packet, 0));
    FUZZ_CHECK(header->size == tpm::read_u32(packet, 2));
    FUZZ_CHECK(header->code == tpm::read_u32(packet, 6));
    FUZZ_CHECK(tpm::response_code(packet) == header->code);
    auto tag_version = tpm::version_of_command_tag(header->tag);
    FUZZ_CHECK(tag_version.ok() == (tag_of(header->tag, TpmVersion::k12) || tag_of(header->tag, TpmVersion::k20)));
    if (tag_version) FUZZ_CHECK(tag_of(header->tag, *tag_version));
  } else {
    FUZZ_CHECK(tpm::response_code(packet) == 0);
  }

  auto valid = tpm::validate_command(packet, version, max);
  FUZZ_CHECK(valid.ok() == model_accepts(packet, version, max));
  if (valid) {
    FUZZ_CHECK(packet.size() <= max && packet.size() <= 2 * tpm::kAbsoluteMaxCommand);
    FUZZ_CHECK(valid->size == packet.size() && valid->tag == header->tag && valid->code == header->code);
    FUZZ_CHECK(!tpm::validate_command(packet, other, max).ok());
  } else {
    FUZZ_CHECK(!valid.error().message.empty());
    if (packet.size() > max) FUZZ_CHECK(valid.error().code == ErrorCode::kTooLarge);
    else FUZZ_CHECK(valid.error().code == ErrorCode::kInvalidArgument);
  }
  FUZZ_CHECK(tpm::validate_command(packet, other, max).ok() == model_accepts(packet, other, max));

  // What the daemon sends itself, with fuzzed codes.
  const std::uint32_t rc = header ? header->code : static_cast<std::uint32_t>(packet.size());
  const auto error = tpm::error_response(version, rc);
  FUZZ_CHECK(error.size() == tpm::kHeaderSize && tpm::response_code(error) == rc);
  FUZZ_CHECK(tpm::read_u32(error, 2) == tpm::kHeaderSize);
  const auto startup = tpm::startup_clear_command(version);
  auto startup_valid = tpm::validate_command(startup, version, max);
  FUZZ_CHECK(startup_valid.ok() == (max >= startup.size()));
  return 0;
}
