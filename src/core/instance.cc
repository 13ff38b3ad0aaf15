#include "src/core/instance.h"

namespace vtpm {

namespace {

// Everything but the blobs, which are large.
state::InstanceRecord record_without_blobs(const Instance& i, bool with_volatile) {
  state::InstanceRecord r;
  r.uuid = i.uuid;
  r.version = i.version;
  r.created_unix = i.created_unix;
  r.auto_startup = i.auto_startup;
  r.max_command_size = i.max_command_size;
  r.powered_on = i.power == PowerState::kOn;
  r.channels = i.channel_config;
  r.vchan = i.vchan_config;
  r.max_queued = i.limits.max_queued;
  r.max_rate = i.limits.max_rate;
  r.max_state_size = i.limits.max_state_size;
  r.max_connections = i.limits.max_connections;
  r.provisioning = i.provisioning;
  // The log describes the PCRs, which live in the volatile state.
  if (with_volatile) {
    r.event_log = i.event_log;
    r.guest_started = i.guest_started;
  }
  return r;
}

}  // namespace

state::InstanceRecord Instance::record(bool with_volatile) const {
  state::InstanceRecord r = record_without_blobs(*this, with_volatile);
  r.blobs.permanent = saved.permanent;
  r.blobs.save_state = saved.save_state;
  if (with_volatile) r.blobs.volatile_state = saved.volatile_state;
  return r;
}

std::size_t Instance::saved_record_size() const {
  state::InstanceRecord r = record_without_blobs(*this, false);
  return state::encoded_record_size(r) + saved.permanent.size() + saved.save_state.size();
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

const Instance* Registry::find(const Uuid& id) const {
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : &it->second;
}

Result<Instance*> Registry::get(const Uuid& id) {
  if (Instance* instance = find(id)) return instance;
  return make_error(ErrorCode::kNotFound, "no instance " + id.to_string());
}

}  // namespace vtpm
