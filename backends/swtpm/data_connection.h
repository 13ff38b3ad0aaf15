// A data channel: TPM packets in (raw, or behind the TPM2 send-command
// header), responses out, one command at a time.
#pragma once

#include <memory>

#include "backends/swtpm/session.h"
#include "backends/swtpm/stream_connection.h"
#include "src/core/log.h"
#include "src/core/service.h"

namespace vtpm::swtpm {

class DataConnection final : public StreamConnection {
 public:
  DataConnection(Service& service, const Logger& log, std::shared_ptr<Session> session)
      : service_(service), log_(log), session_(std::move(session)) {}

 private:
  void on_data() override;
  // Handles the first buffered frame; true if another may follow at once.
  bool handle_one_frame();
  void answer(const engine::Bytes& response, bool send_command_header);

  Service& service_;
  const Logger& log_;
  std::shared_ptr<Session> session_;
};

}  // namespace vtpm::swtpm
