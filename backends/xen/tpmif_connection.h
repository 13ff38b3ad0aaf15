// One live tpmif v2 connection: the guest's shared page mapped, the
// interdomain event channel bound, and the request cycle on the page
// (SUBMIT -> Service::exec -> FINISH; CANCEL answered IDLE when nothing
// runs, forwarded as a TPM cancel when something does). A command in
// flight keeps its connection (and so the mapping and the port) alive until
// its answer is on the page: the backend may drop a connection (guest
// closing, vtpmd shutting down) without the guest losing an answer, and a
// SUBMIT left on the page never runs twice. The last reference unbinds the
// port and unmaps the page.
//
// Thread affinity: loop thread.
#pragma once

#include <memory>

#include "backends/xen/platform.h"
#include "src/core/log.h"
#include "src/core/service.h"

namespace vtpm::xen {

struct ConnectionParams {
  Uuid instance;
  TpmVersion version = TpmVersion::k12;
  DomId frontend = 0;
  GrantRef ring_ref = 0;
  Port remote_port = 0;
};

class TpmifConnection : public std::enable_shared_from_this<TpmifConnection> {
 public:
  // Maps the page and binds the port; fails without side effects.
  static Result<std::shared_ptr<TpmifConnection>> open(std::shared_ptr<Platform> platform, Service& service,
                                                       const Logger& log, const ConnectionParams& params);
  ~TpmifConnection();
  TpmifConnection(const TpmifConnection&) = delete;
  TpmifConnection& operator=(const TpmifConnection&) = delete;

  Port port() const { return port_; }
  // The page may have changed (an event, or the bind itself: the guest
  // may have submitted before we bound, and Xen marks a fresh bind pending).
  void on_event();
  std::uint64_t requests() const { return requests_; }
  std::uint64_t refused() const { return refused_; }

 private:
  TpmifConnection(std::shared_ptr<Platform> platform, Service& service, const Logger& log,
                  const ConnectionParams& params, std::unique_ptr<GrantMapping> mapping, Port port);
  void start_request();
  void finish(const std::vector<std::uint8_t>& response, std::size_t offset);
  void answer_error(std::uint32_t rc, std::size_t offset);

  std::shared_ptr<Platform> platform_;
  Service& service_;
  const Logger& log_;
  ConnectionParams params_;
  std::unique_ptr<GrantMapping> mapping_;
  Port port_;
  bool busy_ = false;
  bool cancel_forwarded_ = false;
  std::uint64_t requests_ = 0;
  std::uint64_t refused_ = 0;
};

}  // namespace vtpm::xen
