// A pool of TPM 2.0 instances manufactured ahead of demand (docs/
// provisioning.md, "Warm pool"): PCR banks allocated and EKs created and
// made persistent, which is the slow part of provisioning (RSA key
// generation). An `add` whose banks and EK types match the pool's profile
// takes a member's state instead of generating keys; only the cheap part
// (certificates, which name the new instance) runs then.
//
// Members are ordinary instances under random UUIDs, marked in their
// provisioning summary and hidden from `list`; they are saved like any
// instance, so a restarted daemon finds its pool still warm. A member's
// state is handed out once: it is removed, durably, before its state
// becomes another instance's, so no two TPMs ever share an endorsement seed.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/tpm2_commands.h"
#include "src/core/instance.h"
#include "src/core/log.h"
#include "src/core/service.h"
#include "src/core/uv_handle.h"

namespace vtpm {

struct WarmPoolProfile {
  std::uint32_t size = 0;  // members kept ready; 0: no pool
  std::vector<TPM2_ALG_ID> pcr_banks;  // empty: libtpms' default allocation
  std::vector<tpm2::EkKind> endorsement_keys;
};

struct WarmPoolStats {
  std::size_t ready = 0;
  bool filling = false;
  std::uint64_t taken = 0;      // adds served from the pool
  std::uint64_t missed = 0;     // matching adds that found the pool empty
  std::uint64_t failures = 0;   // members that could not be made or handed out
  std::string last_error;
};

class WarmPool {
 public:
  // Manufactures one member: what `provision` does before certificates.
  using Manufacture = std::function<void(const Uuid&, std::function<void(Status)>)>;

  WarmPool(uv_loop_t* loop, const Logger& log, Service& service, WarmPoolProfile profile, Manufacture manufacture);
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // Start-up: members on disk with this profile are ready again; members
  // of another profile (the configuration changed) are removed. Then the
  // pool fills up, one member at a time.
  void start();
  // Gives `target` (a freshly added instance) the state of a ready member
  // if `banks` and `eks` match the profile: true when it did, false when
  // the target must be manufactured itself.
  void adopt(const Uuid& target, const std::vector<TPM2_ALG_ID>& banks, const std::vector<tpm2::EkKind>& eks,
             std::function<void(Result<bool>)> done);
  // Shutdown: no new members.
  void stop();

  const WarmPoolProfile& profile() const { return profile_; }
  WarmPoolStats stats() const;
  // The provisioning summary that marks an instance as a pool member; a
  // member is saved as not ready until its manufacture is complete, so a
  // restart never hands out a half-made one.
  std::string marker(bool ready) const;
  static bool is_member(const Instance& instance);

 private:
  bool matches(const std::vector<TPM2_ALG_ID>& banks, const std::vector<tpm2::EkKind>& eks) const;
  void fill();
  void retry_later(const std::string& why);
  void discard(const Uuid& member);

  const Logger& log_;
  Service& service_;
  WarmPoolProfile profile_;
  Manufacture manufacture_;
  UvHandle<uv_timer_t> retry_timer_;
  std::chrono::milliseconds backoff_{0};
  std::deque<Uuid> ready_;
  WarmPoolStats stats_;
  bool stopped_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace vtpm
