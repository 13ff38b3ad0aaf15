#include "backends/swtpm/data_connection.h"

#include "proto/tpm_packet.h"
#include "proto/tpm_stream.h"

namespace vtpm::swtpm {

void DataConnection::on_data() {
  // Frames answered without the engine (TPM stopped) are handled in a loop;
  // one that goes to the engine holds the connection until it is answered.
  while (!closed()) {
    if (!handle_one_frame()) return;
  }
}

bool DataConnection::handle_one_frame() {
  auto& in = buffer();
  auto frame = tpm::next_frame(in, std::max<std::size_t>(session_->buffer_size, tpm::kHeaderSize));
  if (!frame) {
    // A frame that lies about its size cannot be skipped: answer, then close.
    log_.warn(session_->id, "swtpm data channel: " + frame.error().message + "; closing the connection");
    answer(tpm::error_response(session_->version, tpm::failure_code(session_->version, frame.error().code)), false);
    close();
    return false;
  }
  if (!*frame) return false;
  const tpm::StreamFrame f = **frame;
  engine::Bytes command(in.begin() + static_cast<std::ptrdiff_t>(f.offset),
                        in.begin() + static_cast<std::ptrdiff_t>(f.offset + f.length));
  in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(f.consumed));
  if (!session_->running) {
    // Before CMD_INIT (or after CMD_STOP) a TPM answers with a failure in
    // its own format; QEMU's version probe relies on the tag.
    answer(tpm::error_response(session_->version, tpm::failure_code(session_->version, ErrorCode::kUnavailable)),
           f.send_command_header);
    return true;
  }
  hold();
  const std::uint8_t locality = f.send_command_header ? f.locality : session_->locality;
  std::weak_ptr<StreamConnection> weak = shared_from_this();
  const TpmVersion version = session_->version;
  service_.exec(session_->id, std::move(command), locality,
                [weak, version, header = f.send_command_header](Result<ExecResult> r) {
                  auto self = std::static_pointer_cast<DataConnection>(weak.lock());
                  if (!self || self->closed()) return;
                  if (r) {
                    self->answer(r->response, header);
                  } else {
                    self->answer(tpm::error_response(version, tpm::failure_code(version, r.error().code)), header);
                  }
                  self->resume();
                });
  return false;
}

void DataConnection::answer(const engine::Bytes& response, bool send_command_header) {
  send(tpm::frame_response(response, send_command_header));
}

}  // namespace vtpm::swtpm
