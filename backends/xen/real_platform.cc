#include "backends/xen/real_platform.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <sys/ioctl.h>

extern "C" {
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>
// The kernel drivers' ioctl numbers (for the allow-list); domid_t first.
#include <xen/xen.h>
#include <xen/sys/evtchn.h>
#include <xen/sys/gntdev.h>
}

namespace vtpm::xen {
namespace {

Error sys_error(ErrorCode code, const std::string& what) {
  return make_error(code, what + ": " + std::strerror(errno));
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

class RealStore final : public XenStore {
 public:
  explicit RealStore(xs_handle* h) : h_(h) {}
  ~RealStore() override { xs_close(h_); }

  Result<std::string> read(const std::string& path) override {
    unsigned int len = 0;
    std::unique_ptr<char, FreeDeleter> v(static_cast<char*>(xs_read(h_, XBT_NULL, path.c_str(), &len)));
    if (!v) return sys_error(errno == ENOENT ? ErrorCode::kNotFound : errno == EACCES ? ErrorCode::kPermissionDenied : ErrorCode::kIo, "xenstore read " + path);
    return std::string(v.get(), len);
  }
  Status write(const std::string& path, const std::string& value) override {
    if (!xs_write(h_, XBT_NULL, path.c_str(), value.data(), static_cast<unsigned>(value.size()))) {
      return sys_error(ErrorCode::kIo, "xenstore write " + path);
    }
    return Status::success();
  }
  Status remove(const std::string& path) override {
    if (!xs_rm(h_, XBT_NULL, path.c_str()) && errno != ENOENT) return sys_error(ErrorCode::kIo, "xenstore rm " + path);
    return Status::success();
  }
  Result<std::vector<std::string>> directory(const std::string& path) override {
    unsigned int n = 0;
    std::unique_ptr<char*, FreeDeleter> entries(xs_directory(h_, XBT_NULL, path.c_str(), &n));
    if (!entries) return sys_error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, "xenstore directory " + path);
    return std::vector<std::string>(entries.get(), entries.get() + n);
  }
  Status set_permissions(const std::string& path, const std::vector<Permission>& perms) override {
    std::vector<xs_permissions> raw;
    for (const auto& p : perms) raw.push_back(xs_permissions{p.domid, static_cast<unsigned int>(p.access)});
    if (!xs_set_permissions(h_, XBT_NULL, path.c_str(), raw.data(), static_cast<unsigned>(raw.size()))) {
      return sys_error(ErrorCode::kIo, "xenstore set permissions " + path);
    }
    return Status::success();
  }
  Status write_all(const std::vector<std::pair<std::string, std::string>>& writes) override {
    for (int attempt = 0; attempt < 16; ++attempt) {
      xs_transaction_t t = xs_transaction_start(h_);
      if (t == XBT_NULL) return sys_error(ErrorCode::kIo, "xenstore transaction start");
      bool ok = true;
      for (const auto& [path, value] : writes) {
        if (!xs_write(h_, t, path.c_str(), value.data(), static_cast<unsigned>(value.size()))) {
          ok = false;
          break;
        }
      }
      if (!ok) {
        const int saved = errno;
        xs_transaction_end(h_, t, true);
        errno = saved;
        return sys_error(ErrorCode::kIo, "xenstore transaction write");
      }
      if (xs_transaction_end(h_, t, false)) return Status::success();
      if (errno != EAGAIN) return sys_error(ErrorCode::kIo, "xenstore transaction end");
    }
    return make_error(ErrorCode::kBusy, "xenstore transaction kept conflicting");
  }
  Status watch(const std::string& path, const std::string& token) override {
    if (!xs_watch(h_, path.c_str(), token.c_str())) return sys_error(ErrorCode::kIo, "xenstore watch " + path);
    return Status::success();
  }
  Status unwatch(const std::string& path, const std::string& token) override {
    if (!xs_unwatch(h_, path.c_str(), token.c_str())) return sys_error(ErrorCode::kIo, "xenstore unwatch " + path);
    return Status::success();
  }
  int fd() const override { return xs_fileno(h_); }
  std::vector<WatchEvent> take_events() override {
    std::vector<WatchEvent> out;
    for (;;) {
      unsigned int n = 0;
      std::unique_ptr<char*, FreeDeleter> v(xs_check_watch(h_));
      (void)n;
      if (!v) break;
      out.push_back(WatchEvent{v.get()[XS_WATCH_PATH], v.get()[XS_WATCH_TOKEN]});
    }
    return out;
  }

 private:
  xs_handle* h_;
};

class RealMapping final : public GrantMapping {
 public:
  RealMapping(xengnttab_handle* h, void* addr) : h_(h), addr_(addr) {}
  ~RealMapping() override { xengnttab_unmap(h_, addr_, 1); }
  tpmif::Page page() override { return tpmif::Page(static_cast<std::uint8_t*>(addr_), tpmif::kPageSize); }

 private:
  xengnttab_handle* h_;
  void* addr_;
};

class RealGrants final : public GrantTable {
 public:
  explicit RealGrants(xengnttab_handle* h) : h_(h) {}
  ~RealGrants() override { xengnttab_close(h_); }
  Result<std::unique_ptr<GrantMapping>> map(DomId domid, GrantRef ref) override {
    void* p = xengnttab_map_grant_ref(h_, domid, ref, PROT_READ | PROT_WRITE);
    if (p == nullptr) return sys_error(ErrorCode::kPermissionDenied, "xengnttab_map_grant_ref");
    return std::unique_ptr<GrantMapping>(std::make_unique<RealMapping>(h_, p));
  }

 private:
  xengnttab_handle* h_;
};

class RealEvents final : public EventChannels {
 public:
  explicit RealEvents(xenevtchn_handle* h) : h_(h) {
    const int fd = xenevtchn_fd(h_);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);  // pending() must not block the loop
  }
  ~RealEvents() override { xenevtchn_close(h_); }
  int fd() const override { return xenevtchn_fd(h_); }
  Result<Port> bind_interdomain(DomId remote, Port remote_port) override {
    const auto p = xenevtchn_bind_interdomain(h_, remote, remote_port);
    if (p < 0) return sys_error(ErrorCode::kInvalidArgument, "xenevtchn_bind_interdomain");
    return static_cast<Port>(p);
  }
  Status unbind(Port local) override {
    if (xenevtchn_unbind(h_, local) < 0) return sys_error(ErrorCode::kIo, "xenevtchn_unbind");
    return Status::success();
  }
  Status notify(Port local) override {
    if (xenevtchn_notify(h_, local) < 0) return sys_error(ErrorCode::kIo, "xenevtchn_notify");
    return Status::success();
  }
  Result<std::optional<Port>> pending() override {
    const auto p = xenevtchn_pending(h_);
    if (p < 0) {
      if (errno == EAGAIN) return std::optional<Port>();
      return sys_error(ErrorCode::kIo, "xenevtchn_pending");
    }
    return std::optional<Port>(static_cast<Port>(p));
  }
  Status unmask(Port local) override {
    if (xenevtchn_unmask(h_, local) < 0) return sys_error(ErrorCode::kIo, "xenevtchn_unmask");
    return Status::success();
  }

 private:
  xenevtchn_handle* h_;
};

}  // namespace

Result<Platform> open_real_platform() {
  xs_handle* xs = xs_open(0);
  if (xs == nullptr) return sys_error(ErrorCode::kUnavailable, "xs_open (is xenstored running, are we in dom0?)");
  Platform p;
  p.store = std::make_unique<RealStore>(xs);
  xengnttab_handle* gt = xengnttab_open(nullptr, 0);
  if (gt == nullptr) return sys_error(ErrorCode::kUnavailable, "xengnttab_open (is the xen-gntdev module loaded?)");
  p.grants = std::make_unique<RealGrants>(gt);
  xenevtchn_handle* ev = xenevtchn_open(nullptr, 0);
  if (ev == nullptr) return sys_error(ErrorCode::kUnavailable, "xenevtchn_open (is the xen-evtchn module loaded?)");
  p.events = std::make_unique<RealEvents>(ev);
  // Our own domain id: "domid" relative to our xenstore home; dom0 if absent.
  auto self = p.store->read("domid");
  const auto id = self ? tpmif::parse_uint(*self, 0x7FEF) : std::nullopt;
  p.self = id ? static_cast<DomId>(*id) : 0;
  return p;
}

std::vector<unsigned long> xen_ioctls() {
  return {IOCTL_GNTDEV_MAP_GRANT_REF,      IOCTL_GNTDEV_UNMAP_GRANT_REF, IOCTL_GNTDEV_SET_MAX_GRANTS,
          IOCTL_GNTDEV_SET_UNMAP_NOTIFY,   IOCTL_EVTCHN_BIND_INTERDOMAIN, IOCTL_EVTCHN_UNBIND,
          IOCTL_EVTCHN_NOTIFY,             IOCTL_EVTCHN_RESET,            IOCTL_EVTCHN_RESTRICT_DOMID};
}

}  // namespace vtpm::xen
