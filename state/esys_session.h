// RAII and error helpers around tpm2-tss ESAPI: the context, transient
// objects and sessions (flushed on scope exit), buffers ESAPI allocates,
// and TSS2_RC values turned into Errors that say what failed and why.
#pragma once

#include <tss2/tss2_esys.h>

#include <memory>
#include <string>

#include "proto/result.h"

namespace vtpm::state {

// A TPM2_RC worth retrying after a pause: the TPM is busy, rate-limiting
// NV writes, testing itself, or the channel dropped.
bool is_transient_tpm_error(TSS2_RC rc);
// The TPM refused an authorization because the policy does not match
// (PCR values changed).
bool is_policy_failure(TSS2_RC rc);

Error tpm_error(const std::string& what, TSS2_RC rc);

// Buffers returned by ESAPI calls are freed with Esys_Free.
struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

// ESAPI uses OpenSSL, which keeps a DRBG and error state per thread and
// frees them only when the thread exits. The TPM root runs on libuv's pool
// threads, which live as long as the daemon: this releases that state when
// a TPM operation ends, so nothing outlives it unowned.
class OpensslThreadState {
 public:
  OpensslThreadState() = default;
  ~OpensslThreadState();
  OpensslThreadState(const OpensslThreadState&) = delete;
  OpensslThreadState& operator=(const OpensslThreadState&) = delete;
};

class EsysContext {
 public:
  EsysContext() = default;
  explicit EsysContext(ESYS_CONTEXT* ctx) : ctx_(ctx) {}
  EsysContext(EsysContext&& o) noexcept : ctx_(std::exchange(o.ctx_, nullptr)) {}
  EsysContext& operator=(EsysContext&& o) noexcept {
    if (this != &o) {
      reset();
      ctx_ = std::exchange(o.ctx_, nullptr);
    }
    return *this;
  }
  EsysContext(const EsysContext&) = delete;
  EsysContext& operator=(const EsysContext&) = delete;
  ~EsysContext() { reset(); }
  ESYS_CONTEXT* get() const { return ctx_; }
  explicit operator bool() const { return ctx_ != nullptr; }
  void reset() {
    if (ctx_) Esys_Finalize(&ctx_);
    ctx_ = nullptr;
  }

 private:
  ESYS_CONTEXT* ctx_ = nullptr;
};

// A transient object or session, flushed from the TPM when it goes out of
// scope (TPM slots are few; leaking one per operation would exhaust them).
// Persistent handles and NV indices are closed instead of flushed.
class TpmHandle {
 public:
  enum class Kind { kFlush, kClose };
  TpmHandle() = default;
  TpmHandle(ESYS_CONTEXT* ctx, ESYS_TR tr, Kind kind = Kind::kFlush) : ctx_(ctx), tr_(tr), kind_(kind) {}
  TpmHandle(TpmHandle&& o) noexcept
      : ctx_(std::exchange(o.ctx_, nullptr)), tr_(std::exchange(o.tr_, ESYS_TR_NONE)), kind_(o.kind_) {}
  TpmHandle& operator=(TpmHandle&& o) noexcept {
    if (this != &o) {
      reset();
      ctx_ = std::exchange(o.ctx_, nullptr);
      tr_ = std::exchange(o.tr_, ESYS_TR_NONE);
      kind_ = o.kind_;
    }
    return *this;
  }
  TpmHandle(const TpmHandle&) = delete;
  TpmHandle& operator=(const TpmHandle&) = delete;
  ~TpmHandle() { reset(); }
  ESYS_TR get() const { return tr_; }
  void reset() {
    if (ctx_ && tr_ != ESYS_TR_NONE) {
      if (kind_ == Kind::kFlush) Esys_FlushContext(ctx_, tr_);
      else Esys_TR_Close(ctx_, &tr_);
    }
    tr_ = ESYS_TR_NONE;
  }

 private:
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR tr_ = ESYS_TR_NONE;
  Kind kind_ = Kind::kFlush;
};

}  // namespace vtpm::state
