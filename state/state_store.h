// The state directory: the sealed master key, the manifest and one sealed
// blob per instance. Layout and byte formats: docs/state-format.md.
//
//   master.key              the master key, sealed by the root of trust
//   manifest.a, manifest.b  generations + blob digests, MAC'd, bound to the
//                           counter; written alternately (slot = sequence % 2)
//   <uuid>.a.vtpm, .b.vtpm  one instance's sealed blob, written alternately
//                           (slot = generation % 2)
//
// Writes go in place into the slot that does not hold the committed copy,
// so a torn write never touches what the manifest names, and a steady-state
// write creates no file and changes no directory: one fdatasync per blob,
// one for the manifest, and one for the counter when the commit starts an
// epoch (every commit with the file root, see RootOfTrust::counter_interval).
//
// open() runs once at start-up on the loop thread. write_blob, commit and
// shred block on the disk: the persister runs them on the libuv
// threadpool, blobs in parallel, commits one at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "proto/result.h"
#include "state/crash_points.h"
#include "state/instance_record.h"
#include "state/key_hierarchy.h"
#include "state/manifest.h"
#include "state/root_of_trust.h"
#include "state/spare_files.h"

namespace vtpm::state {

struct OpenedState {
  std::vector<InstanceRecord> records;
  // Instances whose state failed a check; their files are left in place
  // and their manifest entries are kept, flagged, so nothing is re-created
  // over the evidence.
  std::vector<std::pair<Uuid, std::string>> quarantined;
  std::vector<std::string> notes;  // recoveries and discarded leftovers, for the log
  Manifest manifest;               // what the persister continues from
};

// Creates the directory (mode 0700) if missing.
Status prepare_directory(const std::string& path);

class StateStore {
 public:
  StateStore(std::string directory, RootOfTrust& root, CrashPoints crash = {});
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Loads or creates the master key, checks the manifest against the root
  // of trust's counter, then opens every blob; commits the reconciled
  // manifest before returning. Fails only for problems of the whole store
  // (no usable master key, an unwritable directory).
  Result<OpenedState> open(Drbg& drbg);

  const MasterKey& master() const { return master_; }
  SecretKey instance_key(const Uuid& id, const ManifestEntry& entry) const {
    return derive_instance_key(master_, id, entry.key_epoch, entry.key_salt);
  }

  struct BlobWritten {
    Digest digest;         // SHA-256 of the bytes, for the manifest
    bool created = false;  // a new file: the directory must be synced before the commit
  };
  // Writes and fdatasyncs the slot of `generation`.
  Result<BlobWritten> write_blob(const Uuid& id, std::uint64_t generation, std::span<const std::uint8_t> sealed) const;
  // Writes the manifest (next sequence number, bound to the current
  // epoch or, when one is due, the next) into its slot and syncs it: the
  // commit is durable. `new_files`: some blob of this commit created its
  // file, so the directory is synced first. Not concurrent with itself.
  Status commit(Manifest manifest, bool new_files);
  // After a commit that began a new epoch: increments the counter. The
  // commit's waiters need not wait for it (a manifest one ahead of the
  // counter is accepted, and the increment completed, at start-up), but
  // the next commit must (manifests never run two ahead). A failed
  // increment is retried here later, with back-off (counter_status).
  // Threadpool; between commits.
  void advance_epoch();
  bool epoch_pending() const { return target_ != counter_; }  // between commits
  // The next commit starts a new epoch (after a reseal; any thread).
  void request_new_epoch() { epoch_requested_ = true; }
  // Reseals the master key under `policy` (the root of trust's part:
  // seconds on a real TPM), then rewrites master.key with the result; the
  // next commit starts a new epoch. Threadpool; concurrent with commit.
  Result<Bytes> seal_master_key(const SealPolicy& policy) { return root_.reseal(master_.key, policy); }
  Status store_sealed_master_key(std::span<const std::uint8_t> sealed);
  struct CounterStatus {
    std::uint64_t value = 0;     // the root of trust's counter as last seen
    std::uint64_t failures = 0;  // failed reads/increments since start
    std::string problem;         // the last failure while the counter is behind; empty when in step
  };
  CounterStatus counter_status() const;  // any thread
  // Creates spare blob files up to their target (state/spare_files.h);
  // blocks on the disk: threadpool. spares_wanted(): any thread.
  Status refill_spares() { return spares_.refill(); }
  bool spares_wanted() const { return spares_.wanted(); }
  // fsync of the state directory: new slot files' entries durable.
  Status sync_blob_directory() const;
  // Overwrites the blob with zeros, syncs, recycles it as a spare or unlinks it (best effort
  // against recovery from the medium: the key salt is gone with the
  // manifest entry, so the ciphertext is undecryptable anyway).
  Status shred(const Uuid& id) const;

  std::string blob_path(const Uuid& id, std::uint64_t generation) const;
  std::string manifest_path(std::uint64_t sequence) const;
  const std::string& directory() const { return directory_; }
  std::uint64_t counter() const { return counter_; }    // the committing thread only
  std::uint64_t sequence() const { return sequence_; }  // the committing thread only

 private:
  Result<MasterKey> open_master_key(Drbg& drbg, bool store_has_state);
  void open_blobs(OpenedState& out, const std::vector<Uuid>& blob_files);
  // The instance's committed record, or the next generation if it reached
  // the disk before a crash stopped its commit; else why not.
  // `inline_blob`: the manifest carries the committed generation (else its slot file does).
  Result<InstanceRecord> open_instance(const Uuid& id, ManifestEntry& entry, const Bytes* inline_blob,
                                       std::vector<std::string>& notes) const;

  std::string directory_;
  mutable SpareFiles spares_;
  RootOfTrust& root_;
  CrashPoints crash_;
  MasterKey master_;
  SecretKey manifest_key_;
  void advance_counter(std::chrono::steady_clock::time_point now);

  // The counter as this daemon knows it, and the value the manifests on
  // disk are bound to: equal, or target_ = counter_ + 1 while a new epoch's
  // increment is pending. The manifests never run ahead by more than one.
  std::uint64_t counter_ = 0;
  std::uint64_t target_ = 0;
  bool counter_uncertain_ = false;  // an increment failed: re-read before retrying
  std::uint64_t sequence_ = 0;
  std::atomic<bool> epoch_requested_{false};
  std::chrono::steady_clock::time_point last_advance_{};
  std::chrono::steady_clock::time_point next_counter_attempt_{};
  std::chrono::milliseconds counter_backoff_{0};

  mutable std::mutex status_mutex_;
  std::uint64_t counter_value_ = 0;
  std::uint64_t counter_failures_ = 0;
  std::string counter_problem_;
};

}  // namespace vtpm::state
