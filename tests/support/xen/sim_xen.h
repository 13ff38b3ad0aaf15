// A simulated Xen platform for tests, faithful at the boundary the tpmif
// backend uses (backends/xen/platform.h):
// - xenstore: one tree of nodes with owner/permission lists enforced for
//   unprivileged domains (dom0 is privileged), new nodes inheriting their
//   parent's permissions, watches that fire once when set and on every
//   change at or under their path (and when an ancestor is removed), each
//   connection's events delivered through an eventfd;
// - grant tables: every granted page is a memfd; the granting domain and
//   each mapper have their own mmap of it, so a backend reads the guest's
//   page through a real separate mapping that it must unmap; refs that are
//   unknown, revoked or granted to another domain fail to map;
// - event channels: per-domain port tables (unbound / interdomain), one
//   eventfd per handle, ports delivered once and masked until unmask,
//   notifications on an unbound port dropped silently (as evtchn_send),
//   notifications while masked merged into one, a fresh interdomain bind
//   pending at once (Xen's evtchn_bind_interdomain does the same).
// Everything lives in this process; the fds are polled by the caller's
// libuv loop exactly like the real libraries' fds.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/xen/platform.h"
#include "state/file_io.h"

namespace vtpm::xen::sim {

class SimStore;
class SimEvents;

// A guest's page as the guest sees it (its own mapping of the memfd).
class GuestPage {
 public:
  GuestPage();
  ~GuestPage();
  GuestPage(const GuestPage&) = delete;
  GuestPage& operator=(const GuestPage&) = delete;
  tpmif::Page page() { return tpmif::Page(data_, tpmif::kPageSize); }
  int fd() const { return fd_.get(); }

 private:
  state::Fd fd_;
  std::uint8_t* data_ = nullptr;
};

// Pages (memfds) mapped back to back into this process, as gntdev maps
// several grant refs (or gntalloc several shared pages) contiguously; the
// run is unmapped on destruction, then `on_unmap` runs.
class PageRun {
 public:
  static Result<std::unique_ptr<PageRun>> map(const std::vector<int>& fds, bool writable,
                                              std::function<void()> on_unmap = {});
  ~PageRun();
  PageRun(const PageRun&) = delete;
  PageRun& operator=(const PageRun&) = delete;
  std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  PageRun(std::uint8_t* data, std::size_t size, std::function<void()> on_unmap)
      : data_(data), size_(size), on_unmap_(std::move(on_unmap)) {}
  std::uint8_t* data_;
  std::size_t size_;
  std::function<void()> on_unmap_;
};

class Hypervisor {
 public:
  Hypervisor() = default;
  Hypervisor(const Hypervisor&) = delete;
  Hypervisor& operator=(const Hypervisor&) = delete;

  // Handles for a domain, as its libraries (or kernel) would open them.
  std::unique_ptr<SimStore> open_store(DomId domid);
  std::unique_ptr<GrantTable> open_grants(DomId mapper);
  std::unique_ptr<SimEvents> open_events(DomId domid);
  Platform platform(DomId domid);

  // Guest kernel side of the grant table.
  GrantRef grant_access(DomId owner, DomId to, const std::shared_ptr<GuestPage>& page);
  // Fails while the backend still maps it (Linux then defers the free).
  bool end_access(DomId owner, GrantRef ref);
  // gntalloc's unshare: the grant ends now, or when its last mapping goes.
  void end_access_deferred(DomId owner, GrantRef ref);
  std::size_t mappings_of(DomId owner, GrantRef ref) const;
  std::size_t grants_of(DomId owner) const;
  // Several refs of `owner` mapped back to back (xengnttab_map_domain_grant_refs):
  // all or nothing, each must be granted to `mapper` and not ended.
  Result<std::unique_ptr<PageRun>> map_grants(DomId mapper, DomId owner, const std::vector<GrantRef>& refs, bool writable);
  std::size_t live_mappings() const { return live_mappings_; }

  // Direct tree access for the toolstack model and assertions (privileged).
  struct Node {
    std::string value;
    std::vector<Permission> perms;  // [0] = owner + everyone else
  };
  const Node* node(const std::string& path) const;

 private:
  friend class SimStore;
  friend class SimEvents;
  friend class SimGrantTable;
  friend class SimMapping;

  struct Watch {
    SimStore* conn;
    std::string path;
    std::string token;
  };
  bool can(DomId dom, const Node& node, Permission::Access want) const;
  Result<std::string> read(DomId dom, const std::string& path) const;
  Status write(DomId dom, const std::string& path, const std::string& value);
  Status remove(DomId dom, const std::string& path);
  Result<std::vector<std::string>> directory(DomId dom, const std::string& path) const;
  Status set_permissions(DomId dom, const std::string& path, const std::vector<Permission>& perms);
  void fire(const std::string& changed, bool removed);
  void add_watch(SimStore* conn, const std::string& path, const std::string& token);
  void drop_watches(SimStore* conn, const std::string& path, const std::string& token, bool all);

  struct Grant {
    std::shared_ptr<GuestPage> page;
    DomId to = 0;
    std::size_t mappings = 0;
    bool ended = false;  // unshared while mapped: goes with the last mapping
  };
  void unmapped(DomId owner, GrantRef ref);
  std::map<DomId, std::map<GrantRef, Grant>> grants_;
  std::map<DomId, GrantRef> next_ref_;
  std::size_t live_mappings_ = 0;

  enum class PortKind { kUnbound, kInterdomain };
  struct PortState {
    PortKind kind = PortKind::kUnbound;
    DomId remote = 0;
    Port remote_port = 0;
    SimEvents* owner = nullptr;
    bool pending = false;
    bool masked = false;
  };
  Port new_port(DomId dom, PortState state);
  void raise(DomId dom, Port port);
  void close_port(DomId dom, Port port);
  std::map<DomId, std::map<Port, PortState>> ports_;

  std::map<std::string, Node> tree_;
  std::vector<Watch> watches_;
};

class SimStore final : public XenStore {
 public:
  SimStore(Hypervisor& hv, DomId domid);
  ~SimStore() override;
  Result<std::string> read(const std::string& path) override { return hv_.read(domid_, path); }
  Status write(const std::string& path, const std::string& value) override { return hv_.write(domid_, path, value); }
  Status remove(const std::string& path) override { return hv_.remove(domid_, path); }
  Result<std::vector<std::string>> directory(const std::string& path) override { return hv_.directory(domid_, path); }
  Status set_permissions(const std::string& path, const std::vector<Permission>& perms) override {
    return hv_.set_permissions(domid_, path, perms);
  }
  Status write_all(const std::vector<std::pair<std::string, std::string>>& writes) override;
  Status watch(const std::string& path, const std::string& token) override;
  Status unwatch(const std::string& path, const std::string& token) override;
  int fd() const override { return event_fd_.get(); }
  std::vector<WatchEvent> take_events() override;

  void deliver(WatchEvent event);

 private:
  Hypervisor& hv_;
  DomId domid_;
  state::Fd event_fd_;
  std::deque<WatchEvent> queue_;
};

class SimEvents final : public EventChannels {
 public:
  SimEvents(Hypervisor& hv, DomId domid);
  ~SimEvents() override;
  int fd() const override { return event_fd_.get(); }
  Result<Port> bind_interdomain(DomId remote, Port remote_port) override;
  Status unbind(Port local) override;
  Status notify(Port local) override;
  Result<std::optional<Port>> pending() override;
  Status unmask(Port local) override;
  // Guest side: a port waiting for `remote` to bind (xenbus_alloc_evtchn).
  Result<Port> alloc_unbound(DomId remote);

  void deliver(Port port);

 private:
  Hypervisor& hv_;
  DomId domid_;
  state::Fd event_fd_;
  std::deque<Port> ring_;
  std::set<Port> mine_;
};

}  // namespace vtpm::xen::sim
