#include "src/core/persister.h"

#include <algorithm>
#include <memory>

#include "state/sealed_blob.h"

namespace vtpm {
namespace {

// Blob writes of one batch run on at most this many threadpool threads
// (libuv's default pool has 4): parallel fsyncs share journal commits.
constexpr std::size_t kMaxParallelWrites = 4;

}  // namespace

struct Persister::BlobWrite {
  Uuid id;
  state::InstanceRecord record;
  state::SecretKey key;
  state::SealedHeader header;
  state::ManifestEntry entry;  // as committed once this write lands
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
    : loop_(loop), store_(store), committed_(std::move(committed)), drbg_(drbg), log_(log) {}

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

void Persister::start_batch() {
  if (pending_.empty()) return;
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
  std::vector<BlobWrite*> ready;
  for (auto& write : batch.writes) {
    if (write.result) ready.push_back(&write);
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
            state::Bytes body = state::encode_record(w->record);
            const state::Bytes sealed = state::seal_blob(w->key, w->header, body);
            state::wipe(body);
            auto written = c->owner->store_.write_blob(w->id, w->header.generation, sealed);
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
  Batch& batch = *batch_;
  CommitWork& commit = batch.commit;
  commit.owner = this;
  commit.request.data = &commit;
  commit.next = committed_;
  bool changed = false;
  for (const auto& write : batch.writes) {
    if (!write.result) continue;
    commit.next.entries[write.id] = write.entry;
    commit.new_files = commit.new_files || write.created_file;
    changed = true;
  }
  for (const auto& [id, waiters] : batch.removals) {
    commit.next.entries.erase(id);
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
    if (commit.new_files) refill_spares();
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
    if (!outcome) {
      ++failures_;
      log_.error(write.id, "persisting state failed: " + outcome.error().message);
    }
    for (auto& waiter : write.waiters) waiter(outcome);
  }
  for (auto& [id, waiters] : batch->removals) {
    for (auto& waiter : waiters) waiter(commit_result);
  }
  if (!batch_) start_batch();
  check_idle();
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

void Persister::check_idle() {
  if (batch_ || !pending_.empty() || refilling_) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& w : waiters) w();
}

}  // namespace vtpm
