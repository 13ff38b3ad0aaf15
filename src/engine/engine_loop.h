// The engine thread's loop: a thread-safe inbox in front of a Multiplexer.
// Producers (the reactor thread, or a worker's pipe reader) submit jobs;
// the engine thread drains the inbox, runs one job at a time and hands each
// completion to `deliver`, on the engine thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "src/engine/multiplexer.h"

namespace vtpm::engine {

class EngineLoop {
 public:
  using Deliver = std::function<void(Completion&&)>;

  EngineLoop(MultiplexerOptions options, Deliver deliver);

  // Thread-safe. A kCancel job is not queued: it drops the instance's queued
  // jobs and aborts its running command, then completes itself.
  void submit(Job job);
  // Thread-safe: run() returns once the current job is finished.
  void stop();
  // Runs until stop(). Call from the one thread that owns libtpms.
  void run();

 private:
  void drain_inbox();
  void handle_cancel(Job job);

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::pair<Job, Clock::time_point>> inbox_;  // guarded by mutex_
  std::optional<Uuid> running_;                            // guarded by mutex_
  bool stopping_ = false;                                  // guarded by mutex_
  Multiplexer mux_;  // engine thread only
  Deliver deliver_;
};

}  // namespace vtpm::engine
