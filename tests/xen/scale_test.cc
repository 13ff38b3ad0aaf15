// Many guests at once with boot-like TPM 1.2 traffic, all in flight
// together: the timeouts/durations queries at probe, Startup, PCR extends,
// GetRandom (the hwrng), PCR reads.
#include <doctest/doctest.h>

#include <cstdlib>

#include "tests/unit/support/temp_dir.h"
#include "tests/xen/guest.h"

namespace vtpm::xen::sim {

TEST_CASE("xen: many guests connected at once with boot traffic") {
  namespace cmd = vtpm::testing;
  const char* env = std::getenv("VTPMD_XEN_GUESTS");
  const std::size_t n = env != nullptr ? std::strtoul(env, nullptr, 10) : 500;
  testing::TempDir dir;
  HarnessOptions options;
  options.tpm12_workers_max = 2;
  Harness h(dir.path(), options);
  // The operator creates the guests' TPM 1.2 instances first (docs/xen.md),
  // all at once: manufacturing costs ~0.2 s of CPU each, and guests that
  // probed while it ran would time out their first query as Linux does.
  std::vector<std::string> uuids;
  std::size_t made = 0;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    // Distinct UUIDs beyond 256 guests: the last group carries the index.
    std::string u = cmd::test_uuid(0x58, static_cast<std::uint8_t>(i & 0xFF)).to_string();
    char index[24];
    std::snprintf(index, sizeof index, "%012zx", i);
    u.replace(u.size() - 12, 12, index);
    uuids.push_back(u);
    AddOptions add;
    add.uuid = *Uuid::parse(u);
    add.version = TpmVersion::k12;
    add.auto_startup = true;
    add.max_command_size = tpmif::kMaxPacket;
    h.service().add(add, [&](Result<const Instance*> r) { ++(r ? made : failed); });
  }
  REQUIRE(h.run_until([&] { return made + failed == n; }, std::chrono::seconds(600)));
  REQUIRE(failed == 0);
  const auto begin = std::chrono::steady_clock::now();
  Toolstack ts(h.hv());
  std::vector<std::unique_ptr<Guest>> guests;
  for (std::size_t i = 0; i < n; ++i) {
    guests.push_back(std::make_unique<Guest>(h, ts, static_cast<DomId>(100 + i), uuids[i]));
  }
  REQUIRE(h.run_until([&] {
    for (auto& g : guests) if (g->backend_state() != 2) return false;
    return true;
  }, std::chrono::seconds(30)));  // libxl allows 10 s
  const auto created = std::chrono::steady_clock::now();
  for (auto& g : guests) g->front().probe();
  // Each guest runs its boot sequence as its own chain of commands.
  struct Run {
    std::size_t step = 0;
    std::size_t failures = 0;
    bool done = false;
  };
  std::vector<Run> runs(n);
  const std::vector<std::vector<std::uint8_t>> script = {
      cmd::tpm12_startup_clear(), cmd::tpm12_extend(0, 1), cmd::tpm12_extend(4, 2), cmd::tpm12_extend(5, 3),
      cmd::tpm12_get_random(32),  cmd::tpm12_pcr_read(0),  cmd::tpm12_pcr_read(4), cmd::tpm12_get_random(16)};
  std::function<void(std::size_t)> next = [&](std::size_t i) {
    if (runs[i].step == script.size()) {
      runs[i].done = true;
      return;
    }
    guests[i]->front().transmit(script[runs[i].step], [&, i](std::optional<FrontError> e, std::vector<std::uint8_t> r) {
      const std::uint32_t rc = r.size() >= 10 ? tpm::read_u32(r, 6) : 0xFFFFFFFF;
      const bool startup = runs[i].step == 0;
      if (e || !(rc == 0 || (startup && rc == tpm::kTpm12InvalidPostinit))) ++runs[i].failures;
      ++runs[i].step;
      next(i);
    });
  };
  std::vector<bool> started(n, false);
  REQUIRE(h.run_until([&] {
    bool all = true;
    for (std::size_t i = 0; i < n; ++i) {
      auto& f = guests[i]->front();
      if (!started[i] && f.connected() && f.probe_done() && !f.busy()) {
        started[i] = true;
        next(i);
      }
      all = all && runs[i].done;
    }
    return all;
  }, std::chrono::seconds(600)));
  std::size_t failures = 0;
  for (auto& r : runs) failures += r.failures;
  CHECK(failures == 0);
  std::size_t timeouts_known = 0;
  for (auto& g : guests) timeouts_known += g->front().timeouts_known() ? 1 : 0;
  CHECK(timeouts_known == n);
  CHECK(h.backend().connected() == n);
  CHECK(h.service().registry().size() == n);
  const auto end = std::chrono::steady_clock::now();
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  MESSAGE(n << " guests (instances made beforehand): all in InitWait in " << duration_cast<milliseconds>(created - begin).count()
            << " ms; reset, connected and booted in " << duration_cast<milliseconds>(end - created).count() << " ms");
}

}  // namespace vtpm::xen::sim
