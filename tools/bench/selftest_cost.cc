// What a TPM 2.0 swap makes the next command pay, in libtpms alone (not a
// test; docs/performance.md, "libtpms re-runs its self-tests after a swap").
//
// libtpms' TPMLIB_MainInit, which every swap-in runs, marks every algorithm
// untested again (_TPM_Init -> CryptInit -> CryptInitializeToTest), so the
// first use of an algorithm after a swap runs its self-test first. For each
// command this prints its median latency resident (no swap), right after a
// swap, and right after a swap followed by IncrementalSelfTest of the listed
// algorithms (that command's own time printed too): when the third figure is
// back at the first, the difference was the self-test. Runs on this thread
// through the engine's LibtpmsAdapter, one TPM, no daemon.
//
//   selftest_cost [--rounds N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "src/engine/libtpms_adapter.h"
#include "tests/support/tpm_commands.h"

namespace {

using namespace vtpm;
using namespace vtpm::testing;
using engine::LibtpmsAdapter;
using engine::InstanceParams;
using engine::StateBlobs;
using Clock = std::chrono::steady_clock;

constexpr std::uint16_t kAlgRsa = 0x0001, kAlgHmac = 0x0005, kAlgAes = 0x0006, kAlgSha256 = 0x000B,
                        kAlgEcdsa = 0x0018, kAlgEcdh = 0x0019;

struct Case {
  std::string name;
  Bytes command;
  std::vector<std::uint16_t> self_tests;  // what IncrementalSelfTest runs before it
};

Bytes incremental_self_test(const std::vector<std::uint16_t>& algorithms) {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x142);
  tpm::append_u32(p, static_cast<std::uint32_t>(algorithms.size()));
  for (std::uint16_t alg : algorithms) tpm::append_u16(p, alg);
  return finish(p);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

class Probe {
 public:
  Probe() {
    must(tpm_.load(params_, &blobs_), "manufacture");
    run(tpm2_startup_clear());
  }
  ~Probe() { tpm_.discard(); }

  void swap() {
    must(tpm_.unload(), "unload");
    must(tpm_.load(params_, &blobs_), "load");
  }

  // Runs `command` and returns its latency in microseconds; a CreatePrimary's
  // object is flushed afterwards (outside the timing).
  double timed(const Bytes& command) {
    const auto t0 = Clock::now();
    const Bytes response = run(command);
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (command.size() > 9 && command[8] == 0x01 && command[9] == 0x31) {
      std::uint32_t handle = 0;
      for (std::size_t b = 10; b < 14; ++b) handle = (handle << 8) | response[b];
      run(tpm2_flush_context(handle));
    }
    return us;
  }

 private:
  Bytes run(Bytes command) {
    auto response = tpm_.process(command, 0);
    if (!response) fail("process", response.error().message);
    if (tpm::response_code(*response) != 0) fail("command", "TPM error " + std::to_string(tpm::response_code(*response)));
    return std::move(*response);
  }
  static void must(const Status& s, const char* what) {
    if (!s) fail(what, s.error().message);
  }
  [[noreturn]] static void fail(const char* what, const std::string& why) {
    std::fprintf(stderr, "selftest_cost: %s: %s\n", what, why.c_str());
    std::exit(1);
  }

  LibtpmsAdapter& tpm_ = LibtpmsAdapter::instance();
  InstanceParams params_{TpmVersion::k20, 4096, false};
  StateBlobs blobs_;
};

}  // namespace

int main(int argc, char** argv) {
  int rounds = 200;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: selftest_cost [--rounds N]\n");
      return 2;
    }
  }
  const std::vector<Case> cases = {
      {"CreatePrimary ECC P-256", tpm2_create_primary_ecc(), {kAlgEcdsa}},
      {"PCR_Read", tpm2_pcr_read(0), {kAlgSha256, kAlgHmac}},
      {"GetRandom 32", tpm2_get_random(32), {kAlgAes}},
      {"PCR_Read (after ECDH test)", tpm2_pcr_read(0), {kAlgEcdh}},
      {"PCR_Read (after RSA test)", tpm2_pcr_read(0), {kAlgRsa}},
  };
  Probe probe;
  std::printf("%-28s %12s %12s %10s %16s %18s\n", "command", "resident us", "after swap", "swap us",
              "self-test us", "then command us");
  for (const auto& c : cases) {
    std::vector<double> resident, after_swap, swap, self_test, after_test;
    for (int r = 0; r < rounds; ++r) resident.push_back(probe.timed(c.command));
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      probe.swap();
      swap.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      after_swap.push_back(probe.timed(c.command));
    }
    for (int r = 0; r < rounds; ++r) {
      probe.swap();
      self_test.push_back(probe.timed(incremental_self_test(c.self_tests)));
      after_test.push_back(probe.timed(c.command));
    }
    std::printf("%-28s %12.1f %12.1f %10.1f %16.1f %18.1f\n", c.name.c_str(), median(resident), median(after_swap),
                median(swap), median(self_test), median(after_test));
  }
  return 0;
}
