#include "backends/xen/tpmif_connection.h"

#include "proto/tpm_packet.h"

namespace vtpm::xen {

Result<std::shared_ptr<TpmifConnection>> TpmifConnection::open(std::shared_ptr<Platform> platform, Service& service,
                                                               const Logger& log, const ConnectionParams& params) {
  auto mapping = platform->grants->map(params.frontend, params.ring_ref);
  if (!mapping) return make_error(mapping.error().code, "mapping ring-ref " + std::to_string(params.ring_ref) + ": " +
                                                            mapping.error().message);
  auto port = platform->events->bind_interdomain(params.frontend, params.remote_port);
  if (!port) return make_error(port.error().code, "binding event-channel " + std::to_string(params.remote_port) + ": " +
                                                      port.error().message);
  return std::shared_ptr<TpmifConnection>(
      new TpmifConnection(std::move(platform), service, log, params, std::move(*mapping), *port));
}

TpmifConnection::TpmifConnection(std::shared_ptr<Platform> platform, Service& service, const Logger& log,
                                 const ConnectionParams& params, std::unique_ptr<GrantMapping> mapping, Port port)
    : platform_(std::move(platform)), service_(service), log_(log), params_(params), mapping_(std::move(mapping)), port_(port) {}

TpmifConnection::~TpmifConnection() {
  (void)platform_->events->unbind(port_);
  mapping_.reset();
}

void TpmifConnection::on_event() {
  const auto state = static_cast<tpmif::PageState>(tpmif::load_state(mapping_->page()));
  if (state == tpmif::PageState::kSubmit) {
    if (!busy_) start_request();
    return;  // a SUBMIT while one runs: the frontend broke the protocol; the FINISH will overwrite it
  }
  if (state == tpmif::PageState::kCancel) {
    if (!busy_) {
      tpmif::store_state(mapping_->page(), tpmif::PageState::kIdle);
      (void)platform_->events->notify(port_);
    } else if (!cancel_forwarded_) {
      cancel_forwarded_ = true;  // the command still completes with FINISH
      service_.cancel(params_.instance, [](Status) {});
    }
  }
  // IDLE or FINISH (our own write echoed) or garbage: nothing to do.
}

void TpmifConnection::start_request() {
  const tpmif::Taken taken = tpmif::take_request(mapping_->page());
  if (taken.bad) {
    ++refused_;
    log_.warn(params_.instance, "tpmif frontend domain " + std::to_string(params_.frontend) + ": " + taken.bad->why);
    answer_error(tpm::kTpm12BadParamSize, taken.bad->offset);
    return;
  }
  ++requests_;
  busy_ = true;
  cancel_forwarded_ = false;
  const std::size_t offset = taken.request->offset;
  service_.exec(params_.instance, taken.request->command, taken.request->locality,
                [self = shared_from_this(), offset](Result<ExecResult> r) {
                  self->busy_ = false;
                  if (r) {
                    self->finish(r->response, offset);
                  } else {
                    self->answer_error(tpm::failure_code(self->params_.version, r.error().code), offset);
                  }
                });
}

void TpmifConnection::finish(const std::vector<std::uint8_t>& response, std::size_t offset) {
  if (Status s = tpmif::put_response(mapping_->page(), offset, response); !s) {
    log_.warn(params_.instance, "tpmif: " + s.error().message);
    answer_error(params_.version == TpmVersion::k20 ? tpm::kTpm2RcFailure : tpm::kTpm12Fail, offset);
    return;
  }
  (void)platform_->events->notify(port_);
}

void TpmifConnection::answer_error(std::uint32_t rc, std::size_t offset) {
  // A version-specific TPM header for the code: a guest that asked in TPM
  // 2.0 format still sees a well-formed TPM 1.2 error for a 1.2 instance.
  const std::uint32_t code = (params_.version == TpmVersion::k20 && rc == tpm::kTpm12BadParamSize) ? tpm::kTpm2RcCommandSize : rc;
  (void)tpmif::put_response(mapping_->page(), offset, tpm::error_response(params_.version, code));
  (void)platform_->events->notify(port_);
}

}  // namespace vtpm::xen
