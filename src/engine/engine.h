// The engine as the reactor sees it: places instances on shards and routes
// jobs to them, matching completions back to their callbacks.
//
// Placement: TPM 2.0 instances share the daemon's engine thread (a swap
// costs ~50 us). TPM 1.2 instances go to vtpmd-engine worker processes, one
// instance per worker while workers are below the configured maximum, so a
// busy TPM 1.2 guest stays loaded; above it, 1.2 instances share workers,
// which then time-slice them (see Multiplexer). With workers disabled, 1.2
// instances share the engine thread too.
//
// Isolation: a TPM 2.0 instance that keeps the engine thread busy for more
// than `isolate_busy_ms` of a second (e.g. a guest looping on RSA key
// generation) moves to a worker process of its own, live: its queued jobs
// finish, a snapshot (volatile state included) moves, and jobs arriving
// meanwhile wait and follow in order. The others then no longer queue
// behind its long commands.
//
// Thread affinity: loop thread only. Callbacks run on the loop thread,
// exactly once per accepted job.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/engine_messages.h"
#include "src/engine/multiplexer.h"
#include "src/engine/process_shard.h"
#include "src/engine/thread_shard.h"

namespace vtpm::engine {

struct EngineOptions {
  MultiplexerOptions multiplexer;
  std::string worker_path;            // vtpmd-engine executable
  std::size_t tpm12_workers_max = 64; // 0: TPM 1.2 shares the engine thread
  std::uint32_t isolate_busy_ms = 250;  // per second of engine-thread time; 0: never isolate
  std::size_t isolated_workers_max = 8;
  bool worker_core_dumps = false;  // workers hold TPM state: not dumpable unless the operator allows it
};

struct ShardStats {
  std::string name;
  int pid = 0;  // 0 for the engine thread
  std::uint64_t instances = 0;
  std::uint64_t jobs = 0;
  std::uint64_t swaps = 0;
  std::uint64_t swap_us_total = 0;
  std::uint64_t outstanding = 0;
};

class Engine {
 public:
  using Callback = std::function<void(Completion&&)>;
  // Told when a worker dies with instances on it: their unsaved volatile
  // state is gone (a power loss), and they are no longer placed anywhere.
  using LostSink = std::function<void(const Uuid&, const std::string& why)>;

  Engine(uv_loop_t* loop, EngineOptions options, LostSink on_lost);
  ~Engine();

  void attach(const Uuid& id, const InstanceParams& params, StateBlobs blobs, Callback done);
  void execute(const Uuid& id, Bytes command, std::uint8_t locality, Callback done);
  // `auto_startup`: whether the instance's automatic Startup may run.
  void power_on(const Uuid& id, Callback done, bool auto_startup = true);
  void snapshot(const Uuid& id, Callback done);
  void detach(const Uuid& id, Callback done);
  void cancel(const Uuid& id, Callback done);
  // A platform signal (JobKind::kHashStart..kEstablishedReset).
  void platform(const Uuid& id, JobKind kind, Bytes data, std::uint8_t locality, Callback done);

  // Jobs accepted for `id` whose callback has not run yet.
  std::size_t outstanding(const Uuid& id) const;
  std::size_t outstanding_total() const { return callbacks_.size(); }
  std::string placement(const Uuid& id) const;
  std::vector<ShardStats> stats() const;
  std::uint64_t isolations() const { return isolations_; }

 private:
  struct ShardSlot {
    std::unique_ptr<Shard> shard;
    ShardStats stats;
    bool dead = false;  // worker exited; kept until shutdown, never chosen
  };
  struct PendingJob {
    Callback callback;
    Uuid instance;
    Shard* shard;
  };

  void submit(Shard& shard, Job job, Callback done);
  // Sends a job to the shard hosting `id`, or fails it if there is none.
  void route_job(const Uuid& id, JobKind kind, Callback done, Bytes command = {}, std::uint8_t locality = 0,
                 bool auto_startup = true);
  void on_completion(Completion&& done);
  Shard& place(const Uuid& id, TpmVersion version);
  Shard* route(const Uuid& id) const;
  ShardSlot* slot_of(const Shard* shard);
  Shard* spawn_worker();
  void on_worker_exit(ProcessShard& worker, const std::string& why);
  void reply_error(Job job, ErrorCode code, std::string message, Callback& done);
  // Isolation of busy TPM 2.0 instances (see the comment at the top).
  void account_engine_time(const Uuid& id, const Completion& done);
  void isolate(const Uuid& id);
  void finish_isolation(const Uuid& id);
  Shard* worker_for_isolation();

  struct HeldJob {
    Job job;
    Callback done;
  };
  uv_loop_t* loop_;
  EngineOptions options_;
  LostSink on_lost_;
  std::vector<ShardSlot> shards_;  // [0] is the engine thread
  std::unordered_map<Uuid, Shard*> routes_;
  std::unordered_map<Uuid, std::size_t> outstanding_;
  std::map<JobId, PendingJob> callbacks_;
  std::unordered_map<Uuid, InstanceParams> params_;
  std::unordered_map<Uuid, std::uint64_t> busy_us_;  // engine-thread time in the current window
  std::uint64_t window_start_ms_ = 0;
  std::unordered_map<Uuid, std::vector<HeldJob>> moving_;  // jobs held while an instance moves
  std::unordered_map<Uuid, Shard*> isolated_;  // instances moved out, and where
  std::uint64_t isolations_ = 0;
  JobId next_job_ = 1;
  std::size_t next_worker_number_ = 1;
};

}  // namespace vtpm::engine
