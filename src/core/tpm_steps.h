// Sequences of TPM commands that vtpmd sends to one of its instances itself
// (provisioning, the warm pool, measured launch), through Service::exec
// like any guest command: they queue in order with guest traffic, run on
// the engine and never on the loop, and their NV changes are saved like a
// guest's. Each step calls its `next` once; the first error ends the run.
//
// Thread affinity: loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/hex.h"
#include "proto/tpm2_commands.h"
#include "src/core/service.h"

namespace vtpm {

using Next = std::function<void(Status)>;
using Step = std::function<void(Next)>;
using Steps = std::shared_ptr<std::vector<Step>>;

// Runs `steps` from `at` one after another.
void run_steps(Steps steps, std::size_t at, std::function<void(Status)> done);

std::string hex32(std::uint32_t v);  // "0x0000abcd"

// One instance's TPM as the steps see it.
struct InstanceTpm {
  Service& service;
  Uuid id;

  // Sends `command`; a TPM error code in `accept` counts as success
  // (without a response to look at), any other ends the run naming `what`.
  void send(std::string what, Bytes command, std::size_t handles, bool sessions, Next next,
            std::function<Status(const tpm2::Response&)> then = {}, std::vector<std::uint32_t> accept = {}) const;
  // A TPM 1.2 command: `check` sees the whole response.
  void send12(std::string what, Bytes command, std::function<Status(const Bytes&)> check, Next next) const;
  // Startup(CLEAR); a TPM that is already started is fine.
  void startup(Next next) const;
  // Shutdown(CLEAR) and a power cycle with vtpmd's automatic Startup
  // skipped: the guest's firmware makes the first Startup, as after
  // swtpm_setup.
  void shutdown_for_guest(Next next) const;
  // _TPM_Init without the automatic Startup: the next Startup is ours.
  void power_cycle(Next next) const;
  // A TPM reset as at power-on (with the automatic Startup if configured).
  void power_reset(Next next) const;
  // Defines `index` for `data`, writes it in chunks and write-locks it.
  void write_certificate(TPM2_HANDLE index, std::shared_ptr<const Bytes> data, Next next) const;

 private:
  void write_chunks(TPM2_HANDLE index, std::shared_ptr<const Bytes> data, std::size_t offset, Next next) const;
};

}  // namespace vtpm
