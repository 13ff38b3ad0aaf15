#include "src/daemon/daemon.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>

#include "src/daemon/privileges.h"
#include "src/daemon/root_of_trust_factory.h"
#include "src/daemon/sandbox.h"

#ifdef VTPMD_HAVE_XEN
#include "backends/xen/real_platform.h"
#include "backends/xen/real_vchan.h"
#endif

namespace vtpm {
namespace {

// A shutdown that cannot save within this time (a wedged disk) exits
// non-zero rather than hanging the host's shutdown forever.
constexpr std::uint64_t kShutdownDeadlineMs = 30000;

std::string directory_of_executable() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<std::size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// The configured pool profile; the names were checked when parsing it.
WarmPoolProfile warm_pool_profile(const Config& config) {
  WarmPoolProfile profile;
  profile.size = config.warm_pool;
  for (const std::string& name : split_list(config.warm_pool_ek)) {
    if (auto kind = tpm2::ek_from_name(name)) profile.endorsement_keys.push_back(*kind);
  }
  for (const std::string& name : split_list(config.warm_pool_pcr_banks)) {
    if (auto alg = tpm2::bank_from_name(name)) profile.pcr_banks.push_back(*alg);
  }
  return profile;
}

control::Json warm_pool_json(const WarmPool& pool) {
  const WarmPoolStats stats = pool.stats();
  control::Json j = {{"size", pool.profile().size}, {"ready", stats.ready},       {"filling", stats.filling},
                     {"taken", stats.taken},        {"missed", stats.missed},     {"failures", stats.failures}};
  control::Json ek = control::Json::array();
  for (tpm2::EkKind kind : pool.profile().endorsement_keys) ek.push_back(tpm2::ek_name(kind));
  control::Json banks = control::Json::array();
  for (TPM2_ALG_ID alg : pool.profile().pcr_banks) banks.push_back(tpm2::bank_name(alg));
  j["ek"] = ek;
  j["pcr_banks"] = banks;
  if (!stats.last_error.empty()) j["last_error"] = stats.last_error;
  return j;
}

}  // namespace

Daemon::Daemon(Config config, Logger& log) : config_(std::move(config)), log_(log) {
  uv_loop_init(&loop_);
}

Daemon::~Daemon() {
  metrics_http_.reset();
  server_.reset();
  handlers_.reset();
  warm_pool_.reset();
  provisioner_.reset();
  swtpm_.reset();
  vchan_.reset();
  xen_.reset();
  service_.reset();
  engine_.reset();
  persister_.reset();
  sigterm_.close();
  sigint_.close();
  shutdown_deadline_.close();
  housekeeping_.close();
  notifier_.stop_watchdog();
  // Let the close callbacks of every handle run, then free the loop.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

std::string Daemon::engine_worker_path() const {
  if (!config_.engine_worker.empty()) return config_.engine_worker;
  const std::string beside = directory_of_executable() + "/vtpmd-engine";
  if (::access(beside.c_str(), X_OK) == 0) return beside;
  return std::string(VTPMD_LIBEXECDIR) + "/vtpmd-engine";
}

Status Daemon::open_state() {
  if (Status s = drbg_.seeded(); !s) return s;
  const char* crash_spec = std::getenv("VTPMD_CRASH_AT");
  auto crash = state::CrashPoints::parse(crash_spec != nullptr ? crash_spec : "");
  if (!crash) return crash.error();
  if (crash->armed()) log_.warn("VTPMD_CRASH_AT=" + crash->describe() + ": this process will kill itself (testing)");
  if (Status s = state::prepare_directory(config_.state_dir); !s) return s;
  auto root = open_root_of_trust(config_, drbg_);
  if (!root) return make_error(root.error().code, "root of trust: " + root.error().message);
  root_ = std::move(*root);
  if (root_->hardware_protected()) log_.info("root of trust: " + root_->describe());
  else log_.warn("root of trust: " + root_->describe());
  store_ = std::make_unique<state::StateStore>(config_.state_dir, *root_, *crash);
  root_control_ = std::make_unique<RootOfTrustControl>(&loop_, *root_, *store_, log_);
  return Status::success();
}

Status Daemon::start() {
  // Before anything can fail, so that systemd hears why (STATUS=).
  if (Status s = notifier_.open(); !s) return s;
  if (!config_.user.empty()) {
    const auto slash = config_.control_socket.rfind('/');
    std::vector<std::string> own = {config_.state_dir};
    if (slash != std::string::npos && slash > 0) own.push_back(config_.control_socket.substr(0, slash));
    if (Status s = become_user(config_.user, own, config_.allow_core_dumps); !s) return s;
    log_.info("running as user " + config_.user + " (uid " + std::to_string(::getuid()) + ")");
  }
  if (Status s = open_state(); !s) return s;
  auto opened = store_->open(drbg_);
  if (!opened) return make_error(opened.error().code, "state directory " + config_.state_dir + ": " + opened.error().message);
  persister_ = std::make_unique<Persister>(&loop_, *store_, opened->manifest, drbg_, log_);
  engine::EngineOptions options;
  options.worker_path = engine_worker_path();
  options.tpm12_workers_max = config_.tpm12_workers_max;
  options.multiplexer.tpm12_slice = std::chrono::milliseconds(config_.tpm12_slice_ms);
  options.multiplexer.tpm12_linger = std::chrono::milliseconds(config_.tpm12_linger_ms);
  options.multiplexer.tpm12_selftest_key_cache = config_.tpm12_selftest_key_cache;
  options.isolate_busy_ms = config_.isolate_busy_ms;
  options.isolated_workers_max = config_.isolated_workers_max;
  options.worker_core_dumps = config_.allow_core_dumps;
  engine_ = std::make_unique<engine::Engine>(&loop_, options, [this](const Uuid& id, const std::string& why) {
    if (!shutting_down_) service_->recover_lost(id, why);
  });
  service_ = std::make_unique<Service>(&loop_, log_, *engine_, *persister_, registry_, config_.default_max_command_size,
                                       DefaultLimits{config_.default_max_queued, config_.default_max_rate, config_.default_max_state_size,
                                                     config_.max_connections});
  // Once an instance is gone, every guest channel lets go of it (only
  // then: a refused remove keeps it whole).
  service_->on_removed([this](const Uuid& id) {
    if (swtpm_ && swtpm_->spec_of(id) != nullptr) (void)swtpm_->detach(id);
    if (xen_) xen_->instance_removed(id);
    if (vchan_) vchan_->instance_removed(id);
  });
  control::DaemonFacts facts;
  facts.state_dir = config_.state_dir;
  facts.started_unix =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  facts.connections = [this] { return server_ ? server_->connections() : 0; };
  facts.root_of_trust = [this] { return root_control_->status(); };
  facts.reseal = [this](state::SealPolicy policy, std::function<void(Result<control::Json>)> reply,
                        RootOfTrustControl::StepListener listener) {
    root_control_->reseal(std::move(policy), std::move(reply), std::move(listener));
  };
  facts.seccomp = [this] { return seccomp_in_force_; };
  facts.core_dumps = config_.allow_core_dumps;
  facts.vchan_available = [this] { return vchan_ != nullptr; };
  facts.vchan_set = [this](const Uuid& id, std::optional<std::uint16_t> client) { return vchan_->set(id, client); };
  facts.vchan_status = [this](const Uuid& id) -> control::Json {
    auto s = vchan_ ? vchan_->status_of(id) : std::nullopt;
    if (!s) return nullptr;
    control::Json j = {{"domid", s->spec.client},     {"path", s->spec.xs_path},   {"state", xen::vchan_state_name(s->state)},
                       {"connections", s->connections}, {"commands", s->commands}, {"refused", s->refused}};
    if (!s->error.empty()) j["error"] = s->error;
    return j;
  };
  facts.xen_binding = [this](const Uuid& id) -> control::Json {
    auto b = xen_ ? xen_->binding_of(id) : std::nullopt;
    if (!b) return nullptr;
    return {{"domid", b->domid}, {"devid", b->devid}, {"state", tpmif::xenbus_state_name(b->state)},
            {"connected", b->connected}};
  };
  swtpm_ = std::make_unique<swtpm::SwtpmBackend>(&loop_, log_, *service_);
  auto ca = state::LocalCa::open(config_.state_dir, store_->master(), drbg_);
  if (!ca) return make_error(ca.error().code, "local CA: " + ca.error().message);
  ca_ = std::move(*ca);
  if (ca_->created()) log_.info("local CA created: " + config_.state_dir + "/ca.pem (`vtpmctl ca-cert` exports it)");
  provisioner_ = std::make_unique<Provisioner>(log_, *service_, registry_, *ca_);
  warm_pool_ = std::make_unique<WarmPool>(&loop_, log_, *service_, warm_pool_profile(config_),
                                          [this](const Uuid& id, std::function<void(Status)> done) {
                                            ProvisionOptions options;
                                            options.pcr_banks = warm_pool_->profile().pcr_banks;
                                            options.endorsement_keys = warm_pool_->profile().endorsement_keys;
                                            provisioner_->manufacture(id, std::move(options), std::move(done));
                                          });
  provisioner_->set_warm_pool(warm_pool_.get());
  facts.warm_pool = [this] { return warm_pool_json(*warm_pool_); };
  handlers_ = std::make_unique<control::Handlers>(*service_, *engine_, *swtpm_, drbg_, facts, provisioner_.get());
  auto policy = control::AccessPolicy::parse(config_.control_admins, config_.control_readers, ::geteuid());
  if (!policy) return policy.error();
  server_ = std::make_unique<control::Server>(&loop_, log_, *handlers_, std::move(*policy));
  restore_instances(std::move(*opened));
  provisioner_->discard_unfinished();
  warm_pool_->start();
  if (Status s = server_->listen(config_.control_socket); !s) return s;
  if (!config_.metrics_listen.empty()) {
    auto endpoint = parse_loopback_endpoint(config_.metrics_listen);
    if (!endpoint) return endpoint.error();
    metrics_http_ = std::make_unique<control::MetricsHttp>(
        &loop_, log_, [this](bool per_instance) { return handlers_->prometheus(per_instance); });
    if (Status s = metrics_http_->listen(*endpoint); !s) return s;
  }
  reopen_endpoints();
  auto extra_ioctls = start_xen();
  if (!extra_ioctls) return extra_ioctls.error();

  for (auto [handle, signum] : {std::pair{&sigterm_, SIGTERM}, std::pair{&sigint_, SIGINT}}) {
    uv_signal_init(&loop_, handle->get());
    handle->mark_live();
    handle->get()->data = this;
    uv_signal_start(
        handle->get(),
        [](uv_signal_t* h, int sig) {
          static_cast<Daemon*>(h->data)->begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
        },
        signum);
  }
  // Last: everything that needs more than serving guests is done.
  if (Status s = install_syscall_filter(config_.seccomp, *extra_ioctls); !s) {
    if (s.error().code != ErrorCode::kUnsupported) return s;
    seccomp_in_force_ = "unsupported";
    log_.warn(s.error().message + "; running without a system-call filter");
  } else {
    seccomp_in_force_ = describe(config_.seccomp);
    if (config_.seccomp != SeccompMode::kOff) log_.info("system-call filter installed (" + seccomp_in_force_ + ")");
  }
  return Status::success();
}

void Daemon::restore_instances(state::OpenedState opened) {
  for (const auto& note : opened.notes) log_.warn("state: " + note);
  const std::size_t restored = opened.records.size();
  for (auto& record : opened.records) service_->restore(std::move(record));
  for (const auto& [id, why] : opened.quarantined) service_->quarantine(id, why);
  log_.info("restored " + std::to_string(restored) + " instance(s) from " + config_.state_dir +
            (opened.quarantined.empty() ? "" : ", " + std::to_string(opened.quarantined.size()) + " quarantined") +
            " (manifest counter " + std::to_string(store_->counter()) + ")");
}

void Daemon::reopen_endpoints() {
  for (const auto& [id, instance] : registry_.all()) {
    // An unfinished provisioning add being discarded keeps its sockets closed.
    if (instance.channel_config.empty() || instance.removing) continue;
    const auto json = nlohmann::json::parse(instance.channel_config, nullptr, false);
    auto spec = json.is_discarded() ? Result<swtpm::EndpointSpec>(make_error(ErrorCode::kCorrupt, "unreadable"))
                                    : swtpm::EndpointSpec::from_json(json);
    Status s = spec ? swtpm_->attach(id, *spec) : Status(spec.error());
    if (!s) log_.error(id, "cannot reopen guest endpoints: " + s.error().message);
  }
}

Result<std::vector<unsigned long>> Daemon::start_xen() {
  if (!config_.xen_backend) return std::vector<unsigned long>{};
#ifdef VTPMD_HAVE_XEN
  auto platform = xen::open_real_platform();
  if (!platform) return make_error(platform.error().code, "xen backend: " + platform.error().message);
  xen_ = std::make_unique<xen::XenBackend>(&loop_, log_, *service_, std::move(*platform),
                                           xen::XenOptions{config_.xen_auto_create, config_.xen_allow_tpm2});
  if (Status s = xen_->start(); !s) return make_error(s.error().code, "xen backend: " + s.error().message);
  vchan_ = std::make_unique<xen::VchanBackend>(&loop_, log_, *service_, xen::open_real_vchans(), xen_->self());
  vchan_->restore();
  auto ioctls = xen::xen_ioctls();
  for (unsigned long request : xen::vchan_ioctls()) ioctls.push_back(request);
  return ioctls;
#else
  return make_error(ErrorCode::kUnsupported, "xen_backend is on but this vtpmd was built without libxen-dev");
#endif
}

void Daemon::begin_shutdown(const char* why) {
  if (shutting_down_) {
    log_.warn(std::string(why) + " again during shutdown; still saving state");
    return;
  }
  shutting_down_ = true;
  log_.info(std::string(why) + ": shutting down; finishing queued commands and saving " +
            std::to_string(registry_.size()) + " instance(s)");
  notifier_.stopping("shutting down: saving " + std::to_string(registry_.size()) + " instance(s)");
  server_->close();
  if (metrics_http_) metrics_http_->close();
  swtpm_->close_all();  // guests stop sending; their queued commands still finish
  warm_pool_->stop();
  // Xen guests stay connected in xenstore: a restarted vtpmd maps them again.
  if (xen_) xen_->close_all();
  if (vchan_) vchan_->close_all();  // clients see the server go and connect again after a restart
  service_->refuse_new_work();
  uv_timer_init(&loop_, shutdown_deadline_.get());
  shutdown_deadline_.mark_live();
  shutdown_deadline_.get()->data = this;
  uv_timer_start(
      shutdown_deadline_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Daemon*>(t->data);
        // A state write is stuck in the kernel (a wedged disk): unwinding
        // would wait for it, and freeing the persister under it is unsafe.
        self->log_.error("shutdown deadline passed with state still unsaved; exiting without waiting for it");
        std::_Exit(1);
      },
      kShutdownDeadlineMs, 0);
  service_->save_all([this] {
    log_.info("all instance state saved (" + std::to_string(persister_->writes()) + " writes, " +
              std::to_string(persister_->failures()) + " failed)");
    if (persister_->failures() > 0) exit_code_ = 1;
    finish_shutdown();
  });
}

void Daemon::finish_shutdown() {
  notifier_.stop_watchdog();
  housekeeping_.close();
  sigterm_.close();
  sigint_.close();
  shutdown_deadline_.close();
  uv_stop(&loop_);
}

void Daemon::start_housekeeping() {
  uv_timer_init(&loop_, housekeeping_.get());
  housekeeping_.mark_live();
  housekeeping_.get()->data = this;
  uv_timer_start(
      housekeeping_.get(), [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->housekeeping(); }, 1000, 1000);
}

std::size_t Daemon::served_instances() const {
  std::size_t n = 0;
  for (const auto& [id, instance] : registry_.all()) n += WarmPool::is_member(instance) ? 0 : 1;
  return n;
}

void Daemon::housekeeping() {
  log_.flush_suppressed();
  // systemctl status shows the last STATUS= line: keep it current.
  constexpr std::uint64_t kStatusEverySeconds = 10;
  if (!notifier_.enabled() || ++housekeeping_ticks_ % kStatusEverySeconds != 0) return;
  std::uint64_t commands = 0;
  for (const auto& h : service_->metrics().latency) commands += h.count();
  notifier_.status("serving " + std::to_string(served_instances()) + " instance(s); " + std::to_string(commands) +
                   " commands, " + std::to_string(service_->metrics().errors.total()) + " errors since start");
}

int Daemon::run() {
  if (Status s = start(); !s) {
    log_.error("cannot start: " + s.error().message);
    notifier_.status("cannot start: " + s.error().message);
    return 1;
  }
  log_.info(std::string("vtpmd ") + VTPMD_VERSION + " ready: control socket " + config_.control_socket +
            ", state " + config_.state_dir + ", TPM 1.2 workers up to " + std::to_string(config_.tpm12_workers_max) +
            (config_.tpm12_selftest_key_cache ? "" : ", TPM 1.2 self-test key cache off"));
  start_housekeeping();
  // The root of trust is open, the instances restored, the control socket
  // listening: clients may connect now.
  notifier_.ready("serving " + std::to_string(served_instances()) + " instance(s); control socket " +
                  config_.control_socket);
  notifier_.start_watchdog(&loop_);
  if (notifier_.enabled()) {
    log_.info("systemd notified" + (notifier_.watchdog_usec() != 0
                                        ? "; watchdog pings every " + std::to_string(notifier_.watchdog_usec() / 2000) + " ms"
                                        : std::string()));
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  return exit_code_;
}

}  // namespace vtpm
