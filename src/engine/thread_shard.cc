#include "src/engine/thread_shard.h"

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace vtpm::engine {

ThreadShard::ThreadShard(uv_loop_t* loop, MultiplexerOptions options, CompletionSink sink)
    : sink_(std::move(sink)),
      engine_(
          options, [this](Completion&& done) { deliver(std::move(done)); },
          [this] { ready_.signal(); }) {
  if (!ready_.valid()) throw std::system_error(errno, std::generic_category(), "eventfd for the engine thread");
  if (const int rc = uv_poll_init(loop, wakeup_.get(), ready_.fd()); rc != 0) {
    throw std::runtime_error(std::string("polling the engine thread's eventfd: ") + uv_strerror(rc));
  }
  wakeup_.mark_live();
  wakeup_.get()->data = this;
  uv_poll_start(wakeup_.get(), UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* self = static_cast<ThreadShard*>(h->data);
    self->ready_.consume();
    self->drain();
  });
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
  // The engine loop signals (ready_) once per batch; the loop's drain()
  // always empties the whole outbox.
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
