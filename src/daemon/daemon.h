// The vtpmd process: one libuv loop on the main thread that owns the
// registry, the engine, persistence and the control server, plus signal
// handling for a clean shutdown (stop accepting, finish queued commands,
// save every instance with its volatile state, exit 0).
#pragma once

#include <uv.h>

#include <memory>

#include "backends/swtpm/swtpm_backend.h"
#include "backends/xen/vchan_backend.h"
#include "backends/xen/xen_backend.h"
#include "src/control/handlers.h"
#include "src/control/metrics_http.h"
#include "src/control/server.h"
#include "src/core/config.h"
#include "src/core/instance.h"
#include "src/core/log.h"
#include "src/core/persister.h"
#include "src/core/provisioner.h"
#include "src/core/warm_pool.h"
#include "src/core/service.h"
#include "src/core/uv_handle.h"
#include "src/daemon/root_of_trust_control.h"
#include "src/daemon/sd_notify.h"
#include "src/engine/engine.h"
#include "state/crypto.h"
#include "state/local_ca.h"
#include "state/root_of_trust.h"
#include "state/state_store.h"

namespace vtpm {

class Daemon {
 public:
  Daemon(Config config, Logger& log);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Prepares state, restores instances, opens the control socket, runs the
  // loop until a shutdown completes. Returns the process exit code.
  int run();

 private:
  Status start();
  Status open_state();
  void restore_instances(state::OpenedState opened);
  void reopen_endpoints();
  // The Xen tpmif backend when configured; the ioctls it needs once sandboxed.
  Result<std::vector<unsigned long>> start_xen();
  void begin_shutdown(const char* why);
  void finish_shutdown();
  void start_housekeeping();
  void housekeeping();  // once a second
  std::size_t served_instances() const;  // for systemd's STATUS: instances, not warm-pool members
  std::string engine_worker_path() const;

  Config config_;
  Logger& log_;
  uv_loop_t loop_{};
  state::Drbg drbg_;
  std::unique_ptr<state::RootOfTrust> root_;
  std::unique_ptr<state::StateStore> store_;
  std::unique_ptr<RootOfTrustControl> root_control_;
  Registry registry_;
  std::unique_ptr<Persister> persister_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<state::LocalCa> ca_;
  std::unique_ptr<Provisioner> provisioner_;
  std::unique_ptr<WarmPool> warm_pool_;
  std::unique_ptr<swtpm::SwtpmBackend> swtpm_;
  std::unique_ptr<xen::XenBackend> xen_;        // --xen-backend on
  std::unique_ptr<xen::VchanBackend> vchan_;    // with the Xen backend only
  std::unique_ptr<control::Handlers> handlers_;
  std::unique_ptr<control::Server> server_;
  std::unique_ptr<control::MetricsHttp> metrics_http_;
  SystemdNotifier notifier_;
  UvHandle<uv_timer_t> housekeeping_;  // the log's suppressed-lines report, systemd STATUS=
  std::uint64_t housekeeping_ticks_ = 0;
  UvHandle<uv_signal_t> sigterm_;
  UvHandle<uv_signal_t> sigint_;
  UvHandle<uv_timer_t> shutdown_deadline_;
  bool shutting_down_ = false;
  int exit_code_ = 0;
  std::string seccomp_in_force_ = "off";  // for status: off, log, enforce or unsupported
};

}  // namespace vtpm
