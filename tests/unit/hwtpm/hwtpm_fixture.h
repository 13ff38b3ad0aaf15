// Shared by the hwtpm unit tests: a real swtpm behind the register models,
// short timeouts, and the few commands the tests send.
#pragma once

#include <doctest/doctest.h>
#include <mbedtls/sha256.h>

#include <array>
#include <chrono>
#include <memory>

#include "backends/hwtpm/mmio_timeouts.h"
#include "proto/tpm_packet.h"
#include "tests/support/hwtpm/swtpm_child.h"
#include "tests/support/hwtpm/tis_model.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::testing {

using namespace std::chrono_literals;

// Short enough that a fault costs a fraction of a second, long enough for
// swtpm under ASan.
inline hwtpm::MmioTimeouts test_timeouts() {
  hwtpm::MmioTimeouts t;
  t.a = 150ms;
  t.b = 300ms;
  t.c = 150ms;
  t.d = 150ms;
  t.command = 5000ms;
  t.poll_interval = 100us;
  return t;
}

struct Swtpm {
  Swtpm() {
    auto started = SwtpmChild::start();
    REQUIRE_MESSAGE(started.ok(), (started.ok() ? "" : started.error().message));
    child = std::move(started.value());
  }
  Executor executor() {
    return [this](std::span<const std::uint8_t> command) {
      auto response = child->execute(command);
      REQUIRE_MESSAGE(response.ok(), (response.ok() ? "" : response.error().message));
      return response.value();
    };
  }
  std::unique_ptr<SwtpmChild> child;
};

inline std::uint32_t rc_of(const Bytes& response) { return tpm::read_u32(response, 6); }

// TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES, TPM_PT_MANUFACTURER, 1).
inline Bytes tpm2_get_capability_manufacturer() {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x17A);
  tpm::append_u32(p, 6);
  tpm::append_u32(p, 0x105);
  tpm::append_u32(p, 1);
  return finish(p);
}

// TPM2_Hash(data, sha256, TPM_RH_NULL): a command several bursts long.
inline Bytes tpm2_hash(const Bytes& data) {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x17D);
  tpm::append_u16(p, static_cast<std::uint16_t>(data.size()));
  p.insert(p.end(), data.begin(), data.end());
  tpm::append_u16(p, 0x000B);
  tpm::append_u32(p, 0x40000007);
  return finish(p);
}

inline std::array<std::uint8_t, 32> sha256(std::span<const std::uint8_t> data) {
  std::array<std::uint8_t, 32> out{};
  REQUIRE(mbedtls_sha256_ret(data.data(), data.size(), out.data(), 0) == 0);
  return out;
}

// PCR extend rule: new = H(old || digest).
inline std::array<std::uint8_t, 32> extended(const std::array<std::uint8_t, 32>& old,
                                             const std::array<std::uint8_t, 32>& digest) {
  std::array<std::uint8_t, 64> both{};
  std::copy(old.begin(), old.end(), both.begin());
  std::copy(digest.begin(), digest.end(), both.begin() + 32);
  return sha256(both);
}

inline std::array<std::uint8_t, 32> last_32(const Bytes& response) {
  std::array<std::uint8_t, 32> out{};
  REQUIRE(response.size() >= 32);
  std::copy(response.end() - 32, response.end(), out.begin());
  return out;
}

// Runs `f` and returns how long it took.
template <typename F>
std::chrono::milliseconds timed(F&& f) {
  const auto began = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
}

}  // namespace vtpm::testing
