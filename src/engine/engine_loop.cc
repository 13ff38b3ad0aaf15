#include "src/engine/engine_loop.h"

namespace vtpm::engine {

EngineLoop::EngineLoop(MultiplexerOptions options, Deliver deliver)
    : mux_(LibtpmsAdapter::instance(), options), deliver_(std::move(deliver)) {}

void EngineLoop::submit(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (job.kind == JobKind::kCancel && running_ == job.instance) {
      // libtpms honours this only inside long operations (key generation);
      // short commands simply finish first.
      LibtpmsAdapter::cancel();
    }
    inbox_.emplace_back(std::move(job), Clock::now());
  }
  // Notified after unlocking: a woken engine thread that preempts the
  // submitter on the same CPU must not find the mutex still held.
  wake_.notify_one();
}

void EngineLoop::stop() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  wake_.notify_one();
}

void EngineLoop::handle_cancel(Job job) {
  for (auto& cancelled : mux_.cancel_queued(job.instance)) deliver_(std::move(cancelled));
  Completion done;
  done.id = job.id;
  done.instance = job.instance;
  done.kind = JobKind::kCancel;
  done.ok = true;
  deliver_(std::move(done));
}

void EngineLoop::drain_inbox() {
  std::vector<std::pair<Job, Clock::time_point>> batch;
  {
    std::lock_guard lock(mutex_);
    batch.swap(inbox_);
  }
  for (auto& [job, received] : batch) {
    if (job.kind == JobKind::kCancel) {
      handle_cancel(std::move(job));
    } else {
      mux_.enqueue(std::move(job), received);
    }
  }
}

void EngineLoop::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || mux_.has_work(); });
      if (stopping_) return;
    }
    drain_inbox();
    if (!mux_.has_work()) continue;
    if (auto hold = mux_.hold_until()) {
      // Give the lingering TPM 1.2 guest a moment to send its next command
      // before paying a ~200 ms swap; any new job ends the wait early.
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, *hold, [&] { return stopping_ || !inbox_.empty(); });
      continue;
    }
    // Which instance runs next is decided by the multiplexer; record it so
    // that a concurrent cancel can reach the running command.
    Completion done = mux_.run_next([&](const Uuid& id) {
      std::lock_guard lock(mutex_);
      running_ = id;
    });
    {
      std::lock_guard lock(mutex_);
      running_.reset();
    }
    deliver_(std::move(done));
  }
}

}  // namespace vtpm::engine
