// One vTPM instance as the daemon core sees it. Owned by the Registry;
// touched only on the loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proto/engine_messages.h"
#include "proto/result.h"
#include "proto/uuid.h"
#include "state/instance_record.h"

namespace vtpm {

enum class PowerState { kOn, kOff };

struct InstanceCounters {
  std::uint64_t commands = 0;
  std::uint64_t errors = 0;  // TPM responses with rc != 0, plus commands vtpmd refused
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::int64_t last_command_unix_ms = 0;  // 0 = never
  std::uint64_t swaps = 0;      // commands that had to load the instance into its engine first
  std::uint64_t engine_us = 0;  // time its commands spent in the engine (queued + swap + run)
};

// Per-instance limits (0: the daemon's default). A guest above max_rate is
// throttled (its commands wait), one above max_queued is refused (busy),
// a change of state that would make its sealed record larger than
// max_state_size bytes is not saved and quarantines it (Service), a guest
// channel connection beyond max_connections is closed (backends).
struct InstanceLimits {
  std::uint32_t max_queued = 0;
  std::uint32_t max_rate = 0;
  std::uint32_t max_state_size = 0;
  std::uint32_t max_connections = 0;
};

// A token bucket, capacity one second of max_rate (the commands waiting
// for tokens are kept by Service).
struct Throttle {
  double tokens = 0;
  std::uint64_t refilled_ms = 0;
  std::uint64_t delayed = 0;  // commands that had to wait, ever
};

struct Instance {
  Uuid uuid;
  TpmVersion version = TpmVersion::k20;
  std::int64_t created_unix = 0;
  bool auto_startup = false;
  std::uint32_t max_command_size = 4096;
  PowerState power = PowerState::kOn;
  bool failed = false;        // state unusable; only power/remove accepted
  std::string failure;        // why, when failed
  bool removing = false;      // a remove is in progress
  InstanceCounters counters;
  // Last known state: permanent is always current (every NV change lands
  // here); volatile only as of the last snapshot.
  engine::StateBlobs saved;
  std::string channel_config;  // guest channels to reopen at start-up (JSON, backend-defined)
  std::string vchan_config;    // the Xen vchan channel to reopen at start-up (JSON, backend-defined)
  InstanceLimits limits;
  Throttle throttle;
  std::string provisioning;  // what `add` provisioned (JSON text); empty: nothing
  // Measured launch (docs/provisioning.md): the event log of this boot's
  // measurements, and whether anything but vtpmd has sent the TPM a
  // command since the last power-on (the guest has started).
  std::vector<std::uint8_t> event_log;
  bool guest_started = false;

  const char* state_name() const { return failed ? "failed" : power == PowerState::kOn ? "running" : "stopped"; }
  engine::InstanceParams params() const { return {version, max_command_size, auto_startup}; }
  // The durable record; volatile state only when asked (clean shutdown).
  state::InstanceRecord record(bool with_volatile) const;
  // encoded_record_size(record(false)) without copying the blobs (list and
  // show report it for every instance).
  std::size_t saved_record_size() const;
};

class Registry {
 public:
  Result<Instance*> add(Instance instance);
  Instance* find(const Uuid& id);
  const Instance* find(const Uuid& id) const;
  Result<Instance*> get(const Uuid& id);  // not_found error names the UUID
  void erase(const Uuid& id) { instances_.erase(id); }
  const std::map<Uuid, Instance>& all() const { return instances_; }
  std::map<Uuid, Instance>& all() { return instances_; }
  std::size_t size() const { return instances_.size(); }

 private:
  std::map<Uuid, Instance> instances_;  // ordered: list output is sorted by UUID
};

}  // namespace vtpm
