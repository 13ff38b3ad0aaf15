// The engine loop on its own thread: cancellation of the running command,
// and completions delivered for everything submitted.
#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "src/engine/engine_loop.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::engine {
namespace {

using namespace vtpm::testing;

class Collector {
 public:
  void add(Completion&& c) {
    std::lock_guard lock(mutex_);
    done_.push_back(std::move(c));
    changed_.notify_all();
  }
  std::vector<Completion> wait_for(std::size_t n) {
    std::unique_lock lock(mutex_);
    REQUIRE(changed_.wait_for(lock, std::chrono::seconds(30), [&] { return done_.size() >= n; }));
    return done_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Completion> done_;
};

Job make_job(JobId id, const Uuid& instance, JobKind kind, Bytes command = {}) {
  Job job;
  job.id = id;
  job.instance = instance;
  job.kind = kind;
  job.command = std::move(command);
  job.params = InstanceParams{TpmVersion::k20, 4096, true};
  return job;
}

}  // namespace

TEST_CASE("cancel aborts a running key generation and drops the instance's queued commands") {
  Collector collected;
  EngineLoop loop(MultiplexerOptions{}, [&](Completion&& c) { collected.add(std::move(c)); });
  std::thread engine([&] { loop.run(); });
  Uuid::Bytes b{};
  b[15] = 0x77;
  const Uuid id(b);
  loop.submit(make_job(1, id, JobKind::kAttach));
  collected.wait_for(1);
  // Key generation takes tens of milliseconds and libtpms checks the cancel
  // flag only at some points of the prime search, so keep signalling cancel
  // until the command returns; vary the key so attempts take different paths.
  bool saw_cancel = false;
  JobId next = 2;
  std::size_t expected = 1;
  for (int attempt = 0; attempt < 20 && !saw_cancel; ++attempt) {
    const JobId keygen = next++;
    loop.submit(make_job(keygen, id, JobKind::kExecute, tpm2_create_primary_rsa2048(static_cast<std::uint8_t>(attempt))));
    loop.submit(make_job(next++, id, JobKind::kExecute, tpm2_get_random(4)));
    expected += 2;
    bool finished = false;
    while (!finished) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      loop.submit(make_job(next++, id, JobKind::kCancel));
      ++expected;
      for (const auto& c : collected.wait_for(expected)) {
        if (c.id != keygen) continue;
        finished = true;
        if (c.ok && tpm::response_code(c.response) == tpm::kTpm2RcCanceled) saw_cancel = true;
      }
    }
    loop.submit(make_job(next++, id, JobKind::kExecute, tpm2_flush_context(0x80000000)));
    expected += 1;
    collected.wait_for(expected);
  }
  CHECK(saw_cancel);
  // The instance still works after cancellations.
  const JobId after = next++;
  loop.submit(make_job(after, id, JobKind::kExecute, tpm2_get_random(8)));
  auto done = collected.wait_for(expected + 1);
  CHECK(tpm::response_code(done.back().response) == 0);
  loop.submit(make_job(next++, id, JobKind::kDetach));
  collected.wait_for(expected + 2);
  loop.stop();
  engine.join();
}

}  // namespace vtpm::engine
