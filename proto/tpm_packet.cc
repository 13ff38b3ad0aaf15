#include "proto/tpm_packet.h"

#include <string>

namespace vtpm {

const char* tpm_version_name(TpmVersion v) { return v == TpmVersion::k12 ? "1.2" : "2.0"; }

namespace tpm {

std::uint16_t read_u16(std::span<const std::uint8_t> b, std::size_t offset) {
  return static_cast<std::uint16_t>((b[offset] << 8) | b[offset + 1]);
}

std::uint32_t read_u32(std::span<const std::uint8_t> b, std::size_t offset) {
  return (std::uint32_t{b[offset]} << 24) | (std::uint32_t{b[offset + 1]} << 16) |
         (std::uint32_t{b[offset + 2]} << 8) | std::uint32_t{b[offset + 3]};
}

void append_u16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

void append_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

Result<Header> parse_header(std::span<const std::uint8_t> packet) {
  if (packet.size() < kHeaderSize) {
    return make_error(ErrorCode::kInvalidArgument, "TPM packet truncated: " + std::to_string(packet.size()) +
                                                       " bytes, the header alone is 10");
  }
  return Header{read_u16(packet, 0), read_u32(packet, 2), read_u32(packet, 6)};
}

Result<TpmVersion> version_of_command_tag(std::uint16_t tag) {
  switch (tag) {
    case kTpm2StNoSessions:
    case kTpm2StSessions:
      return TpmVersion::k20;
    case kTpm12TagRquCommand:
    case kTpm12TagRquAuth1:
    case kTpm12TagRquAuth2:
      return TpmVersion::k12;
    default:
      return make_error(ErrorCode::kInvalidArgument, "TPM packet has unknown command tag " + std::to_string(tag));
  }
}

Result<Header> validate_command(std::span<const std::uint8_t> packet, TpmVersion version, std::size_t max_size) {
  if (packet.size() > max_size) {
    return make_error(ErrorCode::kTooLarge, "TPM command of " + std::to_string(packet.size()) +
                                                " bytes exceeds the instance limit of " + std::to_string(max_size));
  }
  auto header = parse_header(packet);
  if (!header) return header.error();
  if (header->size != packet.size()) {
    return make_error(ErrorCode::kInvalidArgument, "TPM command size field says " + std::to_string(header->size) +
                                                       " bytes but the packet has " + std::to_string(packet.size()));
  }
  auto tag_version = version_of_command_tag(header->tag);
  if (!tag_version) return tag_version.error();
  if (*tag_version != version) {
    return make_error(ErrorCode::kInvalidArgument, std::string("TPM command tag belongs to TPM ") +
                                                       tpm_version_name(*tag_version) + " but the instance is TPM " +
                                                       tpm_version_name(version));
  }
  return header;
}

std::uint32_t failure_code(TpmVersion version, ErrorCode error) {
  const bool size = error == ErrorCode::kTooLarge || error == ErrorCode::kInvalidArgument;
  if (version == TpmVersion::k20) {
    if (error == ErrorCode::kCancelled) return kTpm2RcCanceled;
    if (size) return kTpm2RcCommandSize;
    if (error == ErrorCode::kBusy) return kTpm2RcRetry;
    return kTpm2RcFailure;
  }
  if (size) return kTpm12BadParamSize;
  if (error == ErrorCode::kBusy) return kTpm12Retry;
  return kTpm12Fail;
}

std::vector<std::uint8_t> error_response(TpmVersion version, std::uint32_t rc) {
  std::vector<std::uint8_t> out;
  out.reserve(kHeaderSize);
  append_u16(out, version == TpmVersion::k20 ? kTpm2StNoSessions : kTpm12TagRspCommand);
  append_u32(out, kHeaderSize);
  append_u32(out, rc);
  return out;
}

std::uint32_t response_code(std::span<const std::uint8_t> response) {
  return response.size() >= kHeaderSize ? read_u32(response, 6) : 0;
}

std::vector<std::uint8_t> startup_clear_command(TpmVersion version) {
  std::vector<std::uint8_t> out;
  out.reserve(12);
  if (version == TpmVersion::k20) {
    append_u16(out, kTpm2StNoSessions);
    append_u32(out, 12);
    append_u32(out, kTpm2CcStartup);
    append_u16(out, kTpm2SuClear);
  } else {
    append_u16(out, kTpm12TagRquCommand);
    append_u32(out, 12);
    append_u32(out, kTpm12OrdStartup);
    append_u16(out, kTpm12StClear);
  }
  return out;
}

}  // namespace tpm
}  // namespace vtpm
