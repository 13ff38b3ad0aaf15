// A control channel connection: swtpm control requests in, responses out,
// one at a time. On Unix sockets it may carry the data channel's fd
// (CMD_SET_DATAFD, SCM_RIGHTS), as QEMU sends it.
#pragma once

#include <functional>
#include <memory>

#include "backends/swtpm/session.h"
#include "backends/swtpm/stream_connection.h"
#include "proto/swtpm_ctrl.h"
#include "src/core/log.h"
#include "src/core/service.h"

namespace vtpm::swtpm {

class CtrlConnection final : public StreamConnection {
 public:
  // Adopts a data connection received with CMD_SET_DATAFD.
  using AdoptData = std::function<std::shared_ptr<StreamConnection>(CtrlConnection&)>;

  CtrlConnection(Service& service, const Logger& log, std::shared_ptr<Session> session, AdoptData adopt)
      : service_(service), log_(log), session_(std::move(session)), adopt_(std::move(adopt)) {}

 private:
  void on_data() override;
  void handle(const CtrlRequest& request);
  void reply(Bytes response);
  void init(const CtrlRequest& request);
  void get_state_blob(const CtrlRequest& request);
  void set_state_blob(const CtrlRequest& request);
  void set_buffer_size(const CtrlRequest& request);
  void set_datafd();
  void platform(engine::JobKind kind, Bytes data, std::uint8_t locality);
  std::string info_json(std::uint64_t flags) const;

  Service& service_;
  const Logger& log_;
  std::shared_ptr<Session> session_;
  AdoptData adopt_;
};

}  // namespace vtpm::swtpm
