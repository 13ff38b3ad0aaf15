// The control API's view of the root of trust: its status section, and
// `reseal`, which talks to the TPM and rewrites master.key on the libuv
// threadpool (seconds on a real TPM) and answers on the loop.
#pragma once

#include <uv.h>

#include <cstdint>
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
  // Hears each finished step of a reseal (for a client's progress line).
  using StepListener = std::function<void(const std::string& step, std::int64_t elapsed_ms)>;
  RootOfTrustControl(uv_loop_t* loop, state::RootOfTrust& root, state::StateStore& store, const Logger& log)
      : loop_(loop), root_(root), store_(store), log_(log) {}
  RootOfTrustControl(const RootOfTrustControl&) = delete;
  RootOfTrustControl& operator=(const RootOfTrustControl&) = delete;

  Json status() const;
  // One at a time: a second reseal while one runs is `busy`.
  // Two threadpool steps: seal under the new policy (the root of trust's
  // part), then rewrite master.key.
  void reseal(state::SealPolicy policy, Reply reply, StepListener listener = {});

 private:
  struct Work {
    uv_work_t request{};
    RootOfTrustControl* owner = nullptr;
    state::SealPolicy policy;
    Result<state::Bytes> sealed = state::Bytes{};  // the first step's result
    Status stored;                                 // the second's
    Reply reply;
    StepListener listener;
    std::uint64_t started_ms = 0;
  };
  void queue(void (*step)(uv_work_t*), void (*after)(uv_work_t*, int));
  void finish(Result<Json> outcome);

  uv_loop_t* loop_;
  state::RootOfTrust& root_;
  state::StateStore& store_;
  const Logger& log_;
  std::unique_ptr<Work> work_;  // the reseal in flight; the loop drains it before the daemon goes
};

}  // namespace vtpm
