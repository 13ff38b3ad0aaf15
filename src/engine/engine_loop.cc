#include "src/engine/engine_loop.h"

#include "proto/command_class.h"

namespace vtpm::engine {

namespace {

// A consumer on the same CPU as the engine (the reactor, with one core)
// that is woken for every completion preempts the engine each time; while
// the engine has more queued work, completions are collected and handed
// over together, within these bounds on how long an answer may wait.
constexpr std::size_t kFlushEvery = 16;
constexpr auto kFlushAfter = std::chrono::microseconds(200);

// Commands that take microseconds; before anything else (key generation,
// a manufacture, a state export) collected answers are handed over first.
bool is_quick(const Job& job, TpmVersion version) {
  if (job.kind != JobKind::kExecute) return false;
  switch (tpm::classify_command(job.command, version)) {
    case tpm::CommandClass::kPcr:
    case tpm::CommandClass::kRandom:
    case tpm::CommandClass::kHash:
    case tpm::CommandClass::kNvRead:
    case tpm::CommandClass::kNvWrite:
    case tpm::CommandClass::kCapability:
    case tpm::CommandClass::kContext:
      return true;
    default:
      return false;
  }
}

}  // namespace

EngineLoop::EngineLoop(MultiplexerOptions options, Deliver deliver, Flush flush)
    : mux_(LibtpmsAdapter::instance(), options), deliver_(std::move(deliver)), flush_(std::move(flush)) {}

void EngineLoop::delivered() {
  if (!flush_) return;
  if (unflushed_++ == 0) oldest_unflushed_ = Clock::now();
  bool more = mux_.has_work();
  if (!more) {
    std::lock_guard lock(mutex_);
    more = !inbox_.empty();
  }
  if (!more || unflushed_ >= kFlushEvery || Clock::now() - oldest_unflushed_ >= kFlushAfter) flush_if_any();
}

void EngineLoop::flush_if_any() {
  if (!flush_ || unflushed_ == 0) return;
  unflushed_ = 0;
  flush_();
}

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
  for (auto& cancelled : mux_.cancel_queued(job.instance)) {
    deliver_(std::move(cancelled));
    delivered();
  }
  Completion done;
  done.id = job.id;
  done.instance = job.instance;
  done.kind = JobKind::kCancel;
  done.ok = true;
  deliver_(std::move(done));
  delivered();
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
      if (!stopping_ && inbox_.empty() && !mux_.has_work() && unflushed_ != 0) {
        lock.unlock();
        flush_if_any();  // about to sleep: nothing may wait behind us
        lock.lock();
      }
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || mux_.has_work(); });
      if (stopping_) {
        lock.unlock();
        flush_if_any();
        return;
      }
    }
    drain_inbox();
    if (!mux_.has_work()) continue;
    if (auto hold = mux_.hold_until()) {
      // Give the lingering TPM 1.2 guest a moment to send its next command
      // before paying a ~200 ms swap; any new job ends the wait early.
      flush_if_any();
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, *hold, [&] { return stopping_ || !inbox_.empty(); });
      continue;
    }
    // Which instance runs next is decided by the multiplexer; record it so
    // that a concurrent cancel can reach the running command.
    Completion done = mux_.run_next([&](const Uuid& id, const Job& job, TpmVersion version) {
      // Answers collected so far must not wait behind a long job.
      if (unflushed_ != 0 && !is_quick(job, version)) flush_if_any();
      std::lock_guard lock(mutex_);
      running_ = id;
    });
    {
      std::lock_guard lock(mutex_);
      running_.reset();
    }
    deliver_(std::move(done));
    delivered();
  }
}

}  // namespace vtpm::engine
