// Owns one tpm2-tss TCTI context: the loader's (device, swtpm, mssim) or one
// of ours (transport_tcti.h). Each kind frees itself differently, so the
// handle carries its release function.
#pragma once

#include <tss2/tss2_tcti.h>

#include <functional>
#include <utility>

namespace vtpm::hwtpm {

class TctiHandle {
 public:
  using Release = std::function<void(TSS2_TCTI_CONTEXT*)>;

  TctiHandle() = default;
  TctiHandle(TSS2_TCTI_CONTEXT* context, Release release) : context_(context), release_(std::move(release)) {}
  TctiHandle(TctiHandle&& other) noexcept
      : context_(std::exchange(other.context_, nullptr)), release_(std::move(other.release_)) {}
  TctiHandle& operator=(TctiHandle&& other) noexcept {
    if (this != &other) {
      reset();
      context_ = std::exchange(other.context_, nullptr);
      release_ = std::move(other.release_);
    }
    return *this;
  }
  TctiHandle(const TctiHandle&) = delete;
  TctiHandle& operator=(const TctiHandle&) = delete;
  ~TctiHandle() { reset(); }

  TSS2_TCTI_CONTEXT* get() const { return context_; }
  explicit operator bool() const { return context_ != nullptr; }

 private:
  void reset() {
    if (context_ && release_) release_(context_);
    context_ = nullptr;
  }

  TSS2_TCTI_CONTEXT* context_ = nullptr;
  Release release_;
};

}  // namespace vtpm::hwtpm
