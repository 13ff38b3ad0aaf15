// Control API methods of provisioning and measured launch: add's
// provisioning parameters, measure, eventlog, ca-cert and reset
// (docs/control-protocol.md, docs/provisioning.md).
#include <algorithm>

#include "proto/event_log.h"
#include "proto/hex.h"
#include "src/control/handlers.h"
#include "src/control/params.h"

namespace vtpm::control {
namespace {

Error invalid(const std::string& m) { return make_error(ErrorCode::kInvalidArgument, m); }

// A parameter that is an array of names, each in a closed set.
template <typename T>
Result<std::vector<T>> names_param(const Json& params, const char* name, std::optional<T> (*parse)(std::string_view),
                                   const char* choices) {
  std::vector<T> out;
  auto it = params.find(name);
  if (it == params.end() || it->is_null()) return out;
  if (!it->is_array() || it->empty()) {
    return invalid(std::string("parameter '") + name + "' must be a non-empty array of names (" + choices + ")");
  }
  for (const auto& item : *it) {
    if (!item.is_string()) return invalid(std::string("parameter '") + name + "' must hold strings (" + choices + ")");
    auto value = parse(item.get<std::string>());
    if (!value) {
      return invalid(std::string("parameter '") + name + "': unknown '" + item.get<std::string>() + "' (known: " +
                     choices + ")");
    }
    if (std::find(out.begin(), out.end(), *value) != out.end()) {
      return invalid(std::string("parameter '") + name + "': '" + item.get<std::string>() + "' given twice");
    }
    out.push_back(*value);
  }
  return out;
}

}  // namespace

Result<ProvisionOptions> Handlers::provision_options(const Json& params) {
  ProvisionOptions options;
  auto banks = names_param<TPM2_ALG_ID>(params, "pcr_banks", tpm2::bank_from_name, "sha1, sha256, sha384, sha512");
  if (!banks) return banks.error();
  options.pcr_banks = std::move(*banks);
  auto eks = names_param<tpm2::EkKind>(params, "ek", tpm2::ek_from_name, "rsa, ecc");
  if (!eks) return eks.error();
  options.endorsement_keys = std::move(*eks);
  auto certs = bool_param(params, "ek_certificates");
  if (!certs) return certs.error();
  options.ek_certificates = certs->value_or(false);
  auto platform = bool_param(params, "platform_certificate");
  if (!platform) return platform.error();
  options.platform_certificate = platform->value_or(false);
  return options;
}

void Handlers::measure(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid", "pcr", "digests", "data", "event", "event_type", "force"}); !s) return reply(s.error());
  if (provisioner_ == nullptr) return reply(make_error(ErrorCode::kUnsupported, "measure is not available"));
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  auto pcr = int_param(params, "pcr", 0, 23);
  if (!pcr) return reply(pcr.error());
  if (!*pcr) return reply(invalid("missing parameter 'pcr'"));
  MeasureRequest request;
  request.pcr = static_cast<std::uint32_t>(**pcr);
  auto data = string_param(params, "data");
  if (!data) return reply(data.error());
  const bool has_digests = params.contains("digests") && !params["digests"].is_null();
  if (static_cast<bool>(*data) == has_digests) {
    return reply(invalid("give exactly one of 'data' (measured by vtpmd) and 'digests' (an object of bank: hex)"));
  }
  if (*data) {
    request.data = Bytes((*data)->begin(), (*data)->end());
    request.event_data = *request.data;
  } else {
    const Json& digests = params["digests"];
    if (!digests.is_object() || digests.empty()) return reply(invalid("parameter 'digests' must be an object of bank: hex"));
    for (const auto& [bank, value] : digests.items()) {
      auto alg = tpm2::bank_from_name(bank);
      if (!alg) return reply(invalid("digests: unknown bank '" + bank + "' (known: sha1, sha256, sha384, sha512)"));
      if (!value.is_string()) return reply(invalid("digests: the " + bank + " digest must be a hex string"));
      auto bytes = from_hex(value.get<std::string>());
      if (!bytes) return reply(invalid("digests: " + bank + ": " + bytes.error().message));
      if (bytes->size() != tpm2::digest_size(*alg)) {
        return reply(invalid("digests: a " + bank + " digest has " + std::to_string(tpm2::digest_size(*alg)) +
                             " bytes, not " + std::to_string(bytes->size())));
      }
      request.digests[*alg] = std::move(*bytes);
    }
  }
  auto event = string_param(params, "event");
  if (!event) return reply(event.error());
  if (*event) request.event_data.assign((*event)->begin(), (*event)->end());
  auto type = int_param(params, "event_type", 0, 0xffffffff);
  if (!type) return reply(type.error());
  if (*type) {
    // EV_NO_ACTION events are by definition not extended into a PCR.
    if (**type == eventlog::kEvNoAction) return reply(invalid("event_type EV_NO_ACTION (3) cannot be measured"));
    request.event_type = static_cast<std::uint32_t>(**type);
  }
  auto force = bool_param(params, "force");
  if (!force) return reply(force.error());
  request.force = force->value_or(false);
  provisioner_->measure(*id, std::move(request), [reply = std::move(reply), id = *id](Result<MeasureResult> r) {
    if (!r) return reply(r.error());
    Json digests = Json::object();
    for (const auto& d : r->digests) digests[std::string(tpm2::bank_name(d.alg))] = to_hex(d.digest);
    reply(Json{{"uuid", id.to_string()}, {"pcr", r->pcr}, {"digests", digests}, {"events", r->events}});
  });
}

void Handlers::eventlog(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  if (provisioner_ == nullptr) return reply(make_error(ErrorCode::kUnsupported, "eventlog is not available"));
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  provisioner_->event_log(*id, [reply = std::move(reply), id = *id](Result<Bytes> log) {
    if (!log) return reply(log.error());
    reply(Json{{"uuid", id.to_string()}, {"event_log", to_hex(*log)}});
  });
}

void Handlers::ca_cert(const Json& params, Reply reply) {
  if (Status s = only_params(params, {}); !s) return reply(s.error());
  if (provisioner_ == nullptr) return reply(make_error(ErrorCode::kUnsupported, "this daemon has no local CA"));
  reply(Json{{"pem", provisioner_->ca().certificate_pem()}});
}

void Handlers::reset(const Json& params, Reply reply) {
  if (Status s = only_params(params, {"uuid"}); !s) return reply(s.error());
  auto id = uuid_param(params);
  if (!id) return reply(id.error());
  service_.power(*id, PowerAction::kReset, [this, reply = std::move(reply)](Result<const Instance*> r) {
    if (!r) return reply(r.error());
    reply(instance_json(**r, service_, swtpm_, facts_));
  });
}

}  // namespace vtpm::control
