#include "src/engine/engine.h"

#include <algorithm>

namespace vtpm::engine {

Engine::Engine(uv_loop_t* loop, EngineOptions options, LostSink on_lost)
    : loop_(loop), options_(std::move(options)), on_lost_(std::move(on_lost)), window_start_ms_(uv_now(loop)) {
  ShardSlot primary;
  primary.shard = std::make_unique<ThreadShard>(loop_, options_.multiplexer,
                                                [this](Completion&& done) { on_completion(std::move(done)); });
  primary.stats.name = primary.shard->name();
  shards_.push_back(std::move(primary));
}

Engine::~Engine() = default;

Shard* Engine::route(const Uuid& id) const {
  auto it = routes_.find(id);
  return it == routes_.end() ? nullptr : it->second;
}

Engine::ShardSlot* Engine::slot_of(const Shard* shard) {
  for (auto& slot : shards_) {
    if (slot.shard.get() == shard) return &slot;
  }
  return nullptr;
}

Shard* Engine::spawn_worker() {
  const std::string name = "engine-worker-" + std::to_string(next_worker_number_++);
  auto worker = std::make_unique<ProcessShard>(
      loop_, name, [this](Completion&& done) { on_completion(std::move(done)); },
      [this](ProcessShard& w, const std::string& why) { on_worker_exit(w, why); });
  if (!worker->start(options_.worker_path, options_.multiplexer, options_.worker_core_dumps)) return nullptr;
  ShardSlot slot;
  slot.stats.name = name;
  slot.stats.pid = worker->pid();
  slot.shard = std::move(worker);
  shards_.push_back(std::move(slot));
  return shards_.back().shard.get();
}

Shard& Engine::place(const Uuid& id, TpmVersion version) {
  Shard* chosen = shards_.front().shard.get();
  if (version == TpmVersion::k12 && options_.tpm12_workers_max > 0) {
    ShardSlot* least = nullptr;
    std::size_t workers = 0;
    for (auto& slot : shards_) {
      if (slot.shard.get() == shards_.front().shard.get() || slot.dead) continue;
      ++workers;
      if (least == nullptr || slot.stats.instances < least->stats.instances) least = &slot;
    }
    if (least != nullptr && least->stats.instances == 0) {
      chosen = least->shard.get();
    } else if (workers < options_.tpm12_workers_max) {
      if (Shard* fresh = spawn_worker()) chosen = fresh;
      else if (least != nullptr) chosen = least->shard.get();
    } else if (least != nullptr) {
      chosen = least->shard.get();
    }
  }
  routes_[id] = chosen;
  slot_of(chosen)->stats.instances++;
  return *chosen;
}

void Engine::reply_error(Job job, ErrorCode code, std::string message, Callback& done) {
  Completion c;
  c.id = job.id;
  c.instance = job.instance;
  c.kind = job.kind;
  c.error = code;
  c.message = std::move(message);
  done(std::move(c));
}

void Engine::submit(Shard& shard, Job job, Callback done) {
  job.id = next_job_++;
  callbacks_[job.id] = PendingJob{std::move(done), job.instance, &shard};
  outstanding_[job.instance]++;
  if (ShardSlot* slot = slot_of(&shard)) slot->stats.outstanding++;
  shard.submit(std::move(job));
}

void Engine::attach(const Uuid& id, const InstanceParams& params, StateBlobs blobs, Callback done) {
  Job job;
  job.instance = id;
  job.kind = JobKind::kAttach;
  job.params = params;
  job.blobs = std::move(blobs);
  if (route(id) != nullptr) return reply_error(std::move(job), ErrorCode::kAlreadyExists, "already placed", done);
  params_[id] = params;
  Shard& shard = place(id, params.version);
  submit(shard, std::move(job), std::move(done));
}

void Engine::route_job(const Uuid& id, JobKind kind, Callback done, Bytes command, std::uint8_t locality,
                       bool auto_startup) {
  Job job;
  job.instance = id;
  job.kind = kind;
  job.params.auto_startup = auto_startup;
  job.command = std::move(command);
  job.locality = locality;
  if (auto moving = moving_.find(id); moving != moving_.end()) {
    if (kind != JobKind::kCancel) {
      moving->second.push_back(HeldJob{std::move(job), std::move(done)});
      return;
    }
    // A cancel does not wait for the move: held behind the move's snapshot,
    // which queues behind every command it should cancel, it would cancel
    // nothing. Commands held for the move never start; the cancel goes on
    // to the shard being left, where it cancels the queued commands and the
    // snapshot too (the instance then stays; finish_isolation).
    std::vector<HeldJob> cancelled;
    auto& held = moving->second;
    for (auto it = held.begin(); it != held.end();) {
      if (it->job.kind == JobKind::kExecute) {
        cancelled.push_back(std::move(*it));
        it = held.erase(it);
      } else {
        ++it;
      }
    }
    // Answered only now: an answer may queue new work for this instance.
    for (auto& c : cancelled) reply_error(std::move(c.job), ErrorCode::kCancelled, "cancelled while queued", c.done);
  }
  Shard* shard = route(id);
  if (shard == nullptr) {
    const ErrorCode code = kind == JobKind::kExecute || kind == JobKind::kPowerOn || kind == JobKind::kSnapshot
                               ? ErrorCode::kUnavailable
                               : ErrorCode::kNotFound;
    return reply_error(std::move(job), code, "instance has no engine", done);
  }
  if (kind == JobKind::kDetach) {
    routes_.erase(id);
    params_.erase(id);
    busy_us_.erase(id);
    isolated_.erase(id);
    slot_of(shard)->stats.instances--;
  }
  submit(*shard, std::move(job), std::move(done));
}

void Engine::execute(const Uuid& id, Bytes command, std::uint8_t locality, Callback done) {
  route_job(id, JobKind::kExecute, std::move(done), std::move(command), locality);
}

void Engine::power_on(const Uuid& id, Callback done, bool auto_startup) {
  route_job(id, JobKind::kPowerOn, std::move(done), {}, 0, auto_startup);
}

void Engine::snapshot(const Uuid& id, Callback done) { route_job(id, JobKind::kSnapshot, std::move(done)); }

void Engine::detach(const Uuid& id, Callback done) { route_job(id, JobKind::kDetach, std::move(done)); }

void Engine::cancel(const Uuid& id, Callback done) { route_job(id, JobKind::kCancel, std::move(done)); }

void Engine::platform(const Uuid& id, JobKind kind, Bytes data, std::uint8_t locality, Callback done) {
  route_job(id, kind, std::move(done), std::move(data), locality);
}

void Engine::on_completion(Completion&& done) {
  auto it = callbacks_.find(done.id);
  if (it == callbacks_.end()) return;  // a worker answered a job already failed
  PendingJob pending = std::move(it->second);
  callbacks_.erase(it);
  if (pending.shard == shards_.front().shard.get() && done.kind == JobKind::kExecute) {
    account_engine_time(pending.instance, done);
  }
  if (auto o = outstanding_.find(pending.instance); o != outstanding_.end() && --o->second == 0) outstanding_.erase(o);
  if (ShardSlot* slot = slot_of(pending.shard)) {
    slot->stats.outstanding--;
    slot->stats.jobs++;
    if (done.swapped) {
      slot->stats.swaps++;
      slot->stats.swap_us_total += done.timing.load_us;
    }
  }
  pending.callback(std::move(done));
}

void Engine::on_worker_exit(ProcessShard& worker, const std::string& why) {
  // Fail every job still waiting on this worker, then forget the instances
  // it hosted: the daemon restores them from their saved state.
  std::vector<JobId> failed;
  for (const auto& [id, pending] : callbacks_) {
    if (pending.shard == &worker) failed.push_back(id);
  }
  for (JobId id : failed) {
    Completion c;
    c.id = id;
    c.instance = callbacks_[id].instance;
    c.error = ErrorCode::kUnavailable;
    c.message = worker.name() + " " + why;
    on_completion(std::move(c));
  }
  std::vector<Uuid> lost;
  for (auto it = routes_.begin(); it != routes_.end();) {
    if (it->second == &worker) {
      lost.push_back(it->first);
      isolated_.erase(it->first);
      it = routes_.erase(it);
    } else {
      ++it;
    }
  }
  // The slot stays until the loop is idle: we are inside the worker's own
  // callback, so it cannot be destroyed here.
  if (ShardSlot* slot = slot_of(&worker)) {
    slot->stats.instances = 0;
    slot->dead = true;
  }
  for (const Uuid& id : lost) on_lost_(id, worker.name() + " " + why);
}

std::size_t Engine::outstanding(const Uuid& id) const {
  auto it = outstanding_.find(id);
  std::size_t n = it == outstanding_.end() ? 0 : it->second;
  if (auto moving = moving_.find(id); moving != moving_.end()) n += moving->second.size();
  return n;
}

void Engine::account_engine_time(const Uuid& id, const Completion& done) {
  if (options_.isolate_busy_ms == 0) return;
  busy_us_[id] += done.timing.run_us + done.timing.load_us;
  const std::uint64_t now = uv_now(loop_);
  if (now - window_start_ms_ < 1000) return;
  // One-second windows: whoever used more than the threshold moves out.
  const std::uint64_t limit_us = std::uint64_t{options_.isolate_busy_ms} * 1000 * (now - window_start_ms_) / 1000;
  std::vector<Uuid> busy;
  for (const auto& [instance, us] : busy_us_) {
    if (us > limit_us) busy.push_back(instance);
  }
  busy_us_.clear();
  window_start_ms_ = now;
  for (const Uuid& instance : busy) isolate(instance);
}

void Engine::isolate(const Uuid& id) {
  Shard* from = route(id);
  auto params = params_.find(id);
  if (from != shards_.front().shard.get() || params == params_.end() || params->second.version != TpmVersion::k20 ||
      moving_.contains(id) || isolated_.size() >= options_.isolated_workers_max) {
    return;
  }
  // From here on new jobs wait; the snapshot queues behind the ones already
  // on the engine thread, so it sees the state after all of them.
  moving_[id];
  Job snapshot;
  snapshot.instance = id;
  snapshot.kind = JobKind::kSnapshot;
  submit(*from, std::move(snapshot), [this, id, from](Completion&& snap) {
    if (!snap.ok) return finish_isolation(id);  // stay; release the held jobs
    Shard* to = worker_for_isolation();
    if (to == nullptr) return finish_isolation(id);
    isolated_[id] = to;
    Job detach;
    detach.instance = id;
    detach.kind = JobKind::kDetach;
    submit(*from, std::move(detach), [](Completion&&) {});
    slot_of(from)->stats.instances--;
    Job attach;
    attach.instance = id;
    attach.kind = JobKind::kAttach;
    attach.params = params_[id];
    attach.blobs.permanent = snap.permanent.value_or(Bytes{});
    attach.blobs.volatile_state = snap.volatile_state.value_or(Bytes{});
    attach.blobs.save_state = snap.save_state.value_or(Bytes{});
    routes_[id] = to;
    slot_of(to)->stats.instances++;
    submit(*to, std::move(attach), [this, id, to](Completion&& attached) {
      if (attached.ok) return;
      // The worker could not host it: as after a worker death, the daemon
      // restarts the instance from its saved state.
      if (route(id) == to) {
        routes_.erase(id);
        isolated_.erase(id);
        slot_of(to)->stats.instances--;
        on_lost_(id, "isolation into " + to->name() + " failed: " + attached.message);
      }
    });
    ++isolations_;
    finish_isolation(id);
  });
}

Shard* Engine::worker_for_isolation() {
  // An idle live worker (its instances removed) is reused before spawning.
  for (auto& slot : shards_) {
    if (slot.shard.get() != shards_.front().shard.get() && !slot.dead && slot.stats.instances == 0) {
      return slot.shard.get();
    }
  }
  return spawn_worker();
}

void Engine::finish_isolation(const Uuid& id) {
  auto held = std::move(moving_[id]);
  moving_.erase(id);
  // In arrival order, through the normal path (now routed to the new shard).
  for (auto& h : held) {
    route_job(id, h.job.kind, std::move(h.done), std::move(h.job.command), h.job.locality, h.job.params.auto_startup);
  }
}

std::string Engine::placement(const Uuid& id) const {
  Shard* shard = route(id);
  return shard == nullptr ? std::string() : shard->name();
}

std::vector<ShardStats> Engine::stats() const {
  std::vector<ShardStats> out;
  for (const auto& slot : shards_) {
    if (slot.dead) continue;
    out.push_back(slot.stats);
  }
  return out;
}

}  // namespace vtpm::engine
