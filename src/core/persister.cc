#include "src/core/persister.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "state/sealed_blob.h"

namespace vtpm {
namespace {

// Blob writes of one batch run on at most this many threadpool threads
// (libuv's default pool has 4): parallel fsyncs share journal commits.
constexpr std::size_t kMaxParallelWrites = 4;
// New instances' first generations carried in the manifest at most (each
// at most state::kMaxInlineBlob). The manifest is rewritten at every
// commit, and syncing it costs more the larger it is (a 170 KiB manifest
// doubled an add's latency on disk), so few: from kMaterializeAt on they
// move to their files at once, in the background, even while adds go on.
constexpr std::size_t kMaxInlineBlobs = 16;
constexpr std::size_t kMaxInlineBytes = 48 * 1024;
constexpr std::size_t kMaterializeAt = 6;
// Background disk work (moving inline blobs to their files, new spare
// files) waits for this long without a commit: creating files costs up to
// a millisecond each on some filesystems, and must not slow an add burst.
constexpr std::uint64_t kQuietMs = 50;

}  // namespace

struct Persister::BlobWrite {
  Uuid id;
  state::InstanceRecord record;
  state::SecretKey key;
  state::SealedHeader header;
  state::ManifestEntry entry;  // as committed once this write lands
  state::Bytes sealed;         // on the loop for a new instance's inline record, else in the threadpool
  bool inlined = false;           // went into the manifest, not a slot file
  Status result = Status::success();
  bool created_file = false;
  std::vector<std::function<void(Status)>> waiters;
  std::uint64_t since_us = 0;
};

struct Persister::Chunk {
  uv_work_t request{};
  Persister* owner = nullptr;
  std::vector<BlobWrite*> writes;
};

struct Persister::CommitWork {
  uv_work_t request{};
  Persister* owner = nullptr;
  state::Manifest next;
  bool new_files = false;
  std::vector<Uuid> shred;
  Status result = Status::success();
  std::vector<std::string> shred_failures;
};

struct Persister::Batch {
  std::vector<BlobWrite> writes;
  std::vector<std::pair<Uuid, std::vector<std::function<void(Status)>>>> removals;
  std::vector<std::unique_ptr<Chunk>> chunks;
  std::size_t chunks_left = 0;
  CommitWork commit;
};

Persister::Persister(uv_loop_t* loop, state::StateStore& store, state::Manifest committed, state::Drbg& drbg,
                     const Logger& log)
    : loop_(loop), store_(store), committed_(std::move(committed)), drbg_(drbg), log_(log) {
  uv_timer_init(loop_, background_timer_.get());
  background_timer_.mark_live();
  background_timer_.get()->data = this;
  uv_unref(background_timer_.base());  // optional work: does not keep the loop alive
  schedule_background();               // inline blobs left by the last run
}

Persister::~Persister() = default;

void Persister::save(state::InstanceRecord record, std::function<void(Status)> durable) {
  const Uuid id = record.uuid;
  Pending change{std::move(record), {}};
  if (durable) change.waiters.push_back(std::move(durable));
  enqueue(id, std::move(change));
}

void Persister::remove(const Uuid& id, std::function<void(Status)> done) {
  Pending change{std::nullopt, {}};
  if (done) change.waiters.push_back(std::move(done));
  enqueue(id, std::move(change));
}

void Persister::enqueue(const Uuid& id, Pending change) {
  // Coalesce: the newest change contains every older one of the same
  // instance, so the older one's waiters wait for the newer write.
  change.since_us = uv_hrtime() / 1000;
  if (auto it = pending_.find(id); it != pending_.end()) {
    change.since_us = it->second.since_us;
    for (auto& waiter : it->second.waiters) change.waiters.push_back(std::move(waiter));
    it->second = std::move(change);
  } else {
    pending_.emplace(id, std::move(change));
  }
  if (!batch_) start_batch();
}

Status Persister::prepare_write(const Uuid& id, state::InstanceRecord record, BlobWrite& write) {
  write.id = id;
  const auto committed = committed_.entries.find(id);
  if (committed != committed_.entries.end() && !committed->second.quarantined) {
    write.entry = committed->second;
    ++write.entry.generation;
  } else {
    write.entry = {};
    write.entry.generation = 1;
    write.entry.key_epoch = store_.master().epoch;
    if (Status s = drbg_.fill(write.entry.key_salt); !s) return s;
  }
  auto nonce = drbg_.new_nonce();
  if (!nonce) return nonce.error();
  auto cached = keys_.find(id);
  if (cached == keys_.end() || cached->second.first != write.entry.key_salt) {
    cached = keys_.insert_or_assign(id, std::pair{write.entry.key_salt, store_.instance_key(id, write.entry)}).first;
  }
  write.key = cached->second.second;
  write.header.tpm = record.version;
  write.header.has_volatile = !record.blobs.volatile_state.empty();
  write.header.uuid = id;
  write.header.generation = write.entry.generation;
  write.header.key_epoch = write.entry.key_epoch;
  write.header.nonce = *nonce;
  write.record = std::move(record);
  return Status::success();
}

void Persister::seal(BlobWrite& write) {
  state::Bytes body = state::encode_record(write.record);
  write.sealed = state::seal_blob(write.key, write.header, body);
  state::wipe(body);
}

bool Persister::collides_with_materialization(const Uuid& id, bool removal) const {
  if (!materializing_) return false;
  for (const auto& m : materialize_work_) {
    if (m.id != id) continue;
    if (removal) return true;  // its shred would race the job's write
    // The job writes the slot of generation g; a write of g+2 (after a
    // committed g+1) would go into the same file at the same time.
    const auto committed = committed_.entries.find(id);
    const std::uint64_t next = committed == committed_.entries.end() ? 1 : committed->second.generation + 1;
    return next % 2 == m.entry.generation % 2;
  }
  return false;
}

void Persister::start_batch() {
  if (pending_.empty()) return;
  for (const auto& [id, change] : pending_) {
    if (collides_with_materialization(id, !change.record)) return;  // started again when the job ends
  }
  batch_ = std::make_unique<Batch>();
  Batch& batch = *batch_;
  auto changes = std::move(pending_);
  pending_.clear();
  batch.writes.reserve(changes.size());  // BlobWrite addresses must stay put
  for (auto& [id, change] : changes) {
    if (!change.record) {
      batch.removals.emplace_back(id, std::move(change.waiters));
      continue;
    }
    BlobWrite& write = batch.writes.emplace_back();
    write.waiters = std::move(change.waiters);
    write.since_us = change.since_us;
    write.result = prepare_write(id, std::move(*change.record), write);
  }
  std::size_t inline_count = committed_.inline_blobs.size();
  std::size_t inline_bytes = 0;
  for (const auto& [id, blob] : committed_.inline_blobs) inline_bytes += blob->size();
  std::vector<BlobWrite*> ready;
  for (auto& write : batch.writes) {
    if (!write.result) continue;
    // A new instance, while the manifest has room: sealed here, on the loop
    // (a few KiB of AES-GCM, microseconds), because a threadpool round trip
    // for it would cost more than the work on a busy CPU; it goes straight
    // to the commit.
    if (!committed_.entries.contains(write.id) && inline_count < kMaxInlineBlobs &&
        inline_bytes + state::kMaxInlineBlob <= kMaxInlineBytes) {
      seal(write);
      if (write.sealed.size() <= state::kMaxInlineBlob) {
        write.entry.blob_digest = state::sha256(write.sealed);
        write.inlined = true;
        ++inline_count;
        inline_bytes += write.sealed.size();
        continue;
      }
    }
    ready.push_back(&write);  // to its slot file
  }
  const std::size_t chunks = std::min(kMaxParallelWrites, ready.size());
  for (std::size_t c = 0; c < chunks; ++c) {
    auto chunk = std::make_unique<Chunk>();
    chunk->owner = this;
    chunk->request.data = chunk.get();
    for (std::size_t i = c; i < ready.size(); i += chunks) chunk->writes.push_back(ready[i]);
    batch.chunks.push_back(std::move(chunk));
  }
  batch.chunks_left = batch.chunks.size();
  if (batch.chunks.empty()) {
    start_commit();
    return;
  }
  for (auto& chunk : batch.chunks) {
    const int rc = uv_queue_work(
        loop_, &chunk->request,
        [](uv_work_t* req) {
          auto* c = static_cast<Chunk*>(req->data);
          for (BlobWrite* w : c->writes) {
            if (w->sealed.empty()) seal(*w);
            auto written = c->owner->store_.write_blob(w->id, w->entry.generation, w->sealed);
            if (written) {
              w->entry.blob_digest = written->digest;
              w->created_file = written->created;
            } else {
              w->result = written.error();
            }
          }
        },
        [](uv_work_t* req, int) { static_cast<Chunk*>(req->data)->owner->chunk_done(); });
    if (rc != 0) {
      for (BlobWrite* w : chunk->writes) {
        w->result = make_error(ErrorCode::kIo, std::string("cannot queue a state write: ") + uv_strerror(rc));
      }
      chunk_done();
    }
  }
}

void Persister::chunk_done() {
  if (--batch_->chunks_left == 0) start_commit();
}

void Persister::start_commit() {
  if (advancing_) {
    commit_waiting_ = true;  // manifests never run two epochs ahead of the counter
    return;
  }
  Batch& batch = *batch_;
  CommitWork& commit = batch.commit;
  commit.owner = this;
  commit.request.data = &commit;
  commit.next = committed_;
  bool changed = false;
  for (auto& write : batch.writes) {
    if (!write.result) continue;
    commit.next.entries[write.id] = write.entry;
    if (write.inlined) {
      commit.next.inline_blobs[write.id] = std::make_shared<const state::Bytes>(std::move(write.sealed));
    } else {
      commit.next.inline_blobs.erase(write.id);  // the slot file holds the committed generation now
    }
    commit.new_files = commit.new_files || write.created_file;
    changed = true;
  }
  // Inline blobs whose slot file a materialization made durable leave the
  // manifest: exactly those (same generation and digest, so not a newer
  // incarnation of the UUID).
  for (const auto& [id, entry] : materialized_) {
    const auto now = commit.next.entries.find(id);
    if (now != commit.next.entries.end() && now->second.generation == entry.generation &&
        now->second.blob_digest == entry.blob_digest && commit.next.inline_blobs.erase(id) > 0) {
      changed = true;
    }
  }
  materialized_.clear();
  for (const auto& [id, waiters] : batch.removals) {
    commit.next.entries.erase(id);
    commit.next.inline_blobs.erase(id);
    commit.shred.push_back(id);
    changed = true;
  }
  if (!changed) {
    finish_batch(Status::success());
    return;
  }
  const int rc = uv_queue_work(
      loop_, &commit.request,
      [](uv_work_t* req) {
        auto* c = static_cast<CommitWork*>(req->data);
        c->result = c->owner->store_.commit(c->next, c->new_files);
        if (!c->result) return;
        for (const auto& id : c->shred) {
          if (Status s = c->owner->store_.shred(id); !s) c->shred_failures.push_back(s.error().message);
        }
      },
      [](uv_work_t* req, int) {
        auto* c = static_cast<CommitWork*>(req->data);
        c->owner->commit_done(c->result);
      });
  if (rc != 0) commit_done(make_error(ErrorCode::kIo, std::string("cannot queue a state commit: ") + uv_strerror(rc)));
}

void Persister::commit_done(Status result) {
  CommitWork& commit = batch_->commit;
  if (result) {
    committed_ = std::move(commit.next);
    ++commits_;
    for (const auto& id : commit.shred) keys_.erase(id);
    if (store_.epoch_pending()) advance_epoch();
    if (committed_.inline_blobs.size() >= kMaterializeAt) materialize();
    schedule_background();
  } else {
    log_.error("committing the state manifest failed: " + result.error().message);
  }
  for (const auto& failure : commit.shred_failures) {
    log_.warn("removed instance's file not shredded (it is discarded at the next start): " + failure);
  }
  finish_batch(result);
}

void Persister::finish_batch(Status commit_result) {
  std::unique_ptr<Batch> batch = std::move(batch_);
  for (auto& write : batch->writes) {
    const Status outcome = write.result ? commit_result : write.result;
    ++writes_;
    if (outcome) lag_.observe(uv_hrtime() / 1000 - write.since_us);
    if (outcome) {
      last_failure_.erase(write.id);
    } else {
      last_failure_.insert_or_assign(write.id, outcome.error());
      ++failures_;
      log_.error(write.id, "persisting state failed: " + outcome.error().message);
    }
    for (auto& waiter : write.waiters) waiter(outcome);
  }
  for (auto& [id, waiters] : batch->removals) {
    if (commit_result) last_failure_.erase(id);
    for (auto& waiter : waiters) waiter(commit_result);
  }
  if (!batch_) start_batch();
  check_idle();
}

void Persister::when_durable(const Uuid& id, std::function<void(Status)> done) {
  if (auto it = pending_.find(id); it != pending_.end()) {
    it->second.waiters.push_back(std::move(done));
    return;
  }
  if (batch_) {
    for (auto& write : batch_->writes) {
      if (write.id == id) return write.waiters.push_back(std::move(done));
    }
    for (auto& [removed, waiters] : batch_->removals) {
      if (removed == id) return waiters.push_back(std::move(done));
    }
  }
  const auto failed = last_failure_.find(id);
  done(failed == last_failure_.end() ? Status::success() : Status(failed->second));
}

void Persister::when_idle(std::function<void()> done) {
  idle_waiters_.push_back(std::move(done));
  check_idle();
}

void Persister::refill_spares() {
  if (refilling_ || !store_.spares_wanted()) return;
  refilling_ = true;
  refill_request_.data = this;
  const int rc = uv_queue_work(
      loop_, &refill_request_,
      [](uv_work_t* req) {
        auto* self = static_cast<Persister*>(req->data);
        if (Status s = self->store_.refill_spares(); !s) {
          self->log_.warn("cannot create spare state files (new instances' first writes are slower): " +
                          s.error().message);
        }
      },
      [](uv_work_t* req, int) {
        auto* self = static_cast<Persister*>(req->data);
        self->refilling_ = false;
        self->check_idle();
      });
  if (rc != 0) refilling_ = false;
}

void Persister::advance_epoch() {
  advancing_ = true;
  epoch_request_.data = this;
  const int rc = uv_queue_work(
      loop_, &epoch_request_, [](uv_work_t* req) { static_cast<Persister*>(req->data)->store_.advance_epoch(); },
      [](uv_work_t* req, int) {
        auto* self = static_cast<Persister*>(req->data);
        self->advancing_ = false;
        if (std::exchange(self->commit_waiting_, false)) self->start_commit();
        self->check_idle();
      });
  // Not queued: the next commit is bound to the same epoch and retries.
  if (rc != 0) advancing_ = false;
}

void Persister::schedule_background() {
  uv_timer_start(background_timer_.get(), [](uv_timer_t* t) { static_cast<Persister*>(t->data)->background(); },
                 kQuietMs, 0);
}

void Persister::background() {
  if (batch_ || !pending_.empty() || advancing_) return schedule_background();  // not quiet yet
  if (materializing_ || refilling_) return;  // each ends by scheduling the next step
  if (!materialize()) refill_spares();
}

bool Persister::materialize() {
  if (materializing_) return true;  // one job at a time; it ends by scheduling the next step
  materialize_work_.clear();
  for (const auto& [id, blob] : committed_.inline_blobs) {
    const auto entry = committed_.entries.find(id);
    if (entry == committed_.entries.end() || entry->second.quarantined) continue;  // evidence stays as it is
    const bool done = std::any_of(materialized_.begin(), materialized_.end(), [&](const auto& m) {
      return m.first == id && m.second.generation == entry->second.generation;
    });
    if (!done) materialize_work_.push_back(Materialization{id, entry->second, blob});
  }
  if (materialize_work_.empty()) return false;
  materializing_ = true;
  materialize_request_.data = this;
  const int rc = uv_queue_work(
      loop_, &materialize_request_,
      [](uv_work_t* req) {
        auto* self = static_cast<Persister*>(req->data);
        bool created = false;
        for (auto& m : self->materialize_work_) {
          auto written = self->store_.write_blob(m.id, m.entry.generation, *m.sealed);
          if (!written) {
            m.result = written.error();
            continue;
          }
          created = created || written->created;
        }
        // The new directory entries must be durable before a manifest drops the inline copies.
        if (Status s = created ? self->store_.sync_blob_directory() : Status::success(); !s) {
          for (auto& m : self->materialize_work_) m.result = s;
        }
      },
      [](uv_work_t* req, int) {
        auto* self = static_cast<Persister*>(req->data);
        self->materializing_ = false;
        std::size_t moved = 0;
        for (auto& m : self->materialize_work_) {
          if (m.result) {
            self->materialized_.emplace_back(m.id, m.entry);
            ++moved;
          } else {
            self->log_.warn(m.id, "moving a new instance's state from the manifest to its file failed (it stays in the "
                                  "manifest): " + m.result.error().message);
          }
        }
        if (moved > 0) {
          self->log_.debug("moved the state of " + std::to_string(moved) +
                           " new instance(s) from the manifest to their files");
        }
        self->materialize_work_.clear();
        if (!self->batch_) self->start_batch();  // one may have waited for the job
        // Nothing else to commit: a commit of its own drops the moved blobs
        // from the manifest (rewritten at every commit, it should stay small).
        if (!self->batch_ && !self->materialized_.empty()) {
          self->batch_ = std::make_unique<Batch>();
          self->start_commit();
        }
        self->schedule_background();             // spares to refill
        self->check_idle();
      });
  if (rc != 0) materializing_ = false;
  return materializing_;
}

void Persister::check_idle() {
  if (batch_ || !pending_.empty() || refilling_ || advancing_ || materializing_) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& w : waiters) w();
}

}  // namespace vtpm
