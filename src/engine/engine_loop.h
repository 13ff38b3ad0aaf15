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
  using Flush = std::function<void()>;

  // Without `flush`, each delivered completion is final. With it,
  // `deliver` may only queue, and `flush` tells the consumer to collect:
  // called when the engine runs out of work, before it waits, and while
  // it stays busy at least every kFlushEvery completions or kFlushAfter
  // after the oldest unflushed one (see run()).
  EngineLoop(MultiplexerOptions options, Deliver deliver, Flush flush = {});

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
  void delivered();     // after deliver_: flush if due
  void flush_if_any();  // before waiting, and when the work ran out

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::pair<Job, Clock::time_point>> inbox_;  // guarded by mutex_
  std::optional<Uuid> running_;                            // guarded by mutex_
  bool stopping_ = false;                                  // guarded by mutex_
  Multiplexer mux_;  // engine thread only
  Deliver deliver_;
  Flush flush_;
  std::size_t unflushed_ = 0;        // engine thread only
  Clock::time_point oldest_unflushed_;  // engine thread only
};

}  // namespace vtpm::engine
