#include "tests/support/xen/harness.h"

#include <stdexcept>

#include "tests/support/xen/sim_vchan.h"

namespace vtpm::xen::sim {

Harness::Harness(const std::string& state_dir, HarnessOptions options)
    : state_dir_(state_dir), options_(options) {
  uv_loop_init(&loop_);
  uv_timer_init(&loop_, tick_.get());
  tick_.mark_live();
  start_stack();
}

Harness::~Harness() {
  stop_stack();
  tick_.close();
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

void Harness::start_stack() {
  auto root = state::FileRootOfTrust::open(state_dir_ + "/root.key", drbg_);
  if (!root) throw std::runtime_error(root.error().message);
  root_ = std::move(*root);
  store_ = std::make_unique<state::StateStore>(state_dir_, *root_);
  auto opened = store_->open(drbg_);
  if (!opened) throw std::runtime_error(opened.error().message);
  persister_ = std::make_unique<Persister>(&loop_, *store_, opened->manifest, drbg_, log_);
  engine::EngineOptions eo;
  eo.worker_path = VTPMD_TEST_ENGINE_WORKER;
  eo.tpm12_workers_max = options_.tpm12_workers_max;
  engine_ = std::make_unique<engine::Engine>(&loop_, eo, [this](const Uuid& id, const std::string& why) {
    service_->recover_lost(id, why);
  });
  service_ = std::make_unique<Service>(&loop_, log_, *engine_, *persister_, registry_, 4096);
  for (auto& record : opened->records) service_->restore(std::move(record));
  backend_ = std::make_unique<XenBackend>(&loop_, log_, *service_, hv_.platform(0), options_.xen);
  if (Status s = backend_->start(); !s) throw std::runtime_error(s.error().message);
  vchan_ = std::make_unique<VchanBackend>(&loop_, log_, *service_, std::make_unique<SimVchans>(hv_, 0), 0);
  vchan_->restore();
  // As the daemon wires them: removing an instance releases its channels.
  service_->on_removed([this](const Uuid& id) {
    backend_->instance_removed(id);
    vchan_->instance_removed(id);
  });
}

void Harness::stop_stack() {
  if (!service_) return;
  backend_->close_all();
  vchan_->close_all();
  service_->refuse_new_work();
  bool saved = false;
  service_->save_all([&] { saved = true; });
  run_until([&] { return saved; }, std::chrono::seconds(60));
  vchan_.reset();
  backend_.reset();
  service_.reset();
  engine_.reset();
  persister_.reset();
  registry_.all().clear();
  store_.reset();
  root_.reset();
  uv_run(&loop_, UV_RUN_NOWAIT);
}

void Harness::restart() {
  stop_stack();
  start_stack();
}

bool Harness::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // A ticking timer keeps uv_run(ONCE) from blocking past the deadline.
  uv_timer_start(tick_.get(), [](uv_timer_t*) {}, 5, 5);
  while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_ONCE);
  uv_timer_stop(tick_.get());
  return done();
}

void Harness::run_for(std::chrono::milliseconds ms) {
  run_until([] { return false; }, ms);
}

Uuid Harness::add_instance(TpmVersion version, std::optional<Uuid> uuid, bool auto_startup) {
  AddOptions add;
  add.uuid = uuid;
  add.version = version;
  add.auto_startup = auto_startup;
  add.max_command_size = tpmif::kMaxPacket;
  std::optional<Result<const Instance*>> made;
  service_->add(add, [&](Result<const Instance*> r) { made = std::move(r); });
  run_until([&] { return made.has_value(); }, std::chrono::seconds(60));
  if (!made || !*made) throw std::runtime_error("add failed");
  return (**made)->uuid;
}

std::vector<std::uint8_t> Harness::exec(const Uuid& id, std::vector<std::uint8_t> command) {
  std::optional<Result<ExecResult>> out;
  service_->exec(id, std::move(command), 0, [&](Result<ExecResult> r) { out = std::move(r); });
  run_until([&] { return out.has_value(); }, std::chrono::seconds(60));
  if (!out || !*out) throw std::runtime_error("exec failed");
  return (**out).response;
}

}  // namespace vtpm::xen::sim
