#include "src/engine/thread_shard.h"

namespace vtpm::engine {

ThreadShard::ThreadShard(uv_loop_t* loop, MultiplexerOptions options, CompletionSink sink)
    : sink_(std::move(sink)), engine_(options, [this](Completion&& done) { deliver(std::move(done)); }) {
  uv_async_init(loop, wakeup_.get(), [](uv_async_t* h) { static_cast<ThreadShard*>(h->data)->drain(); });
  wakeup_.mark_live();
  wakeup_.get()->data = this;
  thread_ = std::thread([this] { engine_.run(); });
}

ThreadShard::~ThreadShard() {
  engine_.stop();
  if (thread_.joinable()) thread_.join();
}

void ThreadShard::deliver(Completion&& done) {
  {
    std::lock_guard lock(outbox_mutex_);
    outbox_.push_back(std::move(done));
  }
  // uv_async_send coalesces: one wakeup may carry many completions, so
  // drain() always empties the whole outbox.
  uv_async_send(wakeup_.get());
}

void ThreadShard::drain() {
  std::vector<Completion> batch;
  {
    std::lock_guard lock(outbox_mutex_);
    batch.swap(outbox_);
  }
  for (auto& done : batch) sink_(std::move(done));
}

}  // namespace vtpm::engine
