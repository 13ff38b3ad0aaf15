#include "state/tpm_root.h"

#include <tss2/tss2_mu.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include <mbedtls/platform_util.h>

#include "proto/hex.h"

namespace vtpm::state {
namespace {

constexpr std::uint16_t kSealedVersion = 1;
constexpr std::uint8_t kModePcr = 0;
constexpr std::uint8_t kModePcrOrAuthorized = 1;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

TSS2_RC base_rc(TSS2_RC rc) { return (rc & TPM2_RC_FMT1) ? (rc & (TPM2_RC_FMT1 | 0x3F)) : (rc & 0xFFF); }

template <typename T, TSS2_RC (*Marshal)(const T*, uint8_t*, size_t, size_t*)>
Bytes marshal(const T& value) {
  Bytes out(sizeof(T) + 8);
  size_t offset = 0;
  Marshal(&value, out.data(), out.size(), &offset);
  out.resize(offset);
  return out;
}

template <typename T, TSS2_RC (*Unmarshal)(const uint8_t*, size_t, size_t*, T*)>
bool unmarshal(std::span<const std::uint8_t> bytes, T& out) {
  size_t offset = 0;
  return Unmarshal(bytes.data(), bytes.size(), &offset, &out) == TSS2_RC_SUCCESS && offset == bytes.size();
}

TPM2B_DIGEST digest_of(std::span<const std::uint8_t> bytes) {
  TPM2B_DIGEST d{};
  d.size = static_cast<UINT16>(std::min(bytes.size(), sizeof d.buffer));
  std::memcpy(d.buffer, bytes.data(), d.size);
  return d;
}

Bytes policy_update(std::span<const std::uint8_t> old, TPM2_CC command, std::span<const std::uint8_t> arg) {
  ByteWriter w;
  w.raw(old);
  w.u32(command);
  w.raw(arg);
  const Digest d = sha256(w.bytes());
  return Bytes(d.begin(), d.end());
}

// TPM2_PolicyAuthorize(keySign, policyRef = empty) from all zeros.
Bytes policy_authorize_digest(const TPM2B_NAME& key_name) {
  const Bytes first = policy_update(Bytes(32, 0), TPM2_CC_PolicyAuthorize, std::span(key_name.name, key_name.size));
  const Digest d = sha256(first);  // ‖ policyRef, which is empty
  return Bytes(d.begin(), d.end());
}

Bytes policy_or_digest(const Bytes& a, const Bytes& b) {
  Bytes both = a;
  both.insert(both.end(), b.begin(), b.end());
  return policy_update(Bytes(32, 0), TPM2_CC_PolicyOR, both);
}

TPM2B_PUBLIC srk_template() {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& a = t.publicArea;
  a.type = TPM2_ALG_ECC;
  a.nameAlg = TPM2_ALG_SHA256;
  a.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  a.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  a.parameters.eccDetail.symmetric.keyBits.aes = 128;
  a.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  a.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  a.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  a.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  a.unique.ecc.x.size = 32;
  a.unique.ecc.y.size = 32;
  return t;
}

}  // namespace

// The root-specific part of master.key (docs/state-format.md):
// u16 version, u8 mode, u32 parent handle, u32 counter index, then
// u32-length-prefixed: PCR selection (TPML_PCR_SELECTION), PCR branch
// digest, authorize branch digest (empty in PCR mode), TPM2B_PUBLIC,
// TPM2B_PRIVATE (both as marshalled by the TPM).
struct TpmRootOfTrust::Sealed {
  std::uint8_t mode = kModePcr;
  std::uint32_t parent = 0;
  std::uint32_t counter = 0;
  TPML_PCR_SELECTION pcrs{};
  Bytes pcr_branch;
  Bytes authorize_branch;
  TPM2B_PUBLIC pub{};
  TPM2B_PRIVATE priv{};

  Bytes encode() const {
    ByteWriter w;
    w.u16(kSealedVersion);
    w.u8(mode);
    w.u32(parent);
    w.u32(counter);
    for (const Bytes& part : {marshal<TPML_PCR_SELECTION, Tss2_MU_TPML_PCR_SELECTION_Marshal>(pcrs), pcr_branch,
                              authorize_branch, marshal<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Marshal>(pub),
                              marshal<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Marshal>(priv)}) {
      w.u32(static_cast<std::uint32_t>(part.size()));
      w.raw(part);
    }
    return w.take();
  }

  static Result<Sealed> decode(std::span<const std::uint8_t> bytes) {
    auto bad = [](const std::string& why) {
      return make_error(ErrorCode::kCorrupt, "the TPM-sealed master key is malformed: " + why);
    };
    ByteReader r(bytes);
    if (r.u16() != kSealedVersion) return bad("unknown version");
    Sealed s;
    s.mode = r.u8();
    s.parent = r.u32();
    s.counter = r.u32();
    auto part = [&r]() { return r.raw(r.u32()); };
    const auto pcrs = part();
    const auto pcr_branch = part();
    const auto auth_branch = part();
    const auto pub = part();
    const auto priv = part();
    if (!r.ok() || r.remaining() != 0) return bad("truncated or trailing bytes");
    if (s.mode != kModePcr && s.mode != kModePcrOrAuthorized) return bad("unknown policy mode");
    if (!unmarshal<TPML_PCR_SELECTION, Tss2_MU_TPML_PCR_SELECTION_Unmarshal>(pcrs, s.pcrs)) return bad("PCR selection");
    if (!unmarshal<TPM2B_PUBLIC, Tss2_MU_TPM2B_PUBLIC_Unmarshal>(pub, s.pub)) return bad("public area");
    if (!unmarshal<TPM2B_PRIVATE, Tss2_MU_TPM2B_PRIVATE_Unmarshal>(priv, s.priv)) return bad("private area");
    s.pcr_branch.assign(pcr_branch.begin(), pcr_branch.end());
    s.authorize_branch.assign(auth_branch.begin(), auth_branch.end());
    if (s.pcr_branch.size() != 32 || (s.mode == kModePcrOrAuthorized && s.authorize_branch.size() != 32)) {
      return bad("policy digests");
    }
    return s;
  }

  std::string describe() const {
    return "PCRs " + describe_pcr_selection(pcrs) + (mode == kModePcrOrAuthorized ? " or an operator-signed policy" : "");
  }
};

Result<std::unique_ptr<TpmRootOfTrust>> TpmRootOfTrust::open(TpmRootOptions options) {
  if (auto pcrs = parse_pcr_selection(options.pcrs); !pcrs) return pcrs.error();
  if (!options.policy_key_file.empty()) {
    if (auto key = signing_key_public(options.policy_key_file); !key) return key.error();
  }
  auto root = std::make_unique<TpmRootOfTrust>(std::move(options));
  auto ready = root->with_tpm<bool>("connecting to the TPM", [&]() -> Result<bool> { return true; });
  if (!ready) return ready.error();
  return root;
}

std::string TpmRootOfTrust::describe() const {
  std::string d = "TPM 2.0 at " + options_.channel + ", NV counter " + hex32(options_.counter_index) +
                  " advanced per epoch (start, reseal, every " + std::to_string(options_.counter_interval.count()) + " s)";
  if (options_.parent_handle) d += ", storage key " + hex32(options_.parent_handle);
  return d;
}

std::string TpmRootOfTrust::policy_description() const {
  const std::lock_guard lock(policy_mutex_);
  return policy_;
}

void TpmRootOfTrust::set_policy_description(std::string text) {
  const std::lock_guard lock(policy_mutex_);
  policy_ = std::move(text);
}

template <typename T>
Result<T> TpmRootOfTrust::with_tpm(const std::string& what, const std::function<Result<T>()>& op) {
  const std::lock_guard lock(mutex_);
  const OpensslThreadState openssl;
  auto backoff = options_.first_backoff;
  for (int attempt = 0;; ++attempt) {
    Result<T> result = [&]() -> Result<T> {
      if (!esys_) {
        if (Status s = connect(); !s) return s.error();
      }
      return op();
    }();
    if (!result && tcti_ && options_.channel_error) {
      if (const std::string detail = options_.channel_error(tcti_.get()); !detail.empty()) {
        result = make_error(result.error().code, result.error().message + " [" + detail + "]");
      }
    }
    if (result || result.error().code != ErrorCode::kUnavailable || attempt >= options_.retries) {
      if (!result) {
        return make_error(result.error().code,
                          what + ": " + result.error().message +
                              (result.error().code == ErrorCode::kUnavailable
                                   ? " (gave up after " + std::to_string(attempt + 1) + " attempts)"
                                   : ""));
      }
      return result;
    }
    // Start over on a fresh connection: a dropped channel leaves the
    // ESAPI context unusable, and a busy TPM deserves a pause.
    esys_.reset();
    tcti_ = {};
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  }
}

Status TpmRootOfTrust::connect() {
  auto tcti = options_.connect();
  if (!tcti) return make_error(ErrorCode::kUnavailable, tcti.error().message);
  ESYS_CONTEXT* ctx = nullptr;
  if (TSS2_RC rc = Esys_Initialize(&ctx, tcti->get(), nullptr); rc != TSS2_RC_SUCCESS) {
    return tpm_error("ESAPI initialisation over " + options_.channel, rc);
  }
  tcti_ = std::move(*tcti);
  esys_ = EsysContext(ctx);
  // A firmware normally started the TPM already (TPM_RC_INITIALIZE); a
  // simulator or a freshly reset TPM has not.
  if (TSS2_RC rc = Esys_Startup(ctx, TPM2_SU_CLEAR); rc != TSS2_RC_SUCCESS && base_rc(rc) != TPM2_RC_INITIALIZE) {
    Error e = tpm_error("TPM2_Startup", rc);
    if (options_.channel_error) {
      if (const std::string detail = options_.channel_error(tcti_.get()); !detail.empty()) e.message += " [" + detail + "]";
    }
    esys_.reset();
    tcti_ = {};
    return e;
  }
  return Status::success();
}

Result<TpmHandle> TpmRootOfTrust::storage_parent() {
  ESYS_CONTEXT* ctx = esys_.get();
  ESYS_TR handle = ESYS_TR_NONE;
  if (options_.parent_handle != 0) {
    if (TSS2_RC rc = Esys_TR_FromTPMPublic(ctx, options_.parent_handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &handle);
        rc != TSS2_RC_SUCCESS) {
      return tpm_error("the storage key at persistent handle " + hex32(options_.parent_handle), rc);
    }
    return TpmHandle(ctx, handle, TpmHandle::Kind::kClose);
  }
  const TPM2B_SENSITIVE_CREATE sensitive{};
  const TPM2B_PUBLIC tmpl = srk_template();
  const TPM2B_DATA outside{};
  const TPML_PCR_SELECTION creation_pcrs{};
  if (TSS2_RC rc = Esys_CreatePrimary(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                      &tmpl, &outside, &creation_pcrs, &handle, nullptr, nullptr, nullptr, nullptr);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("creating the storage primary key (ECC P-256 SRK template) in the owner hierarchy", rc);
  }
  return TpmHandle(ctx, handle);
}

Result<TpmHandle> TpmRootOfTrust::salted_session(ESYS_TR salt_key, TPM2_SE type, TPMA_SESSION attributes) {
  ESYS_CONTEXT* ctx = esys_.get();
  const TPMT_SYM_DEF aes{.algorithm = TPM2_ALG_AES, .keyBits = {.aes = 128}, .mode = {.aes = TPM2_ALG_CFB}};
  ESYS_TR session = ESYS_TR_NONE;
  if (TSS2_RC rc = Esys_StartAuthSession(ctx, salt_key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                         type, &aes, TPM2_ALG_SHA256, &session);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("starting a salted session", rc);
  }
  TpmHandle handle(ctx, session);
  if (TSS2_RC rc = Esys_TRSess_SetAttributes(ctx, session, attributes | TPMA_SESSION_CONTINUESESSION, 0xff);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("setting session attributes", rc);
  }
  return handle;
}

Result<Bytes> TpmRootOfTrust::pcr_branch(const TPML_PCR_SELECTION& pcrs, const std::vector<std::string>& predicted) {
  ESYS_CONTEXT* ctx = esys_.get();
  TPM2B_DIGEST composite{};  // empty: the TPM uses the current values
  if (!predicted.empty()) {
    auto values = parse_pcr_values(predicted);
    if (!values) return values.error();
    // The PCRs without a predicted value keep their current one: read
    // them one at a time (TPM2_PCR_Read returns at most 8 per call).
    for (std::uint32_t b = 0; b < pcrs.count; ++b) {
      for (unsigned pcr = 0; pcr < 24; ++pcr) {
        if (!(pcrs.pcrSelections[b].pcrSelect[pcr / 8] & (1u << (pcr % 8)))) continue;
        if (values->contains({pcrs.pcrSelections[b].hash, pcr})) continue;
        TPML_PCR_SELECTION one{};
        one.count = 1;
        one.pcrSelections[0].hash = pcrs.pcrSelections[b].hash;
        one.pcrSelections[0].sizeofSelect = 3;
        one.pcrSelections[0].pcrSelect[pcr / 8] = static_cast<BYTE>(1u << (pcr % 8));
        EsysPtr<TPML_DIGEST> digests;
        TPML_DIGEST* raw = nullptr;
        if (TSS2_RC rc = Esys_PCR_Read(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &one, nullptr, nullptr, &raw);
            rc != TSS2_RC_SUCCESS) {
          return tpm_error("reading PCR " + std::to_string(pcr), rc);
        }
        digests.reset(raw);
        if (digests->count != 1) {
          return make_error(ErrorCode::kInvalidArgument,
                            "PCR " + describe_pcr_selection(one) + " is not allocated on this TPM");
        }
        (*values)[{pcrs.pcrSelections[b].hash, pcr}] =
            Bytes(digests->digests[0].buffer, digests->digests[0].buffer + digests->digests[0].size);
      }
    }
    auto d = pcr_composite_digest(pcrs, *values);
    if (!d) return d.error();
    // Offline, exactly what TPM2_PolicyPCR would fold in.
    return policy_pcr_digest(pcrs, *d);
  }
  ESYS_TR trial = ESYS_TR_NONE;
  const TPMT_SYM_DEF none{.algorithm = TPM2_ALG_NULL, .keyBits = {}, .mode = {}};
  if (TSS2_RC rc = Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                         nullptr, TPM2_SE_TRIAL, &none, TPM2_ALG_SHA256, &trial);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("starting a trial policy session", rc);
  }
  TpmHandle session(ctx, trial);
  if (TSS2_RC rc = Esys_PolicyPCR(ctx, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &composite, &pcrs);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("TPM2_PolicyPCR over " + describe_pcr_selection(pcrs) + " (is every bank allocated?)", rc);
  }
  TPM2B_DIGEST* raw = nullptr;
  if (TSS2_RC rc = Esys_PolicyGetDigest(ctx, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw); rc != TSS2_RC_SUCCESS) {
    return tpm_error("TPM2_PolicyGetDigest", rc);
  }
  EsysPtr<TPM2B_DIGEST> digest(raw);
  return Bytes(digest->buffer, digest->buffer + digest->size);
}

Result<TpmRootOfTrust::PolicyKey> TpmRootOfTrust::load_policy_key() {
  auto pub = signing_key_public(options_.policy_key_file);
  if (!pub) return pub.error();
  ESYS_CONTEXT* ctx = esys_.get();
  ESYS_TR key = ESYS_TR_NONE;
  if (TSS2_RC rc = Esys_LoadExternal(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, &*pub, ESYS_TR_RH_OWNER, &key);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("loading the operator's policy key " + options_.policy_key_file, rc);
  }
  PolicyKey loaded{TpmHandle(ctx, key), {}};
  TPM2B_NAME* raw = nullptr;
  if (TSS2_RC rc = Esys_TR_GetName(ctx, key, &raw); rc != TSS2_RC_SUCCESS) return tpm_error("reading the key's name", rc);
  loaded.name = *EsysPtr<TPM2B_NAME>(raw);
  return loaded;
}

Result<Bytes> TpmRootOfTrust::seal_under(const SecretKey& secret, const TPML_PCR_SELECTION& pcrs,
                                         const std::vector<std::string>& predicted, bool authorized) {
  ESYS_CONTEXT* ctx = esys_.get();
  Sealed sealed;
  sealed.parent = options_.parent_handle;
  sealed.counter = options_.counter_index;
  sealed.pcrs = pcrs;
  auto pcr_digest = pcr_branch(pcrs, predicted);
  if (!pcr_digest) return pcr_digest.error();
  sealed.pcr_branch = *pcr_digest;
  Bytes auth_policy = sealed.pcr_branch;
  if (authorized) {
    auto key = load_policy_key();
    if (!key) return key.error();
    sealed.mode = kModePcrOrAuthorized;
    sealed.authorize_branch = policy_authorize_digest(key->name);
    auth_policy = policy_or_digest(sealed.pcr_branch, sealed.authorize_branch);
  }
  auto parent = storage_parent();
  if (!parent) return parent.error();
  // Salted, with the command parameter (the sensitive data) encrypted.
  auto session = salted_session(parent->get(), TPM2_SE_HMAC, TPMA_SESSION_DECRYPT);
  if (!session) return session.error();

  TPM2B_SENSITIVE_CREATE sensitive{};
  sensitive.sensitive.data.size = static_cast<UINT16>(secret.bytes().size());
  std::memcpy(sensitive.sensitive.data.buffer, secret.bytes().data(), secret.bytes().size());
  TPM2B_PUBLIC tmpl{};
  tmpl.publicArea.type = TPM2_ALG_KEYEDHASH;
  tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
  // No userWithAuth: only the policy can unseal it. No DA lockout games.
  tmpl.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;
  tmpl.publicArea.authPolicy = digest_of(auth_policy);
  tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
  const TPM2B_DATA outside{};
  const TPML_PCR_SELECTION creation_pcrs{};
  TPM2B_PRIVATE* out_private = nullptr;
  TPM2B_PUBLIC* out_public = nullptr;
  const TSS2_RC rc = Esys_Create(ctx, parent->get(), session->get(), ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &tmpl,
                                 &outside, &creation_pcrs, &out_private, &out_public, nullptr, nullptr, nullptr);
  mbedtls_platform_zeroize(sensitive.sensitive.data.buffer, sizeof sensitive.sensitive.data.buffer);
  if (rc != TSS2_RC_SUCCESS) return tpm_error("sealing the master key (TPM2_Create)", rc);
  EsysPtr<TPM2B_PRIVATE> priv(out_private);
  EsysPtr<TPM2B_PUBLIC> pub(out_public);
  sealed.priv = *priv;
  sealed.pub = *pub;
  set_policy_description(sealed.describe());
  return sealed.encode();
}

namespace {

Result<SecretKey> unseal_object(ESYS_CONTEXT* ctx, ESYS_TR object, ESYS_TR session) {
  TPM2B_SENSITIVE_DATA* raw = nullptr;
  if (TSS2_RC rc = Esys_Unseal(ctx, object, session, ESYS_TR_NONE, ESYS_TR_NONE, &raw); rc != TSS2_RC_SUCCESS) {
    Error e = tpm_error("TPM2_Unseal", rc);
    if (is_policy_failure(rc)) e.code = ErrorCode::kPermissionDenied;
    return e;
  }
  EsysPtr<TPM2B_SENSITIVE_DATA> data(raw);
  if (data->size != kKeySize) {
    mbedtls_platform_zeroize(data->buffer, data->size);
    return make_error(ErrorCode::kCorrupt, "the unsealed master key has " + std::to_string(data->size) + " bytes");
  }
  SecretKey key(std::span<const std::uint8_t>(data->buffer, data->size));
  mbedtls_platform_zeroize(data->buffer, data->size);
  return key;
}

Status policy_or(ESYS_CONTEXT* ctx, ESYS_TR session, const Bytes& pcr_branch, const Bytes& authorize_branch) {
  TPML_DIGEST branches{};
  branches.count = 2;
  branches.digests[0] = digest_of(pcr_branch);
  branches.digests[1] = digest_of(authorize_branch);
  if (TSS2_RC rc = Esys_PolicyOR(ctx, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &branches);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("TPM2_PolicyOR", rc);
  }
  return Status::success();
}

Result<Bytes> session_digest(ESYS_CONTEXT* ctx, ESYS_TR session) {
  TPM2B_DIGEST* raw = nullptr;
  if (TSS2_RC rc = Esys_PolicyGetDigest(ctx, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("TPM2_PolicyGetDigest", rc);
  }
  EsysPtr<TPM2B_DIGEST> digest(raw);
  return Bytes(digest->buffer, digest->buffer + digest->size);
}

}  // namespace

Result<SecretKey> TpmRootOfTrust::unseal_with_pcrs(const Sealed& sealed, ESYS_TR parent, ESYS_TR object) {
  ESYS_CONTEXT* ctx = esys_.get();
  // Salted, with the response parameter (the key) encrypted.
  auto session = salted_session(parent, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT);
  if (!session) return session.error();
  const TPM2B_DIGEST current{};
  if (TSS2_RC rc = Esys_PolicyPCR(ctx, session->get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &current, &sealed.pcrs);
      rc != TSS2_RC_SUCCESS) {
    return tpm_error("TPM2_PolicyPCR", rc);
  }
  if (sealed.mode == kModePcrOrAuthorized) {
    auto now = session_digest(ctx, session->get());
    if (!now) return now.error();
    if (*now != sealed.pcr_branch) return make_error(ErrorCode::kPermissionDenied, "PCR values changed");
    if (Status s = policy_or(ctx, session->get(), sealed.pcr_branch, sealed.authorize_branch); !s) return s.error();
  }
  return unseal_object(ctx, object, session->get());
}

Result<SecretKey> TpmRootOfTrust::unseal_with_signed_policy(const Sealed& sealed, ESYS_TR parent, ESYS_TR object,
                                                            std::string& tried) {
  ESYS_CONTEXT* ctx = esys_.get();
  std::vector<std::string> problems;
  const auto policies = load_signed_policies(options_.signed_policy_dir, problems);
  for (const auto& p : problems) tried += "; " + p;
  for (const SignedPolicy& policy : policies) {
    auto session = salted_session(parent, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT);
    if (!session) return session.error();
    const TPM2B_DIGEST current{};
    if (TSS2_RC rc = Esys_PolicyPCR(ctx, session->get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &current, &policy.pcrs);
        rc != TSS2_RC_SUCCESS) {
      tried += "; " + policy.source + ": " + tpm_error("TPM2_PolicyPCR", rc).message;
      continue;
    }
    auto now = session_digest(ctx, session->get());
    if (!now) return now.error();
    if (*now != Bytes(policy.approved.buffer, policy.approved.buffer + policy.approved.size)) {
      tried += "; " + policy.source + ": signed for other PCR values";
      continue;
    }
    auto key = load_policy_key();
    if (!key) return key.error();
    const TPM2B_NAME& key_name = key->name;
    if (policy_authorize_digest(key_name) != sealed.authorize_branch) {
      return make_error(ErrorCode::kPermissionDenied, "the configured policy key " + options_.policy_key_file +
                                                          " is not the one the master key was sealed to");
    }
    Bytes a_hash_input(policy.approved.buffer, policy.approved.buffer + policy.approved.size);
    a_hash_input.insert(a_hash_input.end(), policy.policy_ref.buffer, policy.policy_ref.buffer + policy.policy_ref.size);
    const TPM2B_DIGEST a_hash = digest_of(sha256(a_hash_input));
    TPMT_TK_VERIFIED* ticket_raw = nullptr;
    if (TSS2_RC rc = Esys_VerifySignature(ctx, key->handle.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &a_hash, &policy.signature,
                                          &ticket_raw);
        rc != TSS2_RC_SUCCESS) {
      tried += "; " + policy.source + ": its signature does not verify with " + options_.policy_key_file;
      continue;
    }
    EsysPtr<TPMT_TK_VERIFIED> ticket(ticket_raw);
    if (TSS2_RC rc = Esys_PolicyAuthorize(ctx, session->get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &policy.approved,
                                          &policy.policy_ref, &key_name, ticket.get());
        rc != TSS2_RC_SUCCESS) {
      tried += "; " + policy.source + ": " + tpm_error("TPM2_PolicyAuthorize", rc).message;
      continue;
    }
    if (Status s = policy_or(ctx, session->get(), sealed.pcr_branch, sealed.authorize_branch); !s) return s.error();
    return unseal_object(ctx, object, session->get());
  }
  return make_error(ErrorCode::kPermissionDenied, "no operator-signed policy matches");
}

Result<Bytes> TpmRootOfTrust::seal(const SecretKey& secret) {
  return with_tpm<Bytes>("sealing the master key to the TPM", [&]() -> Result<Bytes> {
    auto pcrs = parse_pcr_selection(options_.pcrs);
    if (!pcrs) return pcrs.error();
    return seal_under(secret, *pcrs, {}, !options_.policy_key_file.empty());
  });
}

Result<Bytes> TpmRootOfTrust::reseal(const SecretKey& secret, const SealPolicy& policy) {
  if (policy.authorized && options_.policy_key_file.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "an authorized policy needs the operator's policy key (--tpm-policy-key)");
  }
  return with_tpm<Bytes>("resealing the master key", [&]() -> Result<Bytes> {
    Result<TPML_PCR_SELECTION> pcrs = parse_pcr_selection(policy.pcrs.empty() ? options_.pcrs : policy.pcrs);
    if (!pcrs) return pcrs.error();
    return seal_under(secret, *pcrs, policy.pcr_values, policy.authorized || !options_.policy_key_file.empty());
  });
}

Result<SecretKey> TpmRootOfTrust::unseal(std::span<const std::uint8_t> bytes) {
  auto sealed = Sealed::decode(bytes);
  if (!sealed) return sealed.error();
  if (sealed->parent != options_.parent_handle) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the master key was sealed under the storage key " +
                          (sealed->parent ? hex32(sealed->parent) : std::string("from the SRK template")) +
                          " but vtpmd is configured with " +
                          (options_.parent_handle ? hex32(options_.parent_handle) : std::string("the SRK template")));
  }
  if (sealed->counter != options_.counter_index) {
    return make_error(ErrorCode::kInvalidArgument, "the master key was sealed with NV counter " + hex32(sealed->counter) +
                                                       " but vtpmd is configured with " + hex32(options_.counter_index) +
                                                       ": a changed counter index would hide a rollback");
  }
  return with_tpm<SecretKey>("unsealing the master key", [&]() -> Result<SecretKey> {
    ESYS_CONTEXT* ctx = esys_.get();
    auto parent = storage_parent();
    if (!parent) return parent.error();
    ESYS_TR object = ESYS_TR_NONE;
    if (TSS2_RC rc = Esys_Load(ctx, parent->get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sealed->priv,
                               &sealed->pub, &object);
        rc != TSS2_RC_SUCCESS) {
      Error e = tpm_error("loading the sealed master key under its storage key", rc);
      if (e.code != ErrorCode::kUnavailable) {
        e.message += ". The storage key differs from the one at sealing time: another TPM, or its owner hierarchy "
                     "was cleared (tpm2_clear). The state cannot be recovered without the original TPM.";
      }
      return e;
    }
    TpmHandle loaded(ctx, object);
    auto key = unseal_with_pcrs(*sealed, parent->get(), object);
    if (key) set_policy_description(sealed->describe());
    if (key || key.error().code != ErrorCode::kPermissionDenied) return key;
    std::string tried;
    if (sealed->mode == kModePcrOrAuthorized) {
      if (options_.policy_key_file.empty()) {
        tried = "; no --tpm-policy-key is configured to check operator-signed policies";
      } else {
        auto signed_key = unseal_with_signed_policy(*sealed, parent->get(), object, tried);
        if (signed_key) {
          set_policy_description(sealed->describe() +
                                 " (unsealed with an operator-signed policy; reseal to the current PCRs)");
          return signed_key;
        }
        if (signed_key.error().code != ErrorCode::kPermissionDenied) return signed_key;
        tried = "; " + signed_key.error().message + tried;
      }
    }
    return make_error(
        ErrorCode::kPermissionDenied,
        "the TPM refused: the values of PCRs " + describe_pcr_selection(sealed->pcrs) +
            " differ from those the master key was sealed to (a firmware, boot loader or Secure Boot change?)" +
            tried +
            ". vtpmd will not create a new key over the existing state. Boot the previous configuration and run "
            "`vtpmctl reseal` before the change, or provide a policy for the new values signed with the operator key "
            "(`vtpmctl sign-policy`, --tpm-policy-key, --tpm-signed-policies)");
  });
}

Result<TpmHandle> TpmRootOfTrust::counter_index() {
  ESYS_CONTEXT* ctx = esys_.get();
  ESYS_TR index = ESYS_TR_NONE;
  const TSS2_RC rc =
      Esys_TR_FromTPMPublic(ctx, options_.counter_index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &index);
  if (rc == TSS2_RC_SUCCESS) {
    TpmHandle handle(ctx, index, TpmHandle::Kind::kClose);
    TPM2B_NV_PUBLIC* raw = nullptr;
    if (TSS2_RC r = Esys_NV_ReadPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw, nullptr);
        r != TSS2_RC_SUCCESS) {
      return tpm_error("reading the NV counter's definition", r);
    }
    EsysPtr<TPM2B_NV_PUBLIC> pub(raw);
    const auto type = (pub->nvPublic.attributes & TPMA_NV_TPM2_NT_MASK) >> TPMA_NV_TPM2_NT_SHIFT;
    if (type != TPM2_NT_COUNTER) {
      return make_error(ErrorCode::kInvalidArgument, "NV index " + hex32(options_.counter_index) +
                                                         " exists but is not a counter; choose another "
                                                         "with --tpm-counter-index");
    }
    return handle;
  }
  if (base_rc(rc) != TPM2_RC_HANDLE && (rc & 0xFFF) != (TPM2_RC_HANDLE & 0xFFF)) {
    return tpm_error("looking up NV index " + hex32(options_.counter_index), rc);
  }
  // First use: define the counter. Reading and incrementing need only the
  // index's empty auth; deleting it needs the owner.
  TPM2B_NV_PUBLIC pub{};
  pub.nvPublic.nvIndex = options_.counter_index;
  pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
  pub.nvPublic.attributes = (TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) | TPMA_NV_AUTHWRITE | TPMA_NV_AUTHREAD |
                            TPMA_NV_OWNERREAD | TPMA_NV_NO_DA;
  pub.nvPublic.dataSize = 8;
  const TPM2B_AUTH auth{};
  if (TSS2_RC r = Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth, &pub,
                                      &index);
      r != TSS2_RC_SUCCESS) {
    Error e = tpm_error("defining the NV counter " + hex32(options_.counter_index) + " in the owner hierarchy", r);
    if (base_rc(r) == TPM2_RC_BAD_AUTH || base_rc(r) == TPM2_RC_AUTH_FAIL) {
      e.message += " (the owner hierarchy has a password: define the index once by hand, see docs/hardware-tpm.md)";
    }
    return e;
  }
  return TpmHandle(ctx, index, TpmHandle::Kind::kClose);
}

Result<std::uint64_t> TpmRootOfTrust::read_counter_value(ESYS_TR index) {
  ESYS_CONTEXT* ctx = esys_.get();
  TPM2B_MAX_NV_BUFFER* raw = nullptr;
  TSS2_RC rc = Esys_NV_Read(ctx, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &raw);
  if (base_rc(rc) == TPM2_RC_NV_UNINITIALIZED) {
    // A counter is born unwritten; its first increment sets it to the
    // highest value any counter of this TPM ever had.
    if (TSS2_RC r = Esys_NV_Increment(ctx, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
        r != TSS2_RC_SUCCESS) {
      return tpm_error("initialising the NV counter", r);
    }
    rc = Esys_NV_Read(ctx, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &raw);
  }
  if (rc != TSS2_RC_SUCCESS) return tpm_error("reading the NV counter", rc);
  EsysPtr<TPM2B_MAX_NV_BUFFER> data(raw);
  if (data->size != 8) return make_error(ErrorCode::kTpmFailure, "the NV counter read returned " + std::to_string(data->size) + " bytes");
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | data->buffer[i];
  return value;
}

Result<std::uint64_t> TpmRootOfTrust::read_counter() {
  return with_tpm<std::uint64_t>("reading the TPM's NV counter", [&]() -> Result<std::uint64_t> {
    auto index = counter_index();
    if (!index) return index.error();
    return read_counter_value(index->get());
  });
}

Result<std::uint64_t> TpmRootOfTrust::increment_counter() {
  // Not retried here: a lost answer leaves the caller uncertain whether it
  // happened, and the state store resolves that by reading first.
  const std::lock_guard lock(mutex_);
  const OpensslThreadState openssl;
  auto attempt = [&]() -> Result<std::uint64_t> {
    if (!esys_) {
      if (Status s = connect(); !s) return s.error();
    }
    auto index = counter_index();
    if (!index) return index.error();
    if (TSS2_RC rc = Esys_NV_Increment(esys_.get(), index->get(), index->get(), ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                       ESYS_TR_NONE);
        rc != TSS2_RC_SUCCESS) {
      return tpm_error("TPM2_NV_Increment", rc);
    }
    return read_counter_value(index->get());
  };
  auto result = attempt();
  if (!result) {
    if (result.error().code == ErrorCode::kUnavailable) {
      esys_.reset();
      tcti_ = {};
    }
    return make_error(result.error().code, "advancing the TPM's NV counter: " + result.error().message);
  }
  return result;
}

}  // namespace vtpm::state
