#include "backends/hwtpm/transport_tcti.h"

#include <chrono>
#include <cstddef>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "proto/tpm_packet.h"

namespace vtpm::hwtpm {

namespace {

class TransportTcti;

// What tpm2-tss sees. It casts the context pointer to the common structure,
// so that structure comes first and the layout is standard.
struct TctiContext {
  TSS2_TCTI_CONTEXT_COMMON_V2 common;
  TransportTcti* self;
};
static_assert(std::is_standard_layout_v<TctiContext> && offsetof(TctiContext, common) == 0);

using Response = Result<std::vector<std::uint8_t>>;

class TransportTcti {
 public:
  explicit TransportTcti(std::unique_ptr<TpmTransport> transport) : transport_(std::move(transport)) {
    auto& v1 = context_.common.v1;
    v1.magic = kTransportTctiMagic;
    v1.version = 2;
    v1.transmit = &transmit_entry;
    v1.receive = &receive_entry;
    v1.finalize = &finalize_entry;
    v1.cancel = &cancel_entry;
    v1.getPollHandles = &poll_handles_entry;
    v1.setLocality = &set_locality_entry;
    context_.common.makeSticky = &make_sticky_entry;
    context_.self = this;
  }
  ~TransportTcti() { finalize(); }
  TransportTcti(const TransportTcti&) = delete;
  TransportTcti& operator=(const TransportTcti&) = delete;

  TSS2_TCTI_CONTEXT* context() { return reinterpret_cast<TSS2_TCTI_CONTEXT*>(&context_); }

  static TransportTcti* from(TSS2_TCTI_CONTEXT* context) {
    if (context == nullptr) return nullptr;
    auto* ours = reinterpret_cast<TctiContext*>(context);
    if (ours->common.v1.magic != kTransportTctiMagic) return nullptr;
    return ours->self;
  }

  std::string last_error() {
    std::lock_guard lock(mutex_);
    return last_error_;
  }

 private:
  TSS2_RC transmit(size_t size, const std::uint8_t* command) {
    if (command == nullptr) return TSS2_TCTI_RC_BAD_REFERENCE;
    if (!transport_) return TSS2_TCTI_RC_BAD_CONTEXT;  // finalized
    if (in_flight_.valid() || response_) return TSS2_TCTI_RC_BAD_SEQUENCE;
    std::vector<std::uint8_t> bytes(command, command + size);
    auto header = tpm::parse_header(bytes);
    if (!header.ok() || header->size != size) {
      remember(header.ok() ? "command header size " + std::to_string(header->size) + " but " +
                                 std::to_string(size) + " bytes given"
                           : header.error().message);
      return TSS2_TCTI_RC_BAD_VALUE;
    }
    // The transaction polls registers for as long as the TPM takes; a thread
    // lets receive() honour its timeout and cancel() reach it meanwhile.
    in_flight_ = std::async(std::launch::async, [transport = transport_.get(), bytes = std::move(bytes)] {
      return transport->transact(bytes);
    });
    return TSS2_RC_SUCCESS;
  }

  TSS2_RC receive(size_t* size, std::uint8_t* response, std::int32_t timeout) {
    if (size == nullptr) return TSS2_TCTI_RC_BAD_REFERENCE;
    if (timeout < TSS2_TCTI_TIMEOUT_BLOCK) return TSS2_TCTI_RC_BAD_VALUE;
    if (!response_) {
      if (!in_flight_.valid()) return TSS2_TCTI_RC_BAD_SEQUENCE;
      if (timeout != TSS2_TCTI_TIMEOUT_BLOCK &&
          in_flight_.wait_for(std::chrono::milliseconds(timeout)) != std::future_status::ready) {
        return TSS2_TCTI_RC_TRY_AGAIN;
      }
      Response result = in_flight_.get();
      if (!result.ok()) {
        remember(result.error().message);
        return TSS2_TCTI_RC_IO_ERROR;  // the message says which register and why
      }
      response_ = std::move(result.value());
    }
    // The response is kept until a buffer large enough takes it: a NULL
    // buffer asks for the size, a short one gets INSUFFICIENT_BUFFER.
    if (response == nullptr) {
      *size = response_->size();
      return TSS2_RC_SUCCESS;
    }
    if (*size < response_->size()) {
      *size = response_->size();
      return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
    }
    std::memcpy(response, response_->data(), response_->size());
    *size = response_->size();
    response_.reset();
    return TSS2_RC_SUCCESS;
  }

  TSS2_RC cancel() {
    if (!in_flight_.valid()) return TSS2_TCTI_RC_BAD_SEQUENCE;
    transport_->cancel();
    return TSS2_RC_SUCCESS;
  }

  TSS2_RC set_locality(std::uint8_t locality) {
    if (!transport_) return TSS2_TCTI_RC_BAD_CONTEXT;
    if (in_flight_.valid() || response_) return TSS2_TCTI_RC_BAD_SEQUENCE;
    Status status = transport_->set_locality(locality);
    if (status.ok()) return TSS2_RC_SUCCESS;
    remember(status.error().message);
    return status.error().code == ErrorCode::kUnsupported ? TSS2_TCTI_RC_NOT_IMPLEMENTED : TSS2_TCTI_RC_BAD_VALUE;
  }

  // Waits for a command in flight (the transport's timeouts bound it, and
  // the cancel shortens it) and drops the transport.
  void finalize() {
    if (in_flight_.valid()) {
      transport_->cancel();
      in_flight_.wait();
      in_flight_ = {};
    }
    response_.reset();
    transport_.reset();
  }

  void remember(std::string message) {
    std::lock_guard lock(mutex_);
    last_error_ = std::move(message);
  }

  static TSS2_RC transmit_entry(TSS2_TCTI_CONTEXT* c, size_t size, const std::uint8_t* command) {
    auto* self = from(c);
    return self ? self->transmit(size, command) : TSS2_TCTI_RC_BAD_CONTEXT;
  }
  static TSS2_RC receive_entry(TSS2_TCTI_CONTEXT* c, size_t* size, std::uint8_t* response, std::int32_t timeout) {
    auto* self = from(c);
    return self ? self->receive(size, response, timeout) : TSS2_TCTI_RC_BAD_CONTEXT;
  }
  static void finalize_entry(TSS2_TCTI_CONTEXT* c) {
    if (auto* self = from(c)) self->finalize();
  }
  static TSS2_RC cancel_entry(TSS2_TCTI_CONTEXT* c) {
    auto* self = from(c);
    return self ? self->cancel() : TSS2_TCTI_RC_BAD_CONTEXT;
  }
  static TSS2_RC poll_handles_entry(TSS2_TCTI_CONTEXT*, TSS2_TCTI_POLL_HANDLE*, size_t*) {
    return TSS2_TCTI_RC_NOT_IMPLEMENTED;  // nothing to poll: the transaction is a thread, not an fd
  }
  static TSS2_RC set_locality_entry(TSS2_TCTI_CONTEXT* c, std::uint8_t locality) {
    auto* self = from(c);
    return self ? self->set_locality(locality) : TSS2_TCTI_RC_BAD_CONTEXT;
  }
  static TSS2_RC make_sticky_entry(TSS2_TCTI_CONTEXT*, TPM2_HANDLE*, std::uint8_t) {
    return TSS2_TCTI_RC_NOT_IMPLEMENTED;  // a resource-manager feature
  }

  TctiContext context_{};
  std::unique_ptr<TpmTransport> transport_;
  std::future<Response> in_flight_;
  std::optional<std::vector<std::uint8_t>> response_;
  std::mutex mutex_;  // last_error_ may be read from another thread
  std::string last_error_;
};

}  // namespace

TctiHandle make_transport_tcti(std::unique_ptr<TpmTransport> transport) {
  // The handle's release function owns the object; shared_ptr because
  // std::function needs a copyable callable.
  auto owner = std::make_shared<TransportTcti>(std::move(transport));
  TSS2_TCTI_CONTEXT* context = owner->context();
  return TctiHandle(context, [owner](TSS2_TCTI_CONTEXT*) mutable { owner.reset(); });
}

std::string transport_tcti_last_error(TSS2_TCTI_CONTEXT* context) {
  auto* self = TransportTcti::from(context);
  return self ? self->last_error() : std::string();
}

}  // namespace vtpm::hwtpm
