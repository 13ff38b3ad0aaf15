// The Engine on a real libuv loop with real vtpmd-engine workers: placement
// of TPM 1.2 instances on their own workers, a worker that dies, and a loop
// that closes with no live handles.
#include <doctest/doctest.h>
#include <uv.h>

#include <csignal>
#include <functional>
#include <optional>
#include <vector>

#include "src/engine/engine.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::engine {
namespace {

using namespace vtpm::testing;

Uuid make_id(std::uint8_t n) { return test_uuid(0x20, n); }

class LoopFixture {
 public:
  LoopFixture() { uv_loop_init(&loop_); }
  ~LoopFixture() {
    engine_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // run close callbacks
    CHECK(uv_loop_close(&loop_) == 0);  // fails if any handle leaked
  }

  Engine& make_engine(std::size_t workers_max, std::uint32_t isolate_busy_ms = 0) {
    EngineOptions options;
    options.worker_path = VTPMD_TEST_ENGINE_WORKER;
    options.tpm12_workers_max = workers_max;
    options.isolate_busy_ms = isolate_busy_ms;
    engine_.emplace(&loop_, options, [this](const Uuid& id, const std::string&) { lost_.push_back(id); });
    return *engine_;
  }

  // Runs the loop until `done` holds a value (bounded by a timer).
  Completion wait(std::optional<Completion>& done) {
    uv_timer_t timer;
    uv_timer_init(&loop_, &timer);
    uv_timer_start(&timer, [](uv_timer_t* t) { uv_stop(t->loop); }, 20000, 0);
    while (!done) {
      uv_run(&loop_, UV_RUN_ONCE);
      if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&timer))) break;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    REQUIRE(done.has_value());
    return std::move(*done);
  }

  // Runs the loop until `done()` holds or `ms` pass.
  void run_until(const std::function<bool()>& done, std::uint64_t ms) {
    const std::uint64_t deadline = uv_now(&loop_) + ms;
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);  // wakes the loop to re-check
    while (!done() && uv_now(&loop_) < deadline) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  Completion attach(const Uuid& id, TpmVersion v) {
    std::optional<Completion> done;
    engine_->attach(id, InstanceParams{v, 4096, true}, {}, [&](Completion&& c) { done = std::move(c); });
    return wait(done);
  }

  Completion exec(const Uuid& id, Bytes command) {
    std::optional<Completion> done;
    engine_->execute(id, std::move(command), 0, [&](Completion&& c) { done = std::move(c); });
    return wait(done);
  }

  Completion detach(const Uuid& id) {
    std::optional<Completion> done;
    engine_->detach(id, [&](Completion&& c) { done = std::move(c); });
    return wait(done);
  }

  uv_loop_t loop_{};
  std::optional<Engine> engine_;
  std::vector<Uuid> lost_;
};

int pid_of(const Engine& engine, const std::string& name) {
  for (const auto& s : engine.stats()) {
    if (s.name == name) return s.pid;
  }
  return -1;
}

}  // namespace

TEST_CASE("TPM 2.0 instances share the engine thread; TPM 1.2 instances get their own worker") {
  LoopFixture f;
  Engine& engine = f.make_engine(4);
  REQUIRE(f.attach(make_id(1), TpmVersion::k20).ok);
  REQUIRE(f.attach(make_id(2), TpmVersion::k20).ok);
  REQUIRE(f.attach(make_id(3), TpmVersion::k12).ok);
  REQUIRE(f.attach(make_id(4), TpmVersion::k12).ok);
  CHECK(engine.placement(make_id(1)) == "engine-thread");
  CHECK(engine.placement(make_id(2)) == "engine-thread");
  CHECK(engine.placement(make_id(3)).starts_with("engine-worker-"));
  CHECK(engine.placement(make_id(4)).starts_with("engine-worker-"));
  CHECK(engine.placement(make_id(3)) != engine.placement(make_id(4)));
  Completion r = f.exec(make_id(3), tpm12_extend(10, 1));
  CHECK(r.ok);
  CHECK_FALSE(r.swapped);  // resident: never swapped out
  for (std::uint8_t i = 1; i <= 4; ++i) CHECK(f.detach(make_id(i)).ok);
}

TEST_CASE("a TPM 2.0 instance that hogs the engine thread moves to its own worker, live and in order") {
  LoopFixture f;
  Engine& engine = f.make_engine(4, /*isolate_busy_ms=*/50);
  const Uuid hog = make_id(1), quiet = make_id(2);
  REQUIRE(f.attach(hog, TpmVersion::k20).ok);
  REQUIRE(f.attach(quiet, TpmVersion::k20).ok);
  REQUIRE(f.exec(hog, tpm2_pcr_extend(16, 0xaa)).ok);
  const Bytes pcr_before = f.exec(hog, tpm2_pcr_read(16)).response;
  // A guest flooding RSA key generations (each flushed, each followed by a
  // PCR read), three commands in flight, the next sent from each answer —
  // so commands keep arriving while the instance moves. Every answer must
  // come back in order, with the PCR value intact wherever it runs.
  int next = 0, expected = 0, failures = 0, after_move = 0;
  std::function<void()> send_next = [&] {
    const int i = next++;
    Bytes command = i % 3 == 0   ? tpm2_create_primary_rsa2048(static_cast<std::uint8_t>(i))
                    : i % 3 == 1 ? tpm2_flush_context(0x80000000)
                                 : tpm2_pcr_read(16);
    engine.execute(hog, std::move(command), 0, [&, i](Completion&& c) {
      if (i != expected++ || !c.ok || tpm::response_code(c.response) != 0 || (i % 3 == 2 && c.response != pcr_before)) {
        ++failures;
      }
      if (engine.isolations() > 0) ++after_move;
      if (after_move < 30) send_next();
    });
  };
  for (int depth = 0; depth < 3; ++depth) send_next();
  f.run_until([&] { return after_move >= 30 && expected == next; }, 20000);
  CHECK(failures == 0);
  CHECK(expected == next);
  MESSAGE(next << " commands, " << after_move << " answered after the move");

  CHECK(engine.isolations() == 1);
  CHECK(engine.placement(hog).starts_with("engine-worker-"));
  CHECK(engine.placement(quiet) == "engine-thread");
  CHECK(f.exec(quiet, tpm2_get_random(8)).ok);
  CHECK(f.detach(hog).ok);
  CHECK(f.detach(quiet).ok);
}

TEST_CASE("beyond the worker limit TPM 1.2 instances share the least-loaded worker") {
  LoopFixture f;
  Engine& engine = f.make_engine(1);
  REQUIRE(f.attach(make_id(1), TpmVersion::k12).ok);
  REQUIRE(f.attach(make_id(2), TpmVersion::k12).ok);
  CHECK(engine.placement(make_id(1)) == engine.placement(make_id(2)));
  CHECK(f.exec(make_id(1), tpm12_get_random(4)).ok);
  CHECK(f.exec(make_id(2), tpm12_get_random(4)).ok);
  CHECK(f.detach(make_id(1)).ok);
  CHECK(f.detach(make_id(2)).ok);
}

TEST_CASE("a worker that dies fails its pending jobs and reports its instances lost") {
  LoopFixture f;
  Engine& engine = f.make_engine(2);
  const Uuid victim = make_id(7);
  REQUIRE(f.attach(victim, TpmVersion::k12).ok);
  const std::string worker = engine.placement(victim);
  const int pid = pid_of(engine, worker);
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);
  Completion r = f.exec(victim, tpm12_get_random(4));
  CHECK_FALSE(r.ok);
  CHECK(r.error == ErrorCode::kUnavailable);
  CHECK(f.lost_ == std::vector<Uuid>{victim});
  CHECK(engine.placement(victim).empty());
  // The instance can be hosted again (on a fresh worker).
  REQUIRE(f.attach(victim, TpmVersion::k12).ok);
  CHECK(engine.placement(victim) != worker);
  CHECK(f.exec(victim, tpm12_get_random(4)).ok);
  CHECK(f.detach(victim).ok);
}

TEST_CASE("outstanding counts follow accepted jobs until their callbacks run") {
  LoopFixture f;
  Engine& engine = f.make_engine(0);
  const Uuid id = make_id(1);
  REQUIRE(f.attach(id, TpmVersion::k20).ok);
  std::optional<Completion> first, second;
  engine.execute(id, tpm2_get_random(4), 0, [&](Completion&& c) { first = std::move(c); });
  engine.execute(id, tpm2_get_random(4), 0, [&](Completion&& c) { second = std::move(c); });
  CHECK(engine.outstanding(id) == 2);
  f.wait(first);
  f.wait(second);
  CHECK(engine.outstanding(id) == 0);
  CHECK(f.detach(id).ok);
}

}  // namespace vtpm::engine
