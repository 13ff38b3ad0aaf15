#include "src/core/service.h"

#include <algorithm>

#include <chrono>
#include <memory>

#include "proto/command_class.h"
#include "proto/tpm_packet.h"
#include "state/sealed_blob.h"

namespace vtpm {
namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error from_completion(const engine::Completion& done) { return make_error(done.error, done.message); }

std::uint64_t micros_since(std::chrono::steady_clock::time_point start) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace

Service::Service(uv_loop_t* loop, const Logger& log, engine::Engine& engine, Persister& persister,
                 Registry& registry, std::uint32_t default_max_command_size, DefaultLimits default_limits)
    : log_(log),
      engine_(engine),
      persister_(persister),
      registry_(registry),
      default_max_command_size_(default_max_command_size),
      default_limits_(default_limits) {
  uv_timer_init(loop, throttle_timer_.get());
  throttle_timer_.mark_live();
  throttle_timer_.get()->data = this;
}

Service::~Service() {
  // Commands still waiting for their rate are answered, not dropped.
  auto waiting = std::move(throttled_);
  for (auto& [id, queue] : waiting) {
    for (auto& w : queue) w.done(make_error(ErrorCode::kUnavailable, "daemon is shutting down"));
  }
}

InstanceLimits Service::effective_limits(const Instance& instance) const {
  return {instance.limits.max_queued != 0 ? instance.limits.max_queued : default_limits_.max_queued,
          instance.limits.max_rate != 0 ? instance.limits.max_rate : default_limits_.max_rate,
          instance.limits.max_state_size != 0 ? instance.limits.max_state_size : default_limits_.max_state_size,
          instance.limits.max_connections != 0 ? instance.limits.max_connections : default_limits_.max_connections};
}

std::size_t Service::state_size(const Instance& instance) {
  return state::sealed_blob_size(instance.saved_record_size());
}

Status Service::refuse_oversized(const state::InstanceRecord& record, std::uint32_t max_state_size) const {
  const std::uint32_t limit = max_state_size != 0 ? max_state_size : default_limits_.max_state_size;
  const std::size_t size = state::sealed_blob_size(state::encoded_record_size(record));
  if (size <= limit) return Status::success();
  return make_error(ErrorCode::kTooLarge, "state of " + std::to_string(size) + " bytes exceeds the instance's limit of " +
                                              std::to_string(limit) + " bytes (max_state_size)");
}

Status Service::check_state_size(Instance& instance, const state::InstanceRecord& record) {
  Status s = refuse_oversized(record, instance.limits.max_state_size);
  if (s) return s;
  // libtpms already holds the change; it never reaches the disk. The
  // instance stops here, alone, until the operator raises its limit and
  // powers it on (which saves the state it has) or removes it.
  if (!instance.failed) {
    instance.failed = true;
    instance.failure = s.error().message + "; the change was not saved";
    log_.error(instance.uuid, "quarantined: " + instance.failure);
  }
  return make_error(ErrorCode::kTooLarge, "instance " + instance.uuid.to_string() + " quarantined: " + instance.failure);
}

Status Service::save_record(Instance& instance) {
  state::InstanceRecord record = instance.record(false);
  if (Status fits = check_state_size(instance, record); !fits) return fits;
  persister_.save(std::move(record));
  return Status::success();
}

std::size_t Service::throttled_total() const {
  std::size_t n = 0;
  for (const auto& [id, queue] : throttled_) n += queue.size();
  return n;
}

void Service::refused(Instance* instance, ErrorCode why) {
  metrics_.errors.count(why);
  if (instance != nullptr) ++instance->counters.errors;
}

std::size_t Service::throttled(const Uuid& id) const {
  auto it = throttled_.find(id);
  return it == throttled_.end() ? 0 : it->second.size();
}

void Service::set_limits(const Uuid& id, const LimitChanges& changes, InstanceCallback done) {
  auto found = registry_.get(id);
  if (!found) return done(found.error());
  Instance& i = **found;
  if (changes.max_queued) i.limits.max_queued = *changes.max_queued;
  if (changes.max_rate) i.limits.max_rate = *changes.max_rate;
  if (changes.max_state_size) i.limits.max_state_size = *changes.max_state_size;
  if (changes.max_connections) i.limits.max_connections = *changes.max_connections;
  const InstanceLimits now = effective_limits(i);
  log_.info(id, "limits: max_queued " + std::to_string(now.max_queued) + ", max_rate " + std::to_string(now.max_rate) +
                    "/s, max_state_size " + std::to_string(now.max_state_size) + " bytes, max_connections " +
                    std::to_string(now.max_connections));
  // Nothing to save for an instance without loadable state or on its way out.
  if (i.removing || i.failed) return done(static_cast<const Instance*>(&i));
  state::InstanceRecord record = i.record(false);
  if (Status fits = check_state_size(i, record); !fits) return done(fits.error());
  // Answered once durable, like every acknowledged change: a crash right
  // after the answer keeps the new limits.
  persister_.save(std::move(record), [this, id, done = std::move(done)](Status saved) {
    if (!saved) return done(make_error(ErrorCode::kIo, "the new limits could not be saved: " + saved.error().message));
    auto again = registry_.get(id);
    if (!again) return done(again.error());
    done(static_cast<const Instance*>(*again));
  });
}

bool Service::take_token(Instance& instance) {
  const std::uint32_t rate = effective_limits(instance).max_rate;
  if (rate == 0) return true;
  Throttle& t = instance.throttle;
  const std::uint64_t now = uv_now(throttle_timer_.get()->loop);
  if (t.refilled_ms == 0) t.tokens = rate;  // a fresh bucket starts full
  t.tokens = std::min<double>(rate, t.tokens + static_cast<double>(now - t.refilled_ms) * rate / 1000.0);
  t.refilled_ms = now;
  if (t.tokens < 1.0) return false;
  t.tokens -= 1.0;
  return true;
}

void Service::admit(Instance& instance, engine::Bytes command, std::uint8_t locality, ExecCallback done) {
  const Uuid id = instance.uuid;
  auto waiting = throttled_.find(id);
  // Order: nothing overtakes a command already waiting for its rate.
  if ((waiting == throttled_.end() || waiting->second.empty()) && take_token(instance)) {
    return dispatch(instance, std::move(command), locality, std::move(done));
  }
  ++instance.throttle.delayed;
  ++metrics_.throttled;
  throttled_[id].push_back(WaitingExec{std::move(command), locality, std::move(done)});
  if (!uv_is_active(throttle_timer_.base())) {
    uv_timer_start(
        throttle_timer_.get(), [](uv_timer_t* t) { static_cast<Service*>(t->data)->drain_throttled(); }, 5, 5);
  }
}

void Service::drain_throttled() {
  for (auto it = throttled_.begin(); it != throttled_.end();) {
    Instance* instance = registry_.find(it->first);
    auto& queue = it->second;
    while (!queue.empty()) {
      if (instance == nullptr || instance->removing || instance->failed || shutting_down_) {
        metrics_.errors.count(ErrorCode::kUnavailable);
        queue.front().done(make_error(ErrorCode::kUnavailable, "instance " + it->first.to_string() + " went away"));
        queue.pop_front();
        continue;
      }
      if (!take_token(*instance)) break;
      WaitingExec w = std::move(queue.front());
      queue.pop_front();
      dispatch(*instance, std::move(w.command), w.locality, std::move(w.done));
    }
    it = queue.empty() ? throttled_.erase(it) : std::next(it);
  }
  if (throttled_.empty()) uv_timer_stop(throttle_timer_.get());
}

Uuid Service::fresh_uuid() {
  for (;;) {
    Uuid::Bytes bytes{};
    for (std::size_t i = 0; i < bytes.size(); i += 4) {
      const std::uint32_t r = random_();
      for (std::size_t j = 0; j < 4; ++j) bytes[i + j] = static_cast<std::uint8_t>(r >> (8 * j));
    }
    Uuid id = Uuid::from_random(bytes);
    if (registry_.find(id) == nullptr) return id;
  }
}

Result<Instance*> Service::usable(const Uuid& id) {
  if (shutting_down_) return make_error(ErrorCode::kUnavailable, "daemon is shutting down");
  auto instance = registry_.get(id);
  if (!instance) return instance;
  Instance* i = *instance;
  if (i->removing) return make_error(ErrorCode::kNotFound, "instance " + id.to_string() + " is being removed");
  if (i->failed) return make_error(ErrorCode::kCorrupt, "instance " + id.to_string() + " has failed: " + i->failure);
  return i;
}

void Service::add(const AddOptions& options, InstanceCallback done) {
  if (shutting_down_) return done(make_error(ErrorCode::kUnavailable, "daemon is shutting down"));
  const Uuid id = options.uuid ? *options.uuid : fresh_uuid();
  Instance fresh;
  fresh.uuid = id;
  fresh.version = options.version;
  fresh.created_unix = now_unix_ms() / 1000;
  fresh.auto_startup = options.auto_startup;
  fresh.max_command_size = options.max_command_size.value_or(default_max_command_size_);
  fresh.limits = options.limits;
  fresh.provisioning = options.provisioning;
  fresh.channel_config = options.channel_config;
  // The registry entry exists from now on, so a second add of the same UUID
  // fails even while this one is still manufacturing.
  auto added = registry_.add(std::move(fresh));
  if (!added) return done(added.error());
  Instance& instance = **added;
  instance.removing = true;  // not usable until manufactured
  engine_.attach(id, instance.params(), {}, [this, id, while_saving = options.while_saving,
                                             done = std::move(done)](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance vanished during add"));
    if (!c.ok) {
      log_.error(id, "manufacture failed: " + c.message);
      registry_.erase(id);
      engine_.detach(id, [](engine::Completion&&) {});
      return done(from_completion(c));
    }
    if (c.permanent) i->saved.permanent = std::move(*c.permanent);
    const std::uint64_t manufacture_us = c.timing.load_us;
    state::InstanceRecord record = i->record(false);
    if (Status fits = refuse_oversized(record, i->limits.max_state_size); !fits) {
      log_.error(id, "add failed: a new TPM's " + fits.error().message);
      registry_.erase(id);
      engine_.detach(id, [](engine::Completion&&) {});
      return done(make_error(ErrorCode::kTooLarge, "a new TPM's " + fits.error().message));
    }
    // Answer only once the new TPM is on disk: an added instance survives a crash.
    persister_.save(std::move(record), [this, id, manufacture_us, done](Status saved) {
      Instance* again = registry_.find(id);
      if (again == nullptr) return done(make_error(ErrorCode::kNotFound, "instance vanished during add"));
      if (!saved) {
        log_.error(id, "add failed: " + saved.error().message);
        registry_.erase(id);
        engine_.detach(id, [](engine::Completion&&) {});
        return done(make_error(ErrorCode::kIo, "the new instance could not be saved: " + saved.error().message));
      }
      again->removing = false;
      log_.info(id, std::string("added TPM ") + tpm_version_name(again->version) + " instance on " +
                        engine_.placement(id) + " (manufactured in " + std::to_string(manufacture_us) + " us)");
      done(static_cast<const Instance*>(again));
    });
    if (while_saving) while_saving(id);
  });
}

void Service::remove(const Uuid& id, bool force, StatusCallback done) {
  auto found = usable(id);
  if (!found && found.error().code != ErrorCode::kCorrupt) return done(found.error());
  Instance& instance = *registry_.find(id);
  if (const std::size_t busy = engine_.outstanding(id) + throttled(id); busy > 0 && !force) {
    return done(make_error(ErrorCode::kBusy, "instance " + id.to_string() + " has " + std::to_string(busy) +
                                                 " command(s) in flight; use force to cancel them"));
  }
  instance.removing = true;
  if (force) engine_.cancel(id, [](engine::Completion&&) {});
  engine_.detach(id, [this, id, done = std::move(done)](engine::Completion&&) {
    persister_.remove(id, [this, id, done](Status s) {
      registry_.erase(id);
      if (s) log_.info(id, "removed");
      for (const auto& listener : removed_listeners_) listener(id);
      done(s);
    });
  });
}

bool Service::take_state_change(Instance& instance, const engine::Completion& done) {
  if (done.permanent) instance.saved.permanent = *done.permanent;
  if (done.save_state) instance.saved.save_state = *done.save_state;
  return done.permanent.has_value() || done.save_state.has_value();
}

void Service::note_completion(Instance& instance, const engine::Completion& done) {
  if (take_state_change(instance, done)) persist(instance);
}

void Service::exec(const Uuid& id, engine::Bytes command, std::uint8_t locality, ExecCallback done,
                   CommandOrigin origin) {
  auto found = usable(id);
  if (!found) {
    refused(nullptr, found.error().code);
    return done(found.error());
  }
  Instance& instance = **found;
  if (instance.power == PowerState::kOff) {
    refused(&instance, ErrorCode::kUnavailable);
    return done(make_error(ErrorCode::kUnavailable, "instance " + id.to_string() + " is powered off"));
  }
  if (locality > 4) {
    refused(&instance, ErrorCode::kInvalidArgument);
    return done(make_error(ErrorCode::kInvalidArgument, "locality must be 0..4"));
  }
  if (auto valid = tpm::validate_command(command, instance.version, instance.max_command_size); !valid) {
    refused(&instance, valid.error().code);
    return done(valid.error());
  }
  const InstanceLimits limits = effective_limits(instance);
  if (const std::size_t queued = engine_.outstanding(id) + throttled(id); queued >= limits.max_queued) {
    refused(&instance, ErrorCode::kBusy);
    return done(make_error(ErrorCode::kBusy, "instance " + id.to_string() + " has " + std::to_string(queued) +
                                                 " commands queued (its limit is " + std::to_string(limits.max_queued) +
                                                 "); retry later"));
  }
  instance.counters.bytes_in += command.size();
  if (origin == CommandOrigin::kClient) instance.guest_started = true;
  admit(instance, std::move(command), locality, std::move(done));
}

void Service::dispatch(Instance& instance, engine::Bytes command, std::uint8_t locality, ExecCallback done) {
  const Uuid id = instance.uuid;
  const auto start = std::chrono::steady_clock::now();
  const tpm::CommandClass kind = tpm::classify_command(command, instance.version);
  engine_.execute(id, std::move(command), locality, [this, id, start, kind, done = std::move(done)](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) {
      metrics_.errors.count(ErrorCode::kNotFound);
      return done(make_error(ErrorCode::kNotFound, "instance removed while the command ran"));
    }
    const bool changed_state = take_state_change(*i, c);
    i->counters.commands++;
    i->counters.last_command_unix_ms = now_unix_ms();
    if (c.swapped) i->counters.swaps++;
    i->counters.engine_us += c.timing.queued_us + c.timing.load_us + c.timing.run_us;
    if (!c.ok) {
      i->counters.errors++;
      metrics_.errors.count(c.error);
      metrics_.of(kind).observe(micros_since(start));
      if (c.error == ErrorCode::kCorrupt && !i->failed) {
        i->failed = true;
        i->failure = c.message;
        log_.error(id, "quarantined: " + c.message);
      } else if (c.error == ErrorCode::kTpmFailure) {
        log_.error(id, "command failed: " + c.message);
      }
      if (changed_state) persist(*i);
      return done(from_completion(c));
    }
    ExecResult result;
    result.rc = tpm::response_code(c.response);
    if (result.rc != 0) {
      i->counters.errors++;
      metrics_.errors.tpm_rc++;
    }
    i->counters.bytes_out += c.response.size();
    result.response = std::move(c.response);
    result.timing = c.timing;
    if (!changed_state) {
      result.total_us = micros_since(start);
      metrics_.of(kind).observe(result.total_us);
      return done(std::move(result));
    }
    // The durability rule: a response that follows a change of persistent
    // state (NV, hierarchy, persistent keys, counters...) is released only
    // once that state is on disk, so an acknowledged write survives a crash.
    state::InstanceRecord record = i->record(false);
    if (Status fits = check_state_size(*i, record); !fits) {
      i->counters.errors++;
      metrics_.errors.count(ErrorCode::kTooLarge);
      return done(make_error(ErrorCode::kTooLarge, "the command ran but its state was not saved: " + fits.error().message));
    }
    persister_.save(std::move(record), [this, id, start, kind, result = std::move(result), done](Status saved) mutable {
      result.total_us = micros_since(start);
      metrics_.of(kind).observe(result.total_us);
      if (!saved) {
        metrics_.errors.count(ErrorCode::kIo);
        if (Instance* again = registry_.find(id); again != nullptr && !again->failed) {
          again->failed = true;
          again->failure = "state could not be saved: " + saved.error().message;
          log_.error(id, "quarantined: " + again->failure);
        }
        return done(make_error(ErrorCode::kIo, "the command ran but its state could not be saved: " +
                                                   saved.error().message));
      }
      done(std::move(result));
    });
  });
}

void Service::power(const Uuid& id, PowerAction action, InstanceCallback done) {
  if (shutting_down_) return done(make_error(ErrorCode::kUnavailable, "daemon is shutting down"));
  auto found = registry_.get(id);
  if (!found) return done(found.error());
  Instance& instance = **found;
  if (instance.removing) return done(make_error(ErrorCode::kNotFound, "instance is being removed"));
  if (instance.saved.permanent.empty()) {
    // Quarantined at start-up: its file is evidence; nothing may replace it.
    return done(make_error(ErrorCode::kCorrupt, "instance " + id.to_string() + " has no loadable state (" +
                                                    instance.failure + "); remove it or restore its state file"));
  }
  if (action == PowerAction::kOff) {
    instance.power = PowerState::kOff;
    persist(instance);
    log_.info(id, "powered off");
    return done(static_cast<const Instance*>(&instance));
  }
  auto finish = [this, id, done = std::move(done)](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed during power-on"));
    if (!c.ok) {
      i->failed = true;
      i->failure = c.message;
      log_.error(id, "power-on failed: " + c.message);
      return done(from_completion(c));
    }
    note_completion(*i, c);
    const bool was_off = i->power != PowerState::kOn || i->failed;
    i->power = PowerState::kOn;
    i->failed = false;
    i->failure.clear();
    // A new boot: PCRs are reset, so are the measurements that explained them.
    i->guest_started = false;
    i->event_log.clear();
    // A reset changes nothing durable (a guest reboot may do it thousands
    // of times); only a change of the power setting is saved.
    if (was_off) persist(*i);
    log_.debug(id, "powered on (TPM reset)");
    done(static_cast<const Instance*>(i));
  };
  if (engine_.placement(id).empty()) {
    // A failed instance whose engine is gone: re-host from the saved state.
    instance.saved.volatile_state.clear();
    engine_.attach(id, instance.params(), instance.record(false).blobs,
                   [this, id, finish = std::move(finish)](engine::Completion&& c) mutable {
                     if (!c.ok) return finish(std::move(c));
                     engine_.power_on(id, std::move(finish));
                   });
    return;
  }
  engine_.power_on(id, std::move(finish), action != PowerAction::kGuestReset);
}

void Service::cancel(const Uuid& id, StatusCallback done) {
  auto found = usable(id);
  if (!found) return done(found.error());
  engine_.cancel(id, [done = std::move(done)](engine::Completion&& c) {
    done(c.ok ? Status::success() : Status(from_completion(c)));
  });
}

void Service::set_provisioning(const Uuid& id, std::string provisioning, StatusCallback done) {
  auto found = usable(id);
  if (!found) return done(found.error());
  (*found)->provisioning = std::move(provisioning);
  persister_.save((*found)->record(false), std::move(done));
}

Status Service::set_channel_config(const Uuid& id, std::string config) {
  auto found = registry_.get(id);
  if (!found) return found.error();
  (*found)->channel_config = std::move(config);
  return save_record(**found);
}

void Service::when_saved(const Uuid& id, StatusCallback done) {
  if (auto found = registry_.get(id); !found) return done(found.error());
  persister_.when_durable(id, std::move(done));
}

Status Service::set_vchan_config(const Uuid& id, std::string config) {
  auto found = registry_.get(id);
  if (!found) return found.error();
  (*found)->vchan_config = std::move(config);
  return save_record(**found);
}

void Service::platform(const Uuid& id, engine::JobKind kind, engine::Bytes data, std::uint8_t locality,
                       std::function<void(Result<PlatformResult>)> done) {
  auto found = usable(id);
  if (!found) return done(found.error());
  if ((*found)->power == PowerState::kOff) {
    return done(make_error(ErrorCode::kUnavailable, "instance " + id.to_string() + " is powered off"));
  }
  engine_.platform(id, kind, std::move(data), locality, [this, id, done = std::move(done)](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed during a platform signal"));
    if (!c.ok) return done(from_completion(c));
    note_completion(*i, c);
    if (c.response.size() < 4) return done(make_error(ErrorCode::kInternal, "short platform result"));
    PlatformResult r;
    r.tpm_result = tpm::read_u32(c.response, 0);
    r.established = c.response.size() > 4 && c.response[4] != 0;
    done(r);
  });
}

void Service::export_state(const Uuid& id, BlobsCallback done) {
  auto found = usable(id);
  if (!found) return done(found.error());
  engine_.snapshot(id, [done = std::move(done)](engine::Completion&& c) {
    if (!c.ok) return done(from_completion(c));
    engine::StateBlobs blobs;
    blobs.permanent = c.permanent.value_or(engine::Bytes{});
    blobs.volatile_state = c.volatile_state.value_or(engine::Bytes{});
    blobs.save_state = c.save_state.value_or(engine::Bytes{});
    done(std::move(blobs));
  });
}

void Service::export_instance(const Uuid& id, RecordCallback done) {
  export_state(id, [this, id, done = std::move(done)](Result<engine::StateBlobs> blobs) {
    if (!blobs) return done(blobs.error());
    const Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed while exporting"));
    state::InstanceRecord record = i->record(false);
    record.blobs = std::move(*blobs);
    record.event_log = i->event_log;  // they go with the volatile state
    record.guest_started = i->guest_started;
    record.channels.clear();
    record.vchan.clear();  // names this host's domains
    done(std::move(record));
  });
}

void Service::import_instance(state::InstanceRecord record, InstanceCallback done,
                              std::function<void(const std::string&)> step) {
  if (shutting_down_) return done(make_error(ErrorCode::kUnavailable, "daemon is shutting down"));
  if (record.blobs.permanent.empty()) return done(make_error(ErrorCode::kInvalidArgument, "the record has no TPM state"));
  if (Status fits = refuse_oversized(record, record.max_state_size); !fits) {
    return done(make_error(ErrorCode::kTooLarge, "the imported " + fits.error().message));
  }
  const Uuid id = record.uuid;
  Instance incoming;
  incoming.uuid = id;
  incoming.version = record.version;
  incoming.created_unix = record.created_unix;
  incoming.auto_startup = record.auto_startup;
  incoming.max_command_size = record.max_command_size;
  incoming.power = record.powered_on ? PowerState::kOn : PowerState::kOff;
  incoming.limits = {record.max_queued, record.max_rate, record.max_state_size, record.max_connections};
  incoming.provisioning = record.provisioning;
  if (!record.blobs.volatile_state.empty()) {
    incoming.event_log = record.event_log;
    incoming.guest_started = record.guest_started;
  }
  incoming.saved.permanent = record.blobs.permanent;
  incoming.saved.save_state = record.blobs.save_state;
  auto added = registry_.add(std::move(incoming));
  if (!added) return done(added.error());
  (*added)->removing = true;  // not usable until hosted and durable
  engine_.attach(id, (*added)->params(), std::move(record.blobs), [this, id, done = std::move(done),
                                                                   step = std::move(step)](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance vanished during import"));
    auto undo = [this, id, done](Error why) {
      log_.error(id, "import failed: " + why.message);
      registry_.erase(id);
      engine_.detach(id, [](engine::Completion&&) {});
      done(std::move(why));
    };
    if (!c.ok) return undo(make_error(ErrorCode::kCorrupt, "the imported TPM state cannot be hosted: " + c.message));
    if (step) step("loaded");
    persister_.save(i->record(false), [this, id, done, undo, step](Status saved) {
      Instance* again = registry_.find(id);
      if (again == nullptr) return done(make_error(ErrorCode::kNotFound, "instance vanished during import"));
      if (!saved) return undo(make_error(ErrorCode::kIo, "the imported instance could not be saved: " + saved.error().message));
      again->removing = false;
      if (step) step("durable");
      log_.info(id, std::string("imported TPM ") + tpm_version_name(again->version) + " instance on " +
                        engine_.placement(id));
      done(static_cast<const Instance*>(again));
    });
  });
}

void Service::store_volatile(const Uuid& id, StatusCallback done) {
  export_state(id, [this, id, done = std::move(done)](Result<engine::StateBlobs> blobs) {
    if (!blobs) return done(blobs.error());
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed while storing its state"));
    i->saved.permanent = std::move(blobs->permanent);
    i->saved.save_state = std::move(blobs->save_state);
    i->saved.volatile_state = std::move(blobs->volatile_state);
    state::InstanceRecord record = i->record(true);
    if (Status fits = check_state_size(*i, record); !fits) return done(fits.error());
    persister_.save(std::move(record), std::move(done));
  });
}

void Service::replace_state(const Uuid& id, std::optional<engine::StateBlobs> blobs,
                            std::optional<std::uint32_t> max_command_size, InstanceCallback done) {
  auto found = usable(id);
  if (!found) return done(found.error());
  if (blobs && blobs->permanent.empty()) {
    return done(make_error(ErrorCode::kInvalidArgument, "replacement state has no permanent blob"));
  }
  if (blobs) {
    state::InstanceRecord incoming = (*found)->record(false);
    incoming.blobs = *blobs;
    if (Status fits = refuse_oversized(incoming, (*found)->limits.max_state_size); !fits) {
      return done(make_error(ErrorCode::kTooLarge, "the incoming " + fits.error().message));
    }
  }
  engine_.detach(id, [this, id, blobs = std::move(blobs), max_command_size,
                      done = std::move(done)](engine::Completion&& detached) mutable {
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed while its state was replaced"));
    engine::StateBlobs next;
    if (blobs) {
      next = std::move(*blobs);
    } else {
      next.permanent = detached.permanent.value_or(i->saved.permanent);
      next.volatile_state = detached.volatile_state.value_or(engine::Bytes{});
      next.save_state = detached.save_state.value_or(i->saved.save_state);
    }
    if (max_command_size) i->max_command_size = *max_command_size;
    if (blobs) i->event_log.clear();  // other PCRs: the log no longer describes them
    i->saved.permanent = next.permanent;
    i->saved.save_state = next.save_state;
    engine_.attach(id, i->params(), std::move(next), [this, id, done = std::move(done)](engine::Completion&& c) {
      Instance* again = registry_.find(id);
      if (again == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed while re-hosted"));
      if (!c.ok) {
        again->failed = true;
        again->failure = "replaced state cannot be hosted: " + c.message;
        log_.error(id, again->failure);
        return done(from_completion(c));
      }
      persist(*again);
      done(static_cast<const Instance*>(again));
    });
  });
}

Result<const Instance*> Service::show(const Uuid& id) {
  auto found = registry_.get(id);
  if (!found) return found.error();
  return static_cast<const Instance*>(*found);
}

void Service::restore(state::InstanceRecord record) {
  Instance instance;
  instance.uuid = record.uuid;
  instance.version = record.version;
  instance.created_unix = record.created_unix;
  instance.auto_startup = record.auto_startup;
  instance.max_command_size = record.max_command_size;
  instance.power = record.powered_on ? PowerState::kOn : PowerState::kOff;
  instance.channel_config = record.channels;
  instance.vchan_config = record.vchan;
  instance.limits = {record.max_queued, record.max_rate, record.max_state_size, record.max_connections};
  instance.provisioning = record.provisioning;
  // The log resumes with the PCRs it describes, or not at all.
  if (!record.blobs.volatile_state.empty()) {
    instance.event_log = record.event_log;
    instance.guest_started = record.guest_started;
  }
  instance.saved = record.blobs;
  auto added = registry_.add(std::move(instance));
  if (!added) {
    log_.error(record.uuid, "duplicate record at start-up: " + added.error().message);
    return;
  }
  const Uuid id = record.uuid;
  const bool resumed = !record.blobs.volatile_state.empty();
  engine_.attach(id, (*added)->params(), std::move(record.blobs), [this, id](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return;
    if (!c.ok) {
      i->failed = true;
      i->failure = c.message;
      log_.error(id, "cannot restore: " + c.message);
    }
  });
  // From here on a crash must not resume this volatile state again.
  Instance& restored = **added;
  restored.saved.volatile_state.clear();
  if (resumed) persist(restored);
}

void Service::quarantine(const Uuid& id, const std::string& why) {
  Instance instance;
  instance.uuid = id;
  instance.failed = true;
  instance.failure = why;
  if (auto added = registry_.add(std::move(instance)); !added) return;
  log_.error(id, "quarantined at start-up: " + why);
}

void Service::recover_lost(const Uuid& id, const std::string& why) {
  Instance* instance = registry_.find(id);
  if (instance == nullptr || instance->removing) return;
  log_.error(id, "engine lost (" + why + "); restarting the TPM from its saved state, as after a power loss");
  instance->saved.volatile_state.clear();
  instance->event_log.clear();
  instance->guest_started = false;
  engine_.attach(id, instance->params(), instance->record(false).blobs, [this, id](engine::Completion&& c) {
    Instance* i = registry_.find(id);
    if (i == nullptr) return;
    if (!c.ok) {
      i->failed = true;
      i->failure = "engine lost and restore failed: " + c.message;
      log_.error(id, i->failure);
    }
  });
}

void Service::save_all(std::function<void()> done) {
  auto remaining = std::make_shared<std::size_t>(1);  // +1 guards against finishing early
  auto finish_one = [this, remaining, done]() {
    if (--*remaining == 0) persister_.when_idle(done);
  };
  for (auto& [id, instance] : registry_.all()) {
    if (instance.removing || engine_.placement(id).empty()) continue;
    ++*remaining;
    engine_.snapshot(id, [this, id, finish_one](engine::Completion&& c) {
      if (Instance* i = registry_.find(id); i != nullptr && c.ok) {
        if (c.permanent) i->saved.permanent = std::move(*c.permanent);
        if (c.save_state) i->saved.save_state = std::move(*c.save_state);
        if (c.volatile_state) i->saved.volatile_state = std::move(*c.volatile_state);
        persister_.save(i->record(true));
      } else if (!c.ok) {
        log_.error(id, "cannot snapshot at shutdown: " + c.message);
      }
      finish_one();
    });
  }
  finish_one();
}

}  // namespace vtpm
