// A model of Linux's xen-tpmfront (drivers/char/tpm/xen-tpmfront.c) and
// the xenbus frontend core around it, step by step, on a libuv loop
// instead of kernel wait queues:
//   probe      zeroed page, grant to the backend, unbound event channel,
//              one transaction writing ring-ref, event-channel and
//              feature-protocol-v2=1, switch to Initialised, then at once
//              the TPM 1.2 timeouts/durations queries (before the backend
//              has mapped anything)
//   backend_changed  backend Initialised/Connected: require its
//              feature-protocol-v2, switch to Connected; backend
//              Closing/Closed: unregister, switch to Closed
//   transmit   vtpm_send (wait for IDLE up to timeout_c, copy, length,
//              SUBMIT, notify, wait up to the ordinal's duration, cancel
//              on timeout -> ETIME) then vtpm_recv (IDLE -> ECANCELED,
//              copy min(length, page))
//   close      Closing, ring_free (end grant access, unbind), Closed; and
//              mini-os's reopen (pv-grub): back to Initialising
// Only the wait mechanics differ: a timer and the port's fd instead of a
// wait queue and an interrupt.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>

#include "src/core/uv_handle.h"
#include "tests/support/xen/sim_xen.h"

namespace vtpm::xen::sim {

enum class FrontError { kTime, kCanceled, kInval, kNoDevice };
const char* front_error_name(FrontError e);

class TpmFront {
 public:
  using Reply = std::function<void(std::optional<FrontError>, std::vector<std::uint8_t>)>;

  // The device directory /local/domain/<domid>/device/vtpm/<devid> must
  // exist (the toolstack writes it); `backend_domid` grants the page to it.
  TpmFront(uv_loop_t* loop, Hypervisor& hv, DomId domid, std::uint32_t devid);
  ~TpmFront();
  TpmFront(const TpmFront&) = delete;
  TpmFront& operator=(const TpmFront&) = delete;

  // tpmfront_probe. Sends the timeouts/durations queries right after.
  void probe();
  // tpm_transmit: one command at a time (as the TPM core's mutex ensures).
  void transmit(std::vector<std::uint8_t> command, Reply reply);
  // Device removal in the guest (module unload, shutdown, kexec):
  // Closing, ring_free, Closed.
  void close();
  // mini-os's tpmfront after its shutdown: back to Initialising so the next
  // kernel can probe again (pv-grub hand-off).
  void reopen_later();

  tpmif::XenbusState state() const;
  bool connected() const { return state() == tpmif::XenbusState::kConnected; }
  bool busy() const { return reply_ != nullptr; }
  // Durations learned from TPM_CAP_PROP_TIS_DURATION (µs), 0 before.
  const std::array<std::uint32_t, 3>& durations_us() const { return durations_us_; }
  const std::array<std::uint32_t, 4>& timeouts_us() const { return timeouts_us_; }
  bool timeouts_known() const { return timeouts_known_; }
  // The probe's timeouts/durations queries are over (answered or not).
  bool probe_done() const { return probe_done_; }
  std::string fatal_error() const { return fatal_; }
  const std::string& dir() const { return dir_; }
  GrantRef ring_ref() const { return ring_ref_; }
  tpmif::Page page() { return page_->page(); }
  Port port() const { return port_; }
  SimEvents& events() { return *events_; }
  SimStore& store() { return *store_; }
  std::uint64_t irqs() const { return irqs_; }

 private:
  void on_store_events();
  void on_irq();
  void backend_changed();
  void switch_state(tpmif::XenbusState s);
  void wait_idle(std::uint64_t ms, std::function<void(bool)> then);
  void wake();
  void submit();
  void complete(std::optional<FrontError> error, std::vector<std::uint8_t> response);
  std::uint64_t duration_ms(std::uint32_t ordinal) const;
  void learn(const std::vector<std::uint8_t>& command, const std::vector<std::uint8_t>& response);
  void cancel();

  uv_loop_t* loop_;
  Hypervisor& hv_;
  DomId domid_;
  std::uint32_t devid_;
  std::string dir_;
  std::string backend_;
  DomId backend_id_ = 0;
  std::unique_ptr<SimStore> store_;
  std::unique_ptr<SimEvents> events_;
  std::shared_ptr<GuestPage> page_;
  GrantRef ring_ref_ = 0;
  Port port_ = 0;
  bool probed_ = false;
  std::string fatal_;
  UvHandle<uv_poll_t> store_poll_;
  UvHandle<uv_poll_t> irq_poll_;
  UvHandle<uv_timer_t> timer_;
  // The waiter (wait_for_tpm_stat): woken by an interrupt that sees IDLE
  // or FINISH, or by the timer.
  std::function<void(bool)> waiter_;
  std::vector<std::uint8_t> command_;
  Reply reply_;
  std::array<std::uint32_t, 3> durations_us_{};
  std::array<std::uint32_t, 4> timeouts_us_{};
  bool timeouts_known_ = false;
  bool probe_done_ = false;
  std::uint64_t irqs_ = 0;
};

}  // namespace vtpm::xen::sim
