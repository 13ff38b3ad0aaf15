// Fuzz target: swtpm data channel framing (proto/tpm_stream.h), raw TPM packets and the TPM2
// send-command header, as a guest or any client of the data socket sends them.
// Input: u8 chunk seed, u16 buffer size (the session's maximum packet), then the stream.
// The stream is framed twice: all at once, and as it would arrive in random chunks (the framer
// is asked after every chunk, like backends/swtpm/data_connection.cc).
// Invariants: both ways yield the same frames and end the same way (a framing error cannot
// depend on how the bytes arrived); every frame lies inside the buffer, holds 10..max bytes,
// a raw frame's size field is its length; nothing is a frame before all of its bytes are there;
// a raw frame passes tpm::validate_command exactly when its tag is the instance's; responses are
// framed to the documented layout.
#include <cstdint>
#include <optional>
#include <vector>

#include "proto/tpm_packet.h"
#include "proto/tpm_stream.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;

namespace {

struct Seen {
  std::vector<tpm::StreamFrame> frames;
  std::vector<std::vector<std::uint8_t>> packets;
  bool error = false;
  ErrorCode code = ErrorCode::kInternal;
};

bool same(const tpm::StreamFrame& a, const tpm::StreamFrame& b) {
  return a.consumed == b.consumed && a.send_command_header == b.send_command_header && a.locality == b.locality &&
         a.offset == b.offset && a.length == b.length;
}

// Frames off the front of `buffer` until it needs more bytes or fails; returns false on failure.
bool drain(std::vector<std::uint8_t>& buffer, std::size_t max, Seen& seen) {
  while (true) {
    auto frame = tpm::next_frame(buffer, max);
    if (!frame) {
      FUZZ_CHECK(buffer.size() >= 6 && !frame.error().message.empty());
      seen.error = true;
      seen.code = frame.error().code;
      return false;
    }
    if (!*frame) return true;
    const tpm::StreamFrame f = **frame;
    FUZZ_CHECK(f.consumed <= buffer.size() && f.offset + f.length == f.consumed);
    FUZZ_CHECK(f.length >= tpm::kHeaderSize && f.length <= max);
    const std::span<const std::uint8_t> b(buffer);
    if (f.send_command_header) {
      FUZZ_CHECK(f.offset == 9 && tpm::read_u32(b, 0) == tpm::kSendCommand && f.locality == b[4]);
      FUZZ_CHECK(tpm::read_u32(b, 5) == f.length);
    } else {
      FUZZ_CHECK(f.offset == 0 && f.locality == 0 && tpm::read_u32(b, 2) == f.length);
    }
    // One byte less is never a frame yet.
    auto shorter = tpm::next_frame(b.first(f.consumed - 1), max);
    FUZZ_CHECK(shorter.ok() && !shorter->has_value());
    const auto packet = b.subspan(f.offset, f.length);
    if (!f.send_command_header) {
      const std::uint16_t tag = tpm::read_u16(packet, 0);
      for (TpmVersion v : {TpmVersion::k12, TpmVersion::k20}) {
        auto tag_version = tpm::version_of_command_tag(tag);
        FUZZ_CHECK(tpm::validate_command(packet, v, max).ok() == (tag_version.ok() && *tag_version == v));
      }
    }
    seen.frames.push_back(f);
    seen.packets.emplace_back(packet.begin(), packet.end());
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(f.consumed));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  fuzz::Chunker chunker(in.u8());
  const std::size_t max = std::max<std::size_t>(in.u16(), tpm::kHeaderSize);  // as the data connection clamps it
  const auto stream = in.rest();

  Seen whole;
  std::vector<std::uint8_t> buffer(stream.begin(), stream.end());
  drain(buffer, max, whole);

  Seen chunked;
  buffer.clear();
  for (std::size_t pos = 0; pos < stream.size();) {
    const std::size_t n = chunker.next(stream.size() - pos);
    buffer.insert(buffer.end(), stream.begin() + static_cast<std::ptrdiff_t>(pos),
                  stream.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
    if (!drain(buffer, max, chunked)) break;
  }
  FUZZ_CHECK(whole.error == chunked.error && whole.code == chunked.code);
  FUZZ_CHECK(whole.frames.size() == chunked.frames.size());
  for (std::size_t i = 0; i < whole.frames.size(); ++i) {
    FUZZ_CHECK(same(whole.frames[i], chunked.frames[i]) && whole.packets[i] == chunked.packets[i]);
  }

  // Response framing, with each packet standing in for a response.
  for (const auto& packet : whole.packets) {
    const auto raw = tpm::frame_response(packet, false);
    FUZZ_CHECK(raw == packet);
    const auto framed = tpm::frame_response(packet, true);
    FUZZ_CHECK(framed.size() == packet.size() + 8 && tpm::read_u32(framed, 0) == packet.size());
    FUZZ_CHECK(std::equal(packet.begin(), packet.end(), framed.begin() + 4));
    FUZZ_CHECK(tpm::read_u32(framed, framed.size() - 4) == 0);
  }
  return 0;
}
