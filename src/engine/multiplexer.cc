#include "src/engine/multiplexer.h"

#include <algorithm>

#include "proto/tpm_packet.h"
#include "src/engine/libtpms_selftest_key.h"

namespace vtpm::engine {
namespace {

std::uint64_t micros_since(Clock::time_point start) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

Completion fail(Completion done, ErrorCode code, std::string message) {
  done.ok = false;
  done.error = code;
  done.message = std::move(message);
  return done;
}

}  // namespace

Multiplexer::Multiplexer(LibtpmsAdapter& tpm, MultiplexerOptions options) : tpm_(tpm), options_(options) {
  selftest_key_cache_enable(options_.tpm12_selftest_key_cache);
}

void Multiplexer::enqueue(Job job, Clock::time_point received) {
  const Uuid id = job.instance;
  Hosted& hosted = hosted_[id];
  if (hosted.queue.empty()) ready_.push_back(id);
  hosted.queue.push_back(Pending{std::move(job), received});
}

std::vector<Completion> Multiplexer::cancel_queued(const Uuid& instance) {
  std::vector<Completion> cancelled;
  auto it = hosted_.find(instance);
  if (it == hosted_.end()) return cancelled;
  for (auto& pending : it->second.queue) {
    Completion c;
    c.id = pending.job.id;
    c.instance = instance;
    c.kind = pending.job.kind;
    cancelled.push_back(fail(std::move(c), ErrorCode::kCancelled, "cancelled while queued"));
  }
  it->second.queue.clear();
  ready_.erase(std::remove(ready_.begin(), ready_.end(), instance), ready_.end());
  if (!it->second.attached) hosted_.erase(it);
  return cancelled;
}

Uuid Multiplexer::pick_next() {
  // A loaded TPM 1.2 instance with work keeps the engine for its slice:
  // switching away would cost the next 1.2 instance ~200 ms of self-test.
  if (loaded_ && options_.tpm12_slice.count() > 0) {
    auto it = hosted_.find(*loaded_);
    if (it != hosted_.end() && it->second.params.version == TpmVersion::k12 && !it->second.queue.empty() &&
        Clock::now() - slice_start_ < options_.tpm12_slice) {
      auto pos = std::find(ready_.begin(), ready_.end(), *loaded_);
      ready_.erase(pos);
      return *loaded_;
    }
  }
  Uuid id = ready_.front();
  ready_.pop_front();
  return id;
}

std::optional<Clock::time_point> Multiplexer::hold_until() const {
  if (!loaded_ || options_.tpm12_slice.count() == 0 || options_.tpm12_linger.count() == 0) return std::nullopt;
  auto it = hosted_.find(*loaded_);
  if (it == hosted_.end() || it->second.params.version != TpmVersion::k12 || !it->second.queue.empty()) {
    return std::nullopt;
  }
  const auto until = std::min(last_finish_ + options_.tpm12_linger, slice_start_ + options_.tpm12_slice);
  if (Clock::now() >= until) return std::nullopt;
  return until;
}

Completion Multiplexer::run_next(const OnStart& on_start) {
  const Uuid id = pick_next();
  Hosted& hosted = hosted_.at(id);
  if (on_start) on_start(id, hosted.queue.front().job, hosted.params.version);
  Pending pending = std::move(hosted.queue.front());
  hosted.queue.pop_front();
  // Back of the ring if it has more work: one job per turn.
  if (!hosted.queue.empty()) ready_.push_back(id);
  Completion done = run_job(id, hosted, std::move(pending));
  last_finish_ = Clock::now();
  // Detached instances are forgotten once their queue drains.
  auto it = hosted_.find(id);
  if (it != hosted_.end() && !it->second.attached && it->second.queue.empty()) hosted_.erase(it);
  return done;
}

Completion Multiplexer::run_job(const Uuid& id, Hosted& hosted, Pending pending) {
  Completion done;
  done.id = pending.job.id;
  done.instance = id;
  done.kind = pending.job.kind;
  done.timing.queued_us = micros_since(pending.received);
  Job& job = pending.job;
  if (job.kind == JobKind::kAttach) return attach(id, hosted, job, std::move(done));
  if (!hosted.attached) return fail(std::move(done), ErrorCode::kNotFound, "instance is not hosted by this engine");
  if (hosted.failed && job.kind != JobKind::kDetach && job.kind != JobKind::kPowerOn) {
    return fail(std::move(done), ErrorCode::kCorrupt, "instance state failed to load; instance is quarantined");
  }
  switch (job.kind) {
    case JobKind::kExecute: return execute(id, hosted, job, std::move(done));
    case JobKind::kPowerOn: return power_on(id, hosted, job.params.auto_startup, std::move(done));
    case JobKind::kDetach: return detach(id, hosted, std::move(done));
    case JobKind::kSnapshot: return snapshot(id, hosted, std::move(done));
    case JobKind::kHashStart:
    case JobKind::kHashData:
    case JobKind::kHashEnd:
    case JobKind::kEstablishedGet:
    case JobKind::kEstablishedReset: return platform(id, hosted, job, std::move(done));
    default: return fail(std::move(done), ErrorCode::kInternal, "job kind not runnable");
  }
}

Multiplexer::~Multiplexer() {
  if (loaded_) tpm_.discard();
}

void Multiplexer::unload_current() {
  if (!loaded_) return;
  // A failed capture leaves the previous volatile blob: the instance then
  // resumes from its last swap, which is what a power loss would look like.
  (void)tpm_.unload();
  loaded_.reset();
}

Status Multiplexer::ensure_loaded(const Uuid& id, Hosted& hosted, Completion& done) {
  if (loaded_ == id) return Status::success();
  const auto start = Clock::now();
  unload_current();
  // Without volatile state the TPM comes up as after _TPM_Init (power-on,
  // or a restore after a crash): that is when auto-startup applies.
  const bool cold = hosted.blobs.volatile_state.empty();
  Status status = tpm_.load(hosted.params, &hosted.blobs);
  done.timing.load_us += micros_since(start);
  done.swapped = true;
  if (!status) {
    hosted.failed = true;
    return make_error(ErrorCode::kCorrupt, "state could not be loaded: " + status.error().message);
  }
  hosted.failed = false;
  loaded_ = id;
  slice_start_ = Clock::now();
  if (cold) return run_auto_startup(hosted);
  return Status::success();
}

void Multiplexer::collect_nv_changes(Hosted& hosted, Completion& done) {
  if (tpm_.take_permanent_changed()) done.permanent = hosted.blobs.permanent;
  if (tpm_.take_save_state_changed()) done.save_state = hosted.blobs.save_state;
}

Status Multiplexer::run_auto_startup(Hosted& hosted) {
  if (!hosted.params.auto_startup) return Status::success();
  Bytes startup = tpm::startup_clear_command(hosted.params.version);
  auto response = tpm_.process(startup, 0);
  if (!response) return response.error();
  const std::uint32_t rc = tpm::response_code(*response);
  if (rc != 0) {
    return make_error(ErrorCode::kTpmFailure, "automatic Startup(CLEAR) returned TPM error " + std::to_string(rc));
  }
  return Status::success();
}

Completion Multiplexer::attach(const Uuid& id, Hosted& hosted, Job& job, Completion done) {
  if (hosted.attached) return fail(std::move(done), ErrorCode::kAlreadyExists, "instance already hosted");
  hosted.attached = true;
  hosted.failed = false;
  hosted.params = job.params;
  hosted.blobs = std::move(job.blobs);
  if (!hosted.blobs.permanent.empty()) {  // restored lazily, on first use
    done.ok = true;
    return done;
  }
  // Manufacture now, so that the permanent state exists and can be saved.
  const auto start = Clock::now();
  unload_current();
  Status status = tpm_.load(hosted.params, &hosted.blobs);
  done.timing.load_us = micros_since(start);
  if (!status) {
    hosted.attached = false;
    return fail(std::move(done), status.error().code, status.error().message);
  }
  loaded_ = id;
  slice_start_ = Clock::now();
  Status startup = run_auto_startup(hosted);
  tpm_.take_permanent_changed();
  done.permanent = hosted.blobs.permanent;
  if (!startup) return fail(std::move(done), startup.error().code, startup.error().message);
  done.ok = true;
  return done;
}

Completion Multiplexer::execute(const Uuid& id, Hosted& hosted, Job& job, Completion done) {
  if (Status s = ensure_loaded(id, hosted, done); !s) return fail(std::move(done), s.error().code, s.error().message);
  const auto start = Clock::now();
  auto response = tpm_.process(job.command, job.locality);
  done.timing.run_us = micros_since(start);
  collect_nv_changes(hosted, done);
  if (!response) return fail(std::move(done), response.error().code, response.error().message);
  done.response = std::move(*response);
  done.ok = true;
  return done;
}

Completion Multiplexer::power_on(const Uuid& id, Hosted& hosted, bool allow_auto_startup, Completion done) {
  // _TPM_Init: whatever was volatile (PCRs, sessions, loaded objects) is
  // gone; the TPM restarts from its NV and needs Startup again (Startup
  // STATE resumes if the guest saved state with Shutdown(STATE) first).
  if (loaded_ == id) {
    tpm_.discard();
    loaded_.reset();
  }
  hosted.blobs.volatile_state.clear();
  const bool configured = hosted.params.auto_startup;
  hosted.params.auto_startup = configured && allow_auto_startup;
  Status loaded = ensure_loaded(id, hosted, done);  // cold: runs auto-startup if allowed
  hosted.params.auto_startup = configured;
  collect_nv_changes(hosted, done);
  if (!loaded) return fail(std::move(done), loaded.error().code, loaded.error().message);
  done.ok = true;
  return done;
}

Completion Multiplexer::detach(const Uuid& id, Hosted& hosted, Completion done) {
  if (loaded_ == id) unload_current();
  done.permanent = std::move(hosted.blobs.permanent);
  done.volatile_state = std::move(hosted.blobs.volatile_state);
  done.save_state = std::move(hosted.blobs.save_state);
  hosted.blobs = {};
  hosted.attached = false;
  done.ok = true;
  return done;
}

Completion Multiplexer::snapshot(const Uuid& id, Hosted& hosted, Completion done) {
  if (loaded_ == id) {
    if (Status s = tpm_.capture_volatile(); !s) return fail(std::move(done), s.error().code, s.error().message);
  }
  done.permanent = hosted.blobs.permanent;
  done.volatile_state = hosted.blobs.volatile_state;
  done.save_state = hosted.blobs.save_state;
  done.ok = true;
  return done;
}

Completion Multiplexer::platform(const Uuid& id, Hosted& hosted, Job& job, Completion done) {
  if (Status s = ensure_loaded(id, hosted, done); !s) return fail(std::move(done), s.error().code, s.error().message);
  bool established = false;
  const std::uint32_t rc = tpm_.platform(job.kind, job.command, job.locality, &established);
  collect_nv_changes(hosted, done);  // Hash_End extends PCRs and sets the bit
  tpm::append_u32(done.response, rc);
  if (job.kind == JobKind::kEstablishedGet) done.response.push_back(established ? 1 : 0);
  done.ok = true;
  return done;
}

}  // namespace vtpm::engine
