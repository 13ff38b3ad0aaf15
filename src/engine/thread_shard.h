// The daemon's own engine thread. Only one may exist per process: libtpms is
// process-global.
#pragma once

#include <uv.h>

#include <mutex>
#include <thread>
#include <vector>

#include "src/core/uv_handle.h"
#include "src/engine/engine_loop.h"
#include "src/engine/event_fd.h"
#include "src/engine/shard.h"

namespace vtpm::engine {

class ThreadShard final : public Shard {
 public:
  ThreadShard(uv_loop_t* loop, MultiplexerOptions options, CompletionSink sink);
  ~ThreadShard() override;  // stops the thread after its current job

  void submit(Job job) override { engine_.submit(std::move(job)); }
  const std::string& name() const override { return name_; }

 private:
  void deliver(Completion&& done);  // engine thread
  void drain();                     // loop thread

  std::string name_ = "engine-thread";
  CompletionSink sink_;
  EventFd ready_;                // closed after wakeup_ (members die in reverse order)
  UvHandle<uv_poll_t> wakeup_;
  std::mutex outbox_mutex_;
  std::vector<Completion> outbox_;  // guarded by outbox_mutex_
  EngineLoop engine_;
  std::thread thread_;
};

}  // namespace vtpm::engine
