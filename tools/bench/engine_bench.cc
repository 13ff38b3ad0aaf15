// Engine micro-benchmark (not a test): swap cost and commands per second
// with 1, 10 and 1000 instances interleaved, TPM 2.0 and TPM 1.2, through
// the same Engine the daemon uses (engine thread + vtpmd-engine workers).
// Each instance has one command outstanding at a time, as a guest does.
// The "CreatePrimary ECC" rows send CreatePrimary (ECC P-256 storage key),
// then FlushContext, instead of PCR_Extend; interleaved, each CreatePrimary
// follows a swap, and libtpms re-runs its ECC self-test on the first ECC use
// after every TPMLIB_MainInit (it marks every algorithm untested there).
// Latencies are CreatePrimary's; commands/s counts CreatePrimary only.
//
//   engine_bench [--worker PATH] [--seconds S] [--json FILE] [--quick]
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/engine/engine.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::engine {
namespace {

using namespace vtpm::testing;
using SteadyClock = std::chrono::steady_clock;

struct Scenario {
  std::string name;
  TpmVersion version;
  std::size_t instances;
  std::size_t workers_max;
  std::chrono::milliseconds slice;
  double seconds;
  bool key_cache = true;
  bool create_primary_ecc = false;  // CreatePrimary + FlushContext instead of PCR_Extend
};

struct Outcome {
  std::uint64_t commands = 0;
  double seconds = 0;
  std::uint64_t swaps = 0;
  double swap_us_avg = 0;
  std::vector<std::uint64_t> latencies_us;
};

Uuid id_for(std::size_t n) {
  Uuid::Bytes b{};
  b[0] = 0x42;
  for (int i = 0; i < 8; ++i) b[15 - i] = static_cast<std::uint8_t>(n >> (8 * i));
  return Uuid(b);
}

class Bench {
 public:
  explicit Bench(std::string worker) : worker_(std::move(worker)) { uv_loop_init(&loop_); }
  ~Bench() { uv_loop_close(&loop_); }

  Outcome run(const Scenario& s) {
    EngineOptions options;
    options.worker_path = worker_;
    options.tpm12_workers_max = s.workers_max;
    options.multiplexer.tpm12_slice = s.slice;
    options.multiplexer.tpm12_selftest_key_cache = s.key_cache;
    Outcome out;
    {
      Engine engine(&loop_, options, [](const Uuid&, const std::string&) {});
      engine_ = &engine;
      attach_all(s);
      warm_up(s);  // first loads of cloned states are not steady-state swaps
      auto [swaps_before, swap_us_before] = swap_totals(engine);
      out = drive(s);
      auto [swaps_after, swap_us_after] = swap_totals(engine);
      out.swaps = swaps_after - swaps_before;
      out.swap_us_avg = out.swaps ? static_cast<double>(swap_us_after - swap_us_before) / static_cast<double>(out.swaps) : 0;
      for (std::size_t i = 0; i < s.instances; ++i) engine.detach(id_for(i), [](Completion&&) {});
      wait_idle();
      engine_ = nullptr;
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    return out;
  }

 private:
  static std::pair<std::uint64_t, std::uint64_t> swap_totals(const Engine& engine) {
    std::uint64_t swaps = 0, us = 0;
    for (const auto& st : engine.stats()) {
      swaps += st.swaps;
      us += st.swap_us_total;
    }
    return {swaps, us};
  }

  void warm_up(const Scenario& s) {
    for (std::size_t i = 0; i < s.instances; ++i) {
      engine_->execute(id_for(i), command_for(s, i), 0,
                       [this, &s, i](Completion&& c) { then_flush(s, i, c.response, [] {}); });
    }
    wait_idle();
  }

  // CreatePrimary leaves a transient object loaded: flush it before the
  // instance's next command (three slots would fill up otherwise).
  void then_flush(const Scenario& s, std::size_t i, const Bytes& response, std::function<void()> next) {
    if (!s.create_primary_ecc || response.size() < 14 || tpm::response_code(response) != 0) return next();
    std::uint32_t handle = 0;
    for (std::size_t b = 10; b < 14; ++b) handle = (handle << 8) | response[b];
    engine_->execute(id_for(i), tpm2_flush_context(handle), 0, [next = std::move(next)](Completion&&) { next(); });
  }

  void wait_idle() {
    while (engine_->outstanding_total() > 0) uv_run(&loop_, UV_RUN_ONCE);
  }

  // Manufactures one instance and clones its state into the rest: a TPM 1.2
  // manufacture costs ~200 ms, which is not what this benchmark measures.
  void attach_all(const Scenario& s) {
    const InstanceParams params{s.version, 4096, true};
    std::optional<Completion> first;
    engine_->attach(id_for(0), params, {}, [&](Completion&& c) { first = std::move(c); });
    wait_idle();
    std::optional<Completion> snap;
    engine_->snapshot(id_for(0), [&](Completion&& c) { snap = std::move(c); });
    wait_idle();
    for (std::size_t i = 1; i < s.instances; ++i) {
      StateBlobs blobs{*snap->permanent, *snap->volatile_state, {}};
      engine_->attach(id_for(i), params, std::move(blobs), [](Completion&&) {});
    }
    wait_idle();
  }

  Bytes command_for(const Scenario& s, std::size_t i) {
    if (s.create_primary_ecc) return tpm2_create_primary_ecc();
    return s.version == TpmVersion::k20 ? tpm2_pcr_extend(16, static_cast<std::uint8_t>(i))
                                        : tpm12_extend(10, static_cast<std::uint8_t>(i));
  }

  void submit(const Scenario& s, std::size_t i, Outcome& out, SteadyClock::time_point deadline) {
    const auto sent = SteadyClock::now();
    engine_->execute(id_for(i), command_for(s, i), 0, [this, &s, i, &out, sent, deadline](Completion&& c) {
      const auto now = SteadyClock::now();
      if (c.ok && tpm::response_code(c.response) == 0) {
        ++out.commands;
        out.latencies_us.push_back(
            static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count()));
      }
      if (now < deadline) then_flush(s, i, c.response, [this, &s, i, &out, deadline] { submit(s, i, out, deadline); });
    });
  }

  Outcome drive(const Scenario& s) {
    Outcome out;
    const auto start = SteadyClock::now();
    const auto deadline = start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(s.seconds));
    for (std::size_t i = 0; i < s.instances; ++i) submit(s, i, out, deadline);
    wait_idle();
    out.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    return out;
  }

  uv_loop_t loop_{};
  std::string worker_;
  Engine* engine_ = nullptr;
};

std::uint64_t percentile(std::vector<std::uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace
}  // namespace vtpm::engine

int main(int argc, char** argv) {
  using namespace vtpm::engine;
  std::string worker = VTPMD_BENCH_ENGINE_WORKER;
  std::string json_path;
  double seconds = 3;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--worker" && i + 1 < argc) worker = argv[++i];
    else if (arg == "--seconds" && i + 1 < argc) seconds = std::stod(argv[++i]);
    else if (arg == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (arg == "--quick") quick = true;
    else {
      std::fprintf(stderr, "usage: engine_bench [--worker PATH] [--seconds S] [--json FILE] [--quick]\n");
      return 2;
    }
  }
  using std::chrono::milliseconds;
  const vtpm::TpmVersion v2 = vtpm::TpmVersion::k20, v1 = vtpm::TpmVersion::k12;
  std::vector<Scenario> scenarios = {
      {"2.0 x1 (engine thread)", v2, 1, 64, milliseconds(500), seconds},
      {"2.0 x10 interleaved", v2, 10, 64, milliseconds(500), seconds},
      {"2.0 x1000 interleaved", v2, 1000, 64, milliseconds(500), seconds},
      {"2.0 x1, CreatePrimary ECC", v2, 1, 64, milliseconds(500), seconds, true, true},
      {"2.0 x10 interleaved, CreatePrimary ECC", v2, 10, 64, milliseconds(500), seconds, true, true},
      {"1.2 x1 (own worker)", v1, 1, 64, milliseconds(500), seconds},
      {"1.2 x10 (own workers)", v1, 10, 64, milliseconds(500), seconds},
      {"1.2 x10 one engine, no residency, no key cache", v1, 10, 0, milliseconds(0), seconds, false},
      {"1.2 x10 one engine, no residency", v1, 10, 0, milliseconds(0), seconds},
      {"1.2 x10 one engine, 500 ms slice + linger", v1, 10, 0, milliseconds(500), seconds},
      {"1.2 x1000 on 64 workers, 500 ms slice", v1, 1000, 64, milliseconds(500), std::max(seconds, 10.0)},
  };
  if (quick) {
    scenarios.erase(scenarios.begin() + 2);  // 2.0 x1000
    scenarios.pop_back();                    // 1.2 x1000
  }
  std::printf("%-46s %10s %10s %8s %12s %10s %10s\n", "scenario", "cmds", "cmds/s", "swaps", "swap avg us",
              "p50 us", "p99 us");
  nlohmann::json results = nlohmann::json::array();
  Bench bench(worker);
  for (const auto& s : scenarios) {
    Outcome o = bench.run(s);
    const double rate = o.seconds > 0 ? static_cast<double>(o.commands) / o.seconds : 0;
    const auto p50 = percentile(o.latencies_us, 0.50);
    const auto p99 = percentile(o.latencies_us, 0.99);
    std::printf("%-46s %10llu %10.0f %8llu %12.1f %10llu %10llu\n", s.name.c_str(),
                static_cast<unsigned long long>(o.commands), rate, static_cast<unsigned long long>(o.swaps),
                o.swap_us_avg, static_cast<unsigned long long>(p50), static_cast<unsigned long long>(p99));
    std::fflush(stdout);
    results.push_back({{"scenario", s.name}, {"tpm", vtpm::tpm_version_name(s.version)}, {"instances", s.instances},
                       {"command", s.create_primary_ecc ? "CreatePrimary ECC P-256 + FlushContext" : "Extend"},
                       {"workers_max", s.workers_max}, {"slice_ms", s.slice.count()}, {"selftest_key_cache", s.key_cache}, {"commands", o.commands},
                       {"seconds", o.seconds}, {"commands_per_s", rate}, {"swaps", o.swaps},
                       {"swap_us_avg", o.swap_us_avg}, {"latency_p50_us", p50}, {"latency_p99_us", p99}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << results.dump(2) << "\n";
  return 0;
}
