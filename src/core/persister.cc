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

void Persister::save(state::InstanceRecord record, std::function<void(Status)> durable) {
  const Uuid id = record.uuid;
  Op op{std::move(record), {}};
  if (durable) op.waiters.push_back(std::move(durable));
  enqueue(id, std::move(op));
}

void Persister::remove(const Uuid& id, std::function<void(Status)> done) {
  Op op{std::nullopt, {}};
  if (done) op.waiters.push_back(std::move(done));
  enqueue(id, std::move(op));
}

void Persister::enqueue(const Uuid& id, Op op) {
  Slot& slot = slots_[id];
  if (!slot.busy) {
    slot.busy = true;
    start(id, std::move(op));
    return;
  }
  // Coalesce: only the newest state matters, and it contains every older
  // change, so the replaced op's waiters wait for the newer write instead.
  if (slot.next) {
    for (auto& waiter : slot.next->waiters) op.waiters.push_back(std::move(waiter));
  }
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
    return;
  }
  // Not queued: report it like a failed write, so waiters are answered and
  // the slot moves on.
  work->result = make_error(ErrorCode::kIo, std::string("cannot queue state write: ") + uv_strerror(rc));
  finished(*work);
}

void Persister::finished(Work& work) {
  --in_flight_;
  ++writes_;
  if (!work.result) {
    ++failures_;
    log_.error(work.id, "persisting state failed: " + work.result.error().message);
  }
  for (auto& waiter : work.op.waiters) waiter(work.result);
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
