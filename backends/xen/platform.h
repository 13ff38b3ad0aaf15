// The Xen platform boundary the tpmif backend needs, as three interfaces
// shaped after the dom0 libraries: xenstore (libxenstore), grant mapping
// (libxengnttab) and event channels (libxenevtchn). Two implementations:
// real_platform (the libraries, built when libxen-dev is found) and the
// simulation in tests/support/xen (shared memory, eventfds, an in-process
// xenstore with permissions and watches).
//
// Thread affinity: loop thread. Each interface exposes one fd that becomes
// readable when it has something to deliver; the backend polls it on the
// libuv loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proto/result.h"
#include "proto/tpmif.h"

namespace vtpm::xen {

using DomId = std::uint16_t;
using Port = std::uint32_t;
using GrantRef = std::uint32_t;

// A xenstore node permission: the first entry of a node's list names its
// owner (who may do anything) and what every other domain may do; later
// entries grant one domain more.
struct Permission {
  enum Access : std::uint8_t { kNone = 0, kRead = 1, kWrite = 2, kBoth = 3 };
  DomId domid = 0;
  Access access = kNone;
};

struct WatchEvent {
  std::string path;
  std::string token;
};

class XenStore {
 public:
  virtual ~XenStore() = default;
  // not_found when the node does not exist; permission_denied when the
  // caller may not read it.
  virtual Result<std::string> read(const std::string& path) = 0;
  virtual Status write(const std::string& path, const std::string& value) = 0;
  // Removes the node and everything under it; absent is not an error.
  virtual Status remove(const std::string& path) = 0;
  virtual Result<std::vector<std::string>> directory(const std::string& path) = 0;
  virtual Status set_permissions(const std::string& path, const std::vector<Permission>& permissions) = 0;
  // Several writes as one transaction (retried on conflict): readers see
  // all of them or none.
  virtual Status write_all(const std::vector<std::pair<std::string, std::string>>& writes) = 0;
  // A watch fires once when set, then whenever the node or anything under
  // it changes (or an ancestor is removed).
  virtual Status watch(const std::string& path, const std::string& token) = 0;
  virtual Status unwatch(const std::string& path, const std::string& token) = 0;
  virtual int fd() const = 0;
  // Every queued watch event (the fd is drained).
  virtual std::vector<WatchEvent> take_events() = 0;
};

// A foreign page mapped read-write into this process; unmapped on destruction.
class GrantMapping {
 public:
  virtual ~GrantMapping() = default;
  virtual tpmif::Page page() = 0;
};

class GrantTable {
 public:
  virtual ~GrantTable() = default;
  // Fails (bad grant ref, not granted to us, domain gone) without side effects.
  virtual Result<std::unique_ptr<GrantMapping>> map(DomId domid, GrantRef ref) = 0;
};

// One event-channel handle (xenevtchn). A port that fires is delivered
// once through pending() and then stays masked until unmask(): further
// notifications meanwhile are merged into one, delivered after unmask.
class EventChannels {
 public:
  virtual ~EventChannels() = default;
  virtual int fd() const = 0;
  // Binds to the remote domain's unbound port. Like Xen's
  // evtchn_bind_interdomain the new local port starts with an event
  // pending: the peer may have notified before the bind.
  virtual Result<Port> bind_interdomain(DomId remote, Port remote_port) = 0;
  virtual Status unbind(Port local) = 0;
  virtual Status notify(Port local) = 0;
  // The next delivered port, or nullopt if none is waiting.
  virtual Result<std::optional<Port>> pending() = 0;
  virtual Status unmask(Port local) = 0;
};

struct Platform {
  DomId self = 0;  // the backend's domain (dom0, or a driver domain)
  std::unique_ptr<XenStore> store;
  std::unique_ptr<GrantTable> grants;
  std::unique_ptr<EventChannels> events;
};

}  // namespace vtpm::xen
