// The Xen vTPM backend (tpmif v2) on the daemon's loop, replacing Xen's
// vtpm stub domains: it watches <self>/backend/vtpm for devices that the
// toolstack (libxl, `vtpm=["backend=0,uuid=..."]`) creates, follows the
// xenbus handshake, and serves each connected frontend's shared page
// (tpmif_connection.h) through Service.
//
// Handshake per device (/local/domain/<self>/backend/vtpm/<domid>/<devid>):
//   new dir: read the mandatory `uuid`, pick the instance (or, if allowed,
//     start creating it), write feature-protocol-v2=1 and InitWait at once,
//     watch the frontend's state; connect once the instance is ready;
//   frontend Initialised/Connected: map ring-ref, bind event-channel,
//     Connected; the bind counts as a notification;
//   frontend Closing -> Closing; frontend Closed -> back to InitWait (the
//     same instance serves the next kernel: pv-grub hand-off, kexec);
//   toolstack online=0 or state=Closing -> Closed, binding released;
//   frontend gone -> Closed, binding released; dir gone -> forgotten.
// A device that appears in Initialising (a fresh guest) powers its instance
// through a reset first, so each boot starts with clean PCRs; devices found
// already past that at start-up (a vtpmd restart) keep their TPM as it is.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "backends/xen/platform.h"
#include "backends/xen/tpmif_connection.h"
#include "src/core/log.h"
#include "src/core/service.h"
#include "src/core/uv_handle.h"

namespace vtpm::xen {

struct XenOptions {
  // Create an instance (TPM 1.2) for a UUID vtpmd does not know.
  bool auto_create = false;
  // Let a tpmif device bind a TPM 2.0 instance (stock xen-tpmfront speaks 1.2 only).
  bool allow_tpm2 = false;
};

struct XenBinding {
  DomId domid = 0;
  std::uint32_t devid = 0;
  tpmif::XenbusState state = tpmif::XenbusState::kUnknown;  // the backend's
  bool connected = false;
};

class XenBackend {
 public:
  XenBackend(uv_loop_t* loop, const Logger& log, Service& service, Platform platform, XenOptions options);
  ~XenBackend();
  XenBackend(const XenBackend&) = delete;
  XenBackend& operator=(const XenBackend&) = delete;

  // Watches the backend directory and polls the platform's fds.
  Status start();
  // Daemon shutdown: unmap and unbind everything but leave xenstore as it
  // is, so that a restarted vtpmd picks the guests up again.
  void close_all();

  std::optional<XenBinding> binding_of(const Uuid& id) const;
  // The operator removed the instance (with force): its device is closed
  // with an error node naming why, as for a failed device.
  void instance_removed(const Uuid& id);
  std::size_t devices() const { return devices_.size(); }
  std::size_t connected() const;
  const std::string& base() const { return base_; }
  DomId self() const { return platform_->self; }

 private:
  struct Device;
  void on_store_events();
  void on_port_events();
  void scan();
  void refresh(const std::string& key);
  void discover(const std::string& key, DomId domid, std::uint32_t devid);
  void resolve(Device& device);
  void accept(Device& device, const Instance& instance, bool reset);
  void announce(Device& device);
  void ready(Device& device);
  void fail_prepared(Device& device, const std::string& why);
  void refuse(Device& device, const std::string& why);
  void on_frontend_changed(Device& device);
  void on_backend_changed(Device& device);
  void connect(Device& device);
  void disconnect(Device& device);
  void switch_state(Device& device, tpmif::XenbusState state);
  void release(Device& device);
  void forget(const std::string& key);
  std::string dir_of(const Device& device) const;

  uv_loop_t* loop_;
  const Logger& log_;
  Service& service_;
  std::shared_ptr<Platform> platform_;  // shared with connections that still finish a command
  XenOptions options_;
  std::string base_;
  std::map<std::string, std::shared_ptr<Device>> devices_;  // "<domid>/<devid>"
  std::map<Uuid, std::string> bound_;                        // instance -> device key
  std::map<Port, std::string> ports_;                        // local port -> device key
  UvHandle<uv_poll_t> store_poll_;
  UvHandle<uv_poll_t> events_poll_;
};

}  // namespace vtpm::xen
