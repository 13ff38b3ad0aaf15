#include "backends/xen/xen_backend.h"

#include <algorithm>

namespace vtpm::xen {
namespace {

using tpmif::XenbusState;

constexpr const char* kBackendToken = "vtpm-backend";
constexpr const char* kFrontendTokenPrefix = "vtpm-frontend:";

std::string state_text(XenbusState s) { return std::to_string(static_cast<int>(s)); }

}  // namespace

struct XenBackend::Device {
  std::string key;
  DomId domid = 0;
  std::uint32_t devid = 0;
  std::string frontend;  // the frontend's directory, from the backend dir
  std::optional<Uuid> instance;
  TpmVersion version = TpmVersion::k12;
  // kPreparing: InitWait announced, the instance is being created or reset.
  enum class Phase { kResolving, kPreparing, kReady, kRefused, kClosed } phase = Phase::kResolving;
  XenbusState state = XenbusState::kInitialising;  // what we last wrote
  std::shared_ptr<TpmifConnection> connection;
  bool fresh = false;  // found in Initialising: a new guest, its TPM is reset before use
};

XenBackend::XenBackend(uv_loop_t* loop, const Logger& log, Service& service, Platform platform, XenOptions options)
    : loop_(loop), log_(log), service_(service), platform_(std::make_shared<Platform>(std::move(platform))), options_(options),
      base_("/local/domain/" + std::to_string(platform_->self) + "/backend/vtpm") {}

XenBackend::~XenBackend() { close_all(); }

Status XenBackend::start() {
  for (auto [poll, fd, which] : {std::tuple{&store_poll_, platform_->store->fd(), 0}, std::tuple{&events_poll_, platform_->events->fd(), 1}}) {
    if (int rc = uv_poll_init(loop_, poll->get(), fd); rc != 0) {
      return make_error(ErrorCode::kIo, std::string("xen: polling the platform fd: ") + uv_strerror(rc));
    }
    poll->mark_live();
    poll->get()->data = this;
    uv_poll_start(poll->get(), UV_READABLE,
                  which == 0 ? [](uv_poll_t* h, int, int) { static_cast<XenBackend*>(h->data)->on_store_events(); }
                             : [](uv_poll_t* h, int, int) { static_cast<XenBackend*>(h->data)->on_port_events(); });
  }
  // The watch fires once at once: that first event scans devices that
  // existed before vtpmd started.
  if (Status s = platform_->store->watch(base_, kBackendToken); !s) return s;
  log_.info("xen: serving tpmif v2 devices under " + base_ + (options_.auto_create ? " (auto-create on)" : ""));
  return Status::success();
}

void XenBackend::close_all() {
  store_poll_.close();
  events_poll_.close();
  for (auto& [key, device] : devices_) device->connection.reset();
  devices_.clear();
  ports_.clear();
  bound_.clear();
}

std::size_t XenBackend::connected() const {
  return static_cast<std::size_t>(std::count_if(devices_.begin(), devices_.end(),
                                                [](const auto& d) { return d.second->connection != nullptr; }));
}

std::optional<XenBinding> XenBackend::binding_of(const Uuid& id) const {
  auto b = bound_.find(id);
  if (b == bound_.end()) return std::nullopt;
  auto d = devices_.find(b->second);
  if (d == devices_.end()) return std::nullopt;
  return XenBinding{d->second->domid, d->second->devid, d->second->state, d->second->connection != nullptr};
}

std::string XenBackend::dir_of(const Device& device) const { return base_ + "/" + device.key; }

void XenBackend::on_store_events() {
  for (const WatchEvent& ev : platform_->store->take_events()) {
    if (ev.token == kBackendToken) {
      if (ev.path == base_) {
        scan();
        continue;
      }
      if (ev.path.compare(0, base_.size() + 1, base_ + "/") != 0) continue;
      // <domid>/<devid>[/...]
      const std::string rest = ev.path.substr(base_.size() + 1);
      const auto first = rest.find('/');
      if (first == std::string::npos) {
        scan();  // a domain directory came or went
        continue;
      }
      const auto second = rest.find('/', first + 1);
      refresh(rest.substr(0, second));
    } else if (ev.token.rfind(kFrontendTokenPrefix, 0) == 0) {
      auto it = devices_.find(ev.token.substr(std::string(kFrontendTokenPrefix).size()));
      if (it != devices_.end()) on_frontend_changed(*it->second);
    }
  }
}

void XenBackend::on_port_events() {
  for (;;) {
    auto port = platform_->events->pending();
    if (!port) {
      log_.error("xen: reading event channels: " + port.error().message);
      return;
    }
    if (!*port) return;
    auto it = ports_.find(**port);
    if (it != ports_.end()) {
      auto d = devices_.find(it->second);
      if (d != devices_.end() && d->second->connection) d->second->connection->on_event();
    }
    (void)platform_->events->unmask(**port);
  }
}

void XenBackend::scan() {
  std::map<std::string, bool> present;
  if (auto domains = platform_->store->directory(base_)) {
    for (const auto& dom : *domains) {
      auto devs = platform_->store->directory(base_ + "/" + dom);
      if (!devs) continue;
      for (const auto& dev : *devs) present[dom + "/" + dev] = true;
    }
  }
  std::vector<std::string> gone;
  for (const auto& [key, device] : devices_) {
    if (!present.count(key)) gone.push_back(key);
  }
  for (const auto& key : gone) forget(key);
  for (const auto& [key, unused] : present) refresh(key);
}

void XenBackend::refresh(const std::string& key) {
  auto it = devices_.find(key);
  const bool exists = platform_->store->read(base_ + "/" + key).ok();
  if (!exists) {
    if (it != devices_.end()) forget(key);
    return;
  }
  if (it != devices_.end()) {
    on_backend_changed(*it->second);
    return;
  }
  const auto slash = key.find('/');
  const auto domid = tpmif::parse_uint(key.substr(0, slash), 0x7FEF);  // DOMID_FIRST_RESERVED - 1
  const auto devid = tpmif::parse_uint(key.substr(slash + 1), 0xFFFFFFFEu);
  if (!domid || !devid || *domid == platform_->self) {
    log_.warn("xen: ignoring malformed device directory " + base_ + "/" + key);
    return;
  }
  discover(key, static_cast<DomId>(*domid), *devid);
}

void XenBackend::discover(const std::string& key, DomId domid, std::uint32_t devid) {
  auto device = std::make_shared<Device>();
  device->key = key;
  device->domid = domid;
  device->devid = devid;
  devices_[key] = device;
  const std::string dir = dir_of(*device);
  const auto state = platform_->store->read(dir + "/state");
  const auto parsed = state ? tpmif::parse_xenbus_state(*state) : std::nullopt;
  // libxl creates the device in Initialising; anything later means we (an
  // earlier vtpmd) had it already.
  device->fresh = !parsed || *parsed <= XenbusState::kInitialising;
  if (parsed) device->state = *parsed;
  resolve(*device);
}

void XenBackend::resolve(Device& device) {
  const std::string dir = dir_of(device);
  auto online = platform_->store->read(dir + "/online");
  if (online && *online == "0") {
    device.phase = Device::Phase::kClosed;
    return;
  }
  auto uuid_text = platform_->store->read(dir + "/uuid");
  if (!uuid_text) return refuse(device, "no uuid key in " + dir + " (it is mandatory)");
  auto id = Uuid::parse(*uuid_text);
  if (!id) return refuse(device, "uuid key in " + dir + " is not a UUID");
  auto frontend = platform_->store->read(dir + "/frontend");
  auto frontend_id = platform_->store->read(dir + "/frontend-id");
  const auto fid = frontend_id ? tpmif::parse_uint(*frontend_id, 0xFFFF) : std::nullopt;
  if (!frontend || frontend->empty() || frontend->front() != '/' || !fid || *fid != device.domid) {
    return refuse(device, "frontend/frontend-id keys in " + dir + " are missing or do not name domain " +
                              std::to_string(device.domid));
  }
  device.frontend = *frontend;
  device.instance = *id;
  if (auto b = bound_.find(*id); b != bound_.end() && b->second != device.key) {
    auto other = devices_.find(b->second);
    return refuse(device, "instance " + id->to_string() + " is already bound to domain " +
                              (other != devices_.end() ? std::to_string(other->second->domid) + " device " +
                                                             std::to_string(other->second->devid)
                                                       : std::string("?")));
  }
  bound_[*id] = device.key;  // reserved while it is created or reset
  auto instance = service_.show(*id);
  if (instance) return accept(device, **instance, device.fresh);
  if (!options_.auto_create) {
    bound_.erase(*id);
    return refuse(device, "unknown instance " + id->to_string() +
                              " (create it with vtpmctl add --uuid ... --tpm 1.2, or set xen_auto_create)");
  }
  AddOptions add;
  add.uuid = *id;
  add.version = TpmVersion::k12;
  add.auto_startup = true;  // xen-tpmfront never sends TPM_Startup
  add.max_command_size = tpmif::kMaxPacket;
  device.version = TpmVersion::k12;
  announce(device);
  std::weak_ptr<Device> weak = devices_[device.key];
  service_.add(add, [this, weak](Result<const Instance*> made) {
    auto d = weak.lock();
    if (!d || d->phase != Device::Phase::kPreparing) return;
    if (!made) return fail_prepared(*d, "creating instance: " + made.error().message);
    log_.info((*made)->uuid, "xen: created TPM 1.2 instance for domain " + std::to_string(d->domid) + " device " +
                                 std::to_string(d->devid));
    ready(*d);
  });
}

void XenBackend::accept(Device& device, const Instance& instance, bool reset) {
  if (instance.version == TpmVersion::k20 && !options_.allow_tpm2) {
    bound_.erase(instance.uuid);
    return refuse(device, "instance " + instance.uuid.to_string() +
                              " is a TPM 2.0; stock xen-tpmfront speaks TPM 1.2 only (set xen_allow_tpm2 to bind it)");
  }
  if (instance.failed) {
    bound_.erase(instance.uuid);
    return refuse(device, "instance " + instance.uuid.to_string() + " is unusable: " + instance.failure);
  }
  device.version = instance.version;
  announce(device);
  if (!reset) return ready(device);
  // A new guest: its TPM starts from power-on (PCRs clear), as a machine's would.
  std::weak_ptr<Device> weak = devices_[device.key];
  service_.power(instance.uuid, PowerAction::kReset, [this, weak](Result<const Instance*> r) {
    auto d = weak.lock();
    if (!d || d->phase != Device::Phase::kPreparing) return;
    if (!r) return fail_prepared(*d, "resetting instance: " + r.error().message);
    d->fresh = false;
    ready(*d);
  });
}

void XenBackend::announce(Device& device) {
  // InitWait at once, before a slow creation or reset: libxl gives the
  // backend 10 s, and with many guests starting together the instance work
  // queues up. The frontend is connected once the instance is ready.
  device.phase = Device::Phase::kPreparing;
  const std::string dir = dir_of(device);
  (void)platform_->store->remove(dir + "/error");
  if (Status s = platform_->store->write(dir + "/feature-protocol-v2", "1"); !s) {
    log_.error("xen: writing " + dir + "/feature-protocol-v2: " + s.error().message);
  }
  if (Status s = platform_->store->watch(device.frontend + "/state", kFrontendTokenPrefix + device.key); !s) {
    log_.error("xen: watching " + device.frontend + "/state: " + s.error().message);
  }
  // A device already InitWait or Connected (vtpmd restarted under a running
  // guest) keeps its state: the frontend must not see it flap.
  if (device.state < XenbusState::kInitWait || device.state > XenbusState::kConnected) {
    switch_state(device, XenbusState::kInitWait);
  }
}

void XenBackend::ready(Device& device) {
  device.phase = Device::Phase::kReady;
  log_.info(*device.instance, "xen: domain " + std::to_string(device.domid) + " device " +
                                  std::to_string(device.devid) + " bound (frontend " + device.frontend + ")");
  // The frontend may be Initialised or Connected already.
  on_frontend_changed(device);
}

void XenBackend::fail_prepared(Device& device, const std::string& why) {
  if (device.instance) {
    auto b = bound_.find(*device.instance);
    if (b != bound_.end() && b->second == device.key) bound_.erase(b);
  }
  refuse(device, why);
  switch_state(device, XenbusState::kClosing);  // as xenbus_dev_fatal does
}

void XenBackend::refuse(Device& device, const std::string& why) {
  device.phase = Device::Phase::kRefused;
  const std::string dir = dir_of(device);
  log_.error("xen: refusing domain " + std::to_string(device.domid) + " device " + std::to_string(device.devid) + ": " + why);
  // xenbus_dev_error's place: the toolstack and the guest admin look here.
  (void)platform_->store->write(dir + "/error", why);
}

void XenBackend::on_frontend_changed(Device& device) {
  if (device.phase != Device::Phase::kReady) return;
  auto text = platform_->store->read(device.frontend + "/state");
  const auto fe = text ? tpmif::parse_xenbus_state(*text) : std::optional<XenbusState>();
  if (text && !fe) {
    // Not a state: the guest's own device is stuck until it writes one.
    log_.warn(*device.instance, "xen: frontend state of domain " + std::to_string(device.domid) + " is not a xenbus state; ignored");
    return;
  }
  // No node at all: the frontend's directory is gone (domain destroyed).
  const XenbusState state = fe.value_or(XenbusState::kUnknown);
  switch (state) {
    case XenbusState::kInitialised:
    case XenbusState::kConnected:
      if (!device.connection) connect(device);
      break;
    case XenbusState::kClosing:
      disconnect(device);
      switch_state(device, XenbusState::kClosing);
      break;
    case XenbusState::kClosed:
      // The frontend let go (pv-grub hand-off, kexec, module unload): wait
      // for the next one on the same instance.
      disconnect(device);
      switch_state(device, XenbusState::kInitWait);
      break;
    case XenbusState::kInitialising:
      if (device.connection) {  // reopened without closing (kexec)
        disconnect(device);
        switch_state(device, XenbusState::kInitWait);
      }
      break;
    case XenbusState::kInitWait:
      break;
    case XenbusState::kUnknown:
      if (device.connection || device.state != XenbusState::kClosed) {
        disconnect(device);
        switch_state(device, XenbusState::kClosed);
        release(device);
      }
      break;
  }
}

void XenBackend::on_backend_changed(Device& device) {
  const std::string dir = dir_of(device);
  auto online = platform_->store->read(dir + "/online");
  auto state = platform_->store->read(dir + "/state");
  const auto parsed = state ? tpmif::parse_xenbus_state(*state) : std::nullopt;
  const bool toolstack_closing = (online && *online == "0") ||
                                 (parsed && *parsed == XenbusState::kClosing && device.state != XenbusState::kClosing);
  if (toolstack_closing && device.phase != Device::Phase::kClosed) {
    disconnect(device);
    device.phase = Device::Phase::kClosed;
    switch_state(device, XenbusState::kClosed);
    release(device);
  }
}

void XenBackend::connect(Device& device) {
  const auto fail = [&](const std::string& why) {
    log_.warn(*device.instance, "xen: domain " + std::to_string(device.domid) + " device " +
                                    std::to_string(device.devid) + " cannot connect: " + why);
    (void)platform_->store->write(dir_of(device) + "/error", why);
  };
  auto ring = platform_->store->read(device.frontend + "/ring-ref");
  auto port = platform_->store->read(device.frontend + "/event-channel");
  auto v2 = platform_->store->read(device.frontend + "/feature-protocol-v2");
  if (!v2 || *v2 != "1") return fail("frontend does not offer feature-protocol-v2");
  if (!ring || !port) return fail("frontend ring-ref/event-channel missing");
  const auto ref = tpmif::parse_uint(*ring, 0xFFFFFFFEu);
  const auto evtchn = tpmif::parse_uint(*port, 0xFFFFFFFEu);
  if (!ref || !evtchn) return fail("frontend ring-ref/event-channel are not numbers");
  ConnectionParams params{*device.instance, device.version, device.domid, *ref, *evtchn};
  auto connection = TpmifConnection::open(platform_, service_, log_, params);
  if (!connection) return fail(connection.error().message);
  device.connection = *connection;
  ports_[device.connection->port()] = device.key;
  (void)platform_->store->remove(dir_of(device) + "/error");
  switch_state(device, XenbusState::kConnected);
  log_.info(*device.instance, "xen: domain " + std::to_string(device.domid) + " device " + std::to_string(device.devid) +
                                  " connected (ring-ref " + std::to_string(*ref) + ", event-channel " +
                                  std::to_string(*evtchn) + ")");
  // The bind left the port pending (as Xen does); the event loop delivers
  // it and the page is looked at then, catching a SUBMIT made before now.
}

void XenBackend::disconnect(Device& device) {
  if (!device.connection) return;
  ports_.erase(device.connection->port());
  device.connection.reset();
  log_.info(*device.instance, "xen: domain " + std::to_string(device.domid) + " device " + std::to_string(device.devid) +
                                  " disconnected");
}

void XenBackend::switch_state(Device& device, XenbusState state) {
  device.state = state;
  if (Status s = platform_->store->write(dir_of(device) + "/state", state_text(state)); !s) {
    log_.error("xen: writing " + dir_of(device) + "/state: " + s.error().message);
  }
}

void XenBackend::release(Device& device) {
  device.phase = Device::Phase::kClosed;
  if (!device.instance) return;
  (void)platform_->store->unwatch(device.frontend + "/state", kFrontendTokenPrefix + device.key);
  auto b = bound_.find(*device.instance);
  if (b == bound_.end() || b->second != device.key) return;
  bound_.erase(b);
  // A device refused because this one held the instance gets it now.
  for (auto& [key, other] : devices_) {
    if (other.get() != &device && other->phase == Device::Phase::kRefused && other->instance == device.instance) {
      other->phase = Device::Phase::kResolving;
      resolve(*other);
      break;
    }
  }
}

void XenBackend::instance_removed(const Uuid& id) {
  auto b = bound_.find(id);
  if (b == bound_.end()) return;
  auto it = devices_.find(b->second);
  if (it == devices_.end()) return;
  Device& device = *it->second;
  disconnect(device);
  fail_prepared(device, "vTPM instance " + id.to_string() + " was removed by the host's operator");
}

void XenBackend::forget(const std::string& key) {
  auto it = devices_.find(key);
  if (it == devices_.end()) return;
  disconnect(*it->second);
  release(*it->second);
  devices_.erase(it);
}

}  // namespace vtpm::xen
