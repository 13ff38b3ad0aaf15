// The per-instance vchan channels (vchan_channel.h) of a daemon running
// with the Xen backend: which instances have one, their setting saved with
// the instance (so a restarted daemon opens them again), their status.
//
// Thread affinity: loop thread.
#pragma once

#include <map>
#include <memory>
#include <optional>

#include "backends/xen/vchan_channel.h"

namespace vtpm::xen {

class VchanBackend {
 public:
  VchanBackend(uv_loop_t* loop, const Logger& log, Service& service, std::unique_ptr<Vchans> vchans, DomId self);
  ~VchanBackend();
  VchanBackend(const VchanBackend&) = delete;
  VchanBackend& operator=(const VchanBackend&) = delete;

  // /local/domain/<self>/data/vtpmd/<uuid>: under the daemon's own data
  // directory, one node per instance.
  std::string default_path(const Uuid& id) const;
  // Opens (or replaces) the instance's channel for `client` and saves the
  // setting; nullopt closes it and clears the setting. Fails without side
  // effects.
  Status set(const Uuid& id, std::optional<DomId> client);
  // As set(), with every parameter (tests pick small rings).
  Status set_spec(const Uuid& id, VchanSpec spec);
  // Start-up: opens the channel of every instance whose setting asks for one.
  void restore();
  // The instance is gone: its channel closes (nothing to save).
  void instance_removed(const Uuid& id);
  std::optional<VchanStatus> status_of(const Uuid& id) const;
  void close_all();
  std::size_t channels() const { return channels_.size(); }

 private:
  uv_loop_t* loop_;
  const Logger& log_;
  Service& service_;
  std::unique_ptr<Vchans> vchans_;
  DomId self_;
  std::map<Uuid, std::shared_ptr<VchanChannel>> channels_;
};

}  // namespace vtpm::xen
