#include "src/core/persister.h"

#include <memory>

namespace vtpm {

struct Persister::Work {
  uv_work_t request{};
  Persister* owner = nullptr;
  Uuid id;
  Op op;
  Status result;
};

Persister::Persister(uv_loop_t* loop, const state::FileStore& store, const Logger& log)
    : loop_(loop), store_(store), log_(log) {}

void Persister::save(state::InstanceRecord record) {
  const Uuid id = record.uuid;
  enqueue(id, Op{std::move(record), {}});
}

void Persister::remove(const Uuid& id, std::function<void(Status)> done) { enqueue(id, Op{std::nullopt, std::move(done)}); }

void Persister::enqueue(const Uuid& id, Op op) {
  Slot& slot = slots_[id];
  if (!slot.busy) {
    slot.busy = true;
    start(id, std::move(op));
    return;
  }
  // Coalesce: only the newest state matters. A replaced op's waiter is
  // told the newer op's outcome instead.
  if (slot.next && slot.next->done && !op.done) op.done = std::move(slot.next->done);
  slot.next = std::move(op);
}

void Persister::start(const Uuid& id, Op op) {
  auto work = std::make_unique<Work>();
  work->owner = this;
  work->id = id;
  work->op = std::move(op);
  work->request.data = work.get();
  ++in_flight_;
  const int rc = uv_queue_work(
      loop_, &work->request,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->result = w->op.record ? w->owner->store_.save(*w->op.record) : w->owner->store_.remove(w->id);
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<Work> w(static_cast<Work*>(req->data));
        w->owner->finished(*w);
      });
  if (rc == 0) {
    work.release();  // reclaimed in the after-work callback
  } else {
    --in_flight_;
    log_.error(id, std::string("cannot queue state write: ") + uv_strerror(rc));
  }
}

void Persister::finished(Work& work) {
  --in_flight_;
  ++writes_;
  if (!work.result) {
    ++failures_;
    log_.error(work.id, "persisting state failed: " + work.result.error().message);
  }
  if (work.op.done) work.op.done(work.result);
  Slot& slot = slots_[work.id];
  if (slot.next) {
    Op next = std::move(*slot.next);
    slot.next.reset();
    start(work.id, std::move(next));
  } else {
    slots_.erase(work.id);
  }
  check_idle();
}

void Persister::when_idle(std::function<void()> done) {
  idle_waiters_.push_back(std::move(done));
  check_idle();
}

void Persister::check_idle() {
  if (in_flight_ != 0 || !slots_.empty()) return;
  auto waiters = std::move(idle_waiters_);
  idle_waiters_.clear();
  for (auto& w : waiters) w();
}

}  // namespace vtpm
