#include "src/core/provisioner.h"

#include <mbedtls/md.h>
#include <mbedtls/sha1.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "proto/event_log.h"
#include "proto/tpm12_commands.h"
#include "src/core/tpm_steps.h"
#include "src/core/warm_pool.h"
#include "state/certificates.h"

namespace vtpm {
namespace {

// A measured launch records a handful of events; this bounds what a
// misbehaving toolstack can add to an instance's record.
constexpr std::size_t kMaxEventLog = 256 * 1024;

std::string hex_upper32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08X", v);
  return buf;
}

state::TpmIdentity identity_of(const tpm2::TpmProperties& p) {
  state::TpmIdentity id;
  id.manufacturer = "id:" + hex_upper32(p.manufacturer);
  id.model = p.vendor.empty() ? "unknown" : p.vendor;
  id.version = "id:" + hex_upper32(p.firmware_version_1);
  id.spec_level = p.level;
  id.spec_revision = p.revision;
  return id;
}

Result<Bytes> hash(TPM2_ALG_ID alg, std::span<const std::uint8_t> data) {
  mbedtls_md_type_t type = MBEDTLS_MD_NONE;
  switch (alg) {
    case TPM2_ALG_SHA1: type = MBEDTLS_MD_SHA1; break;
    case TPM2_ALG_SHA256: type = MBEDTLS_MD_SHA256; break;
    case TPM2_ALG_SHA384: type = MBEDTLS_MD_SHA384; break;
    case TPM2_ALG_SHA512: type = MBEDTLS_MD_SHA512; break;
    default: return make_error(ErrorCode::kUnsupported, "no hash for algorithm " + std::to_string(alg));
  }
  Bytes out(tpm2::digest_size(alg));
  if (mbedtls_md(mbedtls_md_info_from_type(type), data.data(), data.size(), out.data()) != 0) {
    return make_error(ErrorCode::kInternal, "hashing failed");
  }
  return out;
}

std::string bank_list(std::span<const TPM2_ALG_ID> banks) {
  std::string out;
  for (TPM2_ALG_ID alg : banks) out += (out.empty() ? "" : ", ") + std::string(tpm2::bank_name(alg));
  return out;
}

}  // namespace

Status ProvisionOptions::validate(TpmVersion version) const {
  if (empty() && !ek_certificates && !platform_certificate) return Status::success();
  if (version == TpmVersion::k12) {
    // libtpms' TPM 1.2 has one RSA 2048 EK, made by TPM_CreateEndorsementKeyPair.
    if (!pcr_banks.empty()) return make_error(ErrorCode::kUnsupported, "PCR banks are a TPM 2.0 feature");
    if (endorsement_keys != std::vector<tpm2::EkKind>{tpm2::EkKind::kRsa2048}) {
      return make_error(ErrorCode::kUnsupported, "a TPM 1.2 has one RSA endorsement key: use ek [\"rsa\"]");
    }
    if (platform_certificate) {
      return make_error(ErrorCode::kUnsupported, "platform certificates are for TPM 2.0 instances");
    }
    return Status::success();
  }
  if (ek_certificates && endorsement_keys.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "ek_certificates needs at least one EK (parameter 'ek')");
  }
  if (platform_certificate && !ek_certificates) {
    return make_error(ErrorCode::kInvalidArgument,
                      "platform_certificate needs ek_certificates (its holder is the EK certificate)");
  }
  return Status::success();
}

namespace {

// One provisioning run: what it learns on the way.
struct ProvisionJob {
  ProvisionOptions options;
  tpm2::TpmProperties properties;
  std::vector<TPM2_ALG_ID> banks;
  TPM2_HANDLE transient = 0;
  std::map<tpm2::EkKind, tpm2::PublicKey> keys;
  std::optional<state::IssuedCertificate> holder;  // the platform certificate's EK certificate
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

using Progress = std::function<void(const std::string&)>;

// The slow, identity-free part that a warm pool does ahead of time: PCR
// banks (which take effect at a TPM reset) and EKs from the TCG templates
// made persistent. Leaves the TPM started.
Steps manufacture_steps(const InstanceTpm& tpm, std::shared_ptr<ProvisionJob> job, Progress progress) {
  auto steps = std::make_shared<std::vector<Step>>();
  steps->push_back([tpm](Next next) { tpm.startup(std::move(next)); });
  if (!job->options.pcr_banks.empty()) {
    steps->push_back([tpm, job](Next next) {
      tpm.send("PCR_Allocate", tpm2::pcr_allocate(job->options.pcr_banks), 0, true, std::move(next),
               [](const tpm2::Response& r) -> Status {
                 auto ok = tpm2::parse_pcr_allocate(r.parameters);
                 if (!ok) return ok.error();
                 if (!*ok) return make_error(ErrorCode::kTpmFailure, "PCR_Allocate: the TPM refused the allocation");
                 return Status::success();
               });
    });
    steps->push_back([tpm](Next next) { tpm.send("Shutdown(CLEAR)", tpm2::shutdown(true), 0, false, std::move(next)); });
    steps->push_back([tpm](Next next) { tpm.power_cycle(std::move(next)); });
    steps->push_back([tpm, progress](Next next) {
      progress("PCR banks allocated");
      tpm.startup(std::move(next));
    });
  }
  for (const tpm2::EkKind kind : job->options.endorsement_keys) {
    const std::string name(tpm2::ek_name(kind));
    steps->push_back([tpm, job, kind, name](Next next) {
      tpm.send("CreatePrimary(" + name + " EK)", tpm2::create_primary(TPM2_RH_ENDORSEMENT, tpm2::ek_template(kind)), 1,
               true, std::move(next), [job, kind](const tpm2::Response& r) -> Status {
                 auto key = tpm2::parse_create_primary(r.parameters);
                 if (!key) return key.error();
                 if (key->kind != kind) return make_error(ErrorCode::kTpmFailure, "CreatePrimary made the wrong key type");
                 job->transient = r.handles.at(0);
                 return Status::success();
               });
    });
    steps->push_back([tpm, job, kind, name, progress](Next next) {
      progress(name + " EK created");
      tpm.send("EvictControl(" + name + " EK)",
               tpm2::evict_control(TPM2_RH_OWNER, job->transient, tpm2::ek_persistent_handle(kind)), 0, true,
               std::move(next));
    });
    steps->push_back([tpm, job](Next next) {
      tpm.send("FlushContext", tpm2::flush_context(job->transient), 0, false, std::move(next));
    });
  }
  return steps;
}

// The part that names the instance, after manufacture here or in the warm
// pool: the EKs read back from their persistent handles, certificates from
// the local CA in their TCG NV indices, then Shutdown and a power cycle so
// that the guest's firmware makes the first Startup of its own power-on.
void append_certify_steps(Steps steps, const InstanceTpm& tpm, std::shared_ptr<ProvisionJob> job, state::LocalCa& ca,
                          Progress progress) {
  steps->push_back([tpm](Next next) { tpm.startup(std::move(next)); });
  steps->push_back([tpm, job](Next next) {
    tpm.send("GetCapability(PCRS)", tpm2::get_capability_pcrs(), 0, false, std::move(next),
             [job](const tpm2::Response& r) -> Status {
               auto banks = tpm2::parse_active_banks(r.parameters);
               if (!banks) return banks.error();
               job->banks = std::move(*banks);
               return Status::success();
             });
  });
  steps->push_back([tpm, job](Next next) {
    tpm.send("GetCapability(TPM_PROPERTIES)", tpm2::get_capability_fixed_properties(), 0, false, std::move(next),
             [job](const tpm2::Response& r) -> Status {
               auto p = tpm2::parse_fixed_properties(r.parameters);
               if (!p) return p.error();
               job->properties = std::move(*p);
               return Status::success();
             });
  });
  for (const tpm2::EkKind kind : job->options.endorsement_keys) {
    const std::string name(tpm2::ek_name(kind));
    steps->push_back([tpm, job, kind, name](Next next) {
      tpm.send("ReadPublic(" + name + " EK)", tpm2::read_public(tpm2::ek_persistent_handle(kind)), 0, false,
               std::move(next), [job, kind, name](const tpm2::Response& r) -> Status {
                 auto key = tpm2::parse_read_public(r.parameters);
                 if (!key) return key.error();
                 if (key->kind != kind) {
                   return make_error(ErrorCode::kTpmFailure, "the key at " + hex32(tpm2::ek_persistent_handle(kind)) +
                                                                 " is not an " + name + " EK");
                 }
                 job->keys[kind] = std::move(*key);
                 return Status::success();
               });
    });
    if (!job->options.ek_certificates) continue;
    steps->push_back([tpm, job, kind, name, &ca, progress](Next next) {
      auto cert = state::issue_ek_certificate(ca, job->keys.at(kind), identity_of(job->properties));
      if (!cert) return next(cert.error());
      if (!job->holder) job->holder = *cert;
      progress(name + " EK certificate issued (" + std::to_string(cert->der.size()) + " bytes)");
      tpm.write_certificate(tpm2::ek_cert_index(kind), std::make_shared<const Bytes>(std::move(cert->der)),
                            std::move(next));
    });
  }
  if (job->options.platform_certificate) {
    steps->push_back([tpm, job, &ca, progress](Next next) {
      state::PlatformIdentity platform;
      platform.version = VTPMD_VERSION;
      platform.serial = tpm.id.to_string();
      auto cert = state::issue_platform_certificate(ca, *job->holder, platform);
      if (!cert) return next(cert.error());
      progress("platform certificate issued (" + std::to_string(cert->size()) + " bytes)");
      tpm.write_certificate(tpm2::kPlatformCertIndex, std::make_shared<const Bytes>(std::move(*cert)), std::move(next));
    });
  }
  steps->push_back([tpm](Next next) { tpm.shutdown_for_guest(std::move(next)); });
}

std::string summary_of(const ProvisionJob& job, bool from_pool) {
  nlohmann::json summary = {{"pcr_banks", nlohmann::json::array()}, {"ek", nlohmann::json::array()}};
  for (TPM2_ALG_ID alg : job.banks) summary["pcr_banks"].push_back(tpm2::bank_name(alg));
  for (tpm2::EkKind kind : job.options.endorsement_keys) {
    nlohmann::json ek = {{"type", tpm2::ek_name(kind)}, {"handle", hex32(tpm2::ek_persistent_handle(kind))}};
    if (job.options.ek_certificates) ek["certificate_index"] = hex32(tpm2::ek_cert_index(kind));
    summary["ek"].push_back(ek);
  }
  if (job.options.platform_certificate) summary["platform_certificate_index"] = hex32(tpm2::kPlatformCertIndex);
  if (from_pool) summary["manufactured_by"] = "warm_pool";
  return summary.dump();
}

}  // namespace

Progress Provisioner::progress_logger(const Uuid& id, StepListener listener) const {
  const Logger& log = log_;
  const auto started = std::chrono::steady_clock::now();
  return [&log, id, started, listener = std::move(listener)](const std::string& what) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    log.info(id, "provisioning: " + what + " (" + std::to_string(ms.count()) + " ms)");
    if (listener) listener(what, ms.count());
  };
}

void Provisioner::discard_unfinished() {
  std::vector<Uuid> unfinished;
  for (const auto& [id, instance] : registry_.all()) {
    if (instance.provisioning == kProvisioningPending) unfinished.push_back(id);
  }
  for (const Uuid& id : unfinished) {
    log_.warn(id, "provisioning was interrupted (the daemon stopped during its add): removing the instance");
    service_.remove(id, true, [this, alive = std::weak_ptr<int>(alive_), id](Status s) {
      if (!alive.expired() && !s) log_.error(id, "removing an unfinished instance failed: " + s.error().message);
    });
  }
}

void Provisioner::manufacture(const Uuid& id, ProvisionOptions options, std::function<void(Status)> done) {
  auto job = std::make_shared<ProvisionJob>();
  job->options = std::move(options);
  run_steps(manufacture_steps(InstanceTpm{service_, id}, job, progress_logger(id)), 0, std::move(done));
}

void Provisioner::provision(const Uuid& id, ProvisionOptions options, std::function<void(Result<std::string>)> done,
                            StepListener listener) {
  if (const Instance* instance = registry_.find(id); instance != nullptr && instance->version == TpmVersion::k12) {
    return provision_tpm12(id, options.ek_certificates, std::move(done), std::move(listener));
  }
  auto job = std::make_shared<ProvisionJob>();
  job->options = std::move(options);
  const auto alive = std::weak_ptr<int>(alive_);
  auto run = [this, alive, id, job, done = std::move(done), listener = std::move(listener)](bool from_pool) mutable {
    const InstanceTpm tpm{service_, id};
    const Progress progress = progress_logger(id, listener);
    if (from_pool) progress("banks and EKs taken from the warm pool");
    Steps steps = from_pool ? std::make_shared<std::vector<Step>>() : manufacture_steps(tpm, job, progress);
    append_certify_steps(steps, tpm, job, ca_, progress);
    run_steps(steps, 0, [this, alive, id, job, from_pool, done = std::move(done)](Status s) {
      if (alive.expired()) return;
      if (!s) {
        log_.error(id, "provisioning failed: " + s.error().message);
        return done(s.error());
      }
      const std::string text = summary_of(*job, from_pool);
      service_.set_provisioning(id, text, [this, alive, id, job, text, done](Status saved) {
        if (alive.expired()) return;
        if (!saved) return done(saved.error());
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - job->started);
        log_.info(id, "provisioned in " + std::to_string(ms.count()) + " ms: " + text);
        done(text);
      });
    });
  };
  if (pool_ == nullptr) return run(false);
  pool_->adopt(id, job->options.pcr_banks, job->options.endorsement_keys,
               [alive, id, run = std::move(run)](Result<bool> adopted) mutable {
                 if (alive.expired()) return;
                 // A failed hand-over leaves the target as added: manufacture it here.
                 run(adopted.ok() && *adopted);
               });
}

void Provisioner::provision_tpm12(const Uuid& id, bool ek_certificate, std::function<void(Result<std::string>)> done,
                                  StepListener listener) {
  auto nonce = std::make_shared<tpm12::Nonce>();
  if (Status s = ca_.drbg().fill(*nonce); !s) return done(s.error());
  struct Job {
    Bytes modulus;
    state::TpmIdentity identity;
    Bytes certificate;  // the EK certificate index's content
  };
  auto job = std::make_shared<Job>();
  const auto started = std::chrono::steady_clock::now();
  const InstanceTpm tpm{service_, id};
  const Progress progress = progress_logger(id, std::move(listener));
  // A TPM 1.2 command whose response must carry return code 0 (or one in `accept`).
  auto plain = [tpm](std::string what, Bytes command, std::vector<std::uint32_t> accept = {}) -> Step {
    return [tpm, what = std::move(what), command = std::move(command), accept = std::move(accept)](Next next) {
      tpm.send12(what, command, [what, accept](const Bytes& r) -> Status {
        const std::uint32_t rc = tpm12::response_code(r);
        if (rc == 0 || std::find(accept.begin(), accept.end(), rc) != accept.end()) return Status::success();
        return make_error(ErrorCode::kTpmFailure, what + " failed: TPM 1.2 rc " + std::to_string(rc));
      }, std::move(next));
    };
  };
  auto steps = std::make_shared<std::vector<Step>>();
  steps->push_back(plain("TPM_Startup(ST_CLEAR)", tpm12::startup_clear(), {tpm12::kInvalidPostInit}));
  // What a PC's firmware does with physical presence, once: the TPM is
  // left enabled and activated, for the guest to take ownership of.
  steps->push_back(plain("TSC_PhysicalPresence(CMD_ENABLE)", tpm12::tsc_physical_presence(tpm12::kPhysicalPresenceCmdEnable)));
  steps->push_back(plain("TSC_PhysicalPresence(PRESENT)", tpm12::tsc_physical_presence(tpm12::kPhysicalPresencePresent)));
  steps->push_back(plain("TPM_PhysicalEnable", tpm12::physical_enable()));
  steps->push_back(plain("TPM_PhysicalSetDeactivated(FALSE)", tpm12::physical_set_deactivated(false)));
  steps->push_back([tpm, nonce, job, progress](Next next) {
    tpm.send12("TPM_CreateEndorsementKeyPair", tpm12::create_endorsement_key_pair(*nonce), [nonce, job, progress](const Bytes& r) -> Status {
      auto ek = tpm12::parse_create_endorsement_key_pair(r);
      if (!ek) return ek.error();
      // The TPM proves the key is fresh: checksum = SHA-1(pubkey || antiReplay).
      Bytes covered = ek->pubkey;
      covered.insert(covered.end(), nonce->begin(), nonce->end());
      Bytes expected(20);
      if (mbedtls_sha1_ret(covered.data(), covered.size(), expected.data()) != 0 || expected != ek->checksum) {
        return make_error(ErrorCode::kTpmFailure, "TPM_CreateEndorsementKeyPair: checksum does not match the nonce");
      }
      job->modulus = std::move(ek->modulus);
      progress("rsa EK created");
      return Status::success();
    }, std::move(next));
  });
  if (ek_certificate) {
    steps->push_back([tpm, job](Next next) {
      tpm.send12("TPM_GetCapability(VERSION_VAL)", tpm12::get_capability_version(), [job](const Bytes& r) -> Status {
        auto v = tpm12::parse_version_info(r);
        if (!v) return v.error();
        job->identity.manufacturer = "id:" + hex_upper32(v->vendor);
        job->identity.model = "vtpmd TPM 1.2 (libtpms)";
        job->identity.version = "id:" + hex_upper32(static_cast<std::uint32_t>(v->rev_major) << 8 | v->rev_minor);
        job->identity.spec_family = "1.2";
        job->identity.spec_level = v->spec_level;
        // TPM Main Specification 1.2 level 2 revision 116 is errata 3,
        // the revision libtpms implements.
        job->identity.spec_revision = v->errata_rev == 3 ? 116 : v->errata_rev;
        return Status::success();
      }, std::move(next));
    });
    steps->push_back([job, &ca = ca_, progress, plain](Next next) {
      tpm2::PublicKey key;
      key.kind = tpm2::EkKind::kRsa2048;
      key.rsa_modulus = job->modulus;
      auto cert = state::issue_ek_certificate(ca, key, job->identity);
      if (!cert) return next(cert.error());
      progress("rsa EK certificate issued (" + std::to_string(cert->der.size()) + " bytes)");
      job->certificate = tpm12::stored_certificate(cert->der);
      plain("TPM_NV_DefineSpace(EK certificate)",
            tpm12::nv_define_space(tpm12::kEkCertIndex, tpm12::kNvPerOwnerRead | tpm12::kNvPerOwnerWrite,
                                   static_cast<std::uint32_t>(job->certificate.size())))(std::move(next));
    });
    steps->push_back([tpm, job, plain](Next next) {
      // Chunks, each a step of its own, then NV locked: owner auth is
      // needed to read it from now on, and nothing can rewrite it.
      auto chunks = std::make_shared<std::vector<Step>>();
      for (std::size_t at = 0; at < job->certificate.size(); at += tpm12::kNvWriteChunk) {
        const std::size_t n = std::min(tpm12::kNvWriteChunk, job->certificate.size() - at);
        chunks->push_back(plain("TPM_NV_WriteValue(EK certificate)",
                                tpm12::nv_write_value(tpm12::kEkCertIndex, static_cast<std::uint32_t>(at),
                                                      std::span(job->certificate).subspan(at, n))));
      }
      chunks->push_back(plain("TPM_NV_DefineSpace(TPM_NV_INDEX_LOCK)", tpm12::nv_lock()));
      run_steps(chunks, 0, std::move(next));
    });
  }
  steps->push_back([tpm](Next next) { tpm.power_reset(std::move(next)); });
  run_steps(steps, 0, [this, alive = std::weak_ptr<int>(alive_), id, started, ek_certificate,
                       done = std::move(done)](Status s) {
    if (alive.expired()) return;
    if (!s) {
      log_.error(id, "provisioning failed: " + s.error().message);
      return done(s.error());
    }
    nlohmann::json ek = {{"type", "rsa"}};
    if (ek_certificate) ek["certificate_index"] = hex32(tpm12::kEkCertIndex);
    const std::string text = nlohmann::json{{"ek", {ek}}}.dump();
    service_.set_provisioning(id, text, [this, alive, id, started, text, done](Status saved) {
      if (alive.expired()) return;
      if (!saved) return done(saved.error());
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      log_.info(id, "provisioned (TPM 1.2) in " + std::to_string(ms.count()) + " ms: " + text);
      done(text);
    });
  });
}

void Provisioner::measure(const Uuid& id, MeasureRequest request, std::function<void(Result<MeasureResult>)> done) {
  auto found = registry_.get(id);
  if (!found) return done(found.error());
  const Instance& instance = **found;
  if (instance.version != TpmVersion::k20) {
    return done(make_error(ErrorCode::kUnsupported, "measure: instance " + id.to_string() + " is a TPM 1.2"));
  }
  if (instance.failed || instance.removing || instance.power != PowerState::kOn) {
    return done(make_error(ErrorCode::kUnavailable, "measure: instance " + id.to_string() + " is " +
                                                        (instance.removing ? "being removed" : instance.state_name())));
  }
  if (instance.guest_started && !request.force) {
    return done(make_error(ErrorCode::kInvalidArgument,
                           "measure: the guest of " + id.to_string() +
                               " has started (its TPM has had commands since power-on); a measurement now would not "
                               "describe its launch. Reset it first (vtpmctl reset) or use --force"));
  }
  if (request.pcr > 23) return done(make_error(ErrorCode::kInvalidArgument, "measure: PCR must be 0..23"));
  if (instance.event_log.size() + request.event_data.size() > kMaxEventLog) {
    return done(make_error(ErrorCode::kTooLarge, "measure: the event log is full (" +
                                                     std::to_string(kMaxEventLog / 1024) + " KiB)"));
  }

  struct Job {
    MeasureRequest request;
    std::vector<TPM2_ALG_ID> banks;
    std::vector<tpm2::PcrDigest> digests;
  };
  auto job = std::make_shared<Job>();
  job->request = std::move(request);
  const InstanceTpm tpm{service_, id};
  auto steps = std::make_shared<std::vector<Step>>();
  // The toolstack measures before the guest's firmware runs: if the TPM
  // awaits its Startup, vtpmd makes it (the guest's then answers
  // TPM_RC_INITIALIZE, which firmware and kernels accept).
  steps->push_back([tpm](Next next) { tpm.startup(std::move(next)); });
  steps->push_back([tpm, job](Next next) {
    tpm.send("GetCapability(PCRS)", tpm2::get_capability_pcrs(), 0, false, std::move(next),
             [job](const tpm2::Response& r) -> Status {
               auto banks = tpm2::parse_active_banks(r.parameters);
               if (!banks) return banks.error();
               job->banks = std::move(*banks);
               for (TPM2_ALG_ID alg : job->banks) {
                 if (job->request.data) {
                   auto d = hash(alg, *job->request.data);
                   if (!d) return d.error();
                   job->digests.push_back({alg, std::move(*d)});
                   continue;
                 }
                 auto given = job->request.digests.find(alg);
                 if (given == job->request.digests.end()) {
                   return make_error(ErrorCode::kInvalidArgument,
                                     "measure: the instance has the PCR banks " + bank_list(job->banks) +
                                         " active; a digest is needed for each (missing " +
                                         std::string(tpm2::bank_name(alg)) + ")");
                 }
                 job->digests.push_back({alg, given->second});
               }
               if (job->digests.empty()) return make_error(ErrorCode::kTpmFailure, "measure: no active PCR bank");
               return Status::success();
             });
  });
  steps->push_back([tpm, job](Next next) {
    tpm.send("PCR_Extend(" + std::to_string(job->request.pcr) + ")", tpm2::pcr_extend(job->request.pcr, job->digests),
             0, true, std::move(next));
  });
  run_steps(steps, 0, [this, alive = std::weak_ptr<int>(alive_), id, job, done = std::move(done)](Status s) {
    if (alive.expired()) return;
    if (!s) return done(s.error());
    Instance* i = registry_.find(id);
    if (i == nullptr) return done(make_error(ErrorCode::kNotFound, "instance removed while measuring"));
    eventlog::Event event;
    event.pcr = job->request.pcr;
    event.type = job->request.event_type.value_or(eventlog::default_event_type(job->request.pcr));
    for (const auto& d : job->digests) event.digests.push_back({d.alg, d.digest});
    event.data = job->request.event_data;
    if (i->event_log.empty()) i->event_log = eventlog::encode_header(job->banks);
    const Bytes encoded = eventlog::encode_event(event);
    i->event_log.insert(i->event_log.end(), encoded.begin(), encoded.end());
    const auto decoded = eventlog::decode(i->event_log);
    const std::size_t events = decoded ? decoded->events.size() : 0;
    log_.info(id, "measured into PCR " + std::to_string(job->request.pcr) + " (" + bank_list(job->banks) + ")");
    // The PCRs and the log are volatile state: save both, durably, so a
    // crash before the guest starts resumes them together.
    service_.store_volatile(id, [job, events, done](Status saved) {
      if (!saved) return done(saved.error());
      MeasureResult result;
      result.pcr = job->request.pcr;
      result.digests = job->digests;
      result.events = events;
      done(std::move(result));
    });
  });
}

void Provisioner::event_log(const Uuid& id, std::function<void(Result<Bytes>)> done) {
  auto found = registry_.get(id);
  if (!found) return done(found.error());
  const Instance& instance = **found;
  if (instance.version != TpmVersion::k20) {
    return done(make_error(ErrorCode::kUnsupported, "eventlog: instance " + id.to_string() + " is a TPM 1.2"));
  }
  if (!instance.event_log.empty()) return done(instance.event_log);
  // Nothing measured this boot: the header alone, with the active banks.
  const auto summary = nlohmann::json::parse(instance.provisioning, nullptr, false);
  if (summary.is_object() && summary.contains("pcr_banks") && summary["pcr_banks"].is_array()) {
    std::vector<TPM2_ALG_ID> banks;
    for (const auto& name : summary["pcr_banks"]) {
      if (auto alg = name.is_string() ? tpm2::bank_from_name(name.get<std::string>()) : std::nullopt) banks.push_back(*alg);
    }
    if (!banks.empty()) return done(eventlog::encode_header(banks));
  }
  const InstanceTpm tpm{service_, id};
  tpm.send("GetCapability(PCRS)", tpm2::get_capability_pcrs(), 0, false,
           [done](Status s) {
             if (!s) {
               return done(make_error(ErrorCode::kUnavailable,
                                      "eventlog: nothing measured yet, and the TPM cannot say its PCR banks (" +
                                          s.error().message + ")"));
             }
           },
           [done](const tpm2::Response& r) -> Status {
             auto banks = tpm2::parse_active_banks(r.parameters);
             if (!banks) return banks.error();
             done(eventlog::encode_header(*banks));
             return Status::success();
           });
}

}  // namespace vtpm
