#include "src/core/instance.h"

namespace vtpm {

state::InstanceRecord Instance::record(bool with_volatile) const {
  state::InstanceRecord r;
  r.uuid = uuid;
  r.version = version;
  r.created_unix = created_unix;
  r.auto_startup = auto_startup;
  r.max_command_size = max_command_size;
  r.powered_on = power == PowerState::kOn;
  r.channels = channel_config;
  r.max_queued = limits.max_queued;
  r.max_rate = limits.max_rate;
  r.max_state_size = limits.max_state_size;
  r.blobs.permanent = saved.permanent;
  r.blobs.save_state = saved.save_state;
  r.provisioning = provisioning;
  // The log describes the PCRs, which live in the volatile state.
  if (with_volatile) {
    r.blobs.volatile_state = saved.volatile_state;
    r.event_log = event_log;
    r.guest_started = guest_started;
  }
  return r;
}

Result<Instance*> Registry::add(Instance instance) {
  const Uuid id = instance.uuid;
  auto [it, inserted] = instances_.try_emplace(id, std::move(instance));
  if (!inserted) return make_error(ErrorCode::kAlreadyExists, "instance " + id.to_string() + " already exists");
  return &it->second;
}

Instance* Registry::find(const Uuid& id) {
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : &it->second;
}

Result<Instance*> Registry::get(const Uuid& id) {
  if (Instance* instance = find(id)) return instance;
  return make_error(ErrorCode::kNotFound, "no instance " + id.to_string());
}

}  // namespace vtpm
