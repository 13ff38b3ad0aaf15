// swtpm's control-channel protocol (the one QEMU's tpm-emulator backend,
// tcti-swtpm and swtpm_ioctl speak): requests are a big-endian u32 command
// code plus a fixed or self-sized body; responses start with a u32 TPM
// result. Pure: no I/O.
//
// Framing: the protocol has no length field. A request is complete once
// its command's minimum body has arrived; it then takes whatever else is
// buffered up to the command's maximum (SET_LOCALITY has a 1-byte body from
// some clients and a 4-byte one from QEMU). Clients wait for each response
// before sending the next request, so the buffer never holds two requests.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"

namespace vtpm::swtpm {

using Bytes = std::vector<std::uint8_t>;

enum class CtrlCommand : std::uint32_t {
  kGetCapability = 0x01,
  kInit = 0x02,
  kShutdown = 0x03,
  kGetTpmEstablished = 0x04,
  kSetLocality = 0x05,
  kHashStart = 0x06,
  kHashData = 0x07,
  kHashEnd = 0x08,
  kCancelTpmCmd = 0x09,
  kStoreVolatile = 0x0a,
  kResetTpmEstablished = 0x0b,
  kGetStateBlob = 0x0c,
  kSetStateBlob = 0x0d,
  kStop = 0x0e,
  kGetConfig = 0x0f,
  kSetDatafd = 0x10,
  kSetBufferSize = 0x11,
  kGetInfo = 0x12,
};

// TPM 1.2-style result codes used on the control channel.
inline constexpr std::uint32_t kSuccess = 0;
inline constexpr std::uint32_t kBadParameter = 3;
inline constexpr std::uint32_t kFail = 9;
inline constexpr std::uint32_t kBadOrdinal = 10;
inline constexpr std::uint32_t kBadLocality = 0x3d;
inline constexpr std::uint32_t kInvalidPostInit = 0x26;

inline constexpr std::uint32_t kInitDeleteVolatile = 1;
inline constexpr std::uint32_t kBlobTypePermanent = 1;
inline constexpr std::uint32_t kBlobTypeVolatile = 2;
inline constexpr std::uint32_t kBlobTypeSaveState = 3;
inline constexpr std::uint32_t kBlobFlagDecrypted = 1;
inline constexpr std::size_t kMaxHashData = 4096;
inline constexpr std::size_t kMaxStateBlob = 512 * 1024;

struct CtrlRequest {
  CtrlCommand command = CtrlCommand::kGetCapability;
  std::uint32_t init_flags = 0;       // kInit
  std::uint8_t locality = 0;          // kSetLocality, kResetTpmEstablished
  Bytes data;                         // kHashData, kSetStateBlob
  std::uint32_t state_flags = 0;      // kGetStateBlob, kSetStateBlob
  std::uint32_t blob_type = 0;        // kGetStateBlob, kSetStateBlob
  std::uint32_t offset = 0;           // kGetStateBlob, kGetInfo
  std::uint32_t buffer_size = 0;      // kSetBufferSize (0 = query)
  std::uint64_t info_flags = 0;       // kGetInfo
};

// Bytes the first buffered request occupies: 0 if more bytes are needed, an
// error for an unknown command or an over-long body.
Result<std::size_t> request_length(std::span<const std::uint8_t> buffered);
// Decodes exactly one request as delimited by request_length().
Result<CtrlRequest> decode_request(std::span<const std::uint8_t> request);
const char* command_name(CtrlCommand command);

Bytes encode_result(std::uint32_t result);
Bytes encode_capability(std::uint64_t capabilities);
Bytes encode_established(std::uint32_t result, bool established);
Bytes encode_buffer_size(std::uint32_t result, std::uint32_t size, std::uint32_t min, std::uint32_t max);
Bytes encode_config(std::uint32_t result, std::uint32_t flags);
Bytes encode_state_blob(std::uint32_t result, std::uint32_t state_flags, std::span<const std::uint8_t> blob);
Bytes encode_info(std::uint32_t result, const std::string& json, std::uint32_t offset);

}  // namespace vtpm::swtpm
