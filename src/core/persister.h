// Asynchronous, group-committed persistence of instance state.
//
// Changes wait in `pending_` (one slot per instance: a newer record
// replaces an older one, and the older one's waiters ride along). When no
// commit is running, every pending change becomes one batch:
//   1. seal each record under its instance key and write it in place into
//      the slot its new generation owns (fdatasync), in parallel on the
//      libuv threadpool; a new instance's first record instead goes into
//      the manifest itself (inline: one sync for an add, where a slot file
//      costs three), and moves to its slot file in the background
//      (materialize), dropped from the manifest at the next commit;
//   2. one commit: directory fsync only if a blob file was created, the
//      manifest (new generations and digests) into its slot (fdatasync);
//   3. shred the files of removed instances.
// Waiters run after step 3, so "durable" means the manifest names the
// write. Then, when the commit began an epoch, the root of trust's counter
// is incremented (StateStore::advance_epoch): not before the waiters run,
// but before the next commit. Changes that arrive meanwhile form the next
// batch; its blob writes overlap the increment.
//
// Thread affinity: loop thread; the StateStore calls run on the threadpool.
#pragma once

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "src/core/log.h"
#include "src/core/metrics.h"
#include "src/core/uv_handle.h"
#include "state/crypto.h"
#include "state/manifest.h"
#include "state/state_store.h"

namespace vtpm {

class Persister {
 public:
  Persister(uv_loop_t* loop, state::StateStore& store, state::Manifest committed, state::Drbg& drbg,
            const Logger& log);
  ~Persister();
  Persister(const Persister&) = delete;
  Persister& operator=(const Persister&) = delete;

  // `durable` (optional) runs once a commit that contains this record (or a
  // newer one of the same instance, merged into it) is durable, or failed.
  void save(state::InstanceRecord record, std::function<void(Status)> durable = {});
  // Drops the instance from the manifest, then shreds its file.
  void remove(const Uuid& id, std::function<void(Status)> done = {});
  // Runs `done` once nothing is in flight or pending (now, if idle).
  void when_idle(std::function<void()> done);
  // Runs `done` once every change of `id` saved so far is durable: it joins
  // the waiters of the instance's pending or in-flight change, or answers
  // now with how the last one ended (no extra write).
  void when_durable(const Uuid& id, std::function<void(Status)> done);

  std::uint64_t writes() const { return writes_; }
  std::uint64_t failures() const { return failures_; }
  std::uint64_t commits() const { return commits_; }
  // Changes waiting for the next batch, and how long each written change
  // took from its save() (the oldest change it merged) to durable.
  std::size_t pending() const { return pending_.size(); }
  bool committing() const { return batch_ != nullptr; }
  const LatencyHistogram& lag() const { return lag_; }
  const state::Manifest& committed() const { return committed_; }

 private:
  struct Pending {
    std::optional<state::InstanceRecord> record;  // empty: remove
    std::vector<std::function<void(Status)>> waiters;
    std::uint64_t since_us = 0;  // uv_hrtime of the oldest change merged here
  };
  struct Batch;
  struct BlobWrite;
  struct Chunk;
  struct CommitWork;

  void enqueue(const Uuid& id, Pending change);
  void start_batch();
  static void seal(BlobWrite& write);  // the record, sealed into write.sealed
  // Background disk work, once no commit has run for a while: first
  // materialize, then refill_spares.
  void schedule_background();
  void background();
  // Writes the manifest's inline blobs (state/manifest.h) to their slot
  // files, synced, beside whatever batch runs (never holding one up); the
  // next commit drops them from the manifest. One job at a time; false if
  // there was nothing to do.
  bool materialize();
  // A change that must wait for the running materialization: a write into
  // the slot file it is writing, or a removal (whose shred would race it).
  bool collides_with_materialization(const Uuid& id, bool removal) const;
  Status prepare_write(const Uuid& id, state::InstanceRecord record, BlobWrite& write);
  void chunk_done();
  void start_commit();
  void commit_done(Status result);
  void finish_batch(Status result);
  void advance_epoch();  // the counter increment after a commit (threadpool)
  void check_idle();
  // Makes new spare blob files (state/spare_files.h) when few are left,
  // one job at a time.
  void refill_spares();

  uv_loop_t* loop_;
  state::StateStore& store_;
  state::Manifest committed_;
  state::Drbg& drbg_;
  const Logger& log_;
  std::map<Uuid, Pending> pending_;
  std::unique_ptr<Batch> batch_;  // the batch in flight, if any
  std::unordered_map<Uuid, std::pair<state::KeySalt, state::SecretKey>> keys_;  // derived instance keys
  std::vector<std::function<void()>> idle_waiters_;
  uv_work_t refill_request_{};
  bool refilling_ = false;
  struct Materialization {
    Uuid id;
    state::ManifestEntry entry;  // the committed generation the blob is
    std::shared_ptr<const state::Bytes> sealed;
    Status result = Status::success();
  };
  UvHandle<uv_timer_t> background_timer_;
  uv_work_t materialize_request_{};
  bool materializing_ = false;
  std::vector<Materialization> materialize_work_;                      // the running job's
  std::vector<std::pair<Uuid, state::ManifestEntry>> materialized_;  // durable in slot files
  uv_work_t epoch_request_{};
  bool advancing_ = false;       // a counter increment is running
  bool commit_waiting_ = false;  // the next commit waits for it
  std::unordered_map<Uuid, Error> last_failure_;  // instances whose latest write failed
  std::uint64_t writes_ = 0;
  std::uint64_t failures_ = 0;
  std::uint64_t commits_ = 0;
  LatencyHistogram lag_;
};

}  // namespace vtpm
