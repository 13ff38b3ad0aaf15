// vtpmd's serving stack (state store with the file root, persister, engine
// with real vtpmd-engine workers, Service) plus the Xen backend and the
// vchan channels (dom0's) on the
// simulated platform, on one libuv loop that the simulated guests share.
// restart() tears the stack down as a clean SIGTERM does (instances saved
// with their volatile state, mappings and ports released, xenstore left
// alone) and builds a new one over the same state directory while the
// guests stay as they are.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "backends/xen/vchan_backend.h"
#include "backends/xen/xen_backend.h"
#include "src/core/log.h"
#include "src/core/persister.h"
#include "src/core/service.h"
#include "src/engine/engine.h"
#include "state/file_root.h"
#include "state/state_store.h"
#include "tests/support/xen/sim_xen.h"

namespace vtpm::xen::sim {

struct HarnessOptions {
  XenOptions xen;
  std::size_t tpm12_workers_max = 4;
};

class Harness {
 public:
  Harness(const std::string& state_dir, HarnessOptions options);
  ~Harness();
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  uv_loop_t* loop() { return &loop_; }
  Hypervisor& hv() { return hv_; }
  Service& service() { return *service_; }
  XenBackend& backend() { return *backend_; }
  VchanBackend& vchan() { return *vchan_; }
  Logger& log() { return log_; }

  // Runs the loop until `done` is true or `timeout` passes; returns `done()`.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);
  // Lets the loop turn for `ms` (things that must NOT happen get their chance).
  void run_for(std::chrono::milliseconds ms);

  // Adds an instance through Service (as `vtpmctl add` would).
  Uuid add_instance(TpmVersion version, std::optional<Uuid> uuid = std::nullopt, bool auto_startup = true);
  // exec through Service: the host's view of an instance.
  std::vector<std::uint8_t> exec(const Uuid& id, std::vector<std::uint8_t> command);

  void restart();

 private:
  void start_stack();
  void stop_stack();

  std::string state_dir_;
  HarnessOptions options_;
  Logger log_{LogLevel::kWarn};
  uv_loop_t loop_{};
  Hypervisor hv_;
  state::Drbg drbg_;
  std::unique_ptr<state::FileRootOfTrust> root_;
  std::unique_ptr<state::StateStore> store_;
  Registry registry_;
  std::unique_ptr<Persister> persister_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<XenBackend> backend_;
  std::unique_ptr<VchanBackend> vchan_;
  UvHandle<uv_timer_t> tick_;
};

}  // namespace vtpm::xen::sim
