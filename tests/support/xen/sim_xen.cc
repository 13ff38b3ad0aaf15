#include "tests/support/xen/sim_xen.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <stdexcept>

namespace vtpm::xen::sim {
namespace {

bool under(const std::string& path, const std::string& ancestor) {
  return path.size() > ancestor.size() && path.compare(0, ancestor.size(), ancestor) == 0 &&
         path[ancestor.size()] == '/';
}

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
}

bool valid_path(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.size() > 3072) return false;
  if (path.size() > 1 && path.back() == '/') return false;
  if (path.find("//") != std::string::npos) return false;
  return std::all_of(path.begin(), path.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' || c == '@' || c == '.';
  });
}

state::Fd make_eventfd() {
  state::Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd.valid()) throw std::runtime_error("eventfd failed");
  return fd;
}

void signal_fd(int fd) {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
}

void drain_fd(int fd) {
  std::uint64_t v = 0;
  [[maybe_unused]] auto n = ::read(fd, &v, sizeof v);
}

// A backend's mapping of a granted page: its own mmap of the memfd.
class SimMappingImpl final : public GrantMapping {
 public:
  SimMappingImpl(std::uint8_t* data, std::function<void()> on_unmap) : data_(data), on_unmap_(std::move(on_unmap)) {}
  ~SimMappingImpl() override {
    ::munmap(data_, tpmif::kPageSize);
    on_unmap_();
  }
  tpmif::Page page() override { return tpmif::Page(data_, tpmif::kPageSize); }

 private:
  std::uint8_t* data_;
  std::function<void()> on_unmap_;
};

}  // namespace

GuestPage::GuestPage() : fd_(::memfd_create("vtpm-sim-grant", MFD_CLOEXEC)) {
  if (!fd_.valid() || ::ftruncate(fd_.get(), tpmif::kPageSize) != 0) throw std::runtime_error("memfd failed");
  void* p = ::mmap(nullptr, tpmif::kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  data_ = static_cast<std::uint8_t*>(p);  // zero-filled, as __GFP_ZERO
}

GuestPage::~GuestPage() { ::munmap(data_, tpmif::kPageSize); }

class SimGrantTable final : public GrantTable {
 public:
  SimGrantTable(Hypervisor& hv, DomId mapper) : hv_(hv), mapper_(mapper) {}
  Result<std::unique_ptr<GrantMapping>> map(DomId domid, GrantRef ref) override {
    auto table = hv_.grants_.find(domid);
    if (table == hv_.grants_.end()) return make_error(ErrorCode::kNotFound, "no grant table for domain " + std::to_string(domid));
    auto grant = table->second.find(ref);
    if (grant == table->second.end() || grant->second.to != mapper_ || grant->second.ended) {
      return make_error(ErrorCode::kPermissionDenied, "grant ref " + std::to_string(ref) + " of domain " +
                                                          std::to_string(domid) + " is not granted to us");
    }
    void* p = ::mmap(nullptr, tpmif::kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, grant->second.page->fd(), 0);
    if (p == MAP_FAILED) return make_error(ErrorCode::kIo, std::string("mmap: ") + std::strerror(errno));
    ++grant->second.mappings;
    ++hv_.live_mappings_;
    Hypervisor* hv = &hv_;
    return std::unique_ptr<GrantMapping>(std::make_unique<SimMappingImpl>(static_cast<std::uint8_t*>(p), [hv, domid, ref] {
      hv->unmapped(domid, ref);
    }));
  }

 private:
  Hypervisor& hv_;
  DomId mapper_;
};

std::unique_ptr<SimStore> Hypervisor::open_store(DomId domid) { return std::make_unique<SimStore>(*this, domid); }
std::unique_ptr<GrantTable> Hypervisor::open_grants(DomId mapper) { return std::make_unique<SimGrantTable>(*this, mapper); }
std::unique_ptr<SimEvents> Hypervisor::open_events(DomId domid) { return std::make_unique<SimEvents>(*this, domid); }

Platform Hypervisor::platform(DomId domid) {
  Platform p;
  p.self = domid;
  p.store = open_store(domid);
  p.grants = open_grants(domid);
  p.events = open_events(domid);
  return p;
}

GrantRef Hypervisor::grant_access(DomId owner, DomId to, const std::shared_ptr<GuestPage>& page) {
  GrantRef& next = next_ref_[owner];
  if (next < 8) next = 8;  // Linux reserves the first entries
  const GrantRef ref = next++;
  grants_[owner][ref] = Grant{page, to, 0};
  return ref;
}

bool Hypervisor::end_access(DomId owner, GrantRef ref) {
  auto& table = grants_[owner];
  auto it = table.find(ref);
  if (it == table.end() || it->second.mappings > 0) return false;
  table.erase(it);
  return true;
}

void Hypervisor::unmapped(DomId owner, GrantRef ref) {
  --live_mappings_;
  auto t = grants_.find(owner);
  if (t == grants_.end()) return;
  auto g = t->second.find(ref);
  if (g == t->second.end()) return;
  if (g->second.mappings > 0) --g->second.mappings;
  if (g->second.ended && g->second.mappings == 0) t->second.erase(g);
}

void Hypervisor::end_access_deferred(DomId owner, GrantRef ref) {
  auto& table = grants_[owner];
  auto it = table.find(ref);
  if (it == table.end()) return;
  if (it->second.mappings == 0) table.erase(it);
  else it->second.ended = true;
}

std::size_t Hypervisor::grants_of(DomId owner) const {
  auto t = grants_.find(owner);
  return t == grants_.end() ? 0 : t->second.size();
}

Result<std::unique_ptr<PageRun>> Hypervisor::map_grants(DomId mapper, DomId owner, const std::vector<GrantRef>& refs,
                                                        bool writable) {
  auto table = grants_.find(owner);
  if (table == grants_.end()) return make_error(ErrorCode::kNotFound, "no grant table for domain " + std::to_string(owner));
  std::vector<int> fds;
  for (GrantRef ref : refs) {
    auto grant = table->second.find(ref);
    if (grant == table->second.end() || grant->second.to != mapper || grant->second.ended) {
      return make_error(ErrorCode::kPermissionDenied, "grant ref " + std::to_string(ref) + " of domain " +
                                                          std::to_string(owner) + " is not granted to domain " +
                                                          std::to_string(mapper));
    }
    fds.push_back(grant->second.page->fd());
  }
  auto run = PageRun::map(fds, writable, [this, owner, refs] {
    for (GrantRef ref : refs) unmapped(owner, ref);
  });
  if (!run) return run.error();
  for (GrantRef ref : refs) {
    ++table->second[ref].mappings;
    ++live_mappings_;
  }
  return run;
}

Result<std::unique_ptr<PageRun>> PageRun::map(const std::vector<int>& fds, bool writable, std::function<void()> on_unmap) {
  const std::size_t size = fds.size() * tpmif::kPageSize;
  if (size == 0) return make_error(ErrorCode::kInvalidArgument, "no pages to map");
  void* base = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return make_error(ErrorCode::kIo, std::string("mmap: ") + std::strerror(errno));
  auto* bytes = static_cast<std::uint8_t*>(base);
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    if (::mmap(bytes + i * tpmif::kPageSize, tpmif::kPageSize, prot, MAP_SHARED | MAP_FIXED, fds[i], 0) == MAP_FAILED) {
      ::munmap(base, size);
      return make_error(ErrorCode::kIo, std::string("mmap: ") + std::strerror(errno));
    }
  }
  return std::unique_ptr<PageRun>(new PageRun(bytes, size, std::move(on_unmap)));
}

PageRun::~PageRun() {
  ::munmap(data_, size_);
  if (on_unmap_) on_unmap_();
}

std::size_t Hypervisor::mappings_of(DomId owner, GrantRef ref) const {
  auto t = grants_.find(owner);
  if (t == grants_.end()) return 0;
  auto g = t->second.find(ref);
  return g == t->second.end() ? 0 : g->second.mappings;
}

const Hypervisor::Node* Hypervisor::node(const std::string& path) const {
  auto it = tree_.find(path);
  return it == tree_.end() ? nullptr : &it->second;
}

bool Hypervisor::can(DomId dom, const Node& node, Permission::Access want) const {
  if (dom == 0) return true;
  if (node.perms.empty()) return false;
  if (node.perms[0].domid == dom) return true;
  Permission::Access granted = node.perms[0].access;
  for (std::size_t i = 1; i < node.perms.size(); ++i) {
    if (node.perms[i].domid == dom) granted = node.perms[i].access;
  }
  return (granted & want) == want;
}

Result<std::string> Hypervisor::read(DomId dom, const std::string& path) const {
  if (!valid_path(path)) return make_error(ErrorCode::kInvalidArgument, "invalid path " + path);
  const Node* n = node(path);
  if (n == nullptr) return make_error(ErrorCode::kNotFound, path + " does not exist");
  if (!can(dom, *n, Permission::kRead)) return make_error(ErrorCode::kPermissionDenied, "EACCES reading " + path);
  return n->value;
}

Status Hypervisor::write(DomId dom, const std::string& path, const std::string& value) {
  if (!valid_path(path) || path == "/") return make_error(ErrorCode::kInvalidArgument, "invalid path " + path);
  if (value.size() > 4096) return make_error(ErrorCode::kTooLarge, "value too long for " + path);
  if (Node* n = tree_.count(path) ? &tree_[path] : nullptr) {
    if (!can(dom, *n, Permission::kWrite)) return make_error(ErrorCode::kPermissionDenied, "EACCES writing " + path);
    n->value = value;
    fire(path, false);
    return Status::success();
  }
  // Create: the nearest existing ancestor must be writable; missing
  // intermediate nodes are created with the same inherited permissions.
  std::vector<std::string> missing = {path};
  std::string p = parent_of(path);
  while (p != "/" && !tree_.count(p)) {
    missing.push_back(p);
    p = parent_of(p);
  }
  std::vector<Permission> perms = {Permission{0, Permission::kNone}};
  if (p != "/") {
    if (!can(dom, tree_[p], Permission::kWrite)) return make_error(ErrorCode::kPermissionDenied, "EACCES creating " + path);
    perms = tree_[p].perms;
  } else if (dom != 0) {
    return make_error(ErrorCode::kPermissionDenied, "EACCES creating " + path);
  }
  if (dom != 0) perms[0].domid = dom;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    tree_[*it] = Node{*it == path ? value : std::string(), perms};
  }
  fire(path, false);
  return Status::success();
}

Status Hypervisor::remove(DomId dom, const std::string& path) {
  if (!valid_path(path) || path == "/") return make_error(ErrorCode::kInvalidArgument, "invalid path " + path);
  auto it = tree_.find(path);
  if (it == tree_.end()) return Status::success();
  const std::string parent = parent_of(path);
  const Node* owner_check = parent == "/" ? &it->second : (tree_.count(parent) ? &tree_[parent] : &it->second);
  if (!can(dom, *owner_check, Permission::kWrite) && !can(dom, it->second, Permission::kWrite)) {
    return make_error(ErrorCode::kPermissionDenied, "EACCES removing " + path);
  }
  for (auto i = tree_.begin(); i != tree_.end();) {
    if (i->first == path || under(i->first, path)) i = tree_.erase(i);
    else ++i;
  }
  fire(path, true);
  return Status::success();
}

Result<std::vector<std::string>> Hypervisor::directory(DomId dom, const std::string& path) const {
  if (!valid_path(path)) return make_error(ErrorCode::kInvalidArgument, "invalid path " + path);
  const Node* n = node(path);
  if (n == nullptr) return make_error(ErrorCode::kNotFound, path + " does not exist");
  if (!can(dom, *n, Permission::kRead)) return make_error(ErrorCode::kPermissionDenied, "EACCES listing " + path);
  std::vector<std::string> out;
  const std::string prefix = path == "/" ? "/" : path + "/";
  for (auto it = tree_.lower_bound(prefix); it != tree_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string rest = it->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) out.push_back(rest);
  }
  return out;
}

Status Hypervisor::set_permissions(DomId dom, const std::string& path, const std::vector<Permission>& perms) {
  auto it = tree_.find(path);
  if (it == tree_.end()) return make_error(ErrorCode::kNotFound, path + " does not exist");
  if (perms.empty()) return make_error(ErrorCode::kInvalidArgument, "empty permission list");
  if (dom != 0 && (it->second.perms.empty() || it->second.perms[0].domid != dom)) {
    return make_error(ErrorCode::kPermissionDenied, "EACCES: only the owner sets permissions on " + path);
  }
  it->second.perms = perms;
  fire(path, false);
  return Status::success();
}

void Hypervisor::fire(const std::string& changed, bool removed) {
  // Copy: a watcher's handling may add or drop watches.
  const auto watches = watches_;
  for (const auto& w : watches) {
    const bool hit = w.path == changed || under(changed, w.path) || (removed && under(w.path, changed));
    if (!hit) continue;
    const std::string reported = removed && under(w.path, changed) ? w.path : changed;
    // SimStore::deliver drops events about nodes its domain may not read.
    w.conn->deliver(WatchEvent{reported, w.token});
  }
}

void Hypervisor::add_watch(SimStore* conn, const std::string& path, const std::string& token) {
  watches_.push_back(Watch{conn, path, token});
  conn->deliver(WatchEvent{path, token});  // a new watch fires once
}

void Hypervisor::drop_watches(SimStore* conn, const std::string& path, const std::string& token, bool all) {
  std::erase_if(watches_, [&](const Watch& w) { return w.conn == conn && (all || (w.path == path && w.token == token)); });
}

SimStore::SimStore(Hypervisor& hv, DomId domid) : hv_(hv), domid_(domid), event_fd_(make_eventfd()) {}
SimStore::~SimStore() { hv_.drop_watches(this, "", "", true); }

Status SimStore::write_all(const std::vector<std::pair<std::string, std::string>>& writes) {
  // The simulation is single-threaded: nothing interleaves, so applying the
  // writes in order is atomic; a failure undoes none of them, as a failed
  // transaction commit leaves the store as it was only if checked first.
  for (const auto& [path, value] : writes) {
    const Hypervisor::Node* n = hv_.node(path);
    if (n != nullptr && !hv_.can(domid_, *n, Permission::kWrite)) {
      return make_error(ErrorCode::kPermissionDenied, "EACCES writing " + path);
    }
  }
  for (const auto& [path, value] : writes) {
    if (Status s = hv_.write(domid_, path, value); !s) return s;
  }
  return Status::success();
}

Status SimStore::watch(const std::string& path, const std::string& token) {
  if (!valid_path(path)) return make_error(ErrorCode::kInvalidArgument, "invalid watch path " + path);
  hv_.add_watch(this, path, token);
  return Status::success();
}

Status SimStore::unwatch(const std::string& path, const std::string& token) {
  hv_.drop_watches(this, path, token, false);
  return Status::success();
}

void SimStore::deliver(WatchEvent event) {
  if (domid_ != 0) {
    const Hypervisor::Node* n = hv_.node(event.path);
    if (n != nullptr && !hv_.can(domid_, *n, Permission::kRead)) return;
  }
  queue_.push_back(std::move(event));
  signal_fd(event_fd_.get());
}

std::vector<WatchEvent> SimStore::take_events() {
  drain_fd(event_fd_.get());
  std::vector<WatchEvent> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

SimEvents::SimEvents(Hypervisor& hv, DomId domid) : hv_(hv), domid_(domid), event_fd_(make_eventfd()) {}

SimEvents::~SimEvents() {
  for (Port p : std::set<Port>(mine_)) hv_.close_port(domid_, p);
}

Port Hypervisor::new_port(DomId dom, PortState state) {
  auto& table = ports_[dom];
  Port p = 1;
  while (table.count(p)) ++p;
  table[p] = state;
  return p;
}

void Hypervisor::raise(DomId dom, Port port) {
  auto table = ports_.find(dom);
  if (table == ports_.end()) return;
  auto it = table->second.find(port);
  if (it == table->second.end()) return;
  PortState& ps = it->second;
  if (ps.masked) {
    ps.pending = true;
    return;
  }
  ps.masked = true;
  if (ps.owner != nullptr) ps.owner->deliver(port);
}

void Hypervisor::close_port(DomId dom, Port port) {
  auto& table = ports_[dom];
  auto it = table.find(port);
  if (it == table.end()) return;
  if (it->second.kind == PortKind::kInterdomain) {
    auto peer = ports_[it->second.remote].find(it->second.remote_port);
    if (peer != ports_[it->second.remote].end()) {
      peer->second.kind = PortKind::kUnbound;
      peer->second.remote = dom;
      peer->second.remote_port = 0;
    }
  }
  table.erase(it);
}

Result<Port> SimEvents::alloc_unbound(DomId remote) {
  Hypervisor::PortState ps;
  ps.kind = Hypervisor::PortKind::kUnbound;
  ps.remote = remote;
  ps.owner = this;
  const Port p = hv_.new_port(domid_, ps);
  mine_.insert(p);
  return p;
}

Result<Port> SimEvents::bind_interdomain(DomId remote, Port remote_port) {
  auto& rtable = hv_.ports_[remote];
  auto r = rtable.find(remote_port);
  if (r == rtable.end() || r->second.kind != Hypervisor::PortKind::kUnbound || r->second.remote != domid_) {
    return make_error(ErrorCode::kInvalidArgument, "EINVAL: port " + std::to_string(remote_port) + " of domain " +
                                                        std::to_string(remote) + " is not an unbound port for us");
  }
  Hypervisor::PortState ps;
  ps.kind = Hypervisor::PortKind::kInterdomain;
  ps.remote = remote;
  ps.remote_port = remote_port;
  ps.owner = this;
  const Port local = hv_.new_port(domid_, ps);
  mine_.insert(local);
  r = hv_.ports_[remote].find(remote_port);
  r->second.kind = Hypervisor::PortKind::kInterdomain;
  r->second.remote = domid_;
  r->second.remote_port = local;
  hv_.raise(domid_, local);  // conservatively pending, as Xen does
  return local;
}

Status SimEvents::unbind(Port local) {
  if (!mine_.erase(local)) return make_error(ErrorCode::kNotFound, "port " + std::to_string(local) + " not bound here");
  hv_.close_port(domid_, local);
  std::erase(ring_, local);
  return Status::success();
}

Status SimEvents::notify(Port local) {
  auto& table = hv_.ports_[domid_];
  auto it = table.find(local);
  if (!mine_.count(local) || it == table.end()) {
    return make_error(ErrorCode::kInvalidArgument, "EINVAL: port " + std::to_string(local) + " is not ours");
  }
  // Xen drops a notification on an unbound port silently (the peer closed
  // its end, or has not bound yet): evtchn_send returns 0.
  if (it->second.kind != Hypervisor::PortKind::kInterdomain) return Status::success();
  hv_.raise(it->second.remote, it->second.remote_port);
  return Status::success();
}

Result<std::optional<Port>> SimEvents::pending() {
  if (ring_.empty()) {
    drain_fd(event_fd_.get());
    return std::optional<Port>();
  }
  const Port p = ring_.front();
  ring_.pop_front();
  return std::optional<Port>(p);
}

Status SimEvents::unmask(Port local) {
  auto& table = hv_.ports_[domid_];
  auto it = table.find(local);
  if (it == table.end()) return make_error(ErrorCode::kNotFound, "port " + std::to_string(local) + " not bound");
  it->second.masked = false;
  if (it->second.pending) {
    it->second.pending = false;
    hv_.raise(domid_, local);
  }
  return Status::success();
}

void SimEvents::deliver(Port port) {
  ring_.push_back(port);
  signal_fd(event_fd_.get());
}

}  // namespace vtpm::xen::sim
