// Control API methods: JSON params in, Service call, JSON result out.
// One function per method; the envelope is proto/control_message's job.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "proto/control_message.h"
#include "backends/swtpm/swtpm_backend.h"
#include "src/core/provisioner.h"
#include "src/core/service.h"
#include "state/crypto.h"
#include "state/root_of_trust.h"

namespace vtpm::control {

struct DaemonFacts {
  std::string state_dir;
  std::int64_t started_unix = 0;
  std::function<std::size_t()> connections;
  std::function<Json()> root_of_trust;                                // status section
  // The third argument hears each finished step (may be empty).
  std::function<void(state::SealPolicy, std::function<void(Result<Json>)>,
                     std::function<void(const std::string& step, std::int64_t elapsed_ms)>)>
      reseal;
  std::function<std::string()> seccomp;  // the system-call filter in force (src/daemon/sandbox.h)
  bool core_dumps = false;      // --allow-core-dumps
  std::function<Json()> warm_pool;  // status section
  // The instance's Xen tpmif binding ({domid, devid, state, connected}),
  // null when it has none or the Xen backend is off.
  std::function<Json(const Uuid&)> xen_binding;
  // The vchan channel (backends/xen/vchan_backend.h): whether this daemon
  // can serve one (the Xen backend is on), setting it (nullopt: off, saved
  // with the instance), and its status (null: none open).
  std::function<bool()> vchan_available;
  std::function<Status(const Uuid&, std::optional<std::uint16_t>)> vchan_set;
  std::function<Json(const Uuid&)> vchan_status;
};

class Handlers {
 public:
  using Reply = std::function<void(Result<Json>)>;
  // Progress notifications of a long request, for clients that asked
  // (docs/control-protocol.md, "Progress"); empty: nobody listens.
  using Progress = std::function<void(const Json&)>;

  // `provisioner` (null: no local CA) serves add's provisioning options,
  // measure, eventlog and ca-cert (src/control/provisioning_handlers.cc).
  Handlers(Service& service, engine::Engine& engine, swtpm::SwtpmBackend& swtpm, state::Drbg& drbg, DaemonFacts facts,
           Provisioner* provisioner = nullptr)
      : service_(service), engine_(engine), swtpm_(swtpm), drbg_(drbg), facts_(std::move(facts)),
        provisioner_(provisioner) {}

  // The Prometheus exposition (also served by the metrics listener).
  std::string prometheus(bool per_instance) const;

  // Runs `method`; `reply` is called exactly once (maybe synchronously).
  // Methods that report progress (add, import, reseal) call `progress`.
  void dispatch(const std::string& method, const Json& params, Reply reply, Progress progress = {});

  static Json instance_json(const Instance& instance, const Service& service, const swtpm::SwtpmBackend& swtpm,
                            const DaemonFacts& facts);

 private:
  void hello(const Json& params, Reply reply);
  void status(const Json& params, Reply reply);
  Json hardening_json() const;
  void add(const Json& params, Reply reply, Progress progress = {});
  // add with `count`: that many instances, one after the other.
  struct BulkAdd;
  void add_many(const Json& params, Reply reply, Progress progress);
  void add_next(std::shared_ptr<BulkAdd> bulk);
  void remove(const Json& params, Reply reply);
  void list(const Json& params, Reply reply);
  void show(const Json& params, Reply reply);
  void exec(const Json& params, Reply reply);
  void power(const Json& params, Reply reply);
  void cancel(const Json& params, Reply reply);
  void attach(const Json& params, Reply reply);
  void detach(const Json& params, Reply reply);
  void export_instance(const Json& params, Reply reply);
  void import_instance(const Json& params, Reply reply, Progress progress = {});
  void set(const Json& params, Reply reply);
  void reseal(const Json& params, Reply reply, Progress progress = {});
  void measure(const Json& params, Reply reply);
  void eventlog(const Json& params, Reply reply);
  void ca_cert(const Json& params, Reply reply);
  void reset(const Json& params, Reply reply);
  void stats(const Json& params, Reply reply);
  void metrics(const Json& params, Reply reply);
  // add's provisioning parameters (pcr_banks, ek, ek_certificates, platform_certificate).
  static Result<ProvisionOptions> provision_options(const Json& params);
  // After Service::add: provisions if asked, then opens endpoints, then replies.
  void finish_add(const Uuid& id, ProvisionOptions options, std::optional<swtpm::EndpointSpec> spec,
                  std::optional<std::uint16_t> vchan, Reply reply,
                  Progress progress = {});
  // The `vchan` parameter: a client domain id, or "off" (where `off_allowed`).
  Result<std::optional<std::optional<std::uint16_t>>> vchan_param(const Json& params, bool off_allowed) const;
  // Opens the endpoints and records them so they reopen at start-up.
  // Answers with the instance once its settings as they are now are durable.
  void reply_when_saved(const Uuid& id, Reply reply);
  Status open_endpoints(const Uuid& id, const swtpm::EndpointSpec& spec);

  Service& service_;
  engine::Engine& engine_;
  swtpm::SwtpmBackend& swtpm_;
  state::Drbg& drbg_;  // salts and nonces of export bundles
  DaemonFacts facts_;
  Provisioner* provisioner_;
};

}  // namespace vtpm::control
