#include "backends/swtpm/ctrl_connection.h"

#include <nlohmann/json.hpp>

#include "proto/tpm_packet.h"

namespace vtpm::swtpm {
namespace {

// Every control command, as swtpm's PTM_CAP_* bits, plus bit 15 (the TPM2
// send-command header on the data channel).
constexpr std::uint64_t kCapabilities = 0xffff;
// libtpms 0.9's bounds for TPMLIB_SetBufferSize (as swtpm reports them).
constexpr std::uint32_t kMinBuffer = 2808;
constexpr std::uint32_t kMaxBuffer = 4096;

}  // namespace

void CtrlConnection::on_data() {
  auto& in = buffer();
  auto length = request_length(in);
  if (!length) {
    // No length field to skip by; the client waits for this answer, so the
    // whole buffer is this one bad request.
    log_.warn(session_->id, "swtpm control channel: " + length.error().message);
    in.clear();
    return reply(encode_result(kBadOrdinal));
  }
  if (*length == 0) return;
  auto request = decode_request(std::span<const std::uint8_t>(in).first(*length));
  in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(*length));
  if (!request) return reply(encode_result(kBadParameter));
  hold();
  handle(*request);
}

void CtrlConnection::reply(Bytes response) {
  if (log_.enabled(LogLevel::kDebug)) {
    log_.debug(session_->id, "swtpm control: replied result " + std::to_string(response.size() >= 4 ? tpm::read_u32(response, 0) : 0));
  }
  send(std::move(response));
  resume();
}

void CtrlConnection::handle(const CtrlRequest& q) {
  Session& s = *session_;
  log_.debug(s.id, std::string("swtpm control: ") + command_name(q.command));
  switch (q.command) {
    case CtrlCommand::kGetCapability: return reply(encode_capability(kCapabilities));
    case CtrlCommand::kInit: return init(q);
    case CtrlCommand::kShutdown:
      // Ends this instance's session (swtpm would exit; vtpmd serves others).
      s.running = false;
      if (auto data = s.datafd.lock()) data->close();
      return reply(encode_result(kSuccess));
    case CtrlCommand::kStop: s.running = false; return reply(encode_result(kSuccess));
    case CtrlCommand::kGetTpmEstablished: return platform(engine::JobKind::kEstablishedGet, {}, s.locality);
    // The H-CRTM sequence comes from the platform itself: locality 4.
    case CtrlCommand::kHashStart: return platform(engine::JobKind::kHashStart, {}, 4);
    case CtrlCommand::kHashData: return platform(engine::JobKind::kHashData, q.data, 4);
    case CtrlCommand::kHashEnd: return platform(engine::JobKind::kHashEnd, {}, 4);
    case CtrlCommand::kSetLocality:
    case CtrlCommand::kResetTpmEstablished:
      if (q.locality > 4) return reply(encode_result(kBadLocality));
      // Only localities 3 and 4 may reset the establishment bit (TPM spec).
      if (q.command == CtrlCommand::kResetTpmEstablished) {
        if (q.locality < 3) return reply(encode_result(kBadLocality));
        return platform(engine::JobKind::kEstablishedReset, {}, q.locality);
      }
      s.locality = q.locality;
      return reply(encode_result(kSuccess));
    case CtrlCommand::kCancelTpmCmd:
      return service_.cancel(s.id, [self = shared_from_this()](Status st) {
        static_cast<CtrlConnection&>(*self).reply(encode_result(st ? kSuccess : kFail));
      });
    case CtrlCommand::kStoreVolatile:
      return service_.store_volatile(s.id, [self = shared_from_this()](Status st) {
        if (!self->closed()) static_cast<CtrlConnection&>(*self).reply(encode_result(st ? kSuccess : kFail));
      });
    case CtrlCommand::kGetStateBlob: return get_state_blob(q);
    case CtrlCommand::kSetStateBlob: return set_state_blob(q);
    case CtrlCommand::kGetConfig: return reply(encode_config(kSuccess, 0));  // no file or migration key
    case CtrlCommand::kSetDatafd: return set_datafd();
    case CtrlCommand::kSetBufferSize: return set_buffer_size(q);
    case CtrlCommand::kGetInfo: return reply(encode_info(kSuccess, info_json(q.info_flags), q.offset));
    default: return reply(encode_result(kBadOrdinal));
  }
}

void CtrlConnection::platform(engine::JobKind kind, Bytes data, std::uint8_t locality) {
  if (!session_->running) {
    // As swtpm: these need a running TPM (after CMD_INIT).
    return reply(kind == engine::JobKind::kEstablishedGet ? encode_established(kInvalidPostInit, false)
                                                          : encode_result(kInvalidPostInit));
  }
  auto self = std::static_pointer_cast<CtrlConnection>(shared_from_this());
  service_.platform(session_->id, kind, std::move(data), locality, [self, kind](Result<PlatformResult> r) {
    if (self->closed()) return;
    const std::uint32_t rc = r ? r->tpm_result : kFail;
    if (kind == engine::JobKind::kEstablishedGet) return self->reply(encode_established(rc, r && r->established));
    self->reply(encode_result(rc));
  });
}

void CtrlConnection::init(const CtrlRequest& q) {
  auto self = std::static_pointer_cast<CtrlConnection>(shared_from_this());
  auto done = [self](Result<const Instance*> r) {
    if (r) self->session_->running = true;
    else self->log_.warn(self->session_->id, "CMD_INIT failed: " + r.error().message);
    if (!self->closed()) self->reply(encode_result(r ? kSuccess : kFail));
  };
  if (session_->incoming) {
    // A migration's incoming state: resume exactly where the source was.
    engine::StateBlobs blobs = std::move(*session_->incoming);
    session_->incoming.reset();
    if (q.init_flags & kInitDeleteVolatile) log_.debug(session_->id, "CMD_INIT: incoming volatile state is used once");
    return service_.replace_state(session_->id, std::move(blobs), std::nullopt, std::move(done));
  }
  // The guest's platform power cycle: its firmware sends TPM Startup, so the
  // instance's automatic Startup (for clients that never do) is not applied.
  service_.power(session_->id, PowerAction::kGuestReset, std::move(done));
}

void CtrlConnection::get_state_blob(const CtrlRequest& q) {
  auto self = std::static_pointer_cast<CtrlConnection>(shared_from_this());
  service_.export_state(session_->id, [self, q](Result<engine::StateBlobs> r) {
    if (self->closed()) return;
    if (!r) return self->reply(encode_state_blob(kFail, 0, {}));
    const engine::Bytes* blob = q.blob_type == kBlobTypePermanent   ? &r->permanent
                                : q.blob_type == kBlobTypeVolatile  ? &r->volatile_state
                                : q.blob_type == kBlobTypeSaveState ? &r->save_state
                                                                    : nullptr;
    if (blob == nullptr) return self->reply(encode_state_blob(kBadParameter, 0, {}));
    const std::size_t start = std::min<std::size_t>(q.offset, blob->size());
    self->reply(encode_state_blob(kSuccess, 0, std::span<const std::uint8_t>(*blob).subspan(start)));
  });
}

void CtrlConnection::set_state_blob(const CtrlRequest& q) {
  // As in swtpm: state may only be replaced while the TPM is stopped.
  if (session_->running) return reply(encode_result(kInvalidPostInit));
  if (!session_->incoming) session_->incoming.emplace();
  engine::StateBlobs& in = *session_->incoming;
  if (q.blob_type == kBlobTypePermanent) in.permanent = q.data;
  else if (q.blob_type == kBlobTypeVolatile) in.volatile_state = q.data;
  else if (q.blob_type == kBlobTypeSaveState) in.save_state = q.data;
  else return reply(encode_result(kBadParameter));
  reply(encode_result(kSuccess));
}

void CtrlConnection::set_buffer_size(const CtrlRequest& q) {
  const std::uint32_t current = session_->buffer_size;
  if (q.buffer_size == 0 || q.buffer_size == current) {
    return reply(encode_buffer_size(kSuccess, current, kMinBuffer, kMaxBuffer));
  }
  if (session_->running) return reply(encode_buffer_size(kInvalidPostInit, current, kMinBuffer, kMaxBuffer));
  const std::uint32_t wanted = std::clamp(q.buffer_size, kMinBuffer, kMaxBuffer);
  auto self = std::static_pointer_cast<CtrlConnection>(shared_from_this());
  service_.replace_state(session_->id, std::nullopt, wanted, [self, wanted](Result<const Instance*> r) {
    if (r) self->session_->buffer_size = wanted;
    if (!self->closed()) {
      self->reply(encode_buffer_size(r ? kSuccess : kFail, self->session_->buffer_size, kMinBuffer, kMaxBuffer));
    }
  });
}

void CtrlConnection::set_datafd() {
  const bool has_fd = uv_pipe_pending_count(reinterpret_cast<uv_pipe_t*>(stream())) > 0;
  if (!has_fd) return reply(encode_result(kFail));
  // Accept the fd in any case so it is never leaked; refuse a second live
  // data channel for the same instance.
  auto data = adopt_(*this);
  if (!data) return reply(encode_result(kFail));
  if (auto existing = session_->datafd.lock(); existing && !existing->closed()) {
    data->close();
    log_.warn(session_->id, "CMD_SET_DATAFD while a data channel is open; refused");
    return reply(encode_result(kFail));
  }
  session_->datafd = data;
  reply(encode_result(kSuccess));
}

std::string CtrlConnection::info_json(std::uint64_t flags) const {
  // libtpms 0.9.2's values, the ones swtpm reports for the same flags.
  const bool tpm2 = session_->version == TpmVersion::k20;
  nlohmann::json info = nlohmann::json::object();
  if (flags & 1) {
    info["TPMSpecification"] = {{"family", tpm2 ? "2.0" : "1.2"}, {"level", tpm2 ? 0 : 2}, {"revision", tpm2 ? 164 : 116}};
  }
  if (flags & 2) {
    info["TPMAttributes"] = {{"manufacturer", "id:00001014"}, {"version", tpm2 ? "id:20191023" : "id:00740001"},
                             {"model", "swtpm"}};
  }
  return info.dump();
}

}  // namespace vtpm::swtpm
