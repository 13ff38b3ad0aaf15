// Multiplexes many instances through the one libtpms of this process.
//
// Every instance has a FIFO of jobs; instances with work sit in a ring and
// are served round-robin, one job per turn, so a flooding instance delays
// another by at most one command. Serving a different instance than the
// loaded one costs a swap (TPM 2.0: tens of microseconds; TPM 1.2: ~200 ms
// because libtpms runs an RSA self-test on every TPM 1.2 start). A loaded
// TPM 1.2 instance therefore keeps the engine for a time slice while it has
// work, instead of one command.
//
// Not thread-safe: owned and driven by one engine thread (see EngineLoop).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "proto/engine_messages.h"
#include "src/engine/libtpms_adapter.h"

namespace vtpm::engine {

using Clock = std::chrono::steady_clock;

struct MultiplexerOptions {
  // How long a loaded TPM 1.2 instance keeps the engine while it has queued
  // jobs and others wait. Zero means strict one-command round-robin.
  std::chrono::microseconds tpm12_slice{std::chrono::milliseconds(500)};
  // A guest sends one command at a time: between two commands its queue is
  // briefly empty. Within its slice, a loaded TPM 1.2 instance that ran a
  // command this recently keeps the engine (others wait) for its next one.
  std::chrono::microseconds tpm12_linger{std::chrono::milliseconds(5)};
  // Reuse one genuinely generated key for TPM 1.2's per-restore RSA
  // self-test (see libtpms_selftest_key.cc): swaps cost ~9 ms, not ~200.
  bool tpm12_selftest_key_cache = true;
};

class Multiplexer {
 public:
  Multiplexer(LibtpmsAdapter& tpm, MultiplexerOptions options);
  // Leaves libtpms free for a later multiplexer in the same process (the
  // loaded instance's last changes are already in its completions).
  ~Multiplexer();
  Multiplexer(const Multiplexer&) = delete;
  Multiplexer& operator=(const Multiplexer&) = delete;

  void enqueue(Job job, Clock::time_point received);
  // Removes every queued job of `instance`, returning kCancelled
  // completions for them (the running job, if any, is the caller's).
  std::vector<Completion> cancel_queued(const Uuid& instance);
  bool has_work() const { return !ready_.empty(); }
  // When set, the engine should wait (until then, or until a job arrives)
  // before run_next(): the loaded TPM 1.2 instance is lingering.
  std::optional<Clock::time_point> hold_until() const;
  // Runs the next job by the round-robin rule. `on_start` learns which
  // instance runs before libtpms is entered. REQUIRES: has_work().
  // `on_start` hears which job is about to run (and its TPM's version).
  using OnStart = std::function<void(const Uuid&, const Job&, TpmVersion)>;
  Completion run_next(const OnStart& on_start = {});
  // The instance whose state is in libtpms, if any.
  std::optional<Uuid> loaded() const { return loaded_; }

 private:
  struct Pending {
    Job job;
    Clock::time_point received;
  };
  struct Hosted {
    bool attached = false;
    bool failed = false;  // its state could not be loaded; jobs are refused
    InstanceParams params;
    StateBlobs blobs;
    std::deque<Pending> queue;
  };

  Uuid pick_next();
  Completion run_job(const Uuid& id, Hosted& hosted, Pending pending);
  Completion attach(const Uuid& id, Hosted& hosted, Job& job, Completion done);
  Completion execute(const Uuid& id, Hosted& hosted, Job& job, Completion done);
  Completion power_on(const Uuid& id, Hosted& hosted, bool allow_auto_startup, Completion done);
  Completion detach(const Uuid& id, Hosted& hosted, Completion done);
  Completion snapshot(const Uuid& id, Hosted& hosted, Completion done);
  Completion platform(const Uuid& id, Hosted& hosted, Job& job, Completion done);
  // Makes `id` the loaded instance; adds the swap cost to `done`.
  Status ensure_loaded(const Uuid& id, Hosted& hosted, Completion& done);
  void unload_current();
  void collect_nv_changes(Hosted& hosted, Completion& done);
  Status run_auto_startup(Hosted& hosted);

  LibtpmsAdapter& tpm_;
  MultiplexerOptions options_;
  std::unordered_map<Uuid, Hosted> hosted_;
  std::deque<Uuid> ready_;  // instances with queued jobs, round-robin order
  std::optional<Uuid> loaded_;
  Clock::time_point slice_start_{};
  Clock::time_point last_finish_{};
};

}  // namespace vtpm::engine
