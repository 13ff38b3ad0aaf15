// TPM 1.2 and TPM 2.0 command/response framing: the 10-byte header that
// both versions share (tag u16, size u32, ordinal-or-code u32, big-endian),
// validation of untrusted packets, and the few packets the daemon builds
// itself (error responses, Startup). Pure: no I/O.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "proto/result.h"

namespace vtpm {

enum class TpmVersion { k12, k20 };

const char* tpm_version_name(TpmVersion v);  // "1.2" / "2.0"

namespace tpm {

inline constexpr std::size_t kHeaderSize = 10;
// Largest command any version accepts; per-instance limits are lower.
inline constexpr std::size_t kAbsoluteMaxCommand = 64 * 1024;

// TPM 2.0 tags and codes used by the daemon itself.
inline constexpr std::uint16_t kTpm2StNoSessions = 0x8001;
inline constexpr std::uint16_t kTpm2StSessions = 0x8002;
inline constexpr std::uint32_t kTpm2CcStartup = 0x00000144;
inline constexpr std::uint32_t kTpm2CcShutdown = 0x00000145;
inline constexpr std::uint16_t kTpm2SuClear = 0x0000;
inline constexpr std::uint32_t kTpm2RcSuccess = 0x000;
inline constexpr std::uint32_t kTpm2RcInitialize = 0x100;
inline constexpr std::uint32_t kTpm2RcFailure = 0x101;
inline constexpr std::uint32_t kTpm2RcCommandSize = 0x142;
inline constexpr std::uint32_t kTpm2RcCanceled = 0x909;
inline constexpr std::uint32_t kTpm2RcRetry = 0x922;

// TPM 1.2 tags and codes.
inline constexpr std::uint16_t kTpm12TagRquCommand = 0x00C1;
inline constexpr std::uint16_t kTpm12TagRquAuth1 = 0x00C2;
inline constexpr std::uint16_t kTpm12TagRquAuth2 = 0x00C3;
inline constexpr std::uint16_t kTpm12TagRspCommand = 0x00C4;
inline constexpr std::uint32_t kTpm12OrdStartup = 0x00000099;
inline constexpr std::uint16_t kTpm12StClear = 0x0001;
inline constexpr std::uint32_t kTpm12Fail = 0x09;
inline constexpr std::uint32_t kTpm12BadParamSize = 0x19;
inline constexpr std::uint32_t kTpm12InvalidPostinit = 0x26;
inline constexpr std::uint32_t kTpm12Retry = 0x800;

struct Header {
  std::uint16_t tag = 0;
  std::uint32_t size = 0;
  std::uint32_t code = 0;  // command ordinal/code, or response code
};

std::uint16_t read_u16(std::span<const std::uint8_t> b, std::size_t offset);
std::uint32_t read_u32(std::span<const std::uint8_t> b, std::size_t offset);
void append_u16(std::vector<std::uint8_t>& out, std::uint16_t v);
void append_u32(std::vector<std::uint8_t>& out, std::uint32_t v);

// Decodes the header without judging the tag. Fails on fewer than 10 bytes.
Result<Header> parse_header(std::span<const std::uint8_t> packet);

// Full validation of a command from outside: header present, size field
// equal to the packet length, length within max_size, and a command tag
// that belongs to `version`. The error names the field.
Result<Header> validate_command(std::span<const std::uint8_t> packet, TpmVersion version,
                                std::size_t max_size);

// Which version a command's tag belongs to (for probes like QEMU's).
Result<TpmVersion> version_of_command_tag(std::uint16_t tag);

// The response code a guest sees when vtpmd refuses or cannot run its
// command (every guest channel answers the same way): too large or
// malformed -> COMMAND_SIZE / BAD_PARAM_SIZE, over a limit -> RETRY,
// cancelled -> CANCELED (2.0), anything else -> FAILURE / FAIL.
std::uint32_t failure_code(TpmVersion version, ErrorCode error);
// A 10-byte error response in `version`'s format carrying `rc`.
std::vector<std::uint8_t> error_response(TpmVersion version, std::uint32_t rc);
// Response code of a response packet (0 if too short to tell: callers use
// parse_header when they need to know).
std::uint32_t response_code(std::span<const std::uint8_t> response);

// TPM2_Startup(SU_CLEAR) or TPM_Startup(TPM_ST_CLEAR).
std::vector<std::uint8_t> startup_clear_command(TpmVersion version);

}  // namespace tpm
}  // namespace vtpm
