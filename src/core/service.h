// The daemon's operations on instances, shared by every front end (control
// API now, guest channels later): each semantic is implemented once here.
//
// Thread affinity: loop thread. Every callback runs exactly once, on the
// loop thread, possibly before the call returns (for immediate errors).
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "src/core/instance.h"
#include "src/core/log.h"
#include "src/core/metrics.h"
#include "src/core/persister.h"
#include "src/core/uv_handle.h"
#include "src/engine/engine.h"

namespace vtpm {

struct AddOptions {
  std::optional<Uuid> uuid;
  TpmVersion version = TpmVersion::k20;
  bool auto_startup = false;
  std::optional<std::uint32_t> max_command_size;
  InstanceLimits limits;
  std::string provisioning;  // the summary saved with the new instance (a warm-pool member's marker)
  // Guest channels to open once it exists, saved with its first write so
  // that one commit makes the instance and its channels durable.
  std::string channel_config;
  // Runs on the loop while the new instance's first write is on its way to
  // the disk (after manufacture): work that can overlap the sync, such as
  // creating the channels' socket files. Not run if the add fails earlier.
  std::function<void(const Uuid&)> while_saving;
};

// The daemon-wide defaults behind an instance's limits of 0.
struct DefaultLimits {
  std::uint32_t max_queued = 64;  // commands queued or running per instance
  std::uint32_t max_rate = 0;     // commands per second; 0: unlimited
  std::uint32_t max_state_size = 1024 * 1024;  // bytes of an instance's sealed record
  std::uint32_t max_connections = 16;          // guest-channel connections per instance
};

// A `set`: the limits given change (0: back to the daemon's default).
struct LimitChanges {
  std::optional<std::uint32_t> max_queued;
  std::optional<std::uint32_t> max_rate;
  std::optional<std::uint32_t> max_state_size;
  std::optional<std::uint32_t> max_connections;
};

struct ExecResult {
  engine::Bytes response;
  std::uint32_t rc = 0;
  engine::Timing timing;
  std::uint64_t total_us = 0;
};

// kGuestReset: a power cycle initiated by the guest's platform (a channel's
// INIT); unlike kReset it never sends the automatic Startup, because the
// guest's firmware does.
struct PlatformResult {
  std::uint32_t tpm_result = 0;
  bool established = false;  // kEstablishedGet only
};

enum class PowerAction { kOn, kOff, kReset, kGuestReset };

// Who sent a command: a guest or client (which marks the guest as started,
// see Instance::guest_started), or vtpmd itself provisioning or measuring.
enum class CommandOrigin { kClient, kVtpmd };

class Service {
 public:
  using InstanceCallback = std::function<void(Result<const Instance*>)>;
  using StatusCallback = std::function<void(Status)>;
  using ExecCallback = std::function<void(Result<ExecResult>)>;

  Service(uv_loop_t* loop, const Logger& log, engine::Engine& engine, Persister& persister, Registry& registry,
          std::uint32_t default_max_command_size, DefaultLimits default_limits = {});
  ~Service();

  void add(const AddOptions& options, InstanceCallback done);
  void remove(const Uuid& id, bool force, StatusCallback done);
  // Runs `listener` for every instance removed from now on, once it is
  // gone from the registry: guest channels close what was bound to it.
  void on_removed(std::function<void(const Uuid&)> listener) { removed_listeners_.push_back(std::move(listener)); }
  void exec(const Uuid& id, engine::Bytes command, std::uint8_t locality, ExecCallback done,
            CommandOrigin origin = CommandOrigin::kClient);
  void power(const Uuid& id, PowerAction action, InstanceCallback done);
  void cancel(const Uuid& id, StatusCallback done);
  // Changes an instance's limits (0: back to the daemon's default); `done`
  // runs once they are saved.
  void set_limits(const Uuid& id, const LimitChanges& changes, InstanceCallback done);
  // The limits in force (defaults applied) and the commands waiting for rate.
  InstanceLimits effective_limits(const Instance& instance) const;
  std::size_t throttled(const Uuid& id) const;
  // Bytes of the instance's sealed record as last saved or about to be.
  static std::size_t state_size(const Instance& instance);

  // Records what was provisioned (JSON text) and saves it durably.
  void set_provisioning(const Uuid& id, std::string provisioning, StatusCallback done);
  // Remembers the instance's guest-channel configuration and queues its
  // save (an error if the record outgrew the instance's limit).
  Status set_channel_config(const Uuid& id, std::string config);
  Status set_vchan_config(const Uuid& id, std::string config);
  // Runs `done` once the instance's settings as they are now are durable
  // (Persister::when_durable: no write of its own): an answer that
  // acknowledges a setting (attach, detach, vchan) waits for it, as an
  // add's does for the instance.
  void when_saved(const Uuid& id, StatusCallback done);

  // A TIS platform signal: the H-CRTM hash sequence (_TPM_Hash_Start/Data/
  // End) or the TPM-established bit, at `locality`.
  void platform(const Uuid& id, engine::JobKind kind, engine::Bytes data, std::uint8_t locality,
                std::function<void(Result<PlatformResult>)> done);

  using BlobsCallback = std::function<void(Result<engine::StateBlobs>)>;
  // The instance's libtpms state as of now (after its queued commands).
  void export_state(const Uuid& id, BlobsCallback done);
  using RecordCallback = std::function<void(Result<state::InstanceRecord>)>;
  // A consistent copy of the instance for export: settings and libtpms
  // state including volatile state (PCRs, sessions), after its queued
  // commands. Guest channels are host-specific and not included.
  void export_instance(const Uuid& id, RecordCallback done);
  // Creates an instance from an exported record, under its own UUID; it
  // resumes the exported volatile state. Answers once it is durable.
  // `step` (may be empty) hears "loaded" and "durable".
  void import_instance(state::InstanceRecord record, InstanceCallback done,
                       std::function<void(const std::string&)> step = {});
  // Saves the instance's volatile state with the rest, durably (swtpm's
  // STORE_VOLATILE): a crash before the next change of persistent state
  // resumes from it. The next save without it (any NV change) drops it.
  void store_volatile(const Uuid& id, StatusCallback done);
  // Re-hosts the instance: with `blobs` when given (a migration's incoming
  // state; an empty volatile blob means a cold start), else with its own
  // current state; with a new TPM buffer size when given.
  void replace_state(const Uuid& id, std::optional<engine::StateBlobs> blobs,
                     std::optional<std::uint32_t> max_command_size, InstanceCallback done);
  Result<const Instance*> show(const Uuid& id);
  const Registry& registry() const { return registry_; }
  std::size_t outstanding(const Uuid& id) const { return engine_.outstanding(id); }
  std::string placement(const Uuid& id) const { return engine_.placement(id); }
  // Daemon-wide command metrics and the parts metrics read (src/core/metrics.h).
  const CommandMetrics& metrics() const { return metrics_; }
  const Persister& persister() const { return persister_; }
  const engine::Engine& engine() const { return engine_; }
  std::size_t throttled_total() const;

  // Start-up: re-host an instance loaded from disk (its volatile state, if
  // any, resumes; the record is then rewritten without it so that a later
  // crash cannot roll PCRs back to this point).
  void restore(state::InstanceRecord record);
  // Start-up: a state file that exists but cannot be read. The instance is
  // listed as failed so that its UUID cannot be re-created over the file.
  void quarantine(const Uuid& id, const std::string& why);
  // A worker died under this instance: restart it from its saved state.
  void recover_lost(const Uuid& id, const std::string& why);
  // Shutdown: snapshot every instance after its queued commands and save
  // it with its volatile state; `done` runs when everything is on disk.
  void save_all(std::function<void()> done);
  void refuse_new_work() { shutting_down_ = true; }

 private:
  struct WaitingExec {
    engine::Bytes command;
    std::uint8_t locality;
    ExecCallback done;
  };
  // After the checks: to the engine, or to the wait queue if over its rate.
  void admit(Instance& instance, engine::Bytes command, std::uint8_t locality, ExecCallback done);
  void dispatch(Instance& instance, engine::Bytes command, std::uint8_t locality, ExecCallback done);
  // Counts a command refused before it reached the engine.
  void refused(Instance* instance, ErrorCode why);
  bool take_token(Instance& instance);
  void drain_throttled();
  Result<Instance*> usable(const Uuid& id);
  // Takes new persistent state from a completion; true if there was any.
  bool take_state_change(Instance& instance, const engine::Completion& done);
  // take_state_change() and, if anything changed, an asynchronous save.
  void note_completion(Instance& instance, const engine::Completion& done);
  // Saves the instance's record asynchronously, unless it outgrew its
  // max_state_size (then the instance is quarantined instead, and the
  // error says so).
  Status save_record(Instance& instance);
  void persist(Instance& instance) { (void)save_record(instance); }
  // The record's sealed size against the instance's limit: an error (and
  // the instance quarantined, its last saved state left on disk) if over.
  Status check_state_size(Instance& instance, const state::InstanceRecord& record);
  // The same check for state that is not hosted yet: nothing is changed.
  Status refuse_oversized(const state::InstanceRecord& record, std::uint32_t max_state_size) const;
  Uuid fresh_uuid();

  const Logger& log_;
  std::vector<std::function<void(const Uuid&)>> removed_listeners_;
  engine::Engine& engine_;
  Persister& persister_;
  Registry& registry_;
  std::uint32_t default_max_command_size_;
  DefaultLimits default_limits_;
  std::map<Uuid, std::deque<WaitingExec>> throttled_;
  UvHandle<uv_timer_t> throttle_timer_;
  std::random_device random_;
  bool shutting_down_ = false;
  CommandMetrics metrics_;
};

}  // namespace vtpm
