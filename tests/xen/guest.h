// One simulated guest with a vTPM device: libxl's nodes plus a
// xen-tpmfront model, and synchronous helpers over the harness's loop.
#pragma once

#include <doctest/doctest.h>

#include <memory>

#include "proto/tpm_packet.h"
#include "tests/support/tpm_commands.h"
#include "tests/support/xen/harness.h"
#include "tests/support/xen/toolstack_model.h"
#include "tests/support/xen/tpmfront_model.h"

namespace vtpm::xen::sim {

using namespace std::chrono_literals;

struct Reply {
  std::optional<FrontError> error;
  std::vector<std::uint8_t> response;
  std::uint32_t rc() const { return response.size() >= 10 ? tpm::read_u32(response, 6) : 0xFFFFFFFFu; }
};

class Guest {
 public:
  Guest(Harness& h, Toolstack& ts, DomId domid, const std::string& uuid, std::uint32_t devid = 0)
      : h_(h), ts_(ts), domid_(domid), devid_(devid) {
    ts_.add_vtpm(domid, devid, uuid);
    front_ = std::make_unique<TpmFront>(h.loop(), h.hv(), domid, devid);
  }
  TpmFront& front() { return *front_; }
  DomId domid() const { return domid_; }
  std::uint32_t devid() const { return devid_; }
  int backend_state() const { return ts_.backend_state(domid_, devid_); }

  bool wait_backend(int state, std::chrono::milliseconds t = 10s) {
    return h_.run_until([&] { return backend_state() == state; }, t);
  }
  // Boots the kernel driver: probe and wait until Connected with the
  // timeouts learned (the first commands go out before the backend connects).
  bool boot(std::chrono::milliseconds t = 30s) {
    if (!wait_backend(2, t)) return false;
    front_->probe();
    return h_.run_until([&] { return front_->connected() && front_->timeouts_known() && !front_->busy(); }, t);
  }
  Reply transmit(std::vector<std::uint8_t> command, std::chrono::milliseconds t = 30s) {
    std::optional<Reply> out;
    front_->transmit(std::move(command), [&](std::optional<FrontError> e, std::vector<std::uint8_t> r) {
      out = Reply{e, std::move(r)};
    });
    h_.run_until([&] { return out.has_value(); }, t);
    REQUIRE(out.has_value());
    return *out;
  }
  // A fresh kernel instance of the driver (kexec, pv-grub -> kernel).
  void new_kernel() { front_ = std::make_unique<TpmFront>(h_.loop(), h_.hv(), domid_, devid_); }

 private:
  Harness& h_;
  Toolstack& ts_;
  DomId domid_;
  std::uint32_t devid_;
  std::unique_ptr<TpmFront> front_;
};

}  // namespace vtpm::xen::sim
