#include "src/core/tpm_steps.h"

#include <algorithm>
#include <cstdio>

namespace vtpm {

void run_steps(Steps steps, std::size_t at, std::function<void(Status)> done) {
  if (at == steps->size()) return done(Status::success());
  Step& step = (*steps)[at];
  step([steps, at, done = std::move(done)](Status s) mutable {
    if (!s) return done(std::move(s));
    run_steps(std::move(steps), at + 1, std::move(done));
  });
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

void InstanceTpm::send(std::string what, Bytes command, std::size_t handles, bool sessions, Next next,
                       std::function<Status(const tpm2::Response&)> then, std::vector<std::uint32_t> accept) const {
  service.exec(
      id, std::move(command), 0,
      [what = std::move(what), handles, sessions, next = std::move(next), then = std::move(then),
       accept = std::move(accept)](Result<ExecResult> r) {
        if (!r) return next(make_error(r.error().code, what + ": " + r.error().message));
        auto parsed = tpm2::parse_response(r->response, handles, sessions);
        if (!parsed) return next(make_error(parsed.error().code, what + ": " + parsed.error().message));
        if (parsed->rc != 0) {
          if (std::find(accept.begin(), accept.end(), parsed->rc) != accept.end()) return next(Status::success());
          return next(make_error(ErrorCode::kTpmFailure, what + " failed: " + tpm2::rc_text(parsed->rc)));
        }
        next(then ? then(*parsed) : Status::success());
      },
      CommandOrigin::kVtpmd);
}

void InstanceTpm::send12(std::string what, Bytes command, std::function<Status(const Bytes&)> check, Next next) const {
  service.exec(
      id, std::move(command), 0,
      [what = std::move(what), check = std::move(check), next = std::move(next)](Result<ExecResult> r) {
        if (!r) return next(make_error(r.error().code, what + ": " + r.error().message));
        next(check(r->response));
      },
      CommandOrigin::kVtpmd);
}

void InstanceTpm::startup(Next next) const {
  send("Startup(CLEAR)", tpm2::startup(true), 0, false, std::move(next), {}, {tpm2::kRcInitialize});
}

void InstanceTpm::shutdown_for_guest(Next next) const {
  const InstanceTpm self = *this;
  send("Shutdown(CLEAR)", tpm2::shutdown(true), 0, false, [self, next = std::move(next)](Status s) mutable {
    if (!s) return next(std::move(s));
    self.power_reset(std::move(next));
  });
}

void InstanceTpm::power_reset(Next next) const {
  service.power(id, PowerAction::kReset, [next = std::move(next)](Result<const Instance*> r) {
    next(r ? Status::success() : Status(r.error()));
  });
}

void InstanceTpm::power_cycle(Next next) const {
  service.power(id, PowerAction::kGuestReset, [next = std::move(next)](Result<const Instance*> r) {
    next(r ? Status::success() : Status(r.error()));
  });
}

void InstanceTpm::write_certificate(TPM2_HANDLE index, std::shared_ptr<const Bytes> data, Next next) const {
  const InstanceTpm self = *this;
  send("NV_DefineSpace " + hex32(index),
       tpm2::nv_define_space(TPM2_RH_PLATFORM, index, tpm2::kCertificateNvAttributes,
                             static_cast<std::uint16_t>(data->size())),
       0, true, [self, index, data, next = std::move(next)](Status s) mutable {
         if (!s) return next(std::move(s));
         self.write_chunks(index, data, 0, std::move(next));
       });
}

void InstanceTpm::write_chunks(TPM2_HANDLE index, std::shared_ptr<const Bytes> data, std::size_t offset,
                               Next next) const {
  const InstanceTpm self = *this;
  if (offset >= data->size()) {
    return send("NV_WriteLock " + hex32(index), tpm2::nv_write_lock(TPM2_RH_PLATFORM, index), 0, true,
                std::move(next));
  }
  // A chunk plus NV_Write's header, handles and session must fit the
  // instance's command size limit (1024 at least).
  std::size_t chunk = tpm2::kNvWriteChunk;
  if (auto instance = service.show(id); instance && (*instance)->max_command_size < chunk + 64) {
    chunk = (*instance)->max_command_size - 64;
  }
  const std::size_t n = std::min(chunk, data->size() - offset);
  send("NV_Write " + hex32(index),
       tpm2::nv_write(TPM2_RH_PLATFORM, index, std::span(*data).subspan(offset, n), static_cast<std::uint16_t>(offset)),
       0, true, [self, index, data, offset, n, next = std::move(next)](Status s) mutable {
         if (!s) return next(std::move(s));
         self.write_chunks(index, data, offset + n, std::move(next));
       });
}

}  // namespace vtpm
