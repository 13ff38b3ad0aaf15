#include "src/control/handlers.h"

#include "state/export_bundle.h"
#include "state/secure_memory.h"

#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <ctime>

#include "proto/hex.h"
#include "src/control/metrics_report.h"
#include "src/control/params.h"
#include "src/core/warm_pool.h"

namespace vtpm::control {
namespace {

// max_state_size: 0 (the daemon's default) up to what a sealed blob may hold.
constexpr std::int64_t kMaxStateSizeParam = 16 * 1024 * 1024;

std::string iso8601(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

Json timestamp_ms(std::int64_t unix_ms) {
  if (unix_ms == 0) return nullptr;
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(unix_ms % 1000));
  std::string s = iso8601(unix_ms / 1000);
  s.insert(s.size() - 1, frac);
  return s;
}

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Wraps a Service callback that yields an instance into a JSON reply.
Service::InstanceCallback reply_instance(const Service& service, const swtpm::SwtpmBackend& swtpm,
                                         const DaemonFacts& facts, Handlers::Reply reply) {
  return [&service, &swtpm, &facts, reply = std::move(reply)](Result<const Instance*> r) {
    if (!r) return reply(r.error());
    reply(Handlers::instance_json(**r, service, swtpm, facts));
  };
}

}  // namespace

Json Handlers::instance_json(const Instance& i, const Service& service, const swtpm::SwtpmBackend& swtpm,
                             const DaemonFacts& facts) {
  const swtpm::EndpointSpec* spec = swtpm.spec_of(i.uuid);
  Json j = {{"uuid", i.uuid.to_string()},
            {"tpm", tpm_version_name(i.version)},
            {"created", iso8601(i.created_unix)},
            {"state", i.state_name()},
            {"power", i.power == PowerState::kOn ? "on" : "off"},
            {"auto_startup", i.auto_startup},
            {"max_command_size", i.max_command_size},
            {"engine", service.placement(i.uuid)},
            {"channels", spec != nullptr ? spec->describe() : std::vector<std::string>{}},
            {"outstanding", service.outstanding(i.uuid)},
            {"limits",
             {{"max_queued", service.effective_limits(i).max_queued},
              {"max_rate", service.effective_limits(i).max_rate},
              {"max_state_size", service.effective_limits(i).max_state_size},
              {"max_connections", service.effective_limits(i).max_connections},
              {"state_size", Service::state_size(i)},
              {"throttled", service.throttled(i.uuid)},
              {"delayed_total", i.throttle.delayed}}},
            {"counters",
             {{"commands", i.counters.commands},
              {"errors", i.counters.errors},
              {"bytes_in", i.counters.bytes_in},
              {"bytes_out", i.counters.bytes_out},
              {"last_command", timestamp_ms(i.counters.last_command_unix_ms)}}},
            {"state_bytes", {{"permanent", i.saved.permanent.size()}, {"save_state", i.saved.save_state.size()}}}};
  if (i.failed) j["failure"] = i.failure;
  if (facts.xen_binding) {
    if (auto xen = facts.xen_binding(i.uuid); !xen.is_null()) j["xen"] = std::move(xen);
  }
  if (auto vchan = facts.vchan_status ? facts.vchan_status(i.uuid) : Json(); !vchan.is_null()) {
    j["vchan"] = std::move(vchan);
  } else if (!i.vchan_config.empty()) {
    // Saved, but not served by this daemon (no Xen backend, or it failed to open).
    const Json setting = Json::parse(i.vchan_config, nullptr, false);
    j["vchan"] = {{"state", "inactive"}, {"setting", setting.is_discarded() ? Json(i.vchan_config) : setting}};
  }
  if (!i.provisioning.empty()) {
    const Json provisioned = Json::parse(i.provisioning, nullptr, false);
    if (!provisioned.is_discarded()) j["provisioning"] = provisioned;
  }
  return j;
}

void Handlers::dispatch(const std::string& method, const Json& params, Reply reply, Progress progress) {
  if (method == "add" && params.contains("count")) return add_many(params, std::move(reply), std::move(progress));
  // A provisioning add reports its steps (key generation takes a while).
  if (method == "add") return add(params, std::move(reply), std::move(progress));
  if (method == "import") return import_instance(params, std::move(reply), std::move(progress));
  if (method == "reseal") return reseal(params, std::move(reply), std::move(progress));
  using Method = void (Handlers::*)(const Json&, Reply);
  static const std::pair<const char*, Method> kMethods[] = {
      {"hello", &Handlers::hello}, {"status", &Handlers::status},
      {"remove", &Handlers::remove}, {"list", &Handlers::list},   {"show", &Handlers::show},
      {"exec", &Handlers::exec},   {"power", &Handlers::power},   {"cancel", &Handlers::cancel},
      {"attach", &Handlers::attach}, {"detach", &Handlers::detach},
      {"export", &Handlers::export_instance},
      {"set", &Handlers::set}, {"measure", &Handlers::measure},
      {"eventlog", &Handlers::eventlog}, {"ca-cert", &Handlers::ca_cert}, {"reset", &Handlers::reset},
      {"stats", &Handlers::stats}, {"metrics", &Handlers::metrics}};
  for (const auto& [name, handler] : kMethods) {
    if (method == name) return (this->*handler)(params, std::move(reply));
  }
  reply(make_error(ErrorCode::kNotFound, "unknown method '" + method + "'"));
}

void Handlers::hello(const Json& params, Reply reply) {
  if (Status s = only_params(params, {}); !s) return reply(s.error());
  reply(Json{{"daemon", "vtpmd"}, {"version", VTPMD_VERSION}, {"protocol", kProtocolVersion}});
}

void Handlers::status(const Json& params, Reply reply) {
  if (Status s = only_params(params, {}); !s) return reply(s.error());
  Json counts = {{"total", 0}, {"tpm12", 0}, {"tpm20", 0}, {"running", 0}, {"stopped", 0}, {"failed", 0}};
  for (const auto& [id, i] : service_.registry().all()) {
    if (WarmPool::is_member(i)) continue;  // counted in warm_pool
    counts["total"] = counts["total"].get<int>() + 1;
    const char* version_key = i.version == TpmVersion::k12 ? "tpm12" : "tpm20";
    counts[version_key] = counts[version_key].get<int>() + 1;
    counts[i.state_name()] = counts[i.state_name()].get<int>() + 1;
  }
  Json shards = Json::array();
  for (const auto& s : engine_.stats()) {
    shards.push_back({{"name", s.name},
                      {"pid", s.pid},
                      {"instances", s.instances},
                      {"jobs", s.jobs},
                      {"swaps", s.swaps},
                      {"swap_us_total", s.swap_us_total},
                      {"outstanding", s.outstanding}});
  }
  reply(Json{{"version", VTPMD_VERSION},
             {"pid", getpid()},
             {"uptime_s", now_unix() - facts_.started_unix},
             {"state_dir", facts_.state_dir},
             {"instances", counts},
             {"engine", {{"shards", shards}, {"outstanding", engine_.outstanding_total()}, {"isolations", engine_.isolations()}}},
             {"control", {{"connections", facts_.connections ? facts_.connections() : 0}}},
             {"channels", {{"swtpm_connections", swtpm_.connections()}}},
             {"root_of_trust", facts_.root_of_trust ? facts_.root_of_trust() : Json::object()},
             {"hardening", hardening_json()},
             {"warm_pool", facts_.warm_pool ? facts_.warm_pool() : Json::object()}});
}

std::string Handlers::prometheus(bool per_instance) const {
  return prometheus_text({service_, swtpm_, facts_.started_unix, facts_.connections ? facts_.connections() : 0},
                         per_instance);
}

void Handlers::stats(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  if (!params.contains("uuid")) {
    return reply(global_stats_json({service_, swtpm_, facts_.started_unix, facts_.connections ? facts_.connections() : 0}));
  }
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto instance = service_.show(*id);
  if (!instance) return reply(instance.error());
  reply(instance_stats_json(**instance, service_));
}

void Handlers::metrics(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"instances"}); !s) return reply(s.error());
  auto per_instance = bool_param(params, "instances");
  if (!per_instance) return reply(per_instance.error());
  reply(Json{{"content_type", "text/plain; version=0.0.4"}, {"text", prometheus(per_instance->value_or(false))}});
}

void Handlers::reseal(const Json& params, Reply reply, Progress progress) {
  if (Status s = only_params(params, {"pcrs", "pcr_values", "authorized"}); !s) return reply(s.error());
  state::SealPolicy policy;
  if (params.contains("pcrs")) {
    if (!params["pcrs"].is_string()) return reply(make_error(ErrorCode::kInvalidArgument, "pcrs must be a string"));
    policy.pcrs = params["pcrs"].get<std::string>();
  }
  if (params.contains("pcr_values")) {
    const Json& values = params["pcr_values"];
    if (!values.is_array()) return reply(make_error(ErrorCode::kInvalidArgument, "pcr_values must be an array"));
    for (const Json& v : values) {
      if (!v.is_string()) return reply(make_error(ErrorCode::kInvalidArgument, "pcr_values holds strings BANK:N=HEX"));
      policy.pcr_values.push_back(v.get<std::string>());
    }
  }
  if (params.contains("authorized")) {
    if (!params["authorized"].is_boolean()) return reply(make_error(ErrorCode::kInvalidArgument, "authorized must be a boolean"));
    policy.authorized = params["authorized"].get<bool>();
  }
  if (!facts_.reseal) return reply(make_error(ErrorCode::kUnsupported, "reseal is not available"));
  std::function<void(const std::string&, std::int64_t)> listener;
  if (progress) {
    listener = [progress](const std::string& step, std::int64_t elapsed_ms) {
      progress(Json{{"step", step}, {"elapsed_ms", elapsed_ms}});
    };
  }
  facts_.reseal(std::move(policy), std::move(reply), std::move(listener));
}

Json Handlers::hardening_json() const {
  const state::SecureMemoryStats keys = state::secure_memory_stats();
  return {{"seccomp", facts_.seccomp ? facts_.seccomp() : "off"},
          {"core_dumps", facts_.core_dumps},
          {"key_memory", {{"mapped_bytes", keys.mapped_bytes}, {"locked_bytes", keys.locked_bytes}}}};
}

void Handlers::add(const Json& params, Reply reply, Progress progress) {
  Json own = Json::object();
  Json endpoint = Json::object();
  for (const auto& [key, value] : params.items()) {
    (swtpm::EndpointSpec::is_parameter(key) ? endpoint : own)[key] = value;
  }
  if (Status s = only_params(own, {"uuid", "tpm", "auto_startup", "max_command_size", "max_queued", "max_rate",
                                   "pcr_banks", "ek", "ek_certificates", "platform_certificate", "max_state_size",
                                   "max_connections", "vchan"});
      !s) {
    return reply(s.error());
  }
  std::optional<swtpm::EndpointSpec> spec;
  if (!endpoint.empty()) {
    auto parsed = swtpm::EndpointSpec::from_json(endpoint);
    if (!parsed) return reply(parsed.error());
    spec = std::move(*parsed);
  }
  AddOptions options;
  if (params.contains("uuid")) {
    auto id = uuid_param(params);
    if (!id) return reply(id.error());
    options.uuid = *id;
  }
  auto tpm = string_param(params, "tpm");
  if (!tpm) return reply(tpm.error());
  if (*tpm && **tpm != "2.0" && **tpm != "1.2") {
    return reply(make_error(ErrorCode::kInvalidArgument, "parameter 'tpm' must be \"2.0\" or \"1.2\""));
  }
  options.version = (*tpm && **tpm == "1.2") ? TpmVersion::k12 : TpmVersion::k20;
  auto startup = bool_param(params, "auto_startup");
  if (!startup) return reply(startup.error());
  options.auto_startup = startup->value_or(false);
  auto size = int_param(params, "max_command_size", 1024, 65536);
  if (!size) return reply(size.error());
  if (*size) options.max_command_size = static_cast<std::uint32_t>(**size);
  auto queued = int_param(params, "max_queued", 0, 1000000);
  if (!queued) return reply(queued.error());
  auto rate = int_param(params, "max_rate", 0, 1000000);
  if (!rate) return reply(rate.error());
  auto state_size = int_param(params, "max_state_size", 0, kMaxStateSizeParam);
  if (!state_size) return reply(state_size.error());
  auto connections = int_param(params, "max_connections", 0, 65536);
  if (!connections) return reply(connections.error());
  options.limits = {static_cast<std::uint32_t>(queued->value_or(0)), static_cast<std::uint32_t>(rate->value_or(0)),
                    static_cast<std::uint32_t>(state_size->value_or(0)),
                    static_cast<std::uint32_t>(connections->value_or(0))};
  auto vchan = vchan_param(params, false);
  if (!vchan) return reply(vchan.error());
  auto provision = provision_options(params);
  if (!provision) return reply(provision.error());
  if (Status s = provision->validate(options.version); !s) return reply(s.error());
  if (!provision->empty() && provisioner_ == nullptr) {
    return reply(make_error(ErrorCode::kUnsupported, "this daemon has no local CA; it cannot provision"));
  }
  // Saved with the new instance until provisioning finishes: a crash in
  // between leaves it marked, and the next start removes it (all or nothing).
  if (!provision->empty()) options.provisioning = std::string(kProvisioningPending);
  // The sockets are bound while the new instance's first write is being
  // synced (creating their files costs about as much as a sync on some
  // filesystems), and listen once the add is durable (finish_add).
  struct Reservation {
    Uuid id;
    std::optional<Status> status;  // empty: not tried (no endpoints, or the add failed first)
  };
  auto reserved = std::make_shared<Reservation>();
  if (spec) {
    options.channel_config = spec->to_json().dump();
    options.while_saving = [this, spec = *spec, reserved](const Uuid& id) {
      reserved->id = id;
      reserved->status = swtpm_.reserve(id, spec);
    };
  }
  service_.add(options, [this, provision = std::move(*provision), spec = std::move(spec), reply = std::move(reply),
                         progress = std::move(progress), vchan = vchan->value_or(std::nullopt),
                         reserved](Result<const Instance*> r) mutable {
    if (!r) {
      if (reserved->status && *reserved->status) (void)swtpm_.detach(reserved->id);
      return reply(r.error());
    }
    if (reserved->status && !*reserved->status) {
      // All or nothing: an instance whose endpoints cannot open is not kept.
      service_.remove((*r)->uuid, true, [reply, error = reserved->status->error()](Status) { reply(error); });
      return;
    }
    finish_add((*r)->uuid, std::move(provision), std::move(spec), vchan, std::move(reply), std::move(progress));
  });
}

// Most instances one add may create.
constexpr std::int64_t kMaxAddCount = 10000;

struct Handlers::BulkAdd {
  Json params;  // of each single add
  std::int64_t total = 0;
  Json added = Json::array();
  Reply reply;
  Progress progress;
};

void Handlers::add_many(const Json& params, Reply reply, Progress progress) {
  auto count = int_param(params, "count", 1, kMaxAddCount);
  if (!count) return reply(count.error());
  for (const auto& [key, value] : params.items()) {
    if (key == "uuid" || swtpm::EndpointSpec::is_parameter(key)) {
      return reply(make_error(ErrorCode::kInvalidArgument,
                              "parameter '" + key + "' names one instance; it cannot go with 'count'"));
    }
  }
  auto bulk = std::make_shared<BulkAdd>();
  bulk->params = params;
  bulk->params.erase("count");
  bulk->total = **count;
  bulk->reply = std::move(reply);
  bulk->progress = std::move(progress);
  add_next(std::move(bulk));
}

// One at a time, in order: each is durable before the next starts, so a
// failure leaves exactly the ones already reported.
void Handlers::add_next(std::shared_ptr<BulkAdd> bulk) {
  const Json params = bulk->params;
  add(params, [this, bulk = std::move(bulk)](Result<Json> one) {
    if (!one) {
      const auto done = bulk->added.size();
      if (done == 0) return bulk->reply(one.error());
      return bulk->reply(make_error(one.error().code, "added " + std::to_string(done) + " of " +
                                                          std::to_string(bulk->total) + " (they stay: " +
                                                          bulk->added.dump() + "), then: " + one.error().message));
    }
    bulk->added.push_back((*one)["uuid"]);
    if (bulk->progress) {
      bulk->progress(Json{{"done", bulk->added.size()}, {"total", bulk->total}, {"uuid", (*one)["uuid"]}});
    }
    if (static_cast<std::int64_t>(bulk->added.size()) == bulk->total) return bulk->reply(Json{{"added", bulk->added}});
    add_next(bulk);
  });
}

void Handlers::finish_add(const Uuid& id, ProvisionOptions provision, std::optional<swtpm::EndpointSpec> spec,
                          std::optional<std::uint16_t> vchan, Reply reply, Progress progress) {
  if (!provision.empty()) {
    Provisioner::StepListener listener;
    if (progress) {
      listener = [progress, id](const std::string& step, std::int64_t elapsed_ms) {
        progress(Json{{"uuid", id.to_string()}, {"step", step}, {"elapsed_ms", elapsed_ms}});
      };
    }
    provisioner_->provision(
        id, std::move(provision),
        [this, id, spec = std::move(spec), vchan, reply = std::move(reply)](Result<std::string> done) mutable {
          if (!done) {
            // All or nothing: an instance whose provisioning failed is not kept.
            service_.remove(id, true, [reply, error = done.error()](Status) { reply(error); });
            return;
          }
          finish_add(id, ProvisionOptions{}, std::move(spec), vchan, std::move(reply));
        },
        std::move(listener));
    return;
  }
  if (spec) {
    // Saved with the new instance already (AddOptions::channel_config), and
    // bound since the add began (Handlers::add).
    if (Status s = swtpm_.activate(id); !s) {
      // All or nothing: an instance whose endpoints cannot open is not kept.
      service_.remove(id, true, [reply, error = s.error()](Status) { reply(error); });
      return;
    }
  }
  if (vchan) {
    if (Status s = facts_.vchan_set(id, vchan); !s) {
      if (spec) (void)swtpm_.detach(id);
      service_.remove(id, true, [reply, error = s.error()](Status) { reply(error); });
      return;
    }
    return reply_when_saved(id, std::move(reply));  // the vchan setting is a second write
  }
  auto shown = service_.show(id);
  if (!shown) return reply(shown.error());
  reply(instance_json(**shown, service_, swtpm_, facts_));
}

void Handlers::remove(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "force"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto force = bool_param(params, "force");
  if (!force) return reply(force.error());
  if (facts_.xen_binding && !force->value_or(false)) {
    if (const Json xen = facts_.xen_binding(*id); !xen.is_null()) {
      return reply(make_error(ErrorCode::kBusy, "instance " + id->to_string() + " is bound to Xen domain " +
                                                    xen["domid"].dump() + " device " + xen["devid"].dump() +
                                                    "; detach it first (xl vtpm-detach) or use force"));
    }
  }
  service_.remove(*id, force->value_or(false), [this, reply = std::move(reply), id = *id](Status s) {
    if (!s) return reply(s.error());
    reply(Json{{"uuid", id.to_string()}});
  });
}

void Handlers::list(const Json& params, Reply reply) {
  if (Status s = only_params(params, {}); !s) return reply(s.error());
  Json out = Json::array();
  for (const auto& [id, instance] : service_.registry().all()) {
    if (!instance.removing && !WarmPool::is_member(instance)) out.push_back(instance_json(instance, service_, swtpm_, facts_));
  }
  reply(Json{{"instances", out}});
}

void Handlers::show(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto instance = service_.show(*id);
  if (!instance) return reply(instance.error());
  reply(instance_json(**instance, service_, swtpm_, facts_));
}

void Handlers::exec(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "command", "locality"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto text = string_param(params, "command");
  if (!text) return reply(text.error());
  if (!*text) return reply(make_error(ErrorCode::kInvalidArgument, "missing parameter 'command'"));
  if ((*text)->size() > 2 * tpm::kAbsoluteMaxCommand + 1024) {
    return reply(make_error(ErrorCode::kTooLarge, "command larger than any TPM accepts"));
  }
  auto command = from_hex(**text);
  if (!command) return reply(command.error());
  auto locality = int_param(params, "locality", 0, 4);
  if (!locality) return reply(locality.error());
  service_.exec(*id, std::move(*command), static_cast<std::uint8_t>(locality->value_or(0)),
                [reply = std::move(reply)](Result<ExecResult> r) {
                  if (!r) return reply(r.error());
                  reply(Json{{"response", to_hex(r->response)},
                             {"rc", r->rc},
                             {"timing",
                              {{"total_us", r->total_us},
                               {"queued_us", r->timing.queued_us},
                               {"load_us", r->timing.load_us},
                               {"run_us", r->timing.run_us}}}});
                });
}

void Handlers::power(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "action"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto action = string_param(params, "action");
  if (!action) return reply(action.error());
  PowerAction a{};
  if (*action == "on") {
    a = PowerAction::kOn;
  } else if (*action == "off") {
    a = PowerAction::kOff;
  } else if (*action == "reset") {
    a = PowerAction::kReset;
  } else {
    return reply(make_error(ErrorCode::kInvalidArgument, "parameter 'action' must be \"on\", \"off\" or \"reset\""));
  }
  service_.power(*id, a, reply_instance(service_, swtpm_, facts_, std::move(reply)));
}

void Handlers::cancel(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  service_.cancel(*id, [reply = std::move(reply), id = *id](Status s) {
    if (!s) return reply(s.error());
    reply(Json{{"uuid", id.to_string()}});
  });
}

Status Handlers::open_endpoints(const Uuid& id, const swtpm::EndpointSpec& spec) {
  if (Status s = swtpm_.attach(id, spec); !s) return s;
  return service_.set_channel_config(id, spec.to_json().dump());
}

void Handlers::attach(const Json& params, Reply reply) {
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto spec = swtpm::EndpointSpec::from_json(params);
  if (!spec) return reply(spec.error());
  auto instance = service_.show(*id);
  if (!instance) return reply(instance.error());
  if (Status s = open_endpoints(*id, *spec); !s) return reply(s.error());
  reply_when_saved(*id, std::move(reply));
}

void Handlers::reply_when_saved(const Uuid& id, Reply reply) {
  service_.when_saved(id, [this, id, reply = std::move(reply)](Status saved) {
    if (!saved) return reply(make_error(saved.error().code, "the setting is in force but not saved: " + saved.error().message));
    auto shown = service_.show(id);
    if (!shown) return reply(shown.error());
    reply(instance_json(**shown, service_, swtpm_, facts_));
  });
}

void Handlers::detach(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  if (Status s = swtpm_.detach(*id); !s) return reply(s.error());
  if (Status s = service_.set_channel_config(*id, {}); !s) {
    return reply(make_error(s.error().code, "the endpoints are closed but not saved: " + s.error().message));
  }
  reply_when_saved(*id, std::move(reply));
}

namespace {

// The operator's transport key, hex-encoded on the wire.
Result<engine::Bytes> transport_key_param(const Json& params) {
  auto text = string_param(params, "transport_key");
  if (!text) return text.error();
  if (!*text) return make_error(ErrorCode::kInvalidArgument, "missing parameter 'transport_key'");
  auto key = from_hex(**text);
  if (!key) return make_error(ErrorCode::kInvalidArgument, "transport_key: " + key.error().message);
  if (key->size() < state::kMinTransportKey) {
    return make_error(ErrorCode::kInvalidArgument, "transport_key must be at least " +
                                                       std::to_string(state::kMinTransportKey) + " bytes");
  }
  return key;
}

}  // namespace

Result<std::optional<std::optional<std::uint16_t>>> Handlers::vchan_param(const Json& params, bool off_allowed) const {
  using Setting = std::optional<std::optional<std::uint16_t>>;
  if (!params.contains("vchan")) return Setting();
  const Json& v = params["vchan"];
  const char* expected = off_allowed ? "parameter 'vchan' must be a domain id (1..32751) or \"off\""
                                     : "parameter 'vchan' must be a domain id (1..32751)";
  std::optional<std::uint16_t> client;
  if (off_allowed && v.is_string() && v.get<std::string>() == "off") {
    client = std::nullopt;
  } else if (v.is_number_integer() && v.get<std::int64_t>() >= 1 && v.get<std::int64_t>() <= 0x7FEF) {
    client = static_cast<std::uint16_t>(v.get<std::int64_t>());
  } else {
    return make_error(ErrorCode::kInvalidArgument, expected);
  }
  // Turning it off works anywhere: a daemon without Xen may hold a saved setting.
  if (client && (!facts_.vchan_available || !facts_.vchan_available())) {
    return make_error(ErrorCode::kUnsupported,
                      "vchan channels need the Xen backend: start vtpmd with --xen-backend on (xen_backend in the config)");
  }
  return Setting(client);
}

void Handlers::set(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "max_queued", "max_rate", "max_state_size", "max_connections", "vchan"}); !s) {
    return reply(s.error());
  }
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto vchan = vchan_param(params, true);
  if (!vchan) return reply(vchan.error());
  auto queued = int_param(params, "max_queued", 0, 1000000);
  if (!queued) return reply(queued.error());
  auto rate = int_param(params, "max_rate", 0, 1000000);
  if (!rate) return reply(rate.error());
  auto as_limit = [](const std::optional<std::int64_t>& v) {
    return v ? std::optional<std::uint32_t>(static_cast<std::uint32_t>(*v)) : std::nullopt;
  };
  auto state_size = int_param(params, "max_state_size", 0, kMaxStateSizeParam);
  if (!state_size) return reply(state_size.error());
  auto connections = int_param(params, "max_connections", 0, 65536);
  if (!connections) return reply(connections.error());
  if (*vchan) {
    if (auto instance = service_.show(*id); !instance) return reply(instance.error());
    const bool served = facts_.vchan_available && facts_.vchan_available();
    if (Status s = served ? facts_.vchan_set(*id, **vchan) : service_.set_vchan_config(*id, {}); !s) return reply(s.error());
  }
  service_.set_limits(*id, {as_limit(*queued), as_limit(*rate), as_limit(*state_size), as_limit(*connections)},
                      [this, reply = std::move(reply)](Result<const Instance*> r) {
                        if (!r) return reply(r.error());
                        reply(instance_json(**r, service_, swtpm_, facts_));
                      });
}

void Handlers::export_instance(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "transport_key"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto key = transport_key_param(params);
  if (!key) return reply(key.error());
  service_.export_instance(*id, [this, reply = std::move(reply), key = std::move(*key)](
                                    Result<state::InstanceRecord> record) {
    if (!record) return reply(record.error());
    auto bundle = state::seal_export(*record, key, drbg_);
    if (!bundle) return reply(bundle.error());
    reply(Json{{"uuid", record->uuid.to_string()},
               {"tpm", tpm_version_name(record->version)},
               {"bundle", to_hex(*bundle)}});
  });
}

void Handlers::import_instance(const Json& params, Reply reply, Progress progress) {
  const std::uint64_t started_us = uv_hrtime() / 1000;
  if (Status s = only_params(params, {"bundle", "transport_key"}); !s) return reply(s.error());
  auto key = transport_key_param(params);
  if (!key) return reply(key.error());
  auto text = string_param(params, "bundle");
  if (!text) return reply(text.error());
  if (!*text) return reply(make_error(ErrorCode::kInvalidArgument, "missing parameter 'bundle'"));
  auto bundle = from_hex(**text);
  if (!bundle) return reply(make_error(ErrorCode::kInvalidArgument, "bundle: " + bundle.error().message));
  auto record = state::open_export(*bundle, *key);
  if (!record) return reply(record.error());
  // Steps: the bundle opened (authenticated, decoded), the state loaded by
  // the engine (a TPM 1.2 worker: a quarter second), durable.
  std::function<void(const std::string&)> step;
  if (progress) {
    step = [progress, started_us, id = record->uuid.to_string()](const std::string& name) {
      progress(Json{{"uuid", id}, {"step", name}, {"elapsed_ms", (uv_hrtime() / 1000 - started_us) / 1000}});
    };
    step("opened");
  }
  service_.import_instance(
      std::move(*record),
      [this, reply = std::move(reply)](Result<const Instance*> r) {
        if (!r) return reply(r.error());
        reply(instance_json(**r, service_, swtpm_, facts_));
      },
      step);
}

}  // namespace vtpm::control
