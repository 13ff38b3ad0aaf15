// The control API's view of the root of trust: its status section, and
// `reseal`, which talks to the TPM and rewrites master.key on the libuv
// threadpool (seconds on a real TPM) and answers on the loop.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>

#include "proto/control_message.h"
#include "src/core/log.h"
#include "state/root_of_trust.h"
#include "state/state_store.h"

namespace vtpm {

using control::Json;

class RootOfTrustControl {
 public:
  using Reply = std::function<void(Result<Json>)>;
  RootOfTrustControl(uv_loop_t* loop, state::RootOfTrust& root, state::StateStore& store, const Logger& log)
      : loop_(loop), root_(root), store_(store), log_(log) {}
  RootOfTrustControl(const RootOfTrustControl&) = delete;
  RootOfTrustControl& operator=(const RootOfTrustControl&) = delete;

  Json status() const;
  // One at a time: a second reseal while one runs is `busy`.
  void reseal(state::SealPolicy policy, Reply reply);

 private:
  struct Work {
    uv_work_t request{};
    RootOfTrustControl* owner = nullptr;
    state::SealPolicy policy;
    Status result;
    Reply reply;
  };

  uv_loop_t* loop_;
  state::RootOfTrust& root_;
  state::StateStore& store_;
  const Logger& log_;
  std::unique_ptr<Work> work_;  // the reseal in flight; the loop drains it before the daemon goes
};

}  // namespace vtpm
