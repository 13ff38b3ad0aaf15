#include "proto/swtpm_ctrl.h"

#include <algorithm>

#include "proto/tpm_packet.h"

namespace vtpm::swtpm {
namespace {

struct BodySize {
  std::size_t min;
  std::size_t max;
};

// Fixed body sizes; commands with a self-sized tail are handled separately.
bool fixed_body(CtrlCommand c, BodySize* size) {
  switch (c) {
    case CtrlCommand::kGetCapability:
    case CtrlCommand::kShutdown:
    case CtrlCommand::kGetTpmEstablished:
    case CtrlCommand::kHashStart:
    case CtrlCommand::kHashEnd:
    case CtrlCommand::kCancelTpmCmd:
    case CtrlCommand::kStoreVolatile:
    case CtrlCommand::kStop:
    case CtrlCommand::kGetConfig:
    case CtrlCommand::kSetDatafd: *size = {0, 0}; return true;
    case CtrlCommand::kInit:
    case CtrlCommand::kSetBufferSize: *size = {4, 4}; return true;
    case CtrlCommand::kSetLocality:
    case CtrlCommand::kResetTpmEstablished: *size = {1, 4}; return true;
    case CtrlCommand::kGetStateBlob: *size = {12, 12}; return true;
    case CtrlCommand::kGetInfo: *size = {16, 16}; return true;
    default: return false;
  }
}

bool known(std::uint32_t code) { return code >= 0x01 && code <= 0x12; }

Error bad(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, "control request: " + what); }

}  // namespace

const char* command_name(CtrlCommand c) {
  static constexpr const char* kNames[] = {
      "?", "GET_CAPABILITY", "INIT", "SHUTDOWN", "GET_TPMESTABLISHED", "SET_LOCALITY", "HASH_START",
      "HASH_DATA", "HASH_END", "CANCEL_TPM_CMD", "STORE_VOLATILE", "RESET_TPMESTABLISHED", "GET_STATEBLOB",
      "SET_STATEBLOB", "STOP", "GET_CONFIG", "SET_DATAFD", "SET_BUFFERSIZE", "GET_INFO"};
  const auto i = static_cast<std::uint32_t>(c);
  return i < std::size(kNames) ? kNames[i] : "?";
}

Result<std::size_t> request_length(std::span<const std::uint8_t> b) {
  if (b.size() < 4) return std::size_t{0};
  const std::uint32_t code = tpm::read_u32(b, 0);
  if (!known(code)) return bad("unknown command 0x" + [&] {
    char buf[12];
    std::snprintf(buf, sizeof buf, "%x", code);
    return std::string(buf);
  }());
  const auto command = static_cast<CtrlCommand>(code);
  const std::size_t body = b.size() - 4;
  if (BodySize size{}; fixed_body(command, &size)) {
    if (body < size.min) return std::size_t{0};
    return 4 + std::min(body, size.max);
  }
  if (command == CtrlCommand::kHashData) {
    if (body < 4) return std::size_t{0};
    const std::uint32_t length = tpm::read_u32(b, 4);
    if (length > kMaxHashData) return bad("HASH_DATA length " + std::to_string(length) + " exceeds 4096");
    return body - 4 >= length ? 8 + std::size_t{length} : std::size_t{0};
  }
  // kSetStateBlob: flags, type, length, then the blob.
  if (body < 12) return std::size_t{0};
  const std::uint32_t length = tpm::read_u32(b, 12);
  if (length > kMaxStateBlob) return bad("SET_STATEBLOB length " + std::to_string(length) + " exceeds 512 KiB");
  return body - 12 >= length ? 16 + std::size_t{length} : std::size_t{0};
}

Result<CtrlRequest> decode_request(std::span<const std::uint8_t> r) {
  auto length = request_length(r);
  if (!length) return length.error();
  if (*length == 0 || *length != r.size()) return bad("incomplete or over-long request");
  CtrlRequest q;
  q.command = static_cast<CtrlCommand>(tpm::read_u32(r, 0));
  switch (q.command) {
    case CtrlCommand::kInit: q.init_flags = tpm::read_u32(r, 4); break;
    case CtrlCommand::kSetLocality:
    case CtrlCommand::kResetTpmEstablished: q.locality = r[4]; break;
    case CtrlCommand::kSetBufferSize: q.buffer_size = tpm::read_u32(r, 4); break;
    case CtrlCommand::kHashData: q.data.assign(r.begin() + 8, r.end()); break;
    case CtrlCommand::kGetStateBlob:
      q.state_flags = tpm::read_u32(r, 4);
      q.blob_type = tpm::read_u32(r, 8);
      q.offset = tpm::read_u32(r, 12);
      break;
    case CtrlCommand::kSetStateBlob:
      q.state_flags = tpm::read_u32(r, 4);
      q.blob_type = tpm::read_u32(r, 8);
      q.data.assign(r.begin() + 16, r.end());
      break;
    case CtrlCommand::kGetInfo:
      q.info_flags = (std::uint64_t{tpm::read_u32(r, 4)} << 32) | tpm::read_u32(r, 8);
      q.offset = tpm::read_u32(r, 12);
      break;
    default: break;
  }
  return q;
}

Bytes encode_result(std::uint32_t result) {
  Bytes out;
  tpm::append_u32(out, result);
  return out;
}

Bytes encode_capability(std::uint64_t caps) {
  Bytes out;
  tpm::append_u32(out, static_cast<std::uint32_t>(caps >> 32));
  tpm::append_u32(out, static_cast<std::uint32_t>(caps));
  return out;
}

Bytes encode_established(std::uint32_t result, bool established) {
  Bytes out = encode_result(result);
  out.push_back(established ? 1 : 0);
  out.insert(out.end(), 3, 0);
  return out;
}

Bytes encode_buffer_size(std::uint32_t result, std::uint32_t size, std::uint32_t min, std::uint32_t max) {
  Bytes out = encode_result(result);
  tpm::append_u32(out, size);
  tpm::append_u32(out, min);
  tpm::append_u32(out, max);
  return out;
}

Bytes encode_config(std::uint32_t result, std::uint32_t flags) {
  Bytes out = encode_result(result);
  tpm::append_u32(out, flags);
  return out;
}

Bytes encode_state_blob(std::uint32_t result, std::uint32_t state_flags, std::span<const std::uint8_t> blob) {
  Bytes out = encode_result(result);
  tpm::append_u32(out, state_flags);
  tpm::append_u32(out, static_cast<std::uint32_t>(blob.size()));  // total length
  tpm::append_u32(out, static_cast<std::uint32_t>(blob.size()));  // this chunk: everything at once
  out.insert(out.end(), blob.begin(), blob.end());
  return out;
}

Bytes encode_info(std::uint32_t result, const std::string& json, std::uint32_t offset) {
  Bytes out = encode_result(result);
  const std::size_t start = std::min<std::size_t>(offset, json.size());
  tpm::append_u32(out, static_cast<std::uint32_t>(json.size()));
  tpm::append_u32(out, static_cast<std::uint32_t>(json.size() - start));
  out.insert(out.end(), json.begin() + static_cast<std::ptrdiff_t>(start), json.end());
  return out;
}

}  // namespace vtpm::swtpm
