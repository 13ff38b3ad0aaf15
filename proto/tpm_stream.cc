#include "proto/tpm_stream.h"

#include <string>

#include "proto/tpm_packet.h"

namespace vtpm::tpm {
namespace {

Error bad_size(std::size_t size, std::size_t max) {
  return make_error(size < kHeaderSize ? ErrorCode::kInvalidArgument : ErrorCode::kTooLarge,
                    "TPM frame claims " + std::to_string(size) + " bytes (allowed " + std::to_string(kHeaderSize) +
                        ".." + std::to_string(max) + ")");
}

}  // namespace

Result<std::optional<StreamFrame>> next_frame(std::span<const std::uint8_t> b, std::size_t max_packet) {
  if (b.size() < 4) return std::optional<StreamFrame>();
  StreamFrame f;
  // A TPM tag is never 0x0000, so a leading u32 8 can only be the header.
  if (read_u32(b, 0) == kSendCommand) {
    if (b.size() < 9) return std::optional<StreamFrame>();
    f.send_command_header = true;
    f.locality = b[4];
    f.length = read_u32(b, 5);
    f.offset = 9;
  } else {
    if (b.size() < 6) return std::optional<StreamFrame>();
    f.length = read_u32(b, 2);
    f.offset = 0;
  }
  if (f.length < kHeaderSize || f.length > max_packet) return bad_size(f.length, max_packet);
  if (b.size() - f.offset < f.length) return std::optional<StreamFrame>();
  f.consumed = f.offset + f.length;
  return std::optional<StreamFrame>(f);
}

std::vector<std::uint8_t> frame_response(std::span<const std::uint8_t> response, bool send_command_header) {
  std::vector<std::uint8_t> out;
  if (!send_command_header) return std::vector<std::uint8_t>(response.begin(), response.end());
  out.reserve(response.size() + 8);
  append_u32(out, static_cast<std::uint32_t>(response.size()));
  out.insert(out.end(), response.begin(), response.end());
  append_u32(out, 0);
  return out;
}

}  // namespace vtpm::tpm
