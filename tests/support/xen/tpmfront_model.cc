#include "tests/support/xen/tpmfront_model.h"

#include "proto/tpm_packet.h"

namespace vtpm::xen::sim {
namespace {

using tpmif::PageState;
using tpmif::XenbusState;

constexpr std::uint64_t kDefaultTimeoutCMs = 750;           // TIS_SHORT_TIMEOUT before the TPM tells
constexpr std::uint64_t kUnknownDurationMs = 2 * 60 * 1000;  // tpm_calc_ordinal_duration's fallback
constexpr std::uint32_t kCapProperty = 5;
constexpr std::uint32_t kPropTisTimeout = 0x115;
constexpr std::uint32_t kPropTisDuration = 0x120;
constexpr std::uint32_t kOrdGetCapability = 0x65;

std::vector<std::uint8_t> get_capability_prop(std::uint32_t prop) {
  std::vector<std::uint8_t> p;
  tpm::append_u16(p, tpm::kTpm12TagRquCommand);
  tpm::append_u32(p, 22);
  tpm::append_u32(p, kOrdGetCapability);
  tpm::append_u32(p, kCapProperty);
  tpm::append_u32(p, 4);
  tpm::append_u32(p, prop);
  return p;
}

// Linux tpm1 ordinal classes for the ordinals guests send at boot
// (TPM_UNDEFINED -> the 2-minute fallback).
enum class Duration { kShort, kMedium, kLong, kUndefined };
Duration duration_class(std::uint32_t ordinal) {
  switch (ordinal) {
    case 0x99:  // Startup
    case 0x65:  // GetCapability
    case 0x15:  // PcrRead
      return Duration::kShort;
    case 0x14:  // Extend
    case 0x46:  // GetRandom
      return Duration::kMedium;
    case 0x78:  // CreateEndorsementKeyPair
    case 0x0D:  // TakeOwnership
      return Duration::kLong;
    default:
      return Duration::kUndefined;
  }
}

}  // namespace

const char* front_error_name(FrontError e) {
  switch (e) {
    case FrontError::kTime: return "ETIME";
    case FrontError::kCanceled: return "ECANCELED";
    case FrontError::kInval: return "EINVAL";
    case FrontError::kNoDevice: return "ENODEV";
  }
  return "?";
}

TpmFront::TpmFront(uv_loop_t* loop, Hypervisor& hv, DomId domid, std::uint32_t devid)
    : loop_(loop), hv_(hv), domid_(domid), devid_(devid),
      dir_("/local/domain/" + std::to_string(domid) + "/device/vtpm/" + std::to_string(devid)),
      store_(hv.open_store(domid)), events_(hv.open_events(domid)) {
  uv_poll_init(loop_, store_poll_.get(), store_->fd());
  store_poll_.mark_live();
  store_poll_.get()->data = this;
  uv_poll_start(store_poll_.get(), UV_READABLE, [](uv_poll_t* h, int, int) { static_cast<TpmFront*>(h->data)->on_store_events(); });
  uv_poll_init(loop_, irq_poll_.get(), events_->fd());
  irq_poll_.mark_live();
  irq_poll_.get()->data = this;
  uv_poll_start(irq_poll_.get(), UV_READABLE, [](uv_poll_t* h, int, int) { static_cast<TpmFront*>(h->data)->on_irq(); });
  uv_timer_init(loop_, timer_.get());
  timer_.mark_live();
  timer_.get()->data = this;
}

TpmFront::~TpmFront() {
  if (page_ && ring_ref_ != 0) hv_.end_access(domid_, ring_ref_);
}

tpmif::XenbusState TpmFront::state() const {
  auto s = store_->read(dir_ + "/state");
  auto parsed = s ? tpmif::parse_xenbus_state(*s) : std::nullopt;
  return parsed.value_or(XenbusState::kUnknown);
}

void TpmFront::switch_state(XenbusState s) {
  (void)store_->write(dir_ + "/state", std::to_string(static_cast<int>(s)));
}

void TpmFront::probe() {
  // xenbus core: read the other end before calling the driver's probe.
  auto backend = store_->read(dir_ + "/backend");
  auto backend_id = store_->read(dir_ + "/backend-id");
  if (!backend || !backend_id) {
    fatal_ = "no backend/backend-id";
    return;
  }
  backend_ = *backend;
  backend_id_ = static_cast<DomId>(tpmif::parse_uint(*backend_id, 0x7FEF).value_or(0));
  (void)store_->watch(backend_ + "/state", "otherend");
  // setup_ring
  page_ = std::make_shared<GuestPage>();
  ring_ref_ = hv_.grant_access(domid_, backend_id_, page_);
  auto port = events_->alloc_unbound(backend_id_);
  port_ = *port;
  if (Status s = store_->write_all({{dir_ + "/ring-ref", std::to_string(ring_ref_)},
                                    {dir_ + "/event-channel", std::to_string(port_)},
                                    {dir_ + "/feature-protocol-v2", "1"}});
      !s) {
    fatal_ = "completing transaction: " + s.error().message;
    return;
  }
  switch_state(XenbusState::kInitialised);
  probed_ = true;
  // tpm_get_timeouts straight away: the backend has not mapped the page yet.
  // Its failure is not fatal to the probe (Linux ignores tpm_get_timeouts'
  // result here and keeps the defaults).
  transmit(get_capability_prop(kPropTisTimeout), [this](std::optional<FrontError> e, std::vector<std::uint8_t>) {
    if (e) {
      probe_done_ = true;
      return;
    }
    transmit(get_capability_prop(kPropTisDuration),
             [this](std::optional<FrontError>, std::vector<std::uint8_t>) { probe_done_ = true; });
  });
}

void TpmFront::on_store_events() {
  for (const auto& ev : store_->take_events()) {
    if (ev.token == "otherend") backend_changed();
  }
}

void TpmFront::backend_changed() {
  if (!probed_) return;
  auto text = store_->read(backend_ + "/state");
  auto s = text ? tpmif::parse_xenbus_state(*text) : std::nullopt;
  if (!s) return;
  switch (*s) {
    case XenbusState::kInitialised:
    case XenbusState::kConnected: {
      if (state() == XenbusState::kConnected) break;
      auto v2 = store_->read(backend_ + "/feature-protocol-v2");
      if (!v2 || tpmif::parse_uint(*v2, 0xFFFFFFFFu).value_or(0) == 0) {
        fatal_ = "vTPM protocol 2 required";  // xenbus_dev_fatal: the device stops here
        switch_state(XenbusState::kClosing);
        return;
      }
      switch_state(XenbusState::kConnected);
      break;
    }
    case XenbusState::kClosing:
    case XenbusState::kClosed:
      // device_unregister + xenbus_frontend_closed
      if (state() != XenbusState::kClosed) close();
      break;
    default:
      break;
  }
}

void TpmFront::on_irq() {
  for (;;) {
    auto p = events_->pending();
    if (!p || !*p) return;
    ++irqs_;
    if (page_ && **p == port_) {
      // tpmif_interrupt: wake the waiter only for IDLE or FINISH.
      const auto s = tpmif::load_state(page_->page());
      if (s == static_cast<std::uint8_t>(PageState::kIdle) || s == static_cast<std::uint8_t>(PageState::kFinish)) wake();
    }
    (void)events_->unmask(**p);
  }
}

void TpmFront::wait_idle(std::uint64_t ms, std::function<void(bool)> then) {
  const auto s = tpmif::load_state(page_->page());
  if (s == static_cast<std::uint8_t>(PageState::kIdle) || s == static_cast<std::uint8_t>(PageState::kFinish)) {
    then(true);
    return;
  }
  waiter_ = std::move(then);
  uv_timer_start(timer_.get(), [](uv_timer_t* t) {
    auto* self = static_cast<TpmFront*>(t->data);
    auto w = std::move(self->waiter_);
    self->waiter_ = nullptr;
    if (w) w(false);
  }, ms, 0);
}

void TpmFront::wake() {
  if (!waiter_) return;
  uv_timer_stop(timer_.get());
  auto w = std::move(waiter_);
  waiter_ = nullptr;
  w(true);
}

void TpmFront::cancel() {
  tpmif::store_state(page_->page(), PageState::kCancel);
  (void)events_->notify(port_);
}

void TpmFront::transmit(std::vector<std::uint8_t> command, Reply reply) {
  if (!page_ || !probed_) {
    reply(FrontError::kNoDevice, {});
    return;
  }
  const std::size_t offset = tpmif::data_offset(page_->page()[7]);
  if (offset + command.size() > tpmif::kPageSize) {
    reply(FrontError::kInval, {});
    return;
  }
  command_ = std::move(command);
  reply_ = std::move(reply);
  const std::uint64_t timeout_c = timeouts_known_ ? timeouts_us_[2] / 1000 : kDefaultTimeoutCMs;
  wait_idle(timeout_c, [this](bool idle) {
    if (!idle) {
      cancel();
      return complete(FrontError::kTime, {});
    }
    submit();
  });
}

void TpmFront::submit() {
  (void)tpmif::put_request(page_->page(), command_, page_->page()[5]);
  (void)events_->notify(port_);
  const std::uint32_t ordinal = command_.size() >= 10 ? tpm::read_u32(command_, 6) : 0;
  wait_idle(duration_ms(ordinal), [this](bool idle) {
    if (!idle) {
      cancel();  // got a timeout: try to cancel
      return complete(FrontError::kTime, {});
    }
    // vtpm_recv
    if (tpmif::load_state(page_->page()) == static_cast<std::uint8_t>(PageState::kIdle)) {
      return complete(FrontError::kCanceled, {});
    }
    auto response = tpmif::read_response(page_->page());
    learn(command_, response);
    complete(std::nullopt, std::move(response));
  });
}

void TpmFront::complete(std::optional<FrontError> error, std::vector<std::uint8_t> response) {
  auto r = std::move(reply_);
  reply_ = nullptr;
  if (r) r(error, std::move(response));
}

std::uint64_t TpmFront::duration_ms(std::uint32_t ordinal) const {
  const Duration d = duration_class(ordinal);
  if (d == Duration::kUndefined || durations_us_[static_cast<int>(d)] == 0) return kUnknownDurationMs;
  return std::max<std::uint64_t>(1, durations_us_[static_cast<int>(d)] / 1000);
}

void TpmFront::learn(const std::vector<std::uint8_t>& command, const std::vector<std::uint8_t>& response) {
  // tpm1_get_timeouts: TPM_GetCapability(TPM_CAP_PROP, TIS_TIMEOUT / TIS_DURATION), values in µs.
  if (command.size() != 22 || tpm::read_u32(command, 6) != kOrdGetCapability) return;
  if (response.size() < 14 || tpm::read_u32(response, 6) != 0) return;
  const std::uint32_t prop = tpm::read_u32(command, 18);
  const std::uint32_t n = tpm::read_u32(response, 10);
  if (prop == kPropTisTimeout && n >= 16 && response.size() >= 30) {
    for (int i = 0; i < 4; ++i) timeouts_us_[i] = tpm::read_u32(response, 14 + 4 * i);
    timeouts_known_ = true;
  } else if (prop == kPropTisDuration && n >= 12 && response.size() >= 26) {
    for (int i = 0; i < 3; ++i) durations_us_[i] = tpm::read_u32(response, 14 + 4 * i);
  }
}

void TpmFront::close() {
  if (!page_) return;
  switch_state(XenbusState::kClosing);
  // ring_free: the grant is ended (deferred by Linux while still mapped:
  // here the backend unmaps when it sees Closing first), the irq unbound.
  (void)events_->unbind(port_);
  if (waiter_) {
    uv_timer_stop(timer_.get());
    waiter_ = nullptr;
  }
  complete(FrontError::kNoDevice, {});
  (void)store_->remove(dir_ + "/ring-ref");
  (void)store_->remove(dir_ + "/event-channel");
  hv_.end_access(domid_, ring_ref_);
  ring_ref_ = 0;
  page_.reset();
  probed_ = false;
  (void)store_->unwatch(backend_ + "/state", "otherend");
  switch_state(XenbusState::kClosed);
}

void TpmFront::reopen_later() { switch_state(XenbusState::kInitialising); }

}  // namespace vtpm::xen::sim
