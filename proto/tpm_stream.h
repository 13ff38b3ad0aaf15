// Splitting TPM commands off a byte stream, as swtpm's data channel frames
// them: either a raw TPM packet (10-byte header whose size field covers the
// packet), or the TPM2 "send command" header of the Microsoft simulator
// (u32 8, u8 locality, u32 length, packet) whose response is framed as
// u32 length, packet, u32 0. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "proto/result.h"

namespace vtpm::tpm {

inline constexpr std::uint32_t kSendCommand = 8;

struct StreamFrame {
  std::size_t consumed = 0;        // bytes of the stream this frame used
  bool send_command_header = false;
  std::uint8_t locality = 0;       // from the header; 0 for raw frames
  std::size_t offset = 0;          // where the TPM packet starts in the stream
  std::size_t length = 0;          // TPM packet length
};

// The first complete frame in `buffered`, nullopt if more bytes are needed,
// or an error when the frame cannot be valid (a size below the 10-byte
// header, or above `max_packet`): the stream cannot be resynchronised then.
Result<std::optional<StreamFrame>> next_frame(std::span<const std::uint8_t> buffered, std::size_t max_packet);

// Wraps a response for a frame that used the send-command header.
std::vector<std::uint8_t> frame_response(std::span<const std::uint8_t> response, bool send_command_header);

}  // namespace vtpm::tpm
