// Asynchronous persistence of instance records on the libuv threadpool.
// Per instance, at most one write is in flight; changes that arrive
// meanwhile are merged into one next write (only the newest record is
// written). A remove is ordered after the instance's in-flight write.
//
// Thread affinity: loop thread. FileStore calls run on the threadpool.
#pragma once

#include <uv.h>

#include <functional>
#include <optional>
#include <unordered_map>

#include "src/core/log.h"
#include "state/file_store.h"

namespace vtpm {

class Persister {
 public:
  Persister(uv_loop_t* loop, const state::FileStore& store, const Logger& log);
  Persister(const Persister&) = delete;
  Persister& operator=(const Persister&) = delete;

  // `durable` (optional) runs once a write that contains this record (or a
  // newer one of the same instance, merged into it) is on disk, or failed.
  void save(state::InstanceRecord record, std::function<void(Status)> durable = {});
  void remove(const Uuid& id, std::function<void(Status)> done = {});
  std::size_t in_flight() const { return in_flight_; }
  // Runs `done` once nothing is in flight or pending (now, if idle).
  void when_idle(std::function<void()> done);
  std::uint64_t writes() const { return writes_; }
  std::uint64_t failures() const { return failures_; }

 private:
  struct Op {
    std::optional<state::InstanceRecord> record;  // empty: remove
    std::vector<std::function<void(Status)>> waiters;
  };
  struct Slot {
    bool busy = false;
    std::optional<Op> next;
  };
  struct Work;

  void enqueue(const Uuid& id, Op op);
  void start(const Uuid& id, Op op);
  void finished(Work& work);
  void check_idle();

  uv_loop_t* loop_;
  const state::FileStore& store_;
  const Logger& log_;
  std::unordered_map<Uuid, Slot> slots_;
  std::size_t in_flight_ = 0;
  std::uint64_t writes_ = 0;
  std::uint64_t failures_ = 0;
  std::vector<std::function<void()>> idle_waiters_;
};

}  // namespace vtpm
