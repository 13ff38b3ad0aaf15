// The swtpm-compatible guest channel: per instance, listeners for control
// and data connections that speak swtpm's protocols, so that QEMU
// (-tpmdev emulator), tpm2-tools (swtpm TCTI) and swtpm_ioctl work
// unchanged. Everything runs on the loop; TPM commands go through Service.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <memory>
#include <unordered_map>
#include <vector>

#include "backends/swtpm/endpoint_spec.h"
#include "backends/swtpm/session.h"
#include "backends/swtpm/stream_connection.h"
#include "src/core/log.h"
#include "src/core/service.h"
#include "src/core/uv_handle.h"

namespace vtpm::swtpm {

class SwtpmBackend {
 public:
  // `max_connections`: per instance, control and data together; more are
  // closed at once (a guest cannot exhaust the daemon's descriptors).
  // Connections per instance are limited by its max_connections (Service::effective_limits).
  SwtpmBackend(uv_loop_t* loop, const Logger& log, Service& service);
  ~SwtpmBackend();
  SwtpmBackend(const SwtpmBackend&) = delete;
  SwtpmBackend& operator=(const SwtpmBackend&) = delete;

  // Opens the endpoints; all or nothing. One set of endpoints per instance.
  Status attach(const Uuid& id, const EndpointSpec& spec);
  // The two halves of attach, for an add: reserve binds the sockets (a
  // Unix socket's file appears; connecting is refused) while the new
  // instance is being made durable, which overlaps the file creation with
  // the disk syncs; activate listens once it is. Either fails all or
  // nothing; detach releases reserved endpoints too.
  Status reserve(const Uuid& id, const EndpointSpec& spec);
  Status activate(const Uuid& id);
  // Closes the instance's listeners and connections.
  Status detach(const Uuid& id);
  const EndpointSpec* spec_of(const Uuid& id) const;
  void close_all();
  std::size_t connections() const { return connections_.size(); }

 private:
  class Listener;
  struct Endpoints {
    EndpointSpec spec;
    std::shared_ptr<Session> session;
    std::vector<std::unique_ptr<Listener>> listeners;
  };

  void accept(Listener& listener);
  std::shared_ptr<StreamConnection> adopt_datafd(uv_stream_t* ctrl, const std::shared_ptr<Session>& session);
  // Registers a connection, or closes it if its instance is at the limit.
  bool track(const std::shared_ptr<StreamConnection>& connection, const Uuid& id);

  uv_loop_t* loop_;
  const Logger& log_;
  Service& service_;
  std::unordered_map<Uuid, Endpoints> endpoints_;
  std::unordered_map<StreamConnection*, std::pair<std::shared_ptr<StreamConnection>, Uuid>> connections_;
  std::unordered_map<Uuid, std::size_t> per_instance_;
};

}  // namespace vtpm::swtpm
