// Fuzz target: swtpm control channel requests (proto/swtpm_ctrl.h), as QEMU, swtpm_ioctl or any
// local process connected to an instance's .ctrl socket sends them.
// Input: the bytes buffered on a control connection. Requests are split off the front as the
// connection does (backends/swtpm/ctrl_connection.cc) until one is incomplete or refused.
// Invariants: a request the framer delimits always decodes, and re-delimits to the same length;
// it re-encodes to the same bytes (all fields that matter survive; only ignored padding is not
// compared: SET_LOCALITY/RESET_TPMESTABLISHED's 3 bytes, GET_INFO's u32); variable bodies
// respect their limits; the response encoders produce the sizes swtpm's clients expect.
#include <cstdint>

#include "proto/swtpm_ctrl.h"
#include "proto/tpm_packet.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using namespace vtpm::swtpm;

namespace {

// Independent encoder of a decoded request (swtpm's ptm_* request structs, big-endian).
Bytes encode_request(const CtrlRequest& q) {
  Bytes out;
  tpm::append_u32(out, static_cast<std::uint32_t>(q.command));
  switch (q.command) {
    case CtrlCommand::kInit: tpm::append_u32(out, q.init_flags); break;
    case CtrlCommand::kSetLocality:
    case CtrlCommand::kResetTpmEstablished: out.push_back(q.locality); break;
    case CtrlCommand::kSetBufferSize: tpm::append_u32(out, q.buffer_size); break;
    case CtrlCommand::kHashData:
      tpm::append_u32(out, static_cast<std::uint32_t>(q.data.size()));
      out.insert(out.end(), q.data.begin(), q.data.end());
      break;
    case CtrlCommand::kGetStateBlob:
      tpm::append_u32(out, q.state_flags);
      tpm::append_u32(out, q.blob_type);
      tpm::append_u32(out, q.offset);
      break;
    case CtrlCommand::kSetStateBlob:
      tpm::append_u32(out, q.state_flags);
      tpm::append_u32(out, q.blob_type);
      tpm::append_u32(out, static_cast<std::uint32_t>(q.data.size()));
      out.insert(out.end(), q.data.begin(), q.data.end());
      break;
    case CtrlCommand::kGetInfo:
      tpm::append_u32(out, static_cast<std::uint32_t>(q.info_flags >> 32));
      tpm::append_u32(out, static_cast<std::uint32_t>(q.info_flags));
      tpm::append_u32(out, q.offset);
      out.resize(out.size() + 4);  // ptm_getinfo's pad
      break;
    default: break;
  }
  return out;
}

void check_one(std::span<const std::uint8_t> request) {
  auto again = request_length(request);
  FUZZ_CHECK(again.ok() && *again == request.size());
  auto q = decode_request(request);
  FUZZ_CHECK(q.ok());
  const auto code = static_cast<std::uint32_t>(q->command);
  FUZZ_CHECK(code >= 0x01 && code <= 0x12 && code == tpm::read_u32(request, 0));
  FUZZ_CHECK(std::string(command_name(q->command)) != "?");
  FUZZ_CHECK(q->data.size() <= kMaxStateBlob);
  if (q->command == CtrlCommand::kHashData) FUZZ_CHECK(q->data.size() <= kMaxHashData);
  const Bytes encoded = encode_request(*q);
  if (q->command == CtrlCommand::kSetLocality || q->command == CtrlCommand::kResetTpmEstablished) {
    FUZZ_CHECK(request.size() >= 5 && request.size() <= 8);
    FUZZ_CHECK(std::equal(encoded.begin(), encoded.end(), request.begin()));
  } else if (q->command == CtrlCommand::kGetInfo) {
    FUZZ_CHECK(encoded.size() == request.size() && std::equal(encoded.begin(), encoded.end() - 4, request.begin()));
  } else {
    FUZZ_CHECK(encoded.size() == request.size() && std::equal(encoded.begin(), encoded.end(), request.begin()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> all(data, size);

  // Whatever decode_request accepts is exactly one delimited request.
  if (auto whole = decode_request(all); whole) {
    auto length = request_length(all);
    FUZZ_CHECK(length.ok() && *length == size);
  }

  std::span<const std::uint8_t> buffered = all;
  while (true) {
    auto length = request_length(buffered);
    if (!length) {
      FUZZ_CHECK(buffered.size() >= 4 && !length.error().message.empty());
      break;
    }
    if (*length == 0) break;
    FUZZ_CHECK(*length >= 4 && *length <= buffered.size());
    check_one(buffered.first(*length));
    buffered = buffered.subspan(*length);
  }

  // Response encoders with fuzzed values (GET_INFO's offset can point past the JSON).
  fuzz::Input in(data, size);
  const std::uint32_t result = in.u32();
  const std::uint32_t offset = in.u32();
  const std::string json = fuzz::as_string(in.rest());
  const Bytes info = encode_info(result, json, offset);
  const std::size_t shown = json.size() - std::min<std::size_t>(offset, json.size());
  FUZZ_CHECK(info.size() == 12 + shown && tpm::read_u32(info, 0) == result);
  FUZZ_CHECK(tpm::read_u32(info, 4) == json.size() && tpm::read_u32(info, 8) == shown);
  const Bytes blob = encode_state_blob(result, offset, std::span(data, size));
  FUZZ_CHECK(blob.size() == 16 + size && tpm::read_u32(blob, 8) == size && tpm::read_u32(blob, 12) == size);
  FUZZ_CHECK(encode_established(result, offset & 1).size() == 8);
  return 0;
}
